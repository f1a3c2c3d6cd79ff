"""Mount configuration: one documented dataclass, and the platform's known purposes.

Defaults and their reasons live here, beside the fields, so the CLI, ``mmfs.mount()`` and the tests read
one source.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

__all__ = [
    "DEFAULT_BASE_URL",
    "LIST_PURPOSES",
    "PURPOSES",
    "UPLOAD_PURPOSES",
    "MountConfig",
    "parse_size",
]

DEFAULT_BASE_URL = "https://api.minimax.io"

# Every purpose the platform documents, in the order the root folder shows them.
PURPOSES: tuple[str, ...] = (
    "voice_clone",
    "prompt_audio",
    "t2a_async_input",
    "t2a_async",
    "video_generation",
    "video_understanding",
    "video_generation_input",
    "retrieval",
)
# Purposes the platform takes uploads for (the spec's upload column; retrieval is uncertain, so offered).
UPLOAD_PURPOSES = frozenset(
    {"voice_clone", "prompt_audio", "t2a_async_input", "video_understanding", "video_generation_input", "retrieval"}
)
# Purposes documented as listable; the rest are asked anyway and hidden if refused.
LIST_PURPOSES = frozenset({"voice_clone", "prompt_audio", "t2a_async_input", "video_generation_input"})

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"10G"``, ``"512MiB"``, ``"4m"``, ``"1048576"`` -> bytes (binary units, as du and rclone use)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M, 10G)")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[unit])


def _default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("mmfs", appauthor=False))


def _default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir("mmfs", appauthor=False))


@dataclass
class MountConfig:
    """Everything a mount needs. ``api_key`` is held here and nowhere else; ``repr`` hides it."""

    mountpoint: Path
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    # Extra query parameters per operation, for gateways that proxy the API (``model=minimax-files-<op>``).
    op_params: dict[str, dict[str, str]] = field(default_factory=dict)
    purposes: tuple[str, ...] = PURPOSES
    cache_dir: Path = field(default_factory=_default_cache_dir)
    state_dir: Path = field(default_factory=_default_state_dir)
    # A hard ceiling on the block cache's disk use.
    cache_size: int = 10 << 30
    # 4 MiB blocks: large enough that one HTTP request per block costs little next to its transfer time
    # (a round trip to an object store is ~20-50 ms; 4 MiB at 100 MB/s is 40 ms), and that the kernel's
    # 128 KiB reads land 32 to a block; small enough that a seek in a video costs one short fetch.
    block_size: int = 4 << 20
    # Listings are re-fetched after this many seconds; between refreshes stat() costs no request.
    dir_cache_time: float = 30.0
    read_only: bool = False
    # Kernel caches: names and attributes of files that never change under their id can be trusted long.
    attr_timeout: float = 30.0
    entry_timeout: float = 30.0
    negative_timeout: float = 5.0
    # Prefetch: parallel block downloads and the memory they may hold in flight.
    prefetch_workers: int = 8
    prefetch_memory: int = 64 << 20
    # Total time one read may spend retrying before it fails with EIO.
    read_deadline: float = 60.0
    # A Redis URL (``redis://``, ``rediss://``) shared by every mount of this account: listings, known files,
    # blocks and the API budget become the fleet's (doc/FLEET.md). None: this mount is on its own.
    shared: str | None = field(default=None, repr=False)  # the URL may hold a password
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)

    def account_tag(self) -> str:
        """A short, one-way name for (host, key): separates two accounts' caches without storing the key."""
        digest = hashlib.sha256(f"{self.base_url}\0{self.api_key}".encode()).hexdigest()
        return digest[:16]

    @property
    def blocks_dir(self) -> Path:
        return self.cache_dir / self.account_tag() / "blocks"

    @property
    def spool_dir(self) -> Path:
        return self.cache_dir / self.account_tag() / "spool"

    @property
    def failed_uploads_dir(self) -> Path:
        return self.cache_dir / self.account_tag() / "failed-uploads"

    @property
    def known_files_path(self) -> Path:
        return self.state_dir / self.account_tag() / "known-files.json"
