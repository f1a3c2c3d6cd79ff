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

from bench.peers import MmfsTool, _http
from bench.report import Table, fmt_bytes, fmt_mb_s, fmt_ratio, ratio
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


def _curl_upload(bench: Bench, source: Path, size: int) -> dict[str, Any]:
    origin = bench.emulator
    assert origin is not None
    with tempfile.NamedTemporaryFile("w", dir=bench.work, suffix=".headers") as headers:
        headers.write(f"Authorization: Bearer {origin.api_key}\n")  # a header file: the key stays out of argv
        headers.flush()
        started = time.perf_counter()
        done = subprocess.run(["curl", "-sS", "--fail", "--noproxy", "*", "-H", f"@{headers.name}",
                               "-F", f"purpose={PURPOSE}", "-F", f"file=@{source};filename=bench-curl.txt",
                               f"{origin.base_url}/v1/files/upload"], capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
    if done.returncode != 0 or '"status_code":0' not in done.stdout.replace(" ", ""):
        raise RuntimeError(f"curl upload failed: {done.stderr.strip() or done.stdout[:200]}")
    return {"seconds": seconds}


def _mmfs_upload(bench: Bench, tool: MmfsTool, source: Path, size: int) -> dict[str, Any]:
    reason = tool.unavailable()
    if reason:
        raise RuntimeError(reason)
    proc = tool.mount(bench.mountpoint(tool), bench.fresh_cache(tool), bench.log_path(tool, "upload"))
    try:
        target = proc.mountpoint / PURPOSE / "bench-mmfs.txt"
        started = time.perf_counter()
        with proc.watchdog(600):
            done = subprocess.run(["cp", str(source), str(target)], capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"cp failed: {done.stderr.strip()}")
        if os.stat(target).st_size != size:
            raise RuntimeError("the uploaded file has the wrong size")
        return {"seconds": seconds, "rss": proc.peak_rss_kib()}
    finally:
        proc.stop()


def upload_table(bench: Bench) -> Table:
    size = bench.sizes.upload
    table = Table(f"Upload of a {fmt_bytes(size)} file to the emulator (MB/s)",
                  ["tool", "MB/s", "vs curl -F", "peak RSS MiB"])
    tool = bench.tools.get("mmfs")
    if bench.emulator is None or not isinstance(tool, MmfsTool):
        table.add_unavailable("mmfs", "not available: emulator not running")
        return table
    source = _source(bench, size)
    rows: dict[str, dict[str, Any] | str] = {}
    for label, run in (("curl -F", lambda: _curl_upload(bench, source, size)),
                       ("mmfs (cp into the mount)", lambda: _mmfs_upload(bench, tool, source, size))):
        try:
            bench.prepare_cold()
            rows[label] = run()
        except Exception as exc:  # one failed row must not hide the other
            rows[label] = f"failed: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
        finally:
            _delete_uploads(bench, "bench-")
    curl = rows["curl -F"]
    curl_mb_s = size / curl["seconds"] / 1e6 if isinstance(curl, dict) else None
    for label, row in rows.items():
        if isinstance(row, str):
            table.add_unavailable(label, row)
            continue
        mb_s = size / row["seconds"] / 1e6
        rss = row.get("rss")
        table.add(label, fmt_mb_s(mb_s), fmt_ratio(ratio(mb_s, curl_mb_s)) if label != "curl -F" else "-",
                  f"{rss / 1024:.0f}" if rss else "-")
        bench.plot(label.split(" ")[0], "upload", mb_s)
    table.notes.append("mmfs: `cp` into the mount, timed until it returns (close() waits for the upload); "
                       "peak RSS of a fresh mount doing only this upload. curl: one multipart POST of the same file")
    return table
