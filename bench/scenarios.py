"""The measurements, one function per table, each running every tool side by side.

Each tool's run is isolated: whatever goes wrong (missing tool, failed mount, wrong bytes, timeout) becomes
the text of its row, and its mount is taken down in a ``finally``. Ratios compare against the null
filesystem (the ceiling) and against a single-stream curl of the same origin.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import (
    SeqResult,
    curl_download,
    list_folder,
    random_offsets,
    random_reads,
    seq_read,
    time_to_first_byte,
)
from bench.media import ffprobe, pdfinfo
from bench.mounts import FuseProcess, evict_files
from bench.peers import EmulatorOrigin, MountTool, NullFsTool, Traffic
from bench.report import Table, amplification, fmt_bytes, fmt_mb_s, fmt_ms, fmt_ratio, percentile, ratio
from bench.workspace import Bench

__all__ = ["capped_table", "listing_table", "loopback_table", "many_readers_table", "media_table", "nullfs_table",
           "random_table", "ttfb_table"]

RANDOM_READ = 4096
RANDOM_SEED = 1234
# Left between the last read and the unmount before a remount: rclone writes its cache index 5 s after a
# file is closed and loses it on an unmount before that (every tool gets the same wait).
SAVE_SECONDS = 6.0
# How long after the first byte the TTFB test looks again: shows how much a tool prefetches on its own.
SETTLE_SECONDS = 2.0


@dataclass
class Outcome:
    values: dict[str, Any]
    error: str | None = None


def _guard(bench: Bench, what: str, fn: Callable[[], dict[str, Any]]) -> Outcome:
    """Run one tool's measurement; any failure becomes the row's text (with the trace in the log)."""
    try:
        return Outcome(fn())
    except Exception as exc:  # one broken tool must not stop the others
        log = bench.work / "logs" / "harness-errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"--- {what}\n{traceback.format_exc()}\n")
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Outcome({}, text[:200] if text.startswith("not available") else f"failed: {text[:200]}")


def _seq_timeout(size: int, floor_mb_s: float = 5.0) -> float:
    return 60.0 + size / (floor_mb_s * 1e6)


def _seq_cell(result: SeqResult | None) -> str:
    if result is None:
        return "-"
    if not result.ok:
        return f"WRONG ({result.note})"
    return fmt_mb_s(result.mb_s)


def _mb_s(result: SeqResult | None) -> float | None:
    return result.mb_s if result is not None and result.ok else None


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def _traffic(tool: MountTool) -> Traffic | None:
    return tool.origin.counters() if tool.origin is not None else None


def _delta(after: Traffic | None, before: Traffic | None) -> Traffic | None:
    return None if after is None or before is None else after - before


def _check_log(bench: Bench, proc: FuseProcess) -> None:
    if proc.log_has_traceback():
        bench.note(f"{proc.name}: its log has a traceback ({proc.log_path.name} under the work folder's logs/)")


def _mounted(bench: Bench, tool: MountTool, cache: Path, what: str) -> FuseProcess:
    return tool.mount(bench.mountpoint(tool), cache, bench.log_path(tool, what))


def _mounted_cold(bench: Bench, tool: MountTool, what: str) -> FuseProcess:
    """``tool`` mounted afresh on an empty cache folder with the page cache dropped (a missing tool raises)."""
    reason = tool.unavailable()
    if reason:
        raise RuntimeError(reason)
    cache = bench.fresh_cache(tool)
    bench.prepare_cold()
    return _mounted(bench, tool, cache, what)


def _repeated(bench: Bench, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a sequential measurement ``bench.repeat`` times; keep each column's best (a wrong read wins, so
    a failure is never hidden by a good run) with the traffic of the same run, and the highest RSS."""
    runs = [fn() for _ in range(max(1, bench.repeat))]
    out = dict(runs[0])
    for key in ("cold", "warm", "remount"):
        have = [r for r in runs if r.get(key) is not None]
        if have:
            best = max(have, key=lambda r, k=key: (not r[k].ok, r[k].mb_s))
            out[key] = best[key]
            if f"{key}_traffic" in best:
                out[f"{key}_traffic"] = best[f"{key}_traffic"]
    peaks = [r["rss"] for r in runs if r.get("rss") is not None]
    out["rss"] = max(peaks) if peaks else None
    return out


# --- 1, 2, 4, 7: sequential reads on plain loopback ---------------------------------------------------------
def _seq_tool(bench: Bench, tool: MountTool, name: str, size: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    proc = _mounted_cold(bench, tool, "seq")
    try:
        path = tool.file_path(proc.mountpoint, name)
        before = _traffic(tool)
        with proc.watchdog(_seq_timeout(size)):
            out["cold"] = seq_read(path, size)
        out["cold_traffic"] = _delta(_traffic(tool), before)
        with proc.watchdog(_seq_timeout(size)):
            out["warm"] = seq_read(path, size)
        out["rss"] = proc.peak_rss_kib()
        time.sleep(SAVE_SECONDS)
    finally:
        proc.stop()
        _check_log(bench, proc)
    bench.prepare_cold()
    proc = _mounted(bench, tool, bench.cache_dir(tool), "seq-remount")
    try:
        path = tool.file_path(proc.mountpoint, name)
        before = _traffic(tool)
        with proc.watchdog(_seq_timeout(size)):
            out["remount"] = seq_read(path, size)
        out["remount_traffic"] = _delta(_traffic(tool), before)
    finally:
        proc.stop()
        _check_log(bench, proc)
    return out


def _local_seq(bench: Bench, name: str, size: int) -> dict[str, Any]:
    path = bench.corpus_file(name)
    bench.prepare_cold()
    evict_files([path])  # prepare_cold warmed it as an origin file; here it is the reader's own file
    return {"cold": seq_read(path, size), "warm": seq_read(path, size)}


def _curl_emulator(bench: Bench, name: str, size: int, first_byte_only: bool = False) -> dict[str, Any]:
    origin = bench.emulator
    if origin is None:
        raise RuntimeError("not available: emulator not running")
    url = origin.download_url(bench.emulator_ids[f"retrieval/{name}"])
    bench.prepare_cold()
    before = origin.counters()
    result = curl_download(url, size, _seq_timeout(size), first_byte_only)
    return {"cold": result, "cold_traffic": origin.counters() - before}


def _curl_static(bench: Bench, name: str, size: int, first_byte_only: bool = False) -> dict[str, Any]:
    bench.prepare_cold()
    before = bench.static.counters()
    result = curl_download(bench.static.url_of(name), size, _seq_timeout(size), first_byte_only)
    return {"cold": result, "cold_traffic": bench.static.counters() - before}


def _mounted_tools(bench: Bench) -> list[MountTool]:
    return [bench.tools[k] for k in ("mmfs", "rclone-tuned", "rclone", "httpdirfs") if k in bench.tools]


def loopback_table(bench: Bench) -> Table:
    sizes = bench.sizes
    name, size = sizes.seq_name, sizes.seq
    bench.static.shape(0, 0)
    if bench.emulator:
        bench.emulator.shape(0, 0)
    table = Table(
        f"Sequential read of {fmt_bytes(size)}, plain loopback (1 MiB reads, MB/s)",
        ["tool", "cold", "warm (same mount)", "after remount", "cold vs ceiling", "cold vs curl",
         "downloaded/read", "re-downloaded", "peak RSS MiB"],
    )
    ceiling_tool = bench.tools["ceiling"]
    runs: list[tuple[str, Outcome, str | None]] = [
        ("local file (disk, then page cache)",
         _guard(bench, "local", lambda: _repeated(bench, lambda: _local_seq(bench, name, size))), None),
        (ceiling_tool.label + " = ceiling",
         _guard(bench, "ceiling", lambda: _repeated(bench, lambda: _seq_tool(bench, ceiling_tool, name, size))),
         None),
        ("curl, emulator URL",
         _guard(bench, "curl-emu", lambda: _repeated(bench, lambda: _curl_emulator(bench, name, size))), None),
        ("curl, static server",
         _guard(bench, "curl-static", lambda: _repeated(bench, lambda: _curl_static(bench, name, size))), None),
    ]
    for tool in _mounted_tools(bench):
        curl_row = "curl, emulator URL" if isinstance(tool.origin, EmulatorOrigin) else "curl, static server"
        runs.append((tool.label,
                     _guard(bench, tool.label,
                            lambda t=tool: _repeated(bench, lambda: _seq_tool(bench, t, name, size))),
                     curl_row))
    results = {label: outcome for label, outcome, _ in runs}
    ceiling = _mb_s(results[ceiling_tool.label + " = ceiling"].values.get("cold"))
    for label, outcome, curl_label in runs:
        if outcome.error:
            table.add_unavailable(label, outcome.error)
            continue
        v = outcome.values
        cold = _mb_s(v.get("cold"))
        curl_base = _mb_s(results[curl_label].values.get("cold")) if curl_label else None
        traffic, again = v.get("cold_traffic"), v.get("remount_traffic")
        table.add(label, _seq_cell(v.get("cold")), _seq_cell(v.get("warm")), _seq_cell(v.get("remount")),
                  fmt_ratio(ratio(cold, ceiling)), fmt_ratio(ratio(cold, curl_base)),
                  fmt_ratio(amplification(traffic.body_bytes, size)) if traffic else "-",
                  fmt_bytes(again.body_bytes) if again else "-", _mib(v.get("rss")))
        short = label.split(" = ")[0]
        bench.plot(short, "loopback cold", cold)
        bench.plot(short, "warm, same mount", _mb_s(v.get("warm")))
        bench.plot(short, "after remount", _mb_s(v.get("remount")))
    table.notes += [
        "cold: fresh cache folder, fresh mount, page cache dropped; the origin's file is kept in memory",
        "warm: the same file again in the same mount (kernel page cache); after remount: new mount on the same "
        f"cache folder with the page cache dropped (the tool's disk cache only), {SAVE_SECONDS:g} s after the last "
        "read (rclone saves its cache index 5 s after a close; an earlier unmount makes it download again)",
        "local file: cold reads this machine's disk; the ceiling serves the bytes from memory in Python",
        "downloaded/read: bytes the origin sent during the cold read per byte read; re-downloaded: bytes the "
        "origin sent during the read after remount (0 B = the disk cache held it all)",
    ]
    return table


# --- 3: sequential reads through a capped network (the capped and the WAN tables) ------------------------
def _capped_tool(bench: Bench, tool: MountTool, name: str, size: int, rate: float) -> dict[str, Any]:
    proc = _mounted_cold(bench, tool, "capped")
    try:
        path = tool.file_path(proc.mountpoint, name)
        before = _traffic(tool)
        with proc.watchdog(_seq_timeout(size, floor_mb_s=rate / 4)):
            cold = seq_read(path, size)
        return {"cold": cold, "cold_traffic": _delta(_traffic(tool), before), "rss": proc.peak_rss_kib()}
    finally:
        proc.stop()
        _check_log(bench, proc)


def _shape_all(bench: Bench, rate: float, latency: float) -> None:
    bench.static.shape(rate, latency)
    if bench.emulator:
        bench.emulator.shape(rate, latency)


def capped_table(bench: Bench, rate: float, latency: float, plot_as: str = "capped cold") -> Table:
    """Each tool reads the capped file and the smaller ramp file cold, through a link shaped to ``rate``
    MB/s per connection and ``latency`` seconds per request."""
    sizes = bench.sizes
    big, small = (sizes.capped_name, sizes.capped), (sizes.ramp_name, sizes.ramp)
    table = Table(
        f"Sequential read, network capped at {rate:g} MB/s per connection + {latency * 1000:g} ms per request "
        "(MB/s)",
        ["tool", f"{fmt_bytes(big[1])} cold", "vs curl (same origin)", "vs rclone tuned",
         f"{fmt_bytes(small[1])} cold", "vs rclone tuned", "downloaded/read", "peak RSS MiB"],
    )
    _shape_all(bench, rate, latency)
    try:
        curls = [
            ("curl, emulator URL",
             _guard(bench, "curl-emu", lambda: _repeated(bench, lambda: _curl_emulator(bench, *big))), None),
            ("curl, static server",
             _guard(bench, "curl-static", lambda: _repeated(bench, lambda: _curl_static(bench, *big))), None),
        ]
        runs: list[tuple[str, Outcome, Outcome | None, str | None]] = [(c[0], c[1], None, None) for c in curls]
        for tool in _mounted_tools(bench):
            curl_row = "curl, emulator URL" if isinstance(tool.origin, EmulatorOrigin) else "curl, static server"
            first = _guard(bench, tool.label,
                           lambda t=tool: _repeated(bench, lambda: _capped_tool(bench, t, *big, rate)))
            second = _guard(bench, tool.label + " ramp",
                            lambda t=tool: _repeated(bench, lambda: _capped_tool(bench, t, *small, rate)))
            runs.append((tool.label, first, second, curl_row))
    finally:
        _shape_all(bench, 0, 0)
    results = {label: (outcome, second) for label, outcome, second, _ in runs}
    tuned = next((k for k in results if k.startswith("rclone mount, tuned")), None)
    tuned_big = _mb_s(results[tuned][0].values.get("cold")) if tuned else None
    tuned_small = _mb_s(results[tuned][1].values.get("cold")) if tuned and results[tuned][1] else None
    for label, outcome, second, curl_label in runs:
        if outcome.error:
            table.add_unavailable(label, outcome.error)
            continue
        v = outcome.values
        cold = _mb_s(v.get("cold"))
        curl_base = _mb_s(results[curl_label][0].values.get("cold")) if curl_label else None
        traffic = v.get("cold_traffic")
        w = second.values if second is not None and not second.error else {}
        small_cold = _mb_s(w.get("cold"))
        small_cell = (second.error[:60] if second is not None and second.error
                      else _seq_cell(w.get("cold")) if second is not None else "-")
        rss = max((x for x in (v.get("rss"), w.get("rss")) if x is not None), default=None)
        table.add(label, _seq_cell(v.get("cold")), fmt_ratio(ratio(cold, curl_base)),
                  fmt_ratio(ratio(cold, tuned_big)) if second is not None else "-", small_cell,
                  fmt_ratio(ratio(small_cold, tuned_small)) if second is not None else "-",
                  fmt_ratio(amplification(traffic.body_bytes, big[1])) if traffic else "-", _mib(rss))
        bench.plot(label, plot_as, cold)
    table.notes.append(f"at {rate:g} MB/s a single connection needs {big[1] / rate / 1e6:.0f} s for the "
                       f"{fmt_bytes(big[1])} file; tools that open several connections can beat curl here. The "
                       f"{fmt_bytes(small[1])} file shows how soon a tool reaches full speed")
    return table


# --- media open: ffprobe of an MP4 with its index at the end, pdfinfo of a large PDF ---------------------------
def _media_tool(bench: Bench, tool: MountTool | None) -> dict[str, Any]:
    sizes = bench.sizes
    probes = [("ffprobe", sizes.mp4_name, lambda p: ffprobe(p, sizes.mp4_seconds)),
              ("pdfinfo", sizes.pdf_name, lambda p: pdfinfo(p, sizes.pdf_pages))]
    out: dict[str, Any] = {}
    if tool is None:
        bench.prepare_cold()
        evict_files([bench.corpus_file(n) for n in sizes.media_files()])
        for what, name, probe in probes:
            out[what] = probe(bench.corpus_file(name))
        return out
    proc = _mounted_cold(bench, tool, "media")
    try:
        for what, name, probe in probes:
            path = tool.file_path(proc.mountpoint, name)
            path.stat()  # the lookup is not part of the open
            before = _traffic(tool)
            with proc.watchdog(360):
                out[what] = probe(path)
            time.sleep(SETTLE_SECONDS)  # what a tool keeps fetching after the answer is part of its bill
            out[f"{what}_traffic"] = _delta(_traffic(tool), before)
        return out
    finally:
        proc.stop()
        _check_log(bench, proc)


def media_table(bench: Bench) -> Table:
    sizes = bench.sizes
    mp4, pdf = bench.corpus_file(sizes.mp4_name), bench.corpus_file(sizes.pdf_name)
    table = Table(
        f"Media open over the capped link ({bench.conn_rate:g} MB/s per connection + "
        f"{bench.latency * 1000:g} ms): ffprobe of an MP4, pdfinfo of a PDF, fresh mount and cache",
        ["tool", "ffprobe s", "requests", "downloaded", "pdfinfo s", "requests", "downloaded"],
    )
    if not (mp4.exists() and pdf.exists()):
        table.add_unavailable("every tool", "not available: the media files could not be made (ffmpeg?)")
        return table
    candidates: list[tuple[str, MountTool | None]] = [("local file", None)]
    candidates += [(t.label, t) for t in _mounted_tools(bench)]
    _shape_all(bench, bench.conn_rate, bench.latency)
    try:
        for label, tool in candidates:
            outcome = _guard(bench, f"media {label}", lambda t=tool: _media_tool(bench, t))
            if outcome.error:
                table.add_unavailable(label, outcome.error)
                continue
            cells: list[str] = [label]
            for what in ("ffprobe", "pdfinfo"):
                result, traffic = outcome.values[what], outcome.values.get(f"{what}_traffic")
                cells += [f"{result.seconds:.2f}" if result.ok else f"WRONG ({result.note[:60]})",
                          str(traffic.downloads) if traffic else "-",
                          fmt_bytes(traffic.body_bytes) if traffic else "-"]
            table.add(*cells)
    finally:
        _shape_all(bench, 0, 0)
    table.notes += [
        f"MP4: {fmt_bytes(mp4.stat().st_size)}, {sizes.mp4_seconds} s of video and audio written by ffmpeg with "
        f"its moov index at the end; PDF: {fmt_bytes(pdf.stat().st_size)}, {sizes.pdf_pages} pages of ~1 MiB, "
        "xref table at the end",
        f"requests and downloaded: what the origin served from the probe's start to {SETTLE_SECONDS:g} s after "
        "it ended (readahead a tool keeps doing after the answer counts)",
    ]
    return table


# --- many readers at once: throughput and the memory it costs ---------------------------------------------
def _many_tool(bench: Bench, tool: MountTool) -> dict[str, Any]:
    sizes = bench.sizes
    names = sizes.many_names()
    proc = _mounted_cold(bench, tool, "many")
    try:
        paths = [tool.file_path(proc.mountpoint, names[i % len(names)]) for i in range(sizes.many_readers)]
        for path in set(paths):
            path.stat()
        before = _traffic(tool)
        results: list[SeqResult] = []
        with proc.watchdog(_seq_timeout(sizes.many * sizes.many_readers)), \
                ThreadPoolExecutor(max_workers=len(paths)) as pool:
            started = time.perf_counter()
            results = list(pool.map(lambda p: seq_read(p, sizes.many), paths))
            seconds = time.perf_counter() - started
        return {"results": results, "seconds": seconds, "traffic": _delta(_traffic(tool), before),
                "rss": proc.peak_rss_kib()}
    finally:
        proc.stop()
        _check_log(bench, proc)


def many_readers_table(bench: Bench) -> Table:
    sizes = bench.sizes
    total = sizes.many * sizes.many_readers
    table = Table(
        f"{sizes.many_readers} readers at once on {sizes.many_files} files of {fmt_bytes(sizes.many)}, plain "
        "loopback, cold",
        ["tool", "aggregate MB/s", "slowest reader MB/s", "downloaded/read", "peak RSS MiB"],
    )
    bench.static.shape(0, 0)
    if bench.emulator:
        bench.emulator.shape(0, 0)
    for tool in _mounted_tools(bench):
        outcome = _guard(bench, f"many {tool.label}", lambda t=tool: _many_tool(bench, t))
        if outcome.error:
            table.add_unavailable(tool.label, outcome.error)
            continue
        v = outcome.values
        results: list[SeqResult] = v["results"]
        if not all(r.ok for r in results):
            table.add_unavailable(tool.label, "WRONG bytes returned")
            continue
        traffic = v.get("traffic")
        table.add(tool.label, fmt_mb_s(total / v["seconds"] / 1e6), fmt_mb_s(min(r.mb_s for r in results)),
                  fmt_ratio(amplification(traffic.body_bytes, sizes.many * sizes.many_files)) if traffic else "-",
                  _mib(v.get("rss")))
    table.notes.append(f"reader i reads file i mod {sizes.many_files} start to end in 1 MiB reads, all started "
                       "together; downloaded/read counts each file once (two readers share one file's bytes)")
    return table


# --- 5: random 4 KiB reads --------------------------------------------------------------------------------------
def _random_tool(bench: Bench, tool: MountTool | None, offsets: list[int]) -> dict[str, Any]:
    name, size = bench.sizes.seq_name, bench.sizes.seq
    timeout = 120.0 + len(offsets) * 0.5
    if tool is None:  # the local file
        path = bench.corpus_file(name)
        bench.prepare_cold()
        evict_files([path])
        return {"cold": random_reads(path, size, offsets, RANDOM_READ),
                "warm": random_reads(path, size, offsets, RANDOM_READ)}
    proc = _mounted_cold(bench, tool, "random")
    try:
        path = tool.file_path(proc.mountpoint, name)
        path.stat()  # the lookup is not part of the first read's latency
        out: dict[str, Any] = {}
        before = _traffic(tool)
        with proc.watchdog(timeout):
            out["cold"] = random_reads(path, size, offsets, RANDOM_READ)
        middle = _traffic(tool)
        with proc.watchdog(timeout):
            out["warm"] = random_reads(path, size, offsets, RANDOM_READ)
        out["cold_traffic"] = _delta(middle, before)
        out["warm_traffic"] = _delta(_traffic(tool), middle)
        return out
    finally:
        proc.stop()
        _check_log(bench, proc)


def random_table(bench: Bench) -> Table:
    sizes = bench.sizes
    offsets = random_offsets(sizes.seq, sizes.random_count, RANDOM_READ, RANDOM_SEED)
    table = Table(
        f"{sizes.random_count} random {RANDOM_READ // 1024} KiB reads in the {fmt_bytes(sizes.seq)} file "
        "(latency in ms)",
        ["tool", "cold p50", "cold p99", "cold amplification", "warm p50", "warm p99", "warm downloaded"],
    )
    candidates: list[tuple[str, MountTool | None]] = [("local file", None),
                                                      (bench.tools["ceiling"].label, bench.tools["ceiling"])]
    candidates += [(t.label, t) for t in _mounted_tools(bench)]
    for label, tool in candidates:
        outcome = _guard(bench, f"random {label}", lambda t=tool: _random_tool(bench, t, offsets))
        if outcome.error:
            table.add_unavailable(label, outcome.error)
            continue
        v = outcome.values
        cold, warm = v["cold"], v["warm"]
        if not (cold.ok and warm.ok):
            table.add_unavailable(label, "WRONG bytes returned")
            continue
        traffic, warm_traffic = v.get("cold_traffic"), v.get("warm_traffic")
        table.add(label, fmt_ms(percentile(cold.latencies, 50)), fmt_ms(percentile(cold.latencies, 99)),
                  fmt_ratio(amplification(traffic.body_bytes, cold.nbytes)) if traffic else "-",
                  fmt_ms(percentile(warm.latencies, 50)), fmt_ms(percentile(warm.latencies, 99)),
                  fmt_bytes(warm_traffic.body_bytes) if warm_traffic else "-")
    table.notes += [
        f"offsets aligned to {RANDOM_READ} bytes, drawn with seed {RANDOM_SEED} (the same for every tool); one "
        "pread each on one open file; cold = fresh mount and cache, warm = the same offsets again",
        "amplification = bytes the origin sent / bytes read (kernel read-ahead and the tool's block size both "
        "add to it)",
    ]
    return table


# --- 6a: time to first byte ---------------------------------------------------------------------------------
def _ttfb_tool(bench: Bench, tool: MountTool) -> dict[str, Any]:
    name, size = bench.sizes.ttfb_name, bench.sizes.ttfb
    proc = _mounted_cold(bench, tool, "ttfb")
    try:
        path = tool.file_path(proc.mountpoint, name)
        before = _traffic(tool)
        with proc.watchdog(120):
            seconds, ok = time_to_first_byte(path, size)
        at_first = _delta(_traffic(tool), before)
        time.sleep(SETTLE_SECONDS)
        return {"seconds": seconds, "ok": ok, "at_first": at_first, "settled": _delta(_traffic(tool), before)}
    finally:
        proc.stop()
        _check_log(bench, proc)


def ttfb_table(bench: Bench) -> Table:
    name, size = bench.sizes.ttfb_name, bench.sizes.ttfb
    table = Table(
        f"Time to first byte of a {fmt_bytes(size)} file on a fresh mount (open + read 1 byte)",
        ["tool", "ms", "download requests", "downloaded by then", f"requests {SETTLE_SECONDS:g} s later",
         f"downloaded {SETTLE_SECONDS:g} s later"],
    )
    for label, fn in (("curl, emulator URL (Range 0-0)", lambda: _curl_emulator(bench, name, size, True)),
                      ("curl, static server (Range 0-0)", lambda: _curl_static(bench, name, size, True))):
        outcome = _guard(bench, label, fn)
        if outcome.error:
            table.add_unavailable(label, outcome.error)
            continue
        result, traffic = outcome.values["cold"], outcome.values["cold_traffic"]
        table.add(label, fmt_ms(result.seconds) if result.ok else "WRONG", traffic.downloads,
                  fmt_bytes(traffic.body_bytes), "-", "-")
    for tool in [bench.tools["ceiling"], *_mounted_tools(bench)]:
        outcome = _guard(bench, f"ttfb {tool.label}", lambda t=tool: _ttfb_tool(bench, t))
        if outcome.error:
            table.add_unavailable(tool.label, outcome.error)
            continue
        v = outcome.values
        first, settled = v["at_first"], v["settled"]
        table.add(tool.label, fmt_ms(v["seconds"]) if v["ok"] else "WRONG",
                  first.downloads if first else "-", fmt_bytes(first.body_bytes) if first else "-",
                  settled.downloads if settled else "-", fmt_bytes(settled.body_bytes) if settled else "-")
    table.notes.append("the open on a fresh mount includes looking the name up (mmfs: listing its purpose "
                       "folder); curl's figure is its time_starttransfer for a URL it already has")
    return table


# --- 6b: listing a folder of many small files --------------------------------------------------------------
def _listing_tool(bench: Bench, tool: MountTool | None) -> dict[str, Any]:
    timeout = 300.0
    if tool is None:
        folder = bench.corpus_file(bench.sizes.small_name)
        bench.prepare_cold()
        return {"cold": list_folder(folder, timeout), "warm": list_folder(folder, timeout)}
    proc = _mounted_cold(bench, tool, "listing")
    try:
        folder = tool.small_dir(proc.mountpoint, bench.sizes.small_name)
        before = _traffic(tool)
        with proc.watchdog(timeout * 2):
            cold = list_folder(folder, timeout)
        middle = _traffic(tool)
        with proc.watchdog(timeout * 2):
            warm = list_folder(folder, timeout)
        return {"cold": cold, "warm": warm, "cold_traffic": _delta(middle, before),
                "warm_traffic": _delta(_traffic(tool), middle)}
    finally:
        proc.stop()
        _check_log(bench, proc)


def listing_table(bench: Bench) -> Table:
    count = bench.sizes.small
    table = Table(
        f"ls -l and du -sh of a folder of {count:,} small files (seconds)",
        ["tool", "ls -l cold", "du -sh cold", "ls -l warm", "du -sh warm", "entries", "du says",
         "origin requests cold/warm"],
    )
    candidates: list[tuple[str, MountTool | None]] = [("local folder", None),
                                                      (bench.tools["ceiling"].label, bench.tools["ceiling"])]
    candidates += [(t.label, t) for t in _mounted_tools(bench)]
    for label, tool in candidates:
        outcome = _guard(bench, f"listing {label}", lambda t=tool: _listing_tool(bench, t))
        if outcome.error:
            table.add_unavailable(label, outcome.error)
            continue
        v = outcome.values
        cold, warm = v["cold"], v["warm"]
        traffic, warm_traffic = v.get("cold_traffic"), v.get("warm_traffic")
        requests = f"{traffic.requests}/{warm_traffic.requests}" if traffic and warm_traffic else "-"
        entries = str(cold.entries) if cold.entries == count else f"{cold.entries} (expected {count})"
        table.add(label, f"{cold.ls_seconds:.3f}", f"{cold.du_seconds:.3f}", f"{warm.ls_seconds:.3f}",
                  f"{warm.du_seconds:.3f}", entries, cold.du_text, requests)
    table.notes.append("cold: fresh mount and cache, ls -l first, then du -sh; warm: both again in the same "
                       "mount. du reports allocated blocks, so tools disagree on it by design")
    return table


# --- the null filesystem under libfuse 2 and 3 ----------------------------------------------------------------
def _nullfs_run(bench: Bench, tool: NullFsTool) -> dict[str, Any]:
    name, size = bench.sizes.seq_name, bench.sizes.seq
    tool.stats_path.unlink(missing_ok=True)
    proc = _mounted_cold(bench, tool, "variant")
    try:
        with proc.watchdog(_seq_timeout(size)):
            cold = seq_read(tool.file_path(proc.mountpoint, name), size)
        with proc.watchdog(_seq_timeout(size)):
            warm = seq_read(tool.file_path(proc.mountpoint, name), size)
    finally:
        proc.stop()
    return {"cold": cold, "warm": warm, "stats": tool.read_stats()}


def _common_read_size(stats: dict) -> str:
    sizes = stats.get("read_sizes") or {}
    if not sizes:
        return "-"
    size, count = max(sizes.items(), key=lambda kv: kv[1])
    share = count / sum(sizes.values())
    return f"{int(size) // 1024} KiB ({share:.0%})"


def nullfs_table(bench: Bench, variants: list[NullFsTool]) -> Table:
    table = Table(
        f"The ceiling under each libfuse: null FS, sequential read of {fmt_bytes(bench.sizes.seq)} (MB/s)",
        ["variant", "cold", "warm", "vs libfuse3 default", "kernel read size (share)", "libfuse"],
    )
    base = None
    for tool in variants:
        outcome = _guard(bench, tool.label, lambda t=tool: _nullfs_run(bench, t))
        if outcome.error:
            table.add_unavailable(tool.label, outcome.error)
            continue
        v = outcome.values
        cold = _mb_s(v["cold"])
        if base is None and tool.library == "fuse3" and not tool.readahead_kb:
            base = cold
        table.add(tool.label, _seq_cell(v["cold"]), _seq_cell(v["warm"]), fmt_ratio(ratio(cold, base)),
                  _common_read_size(v["stats"]), v["stats"].get("libfuse", "-"))
    table.notes += [
        "same options as mmfs: multithreaded, foreground, raw_fi with keep_cache, 60 s attr/entry timeouts, "
        "max_readahead asked as 8 MiB in init (the kernel keeps at most its device read-ahead, 128 KiB)",
        "ra N KiB: the mount's /sys/class/bdi read_ahead_kb raised to N after mounting (root only), which lets "
        "the kernel send larger reads",
        "single runs on a shared 2-core machine: differences under ~20% are noise",
    ]
    return table
