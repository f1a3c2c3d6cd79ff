"""The timed operations: what a reader does to a mounted file, and how long it took.

Every function reads through the ordinary file API (what ``dd`` or an application would do), checks what it
read against the corpus, and returns the time measured around the operation only. Loops are bounded by the
file size or the count asked for; a hung mount is the caller's watchdog's business.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.corpus import check_block_stamps, expected_bytes
from bench.cpu import children_cpu_seconds, cpu_ms_per_mib

__all__ = [
    "ListResult",
    "RandomResult",
    "SeqResult",
    "curl_download",
    "list_folder",
    "random_offsets",
    "random_reads",
    "seq_read",
    "time_to_first_byte",
]

READ_SIZE = 1 << 20  # dd bs=1M


@dataclass
class SeqResult:
    nbytes: int
    seconds: float
    ok: bool
    note: str = ""
    cpu_seconds: float | None = None  # the tool's CPU (its processes) during the read, when measured

    @property
    def mb_s(self) -> float:
        return self.nbytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_mib(self) -> float | None:
        return cpu_ms_per_mib(self.cpu_seconds, self.nbytes)


def seq_read(path: Path, size: int) -> SeqResult:
    """Open, read to the end in 1 MiB reads, close; check every block's stamp and the total size."""
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    total = 0
    ok = True
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(size // READ_SIZE + 2):  # one more read to see EOF, one spare for a short read
            n = os.readv(fd, [view])
            if n == 0:
                break
            if ok and not check_block_stamps(view[:n], total):
                ok = False
            total += n
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    if total != size:
        return SeqResult(total, seconds, False, f"read {total} of {size} bytes")
    return SeqResult(total, seconds, ok, "" if ok else "wrong bytes")


def random_offsets(size: int, count: int, length: int, seed: int) -> list[int]:
    """``count`` offsets aligned to ``length``, drawn with a fixed seed so every tool reads the same ones."""
    slots = max(1, (size - length) // length)
    rng = random.Random(seed)
    return [rng.randrange(slots) * length for _ in range(count)]


@dataclass
class RandomResult:
    latencies: list[float] = field(default_factory=list)  # seconds per pread
    nbytes: int = 0
    ok: bool = True


def random_reads(path: Path, size: int, offsets: list[int], length: int) -> RandomResult:
    """One ``pread`` of ``length`` bytes at each offset, timed one by one, on one open file."""
    result = RandomResult()
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in offsets:
            started = time.perf_counter()
            data = os.pread(fd, length, offset)
            result.latencies.append(time.perf_counter() - started)
            result.nbytes += len(data)
            if result.ok and data != expected_bytes(offset, length, size):
                result.ok = False
    finally:
        os.close(fd)
    return result


def time_to_first_byte(path: Path, size: int) -> tuple[float, bool]:
    """Seconds from open to holding the first byte, on a path not touched before; and whether it was right."""
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        first = os.read(fd, 1)
        seconds = time.perf_counter() - started
    finally:
        os.close(fd)
    return seconds, first == expected_bytes(0, 1, size)


@dataclass
class ListResult:
    ls_seconds: float
    du_seconds: float
    entries: int
    du_text: str


def list_folder(folder: Path, timeout: float) -> ListResult:
    """``ls -l`` then ``du -sh`` of a folder, each timed as a whole process, output counted."""
    env = dict(os.environ, LC_ALL="C")
    started = time.perf_counter()
    ls = subprocess.run(["ls", "-l", "--color=never", str(folder)], capture_output=True, timeout=timeout,
                        env=env, check=True)
    ls_seconds = time.perf_counter() - started
    started = time.perf_counter()
    du = subprocess.run(["du", "-sh", str(folder)], capture_output=True, timeout=timeout, env=env, check=True)
    du_seconds = time.perf_counter() - started
    entries = sum(1 for line in ls.stdout.decode(errors="replace").splitlines() if not line.startswith("total"))
    return ListResult(ls_seconds, du_seconds, entries, du.stdout.decode(errors="replace").split("\t")[0])


def curl_download(url: str, size: int, timeout: float, first_byte_only: bool = False) -> SeqResult:
    """A single-stream ``curl -o /dev/null`` of ``url`` (or of its first byte), timed by curl itself."""
    argv = ["curl", "--silent", "--show-error", "--fail", "--noproxy", "*", "-o", "/dev/null",
            "-w", "%{size_download} %{time_total} %{time_starttransfer}"]
    if first_byte_only:
        argv += ["-r", "0-0"]
    cpu_before = children_cpu_seconds()
    proc = subprocess.run([*argv, url], capture_output=True, timeout=timeout, check=False)
    cpu = children_cpu_seconds() - cpu_before
    if proc.returncode != 0:
        return SeqResult(0, 0.0, False, f"curl exit {proc.returncode}: {proc.stderr.decode(errors='replace')[:200]}")
    got, total, first = proc.stdout.decode().split()
    want = 1 if first_byte_only else size
    seconds = float(first) if first_byte_only else float(total)
    return SeqResult(int(float(got)), seconds, int(float(got)) == want, "", cpu)
