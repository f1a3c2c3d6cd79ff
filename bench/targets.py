"""The closing table: each performance target mmfs is held to, and what this run measured against it.

Every figure is taken from the tables of the same run (``Bench.figures``), so the ratios compare tools that
ran side by side on the same machine at the same time. A figure that was not measured (a table left out, a
tool missing) says so instead of passing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.report import Table, fmt_cpu, fmt_ratio, ratio

__all__ = ["Labels", "Target", "evaluate", "targets_table"]

Figures = dict[tuple[str, str, str], float]
LISTING_FILES = 10_000  # the listing targets are stated for this many files, and scale linearly


@dataclass(frozen=True)
class Labels:
    """The row labels the tables used for each tool."""

    mmfs: str = "mmfs"
    ceiling: str = "null FS (libfuse3) = ceiling"
    rclone_tuned: str = "rclone mount, tuned (8 streams)"
    rclone_all: tuple[str, ...] = ("rclone mount, tuned (8 streams)", "rclone mount, tuned (16 streams)")


@dataclass(frozen=True)
class Target:
    figure: str
    goal: float
    at_least: bool  # the value must reach the goal (a ratio), or stay under it (seconds, CPU)
    value: float | None  # None: not measured in this run
    fmt: Callable[[float | None], str] = fmt_ratio

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.goal if self.at_least else self.value <= self.goal

    @property
    def verdict(self) -> str:
        """"met", "not measured", or how far off: the measured value as a share of the goal."""
        if self.met is None:
            return "not measured"
        if self.met:
            return "met"
        return f"missed: {fmt_ratio(ratio(self.value, self.goal))} of the target"


def _at_least(figure: str, value: float | None, goal: float) -> Target:
    return Target(figure, goal, True, value)


def _at_most(figure: str, value: float | None, goal: float, fmt: Callable[[float | None], str]) -> Target:
    return Target(figure, goal, False, value, fmt)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def evaluate(figures: Figures, labels: Labels, listing_files: int) -> list[Target]:
    def get(table: str, row: str | None, what: str) -> float | None:
        return figures.get((table, row, what)) if row else None

    def best_rclone(table: str, what: str) -> float | None:
        have = [v for v in (get(table, r, what) for r in labels.rclone_all) if v is not None]
        return max(have) if have else None

    mmfs, tuned = labels.mmfs, labels.rclone_tuned
    scale = listing_files / LISTING_FILES
    return [
        _at_least("loopback cold, / rclone tuned", ratio(get("loopback", mmfs, "cold"),
                                                          get("loopback", tuned, "cold")), 1.2),
        _at_least("capped, big file, / rclone tuned", ratio(get("capped cold", mmfs, "big"),
                                                             get("capped cold", tuned, "big")), 1.2),
        _at_least("capped, small file, / rclone tuned", ratio(get("capped cold", mmfs, "small"),
                                                               get("capped cold", tuned, "small")), 1.2),
        _at_least("WAN, big file, / rclone at its best (8 or 16 streams)",
                  ratio(get("WAN cold", mmfs, "big"), best_rclone("WAN cold", "big")), 1.2),
        _at_least("after a remount, / null-FS ceiling (cold)", ratio(get("loopback", mmfs, "remount"),
                                                                      get("loopback", labels.ceiling, "cold")), 0.8),
        _at_most("CPU ms per MiB, cold loopback", get("loopback", mmfs, "cold cpu"), 2.5, fmt_cpu),
        _at_least("upload, / curl -F", ratio(get("upload", "mmfs (cp into the mount)", "MB/s"),
                                              get("upload", "curl -F", "MB/s")), 0.8),
        _at_most(f"ls -l of {listing_files:,} files, warm", get("listing", mmfs, "ls warm"), 0.3 * scale, _seconds),
        _at_most(f"ls -l of {listing_files:,} files, cold", get("listing", mmfs, "ls cold"), 1.5 * scale, _seconds),
    ]


def targets_table(figures: Figures, labels: Labels, listing_files: int) -> Table:
    table = Table("Targets, measured in this run", ["figure", "target", "measured", "verdict"])
    for target in evaluate(figures, labels, listing_files):
        table.add(target.figure, (">= " if target.at_least else "<= ") + target.fmt(target.goal),
                  target.fmt(target.value), target.verdict)
    table.notes.append(f"ratios divide the best runs of each tool; the listing targets are stated for "
                       f"{LISTING_FILES:,} files and scaled linearly to the {listing_files:,} listed here; "
                       "missed: the measured value as a share of the target (for times and CPU, above 1)")
    return table
