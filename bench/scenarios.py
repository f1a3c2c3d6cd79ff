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

from bench.cpu import cpu_ms_per_mib
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
from bench.report import (
    Table,
    amplification,
    fmt_bytes,
    fmt_cpu,
    fmt_mb_s,
    fmt_ms,
    fmt_ratio,
    percentile,
    ratio,
    with_spread,
)
from bench.workspace import Bench

__all__ = ["capped_table", "listing_table", "loopback_table", "many_readers_table", "media_table", "nullfs_table",
           "random_table", "ttfb_table"]

CPU_NOTE = ("CPU ms/MiB: user + system time of the tool's processes (the mount and every helper it started, "
            "from /proc) from the first read until it stops working after the last, per MiB read; curl's is "
            "its own process. A figure in brackets is the range over the repetitions")
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


def _seq_cell(result: SeqResult | None, runs: list[SeqResult] | None = None) -> str:
    """MB/s of the run kept, with the range over all repetitions."""
    if result is None:
        return "-"
    if not result.ok:
        return f"WRONG ({result.note})"
    return with_spread(fmt_mb_s(result.mb_s), [r.mb_s for r in runs or [] if r.ok], fmt_mb_s)


def _cpu_cell(result: SeqResult | None, runs: list[SeqResult] | None = None) -> str:
    """CPU ms per MiB of the run kept, with the range over all repetitions."""
    if result is None or not result.ok:
        return "-"
    return with_spread(fmt_cpu(result.cpu_ms_per_mib), [r.cpu_ms_per_mib for r in runs or [] if r.ok], fmt_cpu)


def _cpu_ms(seconds: float | None) -> str:
    return fmt_cpu(None if seconds is None else seconds * 1000)


def _cpu_delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _read_measured(proc: FuseProcess, path: Path, size: int) -> SeqResult:
    """``seq_read`` of a mounted file, with the CPU the mount spent on it (until it settles after the read)."""
    before = proc.cpu_seconds()
    result = seq_read(path, size)
    result.cpu_seconds = _cpu_delta(before, proc.settled_cpu_seconds())
    return result


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
        out[f"{key}_runs"] = [r[key] for r in have]
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
            out["cold"] = _read_measured(proc, path, size)
        out["cold_traffic"] = _delta(_traffic(tool), before)
        with proc.watchdog(_seq_timeout(size)):
            out["warm"] = _read_measured(proc, path, size)
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
            out["remount"] = _read_measured(proc, path, size)
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
    return [bench.tools[k] for k in ("mmfs", "rclone-tuned", "rclone-16", "rclone", "httpdirfs")
            if k in bench.tools]


def _rclone_labels(bench: Bench) -> tuple[str | None, list[str]]:
    """The label of rclone tuned like mmfs (the stream count mmfs uses), and of every tuned rclone."""
    tuned = [bench.tools[k].label for k in ("rclone-tuned", "rclone-16") if k in bench.tools]
    return (bench.tools["rclone-tuned"].label if "rclone-tuned" in bench.tools else None), tuned


def loopback_table(bench: Bench) -> Table:
    sizes = bench.sizes
    name, size = sizes.seq_name, sizes.seq
    bench.static.shape(0, 0)
    if bench.emulator:
        bench.emulator.shape(0, 0)
    table = Table(
        f"Sequential read of {fmt_bytes(size)}, plain loopback (1 MiB reads, MB/s)",
        ["tool", "cold", "CPU ms/MiB cold", "warm (same mount)", "after remount", "CPU ms/MiB remount",
         "cold vs ceiling", "cold vs curl", "cold vs rclone tuned", "downloaded/read", "re-downloaded",
         "peak RSS MiB"],
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
    tuned_label, _ = _rclone_labels(bench)
    tuned = _mb_s(results[tuned_label].values.get("cold")) if tuned_label in results else None
    for label, outcome, curl_label in runs:
        if outcome.error:
            table.add_unavailable(label, outcome.error)
            continue
        v = outcome.values
        cold = _mb_s(v.get("cold"))
        curl_base = _mb_s(results[curl_label].values.get("cold")) if curl_label else None
        traffic, again = v.get("cold_traffic"), v.get("remount_traffic")
        table.add(label, _seq_cell(v.get("cold"), v.get("cold_runs")), _cpu_cell(v.get("cold"), v.get("cold_runs")),
                  _seq_cell(v.get("warm"), v.get("warm_runs")), _seq_cell(v.get("remount"), v.get("remount_runs")),
                  _cpu_cell(v.get("remount"), v.get("remount_runs")),
                  fmt_ratio(ratio(cold, ceiling)), fmt_ratio(ratio(cold, curl_base)),
                  fmt_ratio(ratio(cold, tuned)) if curl_label else "-",
                  fmt_ratio(amplification(traffic.body_bytes, size)) if traffic else "-",
                  fmt_bytes(again.body_bytes) if again else "-", _mib(v.get("rss")))
        bench.record("loopback", label, "cold", cold)
        bench.record("loopback", label, "remount", _mb_s(v.get("remount")))
        cold_result = v.get("cold")
        bench.record("loopback", label, "cold cpu", cold_result.cpu_ms_per_mib if cold_result else None)
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
        CPU_NOTE,
    ]
    return table


# --- 3: sequential reads through a capped network (the capped and the WAN tables) ------------------------
def _capped_tool(bench: Bench, tool: MountTool, name: str, size: int, rate: float) -> dict[str, Any]:
    proc = _mounted_cold(bench, tool, "capped")
    try:
        path = tool.file_path(proc.mountpoint, name)
        before = _traffic(tool)
        with proc.watchdog(_seq_timeout(size, floor_mb_s=rate / 4)):
            cold = _read_measured(proc, path, size)
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
        ["tool", f"{fmt_bytes(big[1])} cold", "CPU ms/MiB", "vs curl (same origin)", "vs rclone tuned",
         "vs best rclone", f"{fmt_bytes(small[1])} cold", "CPU ms/MiB", "vs rclone tuned", "vs best rclone",
         "downloaded/read", "peak RSS MiB"],
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

    def cold_of(label: str | None, which: int) -> float | None:
        pair = results.get(label) if label else None
        outcome = pair[which] if pair else None
        return _mb_s(outcome.values.get("cold")) if outcome is not None and not outcome.error else None

    tuned_label, tuned_labels = _rclone_labels(bench)
    tuned = [cold_of(tuned_label, i) for i in (0, 1)]
    best = [max((x for x in (cold_of(k, i) for k in tuned_labels) if x is not None), default=None) for i in (0, 1)]
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
                      else _seq_cell(w.get("cold"), w.get("cold_runs")) if second is not None else "-")
        rss = max((x for x in (v.get("rss"), w.get("rss")) if x is not None), default=None)
        mounted = second is not None
        table.add(label, _seq_cell(v.get("cold"), v.get("cold_runs")), _cpu_cell(v.get("cold"), v.get("cold_runs")),
                  fmt_ratio(ratio(cold, curl_base)),
                  fmt_ratio(ratio(cold, tuned[0])) if mounted else "-",
                  fmt_ratio(ratio(cold, best[0])) if mounted else "-", small_cell,
                  _cpu_cell(w.get("cold"), w.get("cold_runs")) if mounted else "-",
                  fmt_ratio(ratio(small_cold, tuned[1])) if mounted else "-",
                  fmt_ratio(ratio(small_cold, best[1])) if mounted else "-",
                  fmt_ratio(amplification(traffic.body_bytes, big[1])) if traffic else "-", _mib(rss))
        bench.record(plot_as, label, "big", cold)
        bench.record(plot_as, label, "small", small_cold)
        bench.plot(label, plot_as, cold)
    table.notes.append(f"at {rate:g} MB/s a single connection needs {big[1] / rate / 1e6:.0f} s for the "
                       f"{fmt_bytes(big[1])} file; tools that open several connections can beat curl here. The "
                       f"{fmt_bytes(small[1])} file shows how soon a tool reaches full speed")
    table.notes += ["vs best rclone: against the faster of rclone tuned and rclone at 16 streams", CPU_NOTE]
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
            before, cpu_before = _traffic(tool), proc.cpu_seconds()
            with proc.watchdog(360):
                out[what] = probe(path)
            time.sleep(SETTLE_SECONDS)  # what a tool keeps fetching after the answer is part of its bill
            out[f"{what}_traffic"] = _delta(_traffic(tool), before)
            out[f"{what}_cpu"] = _cpu_delta(cpu_before, proc.settled_cpu_seconds())
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
        ["tool", "ffprobe s", "requests", "downloaded", "CPU ms", "pdfinfo s", "requests", "downloaded", "CPU ms"],
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
                          fmt_bytes(traffic.body_bytes) if traffic else "-", _cpu_ms(outcome.values.get(f"{what}_cpu"))]
            table.add(*cells)
    finally:
        _shape_all(bench, 0, 0)
    table.notes += [
        f"MP4: {fmt_bytes(mp4.stat().st_size)}, {sizes.mp4_seconds} s of video and audio written by ffmpeg with "
        f"its moov index at the end; PDF: {fmt_bytes(pdf.stat().st_size)}, {sizes.pdf_pages} pages of ~1 MiB, "
        "xref table at the end",
        f"requests and downloaded: what the origin served from the probe's start to {SETTLE_SECONDS:g} s after "
        "it ended (readahead a tool keeps doing after the answer counts)",
        "CPU ms: the tool's processes over the same span (user + system, from /proc)",
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
        before, cpu_before = _traffic(tool), proc.cpu_seconds()
        results: list[SeqResult] = []
        with proc.watchdog(_seq_timeout(sizes.many * sizes.many_readers)), \
                ThreadPoolExecutor(max_workers=len(paths)) as pool:
            started = time.perf_counter()
            results = list(pool.map(lambda p: seq_read(p, sizes.many), paths))
            seconds = time.perf_counter() - started
        return {"results": results, "seconds": seconds, "traffic": _delta(_traffic(tool), before),
                "rss": proc.peak_rss_kib(), "cpu": _cpu_delta(cpu_before, proc.settled_cpu_seconds())}
    finally:
        proc.stop()
        _check_log(bench, proc)


def many_readers_table(bench: Bench) -> Table:
    sizes = bench.sizes
    total = sizes.many * sizes.many_readers
    table = Table(
        f"{sizes.many_readers} readers at once on {sizes.many_files} files of {fmt_bytes(sizes.many)}, plain "
        "loopback, cold",
        ["tool", "aggregate MB/s", "CPU ms/MiB", "slowest reader MB/s", "downloaded/read", "peak RSS MiB"],
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
        table.add(tool.label, fmt_mb_s(total / v["seconds"] / 1e6), fmt_cpu(cpu_ms_per_mib(v.get("cpu"), total)),
                  fmt_mb_s(min(r.mb_s for r in results)),
                  fmt_ratio(amplification(traffic.body_bytes, sizes.many * sizes.many_files)) if traffic else "-",
                  _mib(v.get("rss")))
    table.notes.append(f"reader i reads file i mod {sizes.many_files} start to end in 1 MiB reads, all started "
                       "together; downloaded/read counts each file once (two readers share one file's bytes)")
    table.notes.append("CPU ms/MiB: the tool's processes (user + system, from /proc) per MiB delivered to all "
                       "readers together")
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
        before, cpu_before = _traffic(tool), proc.cpu_seconds()
        with proc.watchdog(timeout):
            out["cold"] = random_reads(path, size, offsets, RANDOM_READ)
        out["cold_cpu"] = _cpu_delta(cpu_before, proc.settled_cpu_seconds())
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
        ["tool", "cold p50", "cold p99", "cold amplification", "cold CPU ms/read", "warm p50", "warm p99",
         "warm downloaded"],
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
                  _cpu_ms(v["cold_cpu"] / len(offsets)) if v.get("cold_cpu") is not None else "-",
                  fmt_ms(percentile(warm.latencies, 50)), fmt_ms(percentile(warm.latencies, 99)),
                  fmt_bytes(warm_traffic.body_bytes) if warm_traffic else "-")
    table.notes += [
        f"offsets aligned to {RANDOM_READ} bytes, drawn with seed {RANDOM_SEED} (the same for every tool); one "
        "pread each on one open file; cold = fresh mount and cache, warm = the same offsets again",
        "amplification = bytes the origin sent / bytes read (kernel read-ahead and the tool's block size both "
        "add to it); cold CPU ms/read: the tool's processes (user + system) over the cold reads, per read",
    ]
    return table


# --- 6a: time to first byte ---------------------------------------------------------------------------------
def _ttfb_tool(bench: Bench, tool: MountTool) -> dict[str, Any]:
    name, size = bench.sizes.ttfb_name, bench.sizes.ttfb
    proc = _mounted_cold(bench, tool, "ttfb")
    try:
        path = tool.file_path(proc.mountpoint, name)
        before, cpu_before = _traffic(tool), proc.cpu_seconds()
        with proc.watchdog(120):
            seconds, ok = time_to_first_byte(path, size)
        at_first = _delta(_traffic(tool), before)
        time.sleep(SETTLE_SECONDS)
        return {"seconds": seconds, "ok": ok, "at_first": at_first, "settled": _delta(_traffic(tool), before),
                "cpu": _cpu_delta(cpu_before, proc.cpu_seconds())}
    finally:
        proc.stop()
        _check_log(bench, proc)


def ttfb_table(bench: Bench) -> Table:
    name, size = bench.sizes.ttfb_name, bench.sizes.ttfb
    table = Table(
        f"Time to first byte of a {fmt_bytes(size)} file on a fresh mount (open + read 1 byte)",
        ["tool", "ms", "download requests", "downloaded by then", f"requests {SETTLE_SECONDS:g} s later",
         f"downloaded {SETTLE_SECONDS:g} s later", f"CPU ms by {SETTLE_SECONDS:g} s later"],
    )
    for label, fn in (("curl, emulator URL (Range 0-0)", lambda: _curl_emulator(bench, name, size, True)),
                      ("curl, static server (Range 0-0)", lambda: _curl_static(bench, name, size, True))):
        outcome = _guard(bench, label, fn)
        if outcome.error:
            table.add_unavailable(label, outcome.error)
            continue
        result, traffic = outcome.values["cold"], outcome.values["cold_traffic"]
        table.add(label, fmt_ms(result.seconds) if result.ok else "WRONG", traffic.downloads,
                  fmt_bytes(traffic.body_bytes), "-", "-", _cpu_ms(result.cpu_seconds))
    for tool in [bench.tools["ceiling"], *_mounted_tools(bench)]:
        outcome = _guard(bench, f"ttfb {tool.label}", lambda t=tool: _ttfb_tool(bench, t))
        if outcome.error:
            table.add_unavailable(tool.label, outcome.error)
            continue
        v = outcome.values
        first, settled = v["at_first"], v["settled"]
        table.add(tool.label, fmt_ms(v["seconds"]) if v["ok"] else "WRONG",
                  first.downloads if first else "-", fmt_bytes(first.body_bytes) if first else "-",
                  settled.downloads if settled else "-", fmt_bytes(settled.body_bytes) if settled else "-",
                  _cpu_ms(v.get("cpu")))
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
        before, cpu_before = _traffic(tool), proc.cpu_seconds()
        with proc.watchdog(timeout * 2):
            cold = list_folder(folder, timeout)
        middle, cpu_middle = _traffic(tool), proc.cpu_seconds()
        with proc.watchdog(timeout * 2):
            warm = list_folder(folder, timeout)
        return {"cold": cold, "warm": warm, "cold_traffic": _delta(middle, before),
                "warm_traffic": _delta(_traffic(tool), middle), "cold_cpu": _cpu_delta(cpu_before, cpu_middle),
                "warm_cpu": _cpu_delta(cpu_middle, proc.cpu_seconds())}
    finally:
        proc.stop()
        _check_log(bench, proc)


def listing_table(bench: Bench) -> Table:
    count = bench.sizes.small
    table = Table(
        f"ls -l and du -sh of a folder of {count:,} small files (seconds)",
        ["tool", "ls -l cold", "du -sh cold", "ls -l warm", "du -sh warm", "CPU ms cold/warm", "entries", "du says",
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
        cpu = f"{_cpu_ms(v.get('cold_cpu'))}/{_cpu_ms(v.get('warm_cpu'))}" if tool is not None else "-"
        table.add(label, f"{cold.ls_seconds:.3f}", f"{cold.du_seconds:.3f}", f"{warm.ls_seconds:.3f}",
                  f"{warm.du_seconds:.3f}", cpu, entries, cold.du_text, requests)
        bench.record("listing", label, "ls cold", cold.ls_seconds)
        bench.record("listing", label, "ls warm", warm.ls_seconds)
    table.notes.append("cold: fresh mount and cache, ls -l first, then du -sh; warm: both again in the same "
                       "mount. du reports allocated blocks, so tools disagree on it by design")
    table.notes.append("CPU ms cold/warm: the tool's processes (user + system, from /proc) over ls -l and du -sh")
    return table


# --- the null filesystem under libfuse 2 and 3 ----------------------------------------------------------------
def _nullfs_run(bench: Bench, tool: NullFsTool) -> dict[str, Any]:
    name, size = bench.sizes.seq_name, bench.sizes.seq
    tool.stats_path.unlink(missing_ok=True)
    proc = _mounted_cold(bench, tool, "variant")
    try:
        with proc.watchdog(_seq_timeout(size)):
            cold = _read_measured(proc, tool.file_path(proc.mountpoint, name), size)
        with proc.watchdog(_seq_timeout(size)):
            warm = _read_measured(proc, tool.file_path(proc.mountpoint, name), size)
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
        ["variant", "cold", "CPU ms/MiB cold", "warm", "vs libfuse3 default", "kernel read size (share)", "libfuse"],
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
        table.add(tool.label, _seq_cell(v["cold"]), _cpu_cell(v["cold"]), _seq_cell(v["warm"]),
                  fmt_ratio(ratio(cold, base)),
                  _common_read_size(v["stats"]), v["stats"].get("libfuse", "-"))
    table.notes += [
        "same options as mmfs: multithreaded, foreground, raw_fi with keep_cache, 60 s attr/entry timeouts, "
        "max_readahead asked as 8 MiB in init (the kernel keeps at most its device read-ahead, 128 KiB)",
        "ra N KiB: the mount's /sys/class/bdi read_ahead_kb raised to N after mounting (root only), which lets "
        "the kernel send larger reads",
        "single runs on a shared 2-core machine: differences under ~20% are noise",
    ]
    return table
