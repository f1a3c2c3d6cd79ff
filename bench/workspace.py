"""What every scenario shares: sizes, folders, the origins, the tools, and the cold-start ritual.

A *cold* run means: the tool's own disk cache wiped, a fresh mount, the page cache dropped, and then the
origins' files read back into memory, so the origin serves at loopback speed and the only thing that is cold
is the tool. Everything the run creates lives under the work folder (git-ignored); each tool gets its own
mount point and cache folder there.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.corpus import small_file_name
from bench.mounts import drop_page_cache, read_through
from bench.peers import EmulatorOrigin, MountTool, Origin, StaticOrigin

__all__ = ["Bench", "Sizes"]

MIB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    seq: int  # the big file: sequential reads, random reads
    capped: int  # the file read through the capped network (smaller: 50 MB/s makes 1 GiB take 21 s a tool)
    ttfb: int  # the file whose first byte is timed
    small: int  # files in the folder that is listed
    random_count: int  # 4 KiB reads at random offsets
    upload: int = 300 * MIB  # the file copied into the mount (the platform takes up to 512 MB)
    ramp: int = 64 * MIB  # a smaller capped read: how fast a tool reaches full speed
    mp4_seconds: int = 600  # the MP4 opened with ffprobe (~360 KB a second)
    pdf_pages: int = 128  # the PDF opened with pdfinfo (~1 MiB a page)
    many: int = 64 * MIB  # each of the files read by many readers at once
    many_files: int = 8
    many_readers: int = 16

    @classmethod
    def full(cls) -> Sizes:
        return cls(seq=1024 * MIB, capped=256 * MIB, ttfb=100 * MIB, small=10_000, random_count=1000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(seq=128 * MIB, capped=64 * MIB, ttfb=100 * MIB, small=1000, random_count=300, upload=64 * MIB,
                   ramp=16 * MIB, mp4_seconds=120, pdf_pages=32, many=16 * MIB)

    @property
    def seq_name(self) -> str:
        return f"seq-{self.seq // MIB}M.bin"

    @property
    def capped_name(self) -> str:
        return f"capped-{self.capped // MIB}M.bin"

    @property
    def ttfb_name(self) -> str:
        return f"ttfb-{self.ttfb // MIB}M.bin"

    @property
    def ramp_name(self) -> str:
        return f"ramp-{self.ramp // MIB}M.bin"

    @property
    def mp4_name(self) -> str:
        return f"media-{self.mp4_seconds}s.mp4"

    @property
    def pdf_name(self) -> str:
        return f"doc-{self.pdf_pages}p.pdf"

    @property
    def small_name(self) -> str:
        return f"small-{self.small}"

    def big_files(self) -> dict[str, int]:
        return {self.seq_name: self.seq, self.capped_name: self.capped, self.ttfb_name: self.ttfb,
                self.ramp_name: self.ramp, **dict.fromkeys(self.many_names(), self.many)}

    def many_names(self) -> list[str]:
        return [f"many-{i}-{self.many // MIB}M.bin" for i in range(self.many_files)]

    def media_files(self) -> list[str]:
        return [self.mp4_name, self.pdf_name]


@dataclass
class Bench:
    sizes: Sizes
    work: Path
    corpus: Path
    static: StaticOrigin
    emulator: EmulatorOrigin | None
    emulator_ids: dict[str, str]  # "purpose/filename" -> file_id
    emulator_blobs: list[Path]  # the emulator's copies of the big files, kept warm like the corpus
    conn_rate: float
    latency: float
    tools: dict[str, MountTool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    series: dict[str, dict[str, float]] = field(default_factory=dict)
    cache_dropped: bool = True
    repeat: int = 1  # sequential reads: best of this many cold runs per tool
    # (table, row, what) -> the figure a target is judged on (MB/s, seconds or CPU ms/MiB)
    figures: dict[tuple[str, str, str], float] = field(default_factory=dict)
    emulator_cpu: Callable[[], float | None] | None = None  # CPU seconds of the emulator's process so far

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def record(self, table: str, row: str, what: str, value: float | None) -> None:
        if value is not None:
            self.figures[(table, row, what)] = value

    def plot(self, tool: str, kind: str, mb_s: float | None) -> None:
        if mb_s:
            self.series.setdefault(tool, {})[kind] = mb_s

    def _slug(self, tool: MountTool | str) -> str:
        label = tool if isinstance(tool, str) else tool.label
        return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")

    def mountpoint(self, tool: MountTool) -> Path:
        return self.work / "mnt" / self._slug(tool)

    def cache_dir(self, tool: MountTool) -> Path:
        return self.work / "cache" / self._slug(tool)

    def fresh_cache(self, tool: MountTool) -> Path:
        path = self.cache_dir(tool)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def log_path(self, tool: MountTool | str, what: str) -> Path:
        return self.work / "logs" / f"{self._slug(tool)}-{what}.log"

    def corpus_file(self, name: str) -> Path:
        return self.corpus / name

    def prepare_cold(self) -> None:
        """Drop the page cache, then warm what the origins serve (never a tool's cache)."""
        if not drop_page_cache():
            if self.cache_dropped:
                self.note("the page cache could not be dropped (not root): cold runs may be warm")
            self.cache_dropped = False
        read_through([self.corpus / n for n in [*self.sizes.big_files(), *self.sizes.media_files()]]
                     + self.emulator_blobs)
        small = self.corpus / self.sizes.small_name
        for i in range(self.sizes.small):  # metadata only: the listing test stats every file
            (small / small_file_name(i)).stat()

    def origin_of(self, tool: MountTool) -> Origin | None:
        return tool.origin
