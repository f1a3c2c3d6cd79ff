"""A model of what a fleet of mounts costs the platform, with and without the shared tier.

Not a measurement: arithmetic over a stated workload, so the table in doc/FLEET.md can be re-derived (and
re-run with other numbers). ``bench/fleet.py`` measures the same quantities for 1 and 3 real mounts.

Workload per mount, per minute (defaults: a render farm's worker):
- every listable purpose is listed once per refresh interval (8 purposes, 30 s: 16 ``list`` calls);
- ``opens`` files are opened, of a working set every mount shares (each open needs a download URL, one
  ``retrieve``, unless its blocks come from the shared tier);
- ``read_mib`` MiB of those files are read;
- ``by_id`` files are reached through ``/.by-id`` (one ``retrieve`` each, on one mount per fleet when shared).

With the shared tier: listings cost one ``list`` per purpose per refresh for the fleet; a block leaves the
CDN once per fleet while Redis holds it (``hit`` = the share of reads Redis serves after the first, set by
its ``maxmemory`` against the working set); opens and by-id look-ups cost the platform once per fleet.

    python -m bench.fleet_model [--opens 6] [--read-mib 600] [--hit 0.95]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["Workload", "cost"]


@dataclass(frozen=True)
class Workload:
    purposes: int = 8
    refresh_s: float = 30.0
    opens: float = 6.0
    read_mib: float = 600.0
    by_id: float = 1.0
    hit: float = 0.95
    block_mib: float = 4.0


def cost(mounts: int, shared: bool, w: Workload) -> dict[str, float]:
    """Per minute: API calls and CDN MiB at the platform; commands and MiB at Redis."""
    lists = w.purposes * 60 / w.refresh_s
    if not shared:
        return {"api": mounts * (lists + w.opens + w.by_id), "cdn_mib": mounts * w.read_mib,
                "redis_cmds": 0.0, "redis_mib": 0.0}
    # The first reader downloads; the others read from Redis, except what Redis has evicted (1 - hit).
    cdn = w.read_mib * (1 + (mounts - 1) * (1 - w.hit))
    misses = w.opens * (1 + (mounts - 1) * (1 - w.hit))
    blocks = w.read_mib / w.block_mib
    # Per mount: a GET per block read (and a SET for each it downloaded), GET+PTTL per listing refresh, the
    # lease, a publish per by-id look-up, one token-bucket script per API call it makes.
    redis_cmds = mounts * (blocks + 2 * lists + 1) + (cdn / w.block_mib) + (lists + misses + w.by_id)
    redis_mib = mounts * w.read_mib  # every block read crosses the link to Redis once
    return {"api": lists + misses + w.by_id, "cdn_mib": cdn, "redis_cmds": redis_cmds, "redis_mib": redis_mib}


def table(w: Workload, fleet_sizes: tuple[int, ...] = (1, 10, 100, 1000)) -> str:
    lines = ["| mounts | API calls/min alone | API calls/min shared | CDN GiB/min alone | CDN GiB/min shared "
             "| Redis commands/s shared | Redis MiB/s shared |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in fleet_sizes:
        alone, shared = cost(n, False, w), cost(n, True, w)
        lines.append(f"| {n:,} | {alone['api']:,.0f} | {shared['api']:,.0f} | {alone['cdn_mib'] / 1024:,.1f} "
                     f"| {shared['cdn_mib'] / 1024:,.1f} | {shared['redis_cmds'] / 60:,.0f} "
                     f"| {shared['redis_mib'] / 60:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_model", description=__doc__.splitlines()[0])
    defaults = Workload()
    for name in ("purposes", "refresh_s", "opens", "read_mib", "by_id", "hit", "block_mib"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    print(table(Workload(**{k: v for k, v in vars(args).items()})), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
