"""Redis under many mounts' block traffic: ``clients`` processes, each reading sealed 4 MiB blocks from the
shared tier through mmfs's own link and seal as fast as it can (a mount whose every read misses its disk
cache), against one node and against a three-master cluster. Measures blocks and MiB per second for all
clients together and how the commands spread over the shards.

On a small machine the clients, not Redis, are the limit (each block is checked in Python): the figures
are a floor for what Redis serves, and the per-shard spread is what carries over to a real cluster.

    python -m bench.fleet_load [--clients 20] [--seconds 10]   (needs redis-server and redis-cli)
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import subprocess
import tempfile
import time
from pathlib import Path

from bench.fleet import _redis_stats, redis_server
from mmfs.fleet.link import RedisLink, parse_shared_url
from mmfs.fleet.seal import Seal, derive_key

__all__ = ["measure"]

BLOCK = 4 << 20
BLOCKS = 32
SEAL_KEY = derive_key("bench-load-key", "bench")


def _keys() -> list[str]:
    return [f"mmfs:bench:blk:{{{7000 + i}:{BLOCK}:0}}" for i in range(BLOCKS)]


def _client(url: str, seconds: float, out: multiprocessing.Queue) -> None:
    link = RedisLink(parse_shared_url(url), timeout=2.0)
    seal = Seal(SEAL_KEY)
    keys = _keys()
    blocks = size = 0
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        key = random.choice(keys)
        data = seal.open(key, link.run("get", lambda r, key=key: r.get(key), None))
        if data is not None:
            blocks += 1
            size += len(data)
    link.close()
    out.put((blocks, size))


def measure(url: str, ports: list[int], clients: int, seconds: float) -> dict[str, float]:
    link = RedisLink(parse_shared_url(url), timeout=5.0)
    seal = Seal(SEAL_KEY)
    payload = random.randbytes(BLOCK)
    for key in _keys():
        value = seal.seal(key, payload)
        link.run("set", lambda r, key=key, value=value: r.set(key, value), None)
    link.close()
    before = [_redis_stats([p])[0] for p in ports]
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client, args=(url, seconds, out)) for _ in range(clients)]
    started = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - started
    after = [_redis_stats([p])[0] for p in ports]
    per_shard = [(b - a) / elapsed for a, b in zip(before, after, strict=True)]
    return {"blocks_per_s": sum(r[0] for r in results) / elapsed,
            "mib_per_s": sum(r[1] for r in results) / elapsed / (1 << 20),
            "shard_min": min(per_shard), "shard_max": max(per_shard), "shards": len(ports)}


def table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    lines = ["Redis under block traffic: each client a process reading sealed 4 MiB blocks as fast as it can "
             "(the clients share this machine's cores with Redis).", "",
             "| engine | clients | blocks/s | MiB/s | commands/s per shard (min - max) |",
             "|---|---:|---:|---:|---:|"]
    for engine, clients, r in rows:
        lines.append(f"| {engine} | {clients} | {r['blocks_per_s']:.0f} | {r['mib_per_s']:.0f} "
                     f"| {r['shard_min']:.0f} - {r['shard_max']:.0f} |")
    return "\n".join(lines) + "\n"


def run(clients: int, seconds: float) -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmfs-fleet-load-") as tmp:
        for engine, cluster in (("one node", False), ("cluster (3 masters)", True)):
            with redis_server(Path(tmp) / engine.split()[0], cluster=cluster) as (url, ports):
                rows.append((engine, clients, measure(url, ports, clients, seconds)))
                for port in ports:
                    subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True)
    return table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_load", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(run(args.clients, args.seconds), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
