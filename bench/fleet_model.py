"""A model of what a fleet of mounts costs the platform and Redis, with and without the shared tier.

Not a measurement: arithmetic over a stated workload, so the tables in doc/FLEET.md can be re-derived (and
re-run with other numbers). ``bench/fleet.py`` measures the same quantities for 1 and 3 real mounts.

Workload per mount, per minute (defaults: a render farm's worker):
- every listable purpose is listed once per refresh interval (8 purposes, 30 s: 16 ``list`` calls);
- ``opens`` files are opened, of a working set every mount shares (each open needs a download URL, one
  ``retrieve``, unless its blocks come from the shared tier);
- ``read_mib`` MiB of those files are read;
- ``by_id`` files are reached through ``/.by-id`` (one ``retrieve`` each, on one mount per fleet when shared);
- ``changes`` uploads or deletes, told to the fleet.

With the shared tier: listings cost one ``list`` per purpose per refresh for the fleet; a block leaves the
CDN once per fleet while Redis holds it (``hit`` = the share of reads Redis serves after the first, set by
its ``maxmemory`` against the working set); opens and by-id look-ups cost the platform once per fleet.

Redis, per mount: a GET per 4 MiB block read (and a pipelined SET for each it downloaded), GET+PTTL per
listing refresh (SET NX and SET for the one that lists), one pipeline per change (HSET/HDEL, XADD, DEL),
one EVALSHA per API call with a budget; and the event listener's blocking XREAD (one a second while idle,
one per change otherwise, at most ten a second) and its marker check (SET NX, GET, EXISTS every 2 s). The
listener's keys (the stream, the marker, the known hash) are single keys, so on a cluster they all land on
one shard: that shard carries every mount's listener traffic besides its share of blocks.

Cluster sizing: a shard is limited by commands (``--shard-ops``, 80,000/s: well under what one Redis core
does with small commands, since the block GETs are large) and by bytes out (``--shard-mib``, 1,100 MiB/s:
a 10 Gb/s NIC). The table gives the shards the blocks need; the listener shard is checked separately.

    python -m bench.fleet_model [--opens 6] [--read-mib 600] [--hit 0.95] [--working-set-gib 200]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

__all__ = ["Workload", "cost", "scale"]


@dataclass(frozen=True)
class Workload:
    purposes: int = 8
    refresh_s: float = 30.0
    opens: float = 6.0
    read_mib: float = 600.0
    by_id: float = 1.0
    changes: float = 1.0
    hit: float = 0.95
    block_mib: float = 4.0
    working_set_gib: float = 200.0
    shard_ops: float = 80_000.0
    shard_mib: float = 1_100.0


def cost(mounts: int, shared: bool, w: Workload) -> dict[str, float]:
    """Per minute: API calls and CDN MiB at the platform; commands and MiB at Redis."""
    lists = w.purposes * 60 / w.refresh_s
    if not shared:
        return {"api": mounts * (lists + w.opens + w.by_id), "cdn_mib": mounts * w.read_mib,
                "redis_cmds": 0.0, "redis_mib": 0.0, "listener_cmds": 0.0}
    # The first reader downloads; the others read from Redis, except what Redis has evicted (1 - hit).
    cdn = w.read_mib * (1 + (mounts - 1) * (1 - w.hit))
    misses = w.opens * (1 + (mounts - 1) * (1 - w.hit))
    blocks = w.read_mib / w.block_mib
    api = lists + misses + w.by_id
    fleet_changes = mounts * w.changes
    # The listener: an XREAD a second while idle, or one per change of the fleet's, at most ten a second
    # (it reads in batches), and the marker check (3 commands every 2 s); each change is also one
    # pipeline of 3 commands.
    listener = mounts * (min(max(60.0, fleet_changes), 600.0) + 90.0) + 3 * fleet_changes
    redis_cmds = (mounts * (blocks + 2 * lists) + cdn / w.block_mib + 2 * lists + api) + listener
    redis_mib = mounts * w.read_mib  # every block read crosses the link to Redis once
    return {"api": api, "cdn_mib": cdn, "redis_cmds": redis_cmds, "redis_mib": redis_mib,
            "listener_cmds": listener}


def scale(mounts: int, w: Workload) -> dict[str, float]:
    """What a cluster for ``mounts`` needs: shards, the busiest shard's load, and memory."""
    c = cost(mounts, True, w)
    per_s = {k: v / 60 for k, v in c.items()}
    block_ops = per_s["redis_cmds"] - per_s["listener_cmds"]
    shards = max(1, math.ceil(block_ops / w.shard_ops), math.ceil(per_s["redis_mib"] / w.shard_mib))
    # Blocks spread evenly (one hash slot per block); the listener's keys sit on one shard.
    busiest = block_ops / shards + per_s["listener_cmds"]
    # Memory: the working set's blocks (a 28-byte seal and ~100 bytes of key and overhead per 4 MiB block
    # are lost in the noise), jemalloc's ~10% on top, the known hash (~300 B a file) and the stream
    # (10,000 entries of ~400 B).
    files = w.working_set_gib * 1024 / 50  # 50 MiB files
    memory_gib = w.working_set_gib * 1.10 + (files * 300 + 10_000 * 400) / 2**30
    return {"shards": shards, "commands_per_s": per_s["redis_cmds"], "busiest_shard_ops": busiest,
            "listener_ops": per_s["listener_cmds"], "mib_per_s": per_s["redis_mib"],
            "mib_per_shard": per_s["redis_mib"] / shards, "memory_gib": memory_gib,
            "memory_per_shard_gib": memory_gib / shards, "api": c["api"], "cdn_gib": c["cdn_mib"] / 1024}


def table(w: Workload, fleet_sizes: tuple[int, ...] = (1, 10, 100, 1000, 10_000)) -> str:
    lines = ["| mounts | API calls/min alone | API calls/min shared | CDN GiB/min alone | CDN GiB/min shared "
             "| Redis commands/s shared | Redis MiB/s shared |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in fleet_sizes:
        alone, shared = cost(n, False, w), cost(n, True, w)
        lines.append(f"| {n:,} | {alone['api']:,.0f} | {shared['api']:,.0f} | {alone['cdn_mib'] / 1024:,.1f} "
                     f"| {shared['cdn_mib'] / 1024:,.1f} | {shared['redis_cmds'] / 60:,.0f} "
                     f"| {shared['redis_mib'] / 60:,.0f} |")
    return "\n".join(lines) + "\n"


def cluster_table(w: Workload, fleet_sizes: tuple[int, ...] = (10, 100, 1000, 10_000)) -> str:
    lines = [f"Working set {w.working_set_gib:,.0f} GiB; a shard holds {w.shard_ops:,.0f} commands/s and "
             f"{w.shard_mib:,.0f} MiB/s out.", "",
             "| mounts | shards | commands/s (all) | busiest shard commands/s | of which listeners "
             "| MiB/s out per shard | maxmemory per shard (GiB) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in fleet_sizes:
        s = scale(n, w)
        lines.append(f"| {n:,} | {s['shards']:.0f} | {s['commands_per_s']:,.0f} | {s['busiest_shard_ops']:,.0f} "
                     f"| {s['listener_ops']:,.0f} | {s['mib_per_shard']:,.0f} | {s['memory_per_shard_gib']:,.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_model", description=__doc__.splitlines()[0])
    defaults = Workload()
    for name in Workload.__dataclass_fields__:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    w = Workload(**{k: v for k, v in vars(args).items()})
    print(table(w), end="")
    print()
    print(cluster_table(w), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
