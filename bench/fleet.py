"""The fleet tables: what 1 and 3 mounts reading the same files cost the platform, alone and with ``--shared``.

Every row starts cold (fresh cache folders, an empty Redis), mounts N copies of one emulator account, and
for ``--seconds`` has every mount read the same files once and then list every purpose once a second (a
render farm's workers polling for new outputs). The emulator counts what reached the platform: bytes
downloaded and API calls. Listings refresh every ``--dir-cache-time`` seconds (10 s here to compress
time; the default is 30 s), so the per-minute figures are for that interval. The last row shares through a
three-master Redis Cluster on loopback instead of one node.

A second table reads one file of each size (100 KB to 3 MiB) on three mounts at once, alone and shared:
small files and pieces must be shared as well as whole blocks. A third (bench/fleet_load.py) loads one
node and a three-master cluster with 20 client processes reading blocks.

    scripts/bench --fleet [--seconds 20] [--files 3] [--size-mib 16] [--out bench/fleet-results.md]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.mounts import FuseProcess
from mmfs.emulator import Emulator, EmulatorConfig

__all__ = ["main"]

KEY = "sk-bench-fleet-0123456789"
API_KINDS = ("list", "retrieve", "retrieve_content", "upload", "delete")
# The shared tier's memory in this run: larger than the files read, so nothing is evicted mid-row.
REDIS_MAXMEMORY = "512mb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "allkeys-lru", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    return proc


def _cluster_port() -> int:
    while True:  # the cluster bus listens on the port + 10000
        port = _free_port()
        if port + 10000 <= 65535:
            return port


@contextlib.contextmanager
def redis_server(folder: Path, cluster: bool = False) -> Iterator[tuple[str, list[int]]]:
    """One node, or a three-master cluster: its ``--shared`` URL and its ports."""
    ports = [_cluster_port() for _ in range(3)] if cluster else [_free_port()]
    extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf") if cluster else ()
    procs = []
    try:
        for port in ports:
            procs.append(_start_redis(folder / str(port), port, *extra))
        if cluster:
            subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                            "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True)
            while any(b"cluster_state:ok" not in subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"],
                                                                 capture_output=True).stdout for p in ports):
                time.sleep(0.1)
            yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports), ports
        else:
            yield f"redis://127.0.0.1:{ports[0]}/0", ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def _flush(ports: list[int]) -> None:
    for port in ports:
        subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True, check=True)


def _redis_stats(ports: list[int]) -> tuple[int, int]:
    """Commands processed and bytes sent by Redis so far, over every node (0, 0 without one)."""
    commands = sent = 0
    for port in ports:
        out = subprocess.run(["redis-cli", "-p", str(port), "info", "stats"], capture_output=True, text=True).stdout
        stats = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        commands += int(stats["total_commands_processed"])
        sent += int(stats["total_net_output_bytes"])
    return commands, sent


def _mount(work: Path, name: str, base_url: str, shared: str | None, dir_cache_time: float) -> FuseProcess:
    root = work / name
    argv = [sys.executable, "-m", "mmfs", "mount", str(root / "mnt"), "--base-url", base_url,
            "--cache-dir", str(root / "cache"), "--state-dir", str(root / "state"),
            "--dir-cache-time", str(dir_cache_time), *(["--shared", shared] if shared else [])]
    env = dict(os.environ, MINIMAX_API_KEY=KEY)
    return FuseProcess(f"mmfs-{name}", argv, root / "mnt", root / "mount.log", env=env).start()


def _workload(mnt: Path, names: list[str], until: float, errors: list[str]) -> None:
    try:
        for name in names:
            with open(mnt / "retrieval" / name, "rb") as f:
                while f.read(128 << 10):  # what cp and most readers ask at a time
                    pass
        while time.monotonic() < until:
            for purpose in os.listdir(mnt):
                if not purpose.startswith("."):
                    os.listdir(mnt / purpose)
            time.sleep(1.0)
    except OSError as exc:
        errors.append(f"{mnt}: {exc}")


def run_row(emu: Emulator, work: Path, mounts: int, shared: tuple[str, list[int]] | None, names: list[str],
            seconds: float, dir_cache_time: float, engine: str = "") -> dict[str, float]:
    url, ports = shared if shared else (None, [])
    row_dir = Path(tempfile.mkdtemp(dir=work, prefix=f"{mounts}-{'shared' if shared else 'alone'}-"))
    procs: list[FuseProcess] = []
    try:
        for i in range(mounts):
            procs.append(_mount(row_dir, f"m{i}", emu.base_url, url, dir_cache_time))
        for p in procs:  # every mount has its listings before the clock starts
            os.listdir(p.mountpoint / "retrieval")
        emu.reset_counters()
        commands_before, sent_before = _redis_stats(ports)
        started = time.monotonic()
        errors: list[str] = []
        threads = [threading.Thread(target=_workload, args=(p.mountpoint, names, started + seconds, errors))
                   for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        counters = emu.counters()
        commands_after, sent_after = _redis_stats(ports)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(row_dir, ignore_errors=True)
    if errors:
        raise RuntimeError("; ".join(errors))
    calls = sum(counters["requests"][k] for k in API_KINDS)
    return {"mounts": mounts, "shared": bool(shared), "engine": engine, "elapsed": elapsed,
            "bytes": counters["download_bytes"],
            "calls": calls, "lists": counters["requests"]["list"], "retrieves": counters["requests"]["retrieve"],
            "calls_per_min": calls * 60 / elapsed, "bytes_per_min": counters["download_bytes"] * 60 / elapsed,
            # Per mount, per minute: what each mount asked of Redis and what Redis sent it.
            "redis_cmds_per_min": (commands_after - commands_before - len(ports)) * 60 / elapsed / mounts,
            "redis_bytes": (sent_after - sent_before) / mounts}


def table(rows: list[dict[str, float]], files: int, size: int, seconds: float, dir_cache_time: float) -> str:
    lines = [
        f"Fleet: {files} files x {size >> 20} MiB read once by every mount, then every purpose listed once a "
        f"second; {seconds:.0f} s per row, listings refreshed every {dir_cache_time:.0f} s; emulator on "
        "loopback, one redis-server (allkeys-lru), or three in a Redis Cluster.",
        "",
        "| mounts | --shared | bytes from the platform | x one copy | API calls | list | retrieve "
        "| API calls/min | platform MiB/min | Redis commands/min per mount | MiB from Redis per mount |",
        "|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    one_copy = files * size
    for r in rows:
        redis_cells = (f"{r['redis_cmds_per_min']:.0f} | {r['redis_bytes'] / (1 << 20):.1f}" if r["shared"]
                       else "- | -")
        lines.append(
            f"| {r['mounts']} | {r['engine'] or 'no'} | {r['bytes'] / (1 << 20):.1f} MiB "
            f"| {r['bytes'] / one_copy:.2f} | {r['calls']} | {r['lists']} | {r['retrieves']} "
            f"| {r['calls_per_min']:.0f} | {r['bytes_per_min'] / (1 << 20):.1f} | {redis_cells} |")
    return "\n".join(lines) + "\n"


SIZES = (100_000, 200_000, 300_000, 1 << 20, 3 << 20)


def sizes_table(rows: list[tuple[int, dict[str, float], dict[str, float]]]) -> str:
    lines = ["Every size shared: one file of each size read at once by 3 mounts (fresh caches, empty Redis).", "",
             "| file size | platform bytes alone | x one copy | retrieves alone | platform bytes shared "
             "| x one copy | retrieves shared |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for size, alone, shared in rows:
        lines.append(f"| {_size(size)} | {_size(alone['bytes'])} | {alone['bytes'] / size:.2f} "
                     f"| {alone['retrieves']} | {_size(shared['bytes'])} | {shared['bytes'] / size:.2f} "
                     f"| {shared['retrieves']} |")
    return "\n".join(lines) + "\n"


def _size(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1000:.0f} KB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--dir-cache-time", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("bench/fleet-results.md"))
    args = parser.parse_args(argv)
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="mmfs-fleet-") as tmp:
        work = Path(tmp)
        emu = Emulator(EmulatorConfig(data_dir=work / "platform", port=0, api_key=KEY)).start()
        try:
            names = []
            for i in range(args.files):
                names.append(f"take-{i}.bin")
                emu.seed("retrieval", names[-1], os.urandom(size))
            rows = []
            with redis_server(work / "single") as single:
                for mounts in (1, 3):
                    for shared in (None, single):
                        if shared:
                            _flush(shared[1])
                        rows.append(run_row(emu, work, mounts, shared, names, args.seconds, args.dir_cache_time,
                                            "one node" if shared else ""))
                        print(f"mounts={mounts} shared={bool(shared)}: {rows[-1]}", file=sys.stderr)
                sized = []
                for n in SIZES:
                    name = f"size-{n}.bin"
                    emu.seed("retrieval", name, os.urandom(n))
                    _flush(single[1])
                    alone = run_row(emu, work, 3, None, [name], 0.0, args.dir_cache_time)
                    shared_row = run_row(emu, work, 3, single, [name], 0.0, args.dir_cache_time, "one node")
                    sized.append((n, alone, shared_row))
                    print(f"size={n}: alone {alone['bytes']} shared {shared_row['bytes']}", file=sys.stderr)
            with redis_server(work / "cluster", cluster=True) as cluster:
                rows.append(run_row(emu, work, 3, cluster, names, args.seconds, args.dir_cache_time, "cluster"))
                print(f"mounts=3 cluster: {rows[-1]}", file=sys.stderr)
        finally:
            emu.stop()
    from bench.fleet_load import run as load_run  # it builds on this module's Redis helpers

    text = (table(rows, args.files, size, args.seconds, args.dir_cache_time) + "\n" + sizes_table(sized) + "\n"
            + load_run(clients=20, seconds=10.0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
