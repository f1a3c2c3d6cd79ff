"""Uploads: a file copied into the mount beside ``curl -F`` of the same file to the same endpoint.

The mount's figure includes what a user waits for: ``cp`` returns when ``close()`` has the platform's
answer (the spool is uploaded at close). Peak RSS is the mount process's VmHWM on a fresh mount that does
nothing but this upload, so it shows whether the upload streams from disk.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cpu import children_cpu_seconds, cpu_ms_per_mib
from bench.peers import MmfsTool, _http
from bench.report import Table, fmt_bytes, fmt_cpu, fmt_mb_s, fmt_ratio, ratio, with_spread
from bench.workspace import Bench

__all__ = ["upload_table"]

PURPOSE = "retrieval"  # takes .txt files up to 512 MB
_PIECE = 1 << 20


def _source(bench: Bench, size: int) -> Path:
    path = bench.work / f"upload-{size >> 20}M.txt"
    if not path.exists() or path.stat().st_size != size:
        piece = os.urandom(_PIECE)
        with open(path, "wb") as out:
            for i in range(size // _PIECE):
                out.write(i.to_bytes(8, "little") + piece[8:])
    return path


def _delete_uploads(bench: Bench, prefix: str) -> None:
    origin = bench.emulator
    assert origin is not None
    auth = {"Authorization": f"Bearer {origin.api_key}"}
    listing = _http(f"{origin.base_url}/v1/files/list?purpose={PURPOSE}", headers=auth)
    for record in listing.get("files") or []:
        if str(record.get("filename", "")).startswith(prefix):
            _http(f"{origin.base_url}/v1/files/delete", "POST", {"file_id": record["file_id"], "purpose": PURPOSE},
                  headers=auth)


def _emulator_cpu(bench: Bench) -> float | None:
    return bench.emulator_cpu() if bench.emulator_cpu is not None else None


def _since(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else now - before


def _best_of(runs: list[dict[str, Any] | str]) -> dict[str, Any] | str:
    """The fastest run, with every run's seconds; a failed run wins, so a failure is never hidden."""
    failed = [r for r in runs if isinstance(r, str)]
    if failed:
        return failed[0]
    good = [r for r in runs if isinstance(r, dict)]
    best = dict(min(good, key=lambda r: r["seconds"]))
    best["all_seconds"] = [r["seconds"] for r in good]
    best["all_cpu"] = [r.get("cpu") for r in good]
    return best


def _curl_upload(bench: Bench, source: Path, size: int) -> dict[str, Any]:
    origin = bench.emulator
    assert origin is not None
    with tempfile.NamedTemporaryFile("w", dir=bench.work, suffix=".headers") as headers:
        headers.write(f"Authorization: Bearer {origin.api_key}\n")  # a header file: the key stays out of argv
        headers.flush()
        cpu_before, emulator_before = children_cpu_seconds(), _emulator_cpu(bench)
        started = time.perf_counter()
        done = subprocess.run(["curl", "-sS", "--fail", "--noproxy", "*", "-H", f"@{headers.name}",
                               "-F", f"purpose={PURPOSE}", "-F", f"file=@{source};filename=bench-curl.txt",
                               f"{origin.base_url}/v1/files/upload"], capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
        cpu, emulator_cpu = children_cpu_seconds() - cpu_before, _since(_emulator_cpu(bench), emulator_before)
    if done.returncode != 0 or '"status_code":0' not in done.stdout.replace(" ", ""):
        raise RuntimeError(f"curl upload failed: {done.stderr.strip() or done.stdout[:200]}")
    return {"seconds": seconds, "cpu": cpu, "emulator_cpu": emulator_cpu}


def _mmfs_upload(bench: Bench, tool: MmfsTool, source: Path, size: int) -> dict[str, Any]:
    reason = tool.unavailable()
    if reason:
        raise RuntimeError(reason)
    proc = tool.mount(bench.mountpoint(tool), bench.fresh_cache(tool), bench.log_path(tool, "upload"))
    try:
        target = proc.mountpoint / PURPOSE / "bench-mmfs.txt"
        cpu_before, emulator_before = proc.cpu_seconds(), _emulator_cpu(bench)
        started = time.perf_counter()
        with proc.watchdog(600):
            done = subprocess.run(["cp", str(source), str(target)], capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
        cpu, emulator_cpu = _since(proc.cpu_seconds(), cpu_before), _since(_emulator_cpu(bench), emulator_before)
        if done.returncode != 0:
            raise RuntimeError(f"cp failed: {done.stderr.strip()}")
        if os.stat(target).st_size != size:
            raise RuntimeError("the uploaded file has the wrong size")
        return {"seconds": seconds, "rss": proc.peak_rss_kib(), "cpu": cpu, "emulator_cpu": emulator_cpu}
    finally:
        proc.stop()


def upload_table(bench: Bench) -> Table:
    size = bench.sizes.upload
    table = Table(f"Upload of a {fmt_bytes(size)} file to the emulator (MB/s)",
                  ["tool", "MB/s", "CPU ms/MiB", "emulator CPU ms/MiB", "vs curl -F", "peak RSS MiB"])
    tool = bench.tools.get("mmfs")
    if bench.emulator is None or not isinstance(tool, MmfsTool):
        table.add_unavailable("mmfs", "not available: emulator not running")
        return table
    source = _source(bench, size)
    rows: dict[str, dict[str, Any] | str] = {}
    for label, run in (("curl -F", lambda: _curl_upload(bench, source, size)),
                       ("mmfs (cp into the mount)", lambda: _mmfs_upload(bench, tool, source, size))):
        runs: list[dict[str, Any] | str] = []
        for _ in range(max(1, bench.repeat)):
            try:
                bench.prepare_cold()
                runs.append(run())
            except Exception as exc:  # one failed row must not hide the other
                runs.append(f"failed: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")
            finally:
                _delete_uploads(bench, "bench-")
        rows[label] = _best_of(runs)
    curl = rows["curl -F"]
    curl_mb_s = size / curl["seconds"] / 1e6 if isinstance(curl, dict) else None

    def mb_s(seconds: float | None) -> float | None:
        return size / seconds / 1e6 if seconds else None

    def per_mib(cpu: float | None) -> float | None:
        return cpu_ms_per_mib(cpu, size)

    for label, row in rows.items():
        if isinstance(row, str):
            table.add_unavailable(label, row)
            continue
        rss = row.get("rss")
        table.add(label, with_spread(fmt_mb_s(mb_s(row["seconds"])), [mb_s(x) for x in row["all_seconds"]], fmt_mb_s),
                  with_spread(fmt_cpu(per_mib(row.get("cpu"))), [per_mib(x) for x in row["all_cpu"]], fmt_cpu),
                  fmt_cpu(per_mib(row.get("emulator_cpu"))),
                  fmt_ratio(ratio(mb_s(row["seconds"]), curl_mb_s)) if label != "curl -F" else "-",
                  f"{rss / 1024:.0f}" if rss else "-")
        bench.record("upload", label, "MB/s", mb_s(row["seconds"]))
        bench.plot(label.split(" ")[0], "upload", mb_s(row["seconds"]))
    table.notes += [
        "mmfs: `cp` into the mount, timed until it returns (close() waits for the upload); peak RSS of a fresh "
        "mount doing only this upload. curl: one multipart POST of the same file",
        "CPU ms/MiB: the sender's processes (curl, or the mount and its helpers) per MiB uploaded; the "
        "emulator's column is the receiving server's CPU over the same span. A figure in brackets is the range "
        "over the repetitions",
    ]
    return table
