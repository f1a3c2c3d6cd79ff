"""Turning measurements into tables, ratios, a Markdown report and a bar chart.

The maths (percentiles, ratios, amplification) and the table layout are pure functions, tested without any
mount. A cell that could not be measured holds a short reason instead of a number; every formatter passes
such text through unchanged, so one unavailable tool never breaks a table.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Table",
    "amplification",
    "fmt_bytes",
    "fmt_cpu",
    "fmt_mb_s",
    "fmt_ms",
    "fmt_ratio",
    "machine_description",
    "percentile",
    "plot_throughput",
    "ratio",
    "render_markdown",
    "render_text",
    "with_spread",
    "write_report",
]

Number = int | float


def percentile(values: Sequence[Number], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile out of range: {p}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(value: Number | None, base: Number | None) -> float | None:
    """``value / base``, or None when either is missing or the base is not positive."""
    if value is None or base is None or base <= 0:
        return None
    return value / base


def amplification(downloaded: int | None, read: int) -> float | None:
    """Bytes fetched from the origin per byte the reader asked for (1.0 = nothing wasted)."""
    if downloaded is None or read <= 0:
        return None
    return downloaded / read


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}x"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def fmt_mb_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def fmt_cpu(ms: float | None) -> str:
    """CPU milliseconds (per MiB or per operation)."""
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:,.0f}"
    return f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def with_spread(text: str, values: Sequence[float | None], fmt: Callable[[float | None], str]) -> str:
    """``text`` (the figure kept) followed by the lowest and highest of the repetitions, when there were
    several: ``"233 (210-240)"``. Missing values are left out of the range."""
    have = [v for v in values if v is not None]
    if len(have) < 2:
        return text
    return f"{text} ({fmt(min(have))}-{fmt(max(have))})"


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:,.0f}"
    return f"{ms:.1f}" if ms >= 1 else f"{ms:.3f}"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Rows whose second cell is a reason ("not available: ...") that spans the remaining columns.
    spans: set[int] = field(default_factory=set)

    def add(self, *cells: object) -> None:
        row = ["-" if c is None else str(c) for c in cells]
        if len(row) != len(self.headers):
            raise ValueError(f"{self.title}: row of {len(row)} cells under {len(self.headers)} headers")
        self.rows.append(row)

    def add_unavailable(self, tool: str, reason: str) -> None:
        self.add(tool, reason, *["" for _ in self.headers[2:]])
        self.spans.add(len(self.rows) - 1)


def render_text(table: Table) -> str:
    """A plain aligned table for the terminal: first column left, numbers right."""
    widths = [len(h) for h in table.headers]
    for i, row in enumerate(table.rows):
        for col, cell in enumerate(row[:1] if i in table.spans else row):
            widths[col] = max(widths[col], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    parts = [table.title, "=" * len(table.title), line(table.headers), line(["-" * w for w in widths])]
    parts += [f"{row[0].ljust(widths[0])}  {row[1]}" if i in table.spans else line(row)
              for i, row in enumerate(table.rows)]
    parts += [f"  note: {n}" for n in table.notes]
    return "\n".join(parts)


def render_markdown(table: Table) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    parts = [f"### {table.title}", "", "| " + " | ".join(esc(h) for h in table.headers) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(table.headers) - 1)) + "|"]
    parts += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        parts.append("")
        parts += [f"- {n}" for n in table.notes]
    return "\n".join(parts)


def _first_line(argv: Sequence[str], containing: str = "") -> str:
    """The first output line of a command that contains ``containing`` (any line when empty)."""
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    lines = (out.stdout + out.stderr).decode(errors="replace").splitlines()
    found = next((line.strip() for line in lines if containing.lower() in line.lower() and line.strip()), "unknown")
    return found.split(" (")[0]  # "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/..." -> "curl 7.88.1"


def _deb_version(package: str) -> str:
    return _first_line(["dpkg-query", "-W", "-f=${Version}", package]) or "not installed"


def machine_description(tools: dict[str, Sequence[str]] | None = None) -> dict[str, str]:
    """CPU, cores, memory, kernel, libfuse, Python, date, and the version line of each tool given."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = next((int(line.split()[1]) for line in f if line.startswith("MemTotal:")), 0)
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": f"{mem_kib / (1 << 20):.1f} GiB",
        "kernel": platform.release(),
        "libfuse3": _deb_version("libfuse3-3"),
        "libfuse2": _deb_version("libfuse2"),
        "Python": platform.python_version(),
    }
    for name, argv in (tools or {}).items():
        info[name] = _first_line(argv, containing=name)
    return info


def write_report(path: Path, machine: dict[str, str], tables: Sequence[Table], preamble: Sequence[str],
                 chart: str | None) -> None:
    parts = ["# mmfs benchmark results", "", *preamble, "", "## Machine", ""]
    parts += [f"- {k}: {v}" for k, v in machine.items()]
    for table in tables:
        parts += ["", render_markdown(table)]
    if chart:
        parts += ["", f"![throughput per tool]({chart})"]
    path.write_text("\n".join(parts) + "\n")


def plot_throughput(path: Path, series: dict[str, dict[str, float]], title: str) -> bool:
    """Grouped bars: one group per tool, one bar per measurement (MB/s, log scale). False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tools = [t for t, values in series.items() if values]
    kinds: list[str] = []
    for t in tools:
        kinds += [k for k in series[t] if k not in kinds]
    if not tools:
        return False
    width = 0.8 / max(1, len(kinds))
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(tools)), 5))
    for i, kind in enumerate(kinds):
        xs = [j + (i - (len(kinds) - 1) / 2) * width for j in range(len(tools))]
        ys = [series[t].get(kind, 0.0) for t in tools]
        bars = ax.bar(xs, ys, width, label=kind)
        for bar, y in zip(bars, ys, strict=True):
            if y > 0:
                ax.annotate(f"{y:,.0f}", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom",
                            fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(tools)))
    ax.set_xticklabels(tools, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("MB/s (log scale)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
