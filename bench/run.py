"""``scripts/bench``: measure mmfs side by side with its peers and with the ceiling, in one run.

Builds (or reuses) the corpus under ``bench/work/``, starts the emulator (mmfs's origin) and the static
server (rclone's and httpdirfs's origin) on loopback, runs every table in ``bench.scenarios``, prints them,
and writes ``results.md`` and ``throughput.png`` (to ``bench/`` for a full run, to ``bench/work/quick/`` for
``--quick``, so a quick run never overwrites the published results).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import scenarios
from bench.corpus import ensure_big_file, ensure_small_files, small_file_name
from bench.media import ensure_mp4, ensure_pdf
from bench.mounts import ServerProcess, clear_stale_mount
from bench.peers import (
    EmulatorOrigin,
    HttpdirfsTool,
    MmfsTool,
    NullFsTool,
    RcloneTool,
    StaticOrigin,
    fuse_env,
    mmfs_parallelism,
    rclone_binary,
)
from bench.report import Table, machine_description, plot_throughput, render_text, write_report
from bench.targets import Labels, targets_table
from bench.upload import upload_table
from bench.webdav import door_table
from bench.workspace import Bench, Sizes

BENCH_DIR = Path(__file__).resolve().parent
TABLES = ("loopback", "capped", "wan", "media", "many", "random", "ttfb", "listing", "upload", "webdav", "nullfs")
PEERS = ("mmfs", "rclone", "rclone-tuned", "rclone-16", "httpdirfs")
# rclone at more streams than mmfs uses: on a link with long round trips it gains from them.
RCLONE_MAX_STREAMS = 16
# Shaped like a real key; the emulator accepts whatever it is given.
API_KEY = "sk-api-bench-0000000000000000"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (128 MiB, 1,000 files): a check that everything runs, in ~2 minutes")
    parser.add_argument("--only", default=",".join(TABLES),
                        help=f"comma-separated tables to run (default: all of {', '.join(TABLES)})")
    parser.add_argument("--conn-rate", type=float, default=50.0, help="MB/s per connection for the capped table")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request for the capped table")
    parser.add_argument("--wan-rate", type=float, default=20.0, help="MB/s per connection for the WAN table")
    parser.add_argument("--wan-latency", type=float, default=0.08, help="seconds per request for the WAN table")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="sequential tables and uploads: best of N runs per tool, with their range "
                             "(default 3, --quick 2; the machine is shared)")
    parser.add_argument("--no-mmfs", action="store_true", help="leave mmfs out (its rows say so)")
    parser.add_argument("--tools", default=",".join(PEERS),
                        help=f"comma-separated mounted tools to compare (default: all of {', '.join(PEERS)})")
    parser.add_argument("--out", type=Path, help="folder for results.md and throughput.png")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 2 if args.quick else 3
    unknown = set(args.only.split(",")) - set(TABLES)
    if unknown:
        parser.error(f"unknown table(s): {', '.join(sorted(unknown))}")
    unknown = set(args.tools.split(",")) - set(PEERS)
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    return args


def _build_corpus(corpus: Path, sizes: Sizes) -> None:
    started = time.monotonic()
    for name, size in sizes.big_files().items():
        ensure_big_file(corpus / name, size)
    ensure_small_files(corpus / sizes.small_name, sizes.small)
    try:
        ensure_mp4(corpus / sizes.mp4_name, sizes.mp4_seconds)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # the media table says it is missing
        print(f"no MP4 for the media table: {exc}", file=sys.stderr)
    ensure_pdf(corpus / sizes.pdf_name, sizes.pdf_pages)
    took = time.monotonic() - started
    if took > 1:
        print(f"corpus ready in {took:.0f} s", file=sys.stderr)


def _start_emulator(work: Path, corpus: Path, sizes: Sizes, quick: bool
                    ) -> tuple[ServerProcess, EmulatorOrigin, dict[str, str], list[Path]]:
    data = work / ("emulator-quick" if quick else "emulator-full")
    names = [*sizes.big_files(), *(n for n in sizes.media_files() if (corpus / n).exists())]
    manifest = [{"purpose": MmfsTool.big_purpose, "filename": n, "path": str(corpus / n)} for n in names]
    small = corpus / sizes.small_name
    manifest += [{"purpose": MmfsTool.small_purpose, "filename": small_file_name(i),
                  "path": str(small / small_file_name(i))} for i in range(sizes.small)]
    manifest_path, ids_path = work / "emulator-manifest.json", work / "emulator-ids.json"
    manifest_path.write_text(json.dumps(manifest))
    ids_path.unlink(missing_ok=True)
    server = ServerProcess(
        "emulator",
        [sys.executable, "-m", "bench.emulator_host", "--data", str(data), "--manifest", str(manifest_path),
         "--ids-out", str(ids_path)],
        work / "logs" / "emulator.log", env=fuse_env(MINIMAX_API_KEY=API_KEY), cwd=BENCH_DIR.parent,
        deadline=1800.0,  # the first full run seeds 10,000 files one by one
    ).start()
    ids = json.loads(ids_path.read_text())
    blobs = [data / "blobs" / ids[f"{MmfsTool.big_purpose}/{n}"] for n in names]
    return server, EmulatorOrigin("emulator", server.url, API_KEY), ids, [b for b in blobs if b.exists()]


def _mmfs_version() -> str:
    """The commit measured, marked when the work tree differs from it."""
    root = str(BENCH_DIR.parent)
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", "mmfs"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"commit {head}" + (" with uncommitted changes in mmfs/" if dirty else "")


def _clear_mounts(work: Path) -> None:
    mnt = work / "mnt"
    if mnt.is_dir():
        for entry in mnt.iterdir():
            clear_stale_mount(entry)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    work = BENCH_DIR / "work"
    out_dir = args.out or (work / "quick" if args.quick else BENCH_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus"
    _clear_mounts(work)
    shutil.rmtree(work / "logs", ignore_errors=True)
    shutil.rmtree(work / "cache", ignore_errors=True)
    started = time.monotonic()
    _build_corpus(corpus, sizes)

    servers: list[ServerProcess] = []
    emu_server: ServerProcess | None = None
    try:
        static_server = ServerProcess("static server", [sys.executable, "-m", "bench.static_server", str(corpus)],
                                      work / "logs" / "static-server.log", cwd=BENCH_DIR.parent).start()
        servers.append(static_server)
        static = StaticOrigin("static server", static_server.url)
        emulator, ids, blobs, mmfs_reason = None, {}, [], "left out (--no-mmfs)"
        if not args.no_mmfs:
            try:
                emu_server, emulator, ids, blobs = _start_emulator(work, corpus, sizes, args.quick)
                servers.append(emu_server)
            except (ImportError, RuntimeError, OSError, ValueError, KeyError) as exc:
                mmfs_reason = f"emulator did not start: {exc}"
        bench = Bench(sizes=sizes, work=work, corpus=corpus, static=static, emulator=emulator,
                      emulator_ids=ids, emulator_blobs=blobs, conn_rate=args.conn_rate, latency=args.latency,
                      repeat=max(1, args.repeat),
                      emulator_cpu=emu_server.cpu_seconds if emu_server is not None else None)
        files, small_dirs = sizes.big_files(), {sizes.small_name: sizes.small}
        stats = work / "nullfs-stats.json"
        bench.tools = {
            "ceiling": NullFsTool("fuse3", files, small_dirs, stats),
            "mmfs": MmfsTool(emulator, mmfs_reason),
            "rclone": RcloneTool(static, work / "rclone.conf"),
            "rclone-tuned": RcloneTool(static, work / "rclone.conf", streams=mmfs_parallelism()),
            "rclone-16": RcloneTool(static, work / "rclone.conf", streams=RCLONE_MAX_STREAMS),
            "httpdirfs": HttpdirfsTool(static),
        }
        if mmfs_parallelism() == RCLONE_MAX_STREAMS:  # the tuned row already is rclone at its most streams
            bench.tools.pop("rclone-16")
        for name in set(PEERS) - set(args.tools.split(",")):
            bench.tools.pop(name, None)
        variants = [NullFsTool(lib, files, small_dirs, stats, ra) for lib in ("fuse3", "fuse") for ra in (None, 1024)]
        runners: dict[str, Callable[[], Table]] = {
            "nullfs": lambda: scenarios.nullfs_table(bench, variants),
            "loopback": lambda: scenarios.loopback_table(bench),
            "capped": lambda: scenarios.capped_table(bench, args.conn_rate, args.latency),
            "wan": lambda: scenarios.capped_table(bench, args.wan_rate, args.wan_latency, plot_as="WAN cold"),
            "media": lambda: scenarios.media_table(bench),
            "many": lambda: scenarios.many_readers_table(bench),
            "random": lambda: scenarios.random_table(bench),
            "ttfb": lambda: scenarios.ttfb_table(bench),
            "listing": lambda: scenarios.listing_table(bench),
            "upload": lambda: upload_table(bench),
            "webdav": lambda: door_table(bench),
        }
        tables: list[Table] = []
        for name in TABLES:
            if name in args.only.split(","):
                table = runners[name]()
                tables.append(table)
                print(render_text(table) + "\n", flush=True)
        tuned = [bench.tools[k].label for k in ("rclone-tuned", "rclone-16") if k in bench.tools]
        labels = Labels(mmfs=bench.tools["mmfs"].label if "mmfs" in bench.tools else "mmfs",
                        ceiling=bench.tools["ceiling"].label + " = ceiling",
                        rclone_tuned=tuned[0] if tuned else "", rclone_all=tuple(tuned))
        table = targets_table(bench.figures, labels, sizes.small)
        tables.append(table)
        print(render_text(table) + "\n", flush=True)
    finally:
        for server in reversed(servers):
            server.stop()
        _clear_mounts(work)

    elapsed = time.monotonic() - started
    machine = {"mmfs": _mmfs_version(), **machine_description({
        "rclone": [rclone_binary() or "rclone", "version"],
        "httpdirfs": ["httpdirfs", "--version"],
        "curl": ["curl", "--version"],
    })}
    chart = None
    if plot_throughput(out_dir / "throughput.png", bench.series,
                       f"mmfs and peers, sequential reads (MB/s){' - quick sizes' if args.quick else ''}"):
        chart = "throughput.png"
    preamble = [
        f"Produced by `scripts/bench{' --quick' if args.quick else ''}` in {elapsed:.0f} s. Every tool reads "
        "the same deterministic bytes (checked on every read): mmfs from the emulator, rclone and httpdirfs from "
        "`bench/static_server.py` (the same pacing code and piece sizes), the ceiling from memory.",
        ("Single runs" if args.repeat <= 1 else f"Sequential and upload figures are the best of {args.repeat} runs "
         "(the range over them in brackets)")
        + " on a shared 2-core machine: treat differences under ~20% as noise. Run it with "
        "`scripts/bench` (root: it drops the page cache and sets a mount's read-ahead); `--quick` for small "
        "sizes, `--only TABLES` and `--tools TOOLS` for a subset, `--help` for the rest.",
        *(f"- {t.label}: `{t.flags}`" for t in bench.tools.values() if isinstance(t, RcloneTool)),
        *[f"Note: {n}" for n in bench.notes],
    ]
    report_path = out_dir / "results.md"
    write_report(report_path, machine, tables, preamble, chart)
    for n in bench.notes:
        print(f"note: {n}")
    print(f"results: {report_path}" + (f", chart: {out_dir / chart}" if chart else "") + f" ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
