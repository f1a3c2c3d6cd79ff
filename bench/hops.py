"""Hops: how many Python calls, mmfs modules and crossings between them one filesystem operation costs.

``python -m bench.hops`` wires a filesystem as a mount does (``build_filesystem``) on an in-process
emulator and, with ``sys.setprofile`` on the calling thread, counts for each operation:
- ``calls``: Python calls made inside mmfs (``all_calls``: counting the standard library and third-party
  code too);
- ``modules``: the distinct mmfs modules entered;
- ``changes``: crossings from one mmfs module to another, a call or a return (``by call``: the calls
  alone). A call into code outside mmfs is no crossing; a call from there back into mmfs is one only if it
  lands in another mmfs module than the last mmfs frame below it.

The operations: a cold 128 KiB read at offset 0 of a file never read before (what it reads comes from
the network), the same read warm (a fresh descriptor, after the first block was read through and is in the
reader's memory), and a small file written
through the kernel's sequence (create, write, flush, release) until it has landed on the platform. Only the
calling thread is counted: prefetches and the emulator run on threads of their own. Each is measured on
``--runs`` fresh files and the median reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from mmfs.emulator import Emulator, EmulatorConfig
from mmfs.runtime.mount import build_filesystem
from mmfs.settings.config import MountConfig

__all__ = ["Hops", "count_hops", "main", "measure"]

READ = 128 << 10
_KEY = "bench-hops-key"


def _module_of(frame: FrameType) -> str | None:
    """The mmfs module a frame runs in; None outside mmfs (and in the emulator, which is not mmfs's path)."""
    name = frame.f_globals.get("__name__") or ""
    if (name == "mmfs" or name.startswith("mmfs.")) and not name.startswith("mmfs.emulator"):
        return name
    return None


@dataclass
class Hops:
    calls: int = 0
    all_calls: int = 0
    changes: int = 0
    modules: set[str] = field(default_factory=set)
    crossings: Counter[str] = field(default_factory=Counter)  # "caller module -> function": how often

    def row(self) -> dict[str, Any]:
        return {"calls": self.calls, "all_calls": self.all_calls, "modules": len(self.modules),
                "changes": self.changes, "by_call": sum(self.crossings.values())}


def count_hops(operation: Callable[[], object]) -> Hops:
    """Run ``operation`` on this thread under a profiler and count its hops."""
    hops = Hops()
    # The mmfs module in effect at each depth: that of the frame, or for a frame outside mmfs the one of
    # the nearest mmfs frame below it.
    stack: list[str | None] = [None]

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call":
            module = _module_of(frame)
            below = stack[-1]
            hops.all_calls += 1
            if module is not None:
                hops.calls += 1
                hops.modules.add(module)
                if below is not None and module != below:
                    hops.changes += 1
                    hops.crossings[f"{below} -> {module}.{frame.f_code.co_qualname}"] += 1
            stack.append(module if module is not None else below)
        elif event == "return" and len(stack) > 1:
            leaving = stack.pop()
            if _module_of(frame) is not None and stack[-1] is not None and leaving != stack[-1]:
                hops.changes += 1

    sys.setprofile(profile)
    try:
        operation()
    finally:
        sys.setprofile(None)
    return hops


def measure(root: Path, runs: int) -> dict[str, dict[str, Any]]:
    emu = Emulator(EmulatorConfig(data_dir=root / "platform", port=0, api_key=_KEY)).start()
    config = MountConfig(mountpoint=root / "mnt", api_key=emu.api_key, base_url=emu.base_url,
                         cache_dir=root / "cache", state_dir=root / "state")
    fs = build_filesystem(config)
    results: dict[str, list[Hops]] = {"cold read": [], "warm read": [], "small write": []}
    try:
        for run in range(runs):
            name = f"hops-{run}.bin"
            emu.store.add_bytes(os.urandom(8 << 20), "retrieval", name)
            fs.namespace.refresh(["retrieval"])
            path = f"/retrieval/{name}"
            fs.getattr(path)
            fh = fs.open(path, os.O_RDONLY).fh
            results["cold read"].append(count_hops(lambda fh=fh: fs.read(fh, 0, READ, as_file=True)))
            for offset in range(READ, fs.reader.block_size, READ):  # the rest of the first block, in order
                fs.read(fh, offset, READ, as_file=True)
            fs.release(fh)
            fh = fs.open(path, os.O_RDONLY).fh  # the first block is in the reader's memory now
            results["warm read"].append(count_hops(lambda fh=fh: fs.read(fh, 0, READ, as_file=True)))
            fs.release(fh)

            written = f"/retrieval/written-{run}.txt"

            def write(written: str = written) -> None:
                fh = fs.create(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC).fh
                fs.write(fh, b"hello, platform\n" * 64, 0)
                fs.flush(fh)  # the last writer's close: the upload, its answer
                fs.release(fh)

            results["small write"].append(count_hops(write))
            landed = [f for f in emu.store.all() if f.filename == f"written-{run}.txt"]
            assert landed, "the small write did not land"
    finally:
        fs.destroy()
        emu.stop()
    return {what: _median(rows) for what, rows in results.items()}


def _median(rows: list[Hops]) -> dict[str, Any]:
    merged: dict[str, Any] = {key: int(statistics.median(r.row()[key] for r in rows)) for key in rows[0].row()}
    merged["module_names"] = sorted(set().union(*(r.modules for r in rows)))
    merged["crossings"] = dict(rows[len(rows) // 2].crossings.most_common())
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hops", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh files per operation (the median is shown)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--modules", action="store_true", help="list the mmfs modules each operation enters")
    parser.add_argument("--crossings", action="store_true",
                        help="list each operation's calls into another mmfs module, most frequent first")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmfs-hops-") as tmp:
        results = measure(Path(tmp), max(1, args.runs))
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"{'operation':<12} {'calls':>6} {'all calls':>9} {'modules':>7} {'changes':>7} {'by call':>7}")
    for what, row in results.items():
        print(f"{what:<12} {row['calls']:>6} {row['all_calls']:>9} {row['modules']:>7} {row['changes']:>7} "
              f"{row['by_call']:>7}")
        if args.modules:
            print("  " + ", ".join(row["module_names"]))
        if args.crossings:
            for crossing, times in row["crossings"].items():
                print(f"  {times:>3}  {crossing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
