"""Mount configuration: one documented dataclass, and the platform's known purposes.

Defaults and their reasons live here, beside the fields, so the CLI, ``mmfs.mount()`` and the tests read
one source.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from mmfs.errors import MmfsError

# The platform's purposes (the root folder's order), those offered for uploads, those documented as
# listable: the purpose table's, importable from here too.
from mmfs.purposes import LIST_PURPOSES, PURPOSES, UPLOAD_PURPOSES

__all__ = [
    "DEFAULT_BASE_URL",
    "LIST_PURPOSES",
    "PURPOSES",
    "UPLOAD_PURPOSES",
    "ConfigError",
    "MountConfig",
    "parse_base_url",
    "parse_bwlimit",
    "parse_id",
    "parse_purposes",
    "parse_seconds",
    "parse_size",
]

DEFAULT_BASE_URL = "https://api.minimax.io"

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"10G"``, ``"512MiB"``, ``"4m"``, ``"1048576"`` -> bytes (binary units, as du and rclone use)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M, 10G)")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[unit])


def parse_bwlimit(text: str) -> tuple[int | None, int | None]:
    """``10M`` -> (10 MiB/s up, 10 MiB/s down); ``UP:DOWN`` as rclone takes it (``10M:off``); ``off`` or ``0``
    -> no limit. Sizes in binary units per second; ``ValueError`` saying what is wrong."""
    def one(part: str) -> int | None:
        part = part.strip().lower()
        if part in ("off", "0", ""):
            return None
        rate = parse_size(part)
        if rate < 1024:
            raise ValueError(f"a limit under 1K per second would stall every transfer: {part!r}")
        return rate

    up, sep, down = str(text).partition(":")
    try:
        return (one(up), one(down)) if sep else (one(up), one(up))
    except ValueError as exc:
        raise ValueError(f"{exc} (use e.g. 10M, or UP:DOWN as in 2M:20M, or off)") from None



# --- transfers: --max-streams and --chunk-size ----------------------------------------------------------
MAX_STREAMS = 64
MIN_CHUNK, MAX_CHUNK = 64 << 10, 64 << 20


def parse_max_streams(value: object) -> int:
    """Block downloads a mount may run at once, e.g. ``16``: 1 to ``MAX_STREAMS``."""
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_STREAMS:
        raise ValueError(f"not a number of streams: {text!r} (1 to {MAX_STREAMS}, e.g. 16)")
    return int(text)


def parse_chunk_size(value: object) -> int:
    """Bytes per download request (the cache's block), e.g. ``4M``: whole pages, 64K to 64M."""
    try:
        size = value if isinstance(value, int) else parse_size(str(value))
    except ValueError:
        size = -1
    if not MIN_CHUNK <= size <= MAX_CHUNK or size % 4096:
        raise ValueError(f"not a chunk size: {value!r} (a multiple of 4K from 64K to 64M, e.g. 4M)")
    return size


def parse_base_url(text: str) -> str:
    """An API host as ``--base-url`` (or ``MINIMAX_BASE_URL``, a profile's ``base_url``) takes it:
    ``http(s)://host[:port][/path]``; ``ValueError`` naming what is wrong, never quoting a password in it."""
    try:
        url = urlsplit(text.strip())
        port = url.port  # urlsplit checks the port only when asked
        host = url.hostname
    except ValueError as exc:  # an unclosed [ of an IPv6 address, a port that is not a number or past 65535
        raise ValueError(f"not a URL ({exc}); give one like {DEFAULT_BASE_URL}") from None
    if url.scheme not in ("http", "https") or not host:
        raise ValueError(f"needs http:// or https:// and a host, like {DEFAULT_BASE_URL}")
    if port == 0:
        raise ValueError("port 0 is not a port to connect to")
    if url.query or url.fragment:
        raise ValueError("takes no ?query or #fragment (a gateway's parameters go in --op-param)")
    return text.strip().rstrip("/")


def parse_seconds(text: str, *, zero: bool = True) -> float:
    """A finite number of seconds, 0 or more (``zero``) or more than 0."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"must be {'0 or more' if zero else 'more than 0'} seconds, got {text!r}")
    return value


def parse_id(text: str) -> int:
    """A user or group id: a whole number from 0 to 4294967294 (2^32 - 1 means "none" to the kernel)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if not 0 <= value < (1 << 32) - 1:
        raise ValueError(f"must be from 0 to {(1 << 32) - 2}, got {value}")
    return value


class ConfigError(MmfsError):
    """A setting that cannot work; the message names the option and what it takes."""


def parse_purposes(text: str) -> tuple[str, ...]:
    """``"voice_clone,retrieval"`` -> the purposes, refusing one the platform does not know (a typo would
    otherwise just show nothing)."""
    purposes = tuple(p.strip() for p in text.split(",") if p.strip())
    for purpose in purposes:
        if purpose not in PURPOSES:
            close = difflib.get_close_matches(purpose, PURPOSES, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"--purposes: unknown purpose {purpose!r} ({hint}known: {', '.join(PURPOSES)})")
    if not purposes:
        raise ConfigError(f"--purposes: no purpose given (known: {', '.join(PURPOSES)})")
    return purposes


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
    # A CA bundle (PEM) to verify the API and download hosts with, instead of the system's (as curl --cacert).
    ca_bundle: Path | None = None
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
    # Prefetch: parallel block downloads and the memory they may hold in flight. ``prefetch_workers`` is
    # --max-streams: downloads start at 8 at once and double while that makes them faster, up to it.
    prefetch_workers: int = 16
    prefetch_memory: int = 64 << 20
    # Free space kept on the cache's disk for spools: a write that would eat into it evicts cached blocks
    # first (rclone's --vfs-cache-min-free-space). 1 GiB: room for a couple of large uploads in flight.
    min_free_space: int = 1 << 30
    # Total time one operation (a read, an upload, a listing) may spend retrying before it fails with EIO.
    retry_deadline: float = 60.0
    # A Redis URL (``redis://``, ``rediss://``) shared by every mount of this account: listings, known files,
    # blocks and the API budget become the fleet's (doc/FLEET.md). None: this mount is on its own.
    shared: str | None = field(default=None, repr=False)  # the URL may hold a password
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    # Bits cleared from every mode the mount shows (as ``umask`` does for new files); None keeps the modes.
    umask: int | None = None
    # Let users other than the mounting one in (needs ``user_allow_other`` in /etc/fuse.conf unless root).
    allow_other: bool = False
    # ``/.by-id`` lists nothing by default, so du, find and cp -r do not count every file twice.
    list_by_id: bool = False

    # Mount over a folder that holds files (hiding them while mounted), as rclone's --allow-non-empty.
    allow_non_empty: bool = False
    # ``[HOST:]PORT`` to serve the counters on in Prometheus' text format (loopback unless a host is given).
    metrics_addr: str | None = None
    # Bytes per second to and from the platform (None: no limit), each a budget shared by every transfer.
    upload_limit: int | None = None
    download_limit: int | None = None
    # Seconds a cached block is kept after it was fetched (rclone's --vfs-cache-max-age); None: until the
    # cache needs the room. Pinned files never expire.
    cache_max_age: float | None = None

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the option, for any setting a mount cannot run with."""
        try:
            parse_base_url(self.base_url)
        except ValueError as exc:
            raise ConfigError(f"--base-url: {exc}") from None
        try:
            parse_max_streams(self.prefetch_workers)
            parse_chunk_size(self.block_size)
        except ValueError as exc:
            raise ConfigError(f"--max-streams/--chunk-size: {exc}") from None
        # One block being stored while the cache holds the rest: below two blocks nothing would stay cached.
        minimum = 2 * self.block_size
        if self.cache_size < minimum:
            raise ConfigError(f"--cache-size must be at least {minimum >> 20}M (two blocks); got {self.cache_size}")
        if not self.dir_cache_time >= 0:  # also refuses NaN
            raise ConfigError(f"--dir-cache-time must be 0 or more seconds; got {self.dir_cache_time}")
        if not self.retry_deadline > 0:
            raise ConfigError(f"--retry-deadline must be more than 0 seconds; got {self.retry_deadline}")
        parse_purposes(",".join(self.purposes))
        # Checked here, before the platform is asked anything: otherwise a typo surfaces as a TLS traceback
        # (or, over http, not at all), and a bad --shared only after a listing.
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise ConfigError(f"--ca-bundle {self.ca_bundle}: no such file (give a PEM file of CA certificates)")
        if self.shared:
            from mmfs.fleet.link import parse_shared_url

            parse_shared_url(self.shared)

    @property
    def read_deadline(self) -> float:
        """``retry_deadline`` under its former name, for code written before it bounded more than reads."""
        return self.retry_deadline

    @read_deadline.setter
    def read_deadline(self, value: float) -> None:
        self.retry_deadline = value

    def account_tag(self) -> str:
        """A short, one-way name for (host, key): separates two accounts' caches without storing the key."""
        digest = hashlib.sha256(f"{self.base_url}\0{self.api_key}".encode()).hexdigest()
        return digest[:16]

    @property
    def blocks_dir(self) -> Path:
        return self.cache_dir / self.account_tag() / "blocks"

    @property
    def pinned_dir(self) -> Path:
        return self.cache_dir / self.account_tag() / "pinned"

    @property
    def spool_dir(self) -> Path:
        return self.cache_dir / self.account_tag() / "spool"

    @property
    def failed_uploads_dir(self) -> Path:
        return self.cache_dir / self.account_tag() / "failed-uploads"

    @property
    def known_files_path(self) -> Path:
        return self.state_dir / self.account_tag() / "known-files.json"
