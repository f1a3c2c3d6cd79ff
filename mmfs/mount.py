"""Assemble a mount from a ``MountConfig`` and run it: the one place that knows every layer.

``mount(config)`` checks the key with one API call (a refused key fails here, before anything is
mounted), clears a stale mount left on the mount point by a killed process, and runs FUSE in this
process, multithreaded, until it is unmounted (``mmfs unmount``, ``fusermount3 -u``, Ctrl-C or SIGTERM:
libfuse turns those signals into a clean unmount).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.api.retry import RetryPolicy
from mmfs.blocks.reader import BlockReader
from mmfs.blocks.source import RemoteSource
from mmfs.blocks.store import DiskBlockStore
from mmfs.config import UPLOAD_PURPOSES, MountConfig
from mmfs.errors import MmfsError, redact_url
from mmfs.fs import FileSystem
from mmfs.known import KnownFiles
from mmfs.namespace import Namespace
from mmfs.private_dir import make_private_dir

if TYPE_CHECKING:
    from mmfs.fleet import Fleet

__all__ = ["MountError", "build_filesystem", "clear_stale_mount", "is_live_mount", "is_mount_point", "mount", "unmount"]

log = logging.getLogger("mmfs.mount")

_FUSE_MAIN_LOOP_ENDED_BY_SIGNAL = 8
# How long a dead mount's own auto-unmount helper gets before we clear the mount ourselves.
_STALE_GRACE = 3.0
_GIL_SWITCH_INTERVAL = float(os.environ.get("MMFS_SWITCH_INTERVAL", "0.0005"))


class MountError(MmfsError):
    """The mount could not start; the message says why in words a user can act on."""


def _fusermount() -> str:
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"


def is_mount_point(path: Path) -> bool:
    """Whether something is mounted on ``path``, from the kernel's table: ``os.path.ismount`` stats the
    folder, which on a dead FUSE mount answers from cached attributes or fails, depending on timing."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as table:
            for line in table:
                fields = line.split()
                # Field 5 is the mount point, with space, tab, newline and backslash as octal escapes.
                if len(fields) > 4 and _unescape(fields[4]) == target:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def is_live_mount(path: Path) -> bool:
    """Mounted and answering: listing the root always reaches the filesystem (nothing cached answers)."""
    if not is_mount_point(path):
        return False
    try:
        os.listdir(path)
    except OSError:
        return False
    return True


def _wait_unmounted(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_mount_point(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _unmount_helpers(mountpoint: Path) -> list[int]:
    """Live fusermount3 auto-unmount helpers watching ``mountpoint`` (a previous mount's)."""
    target = os.fsencode(os.path.realpath(mountpoint))
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"fusermount3") and target in argv and any(b"auto_unmount" in a for a in argv):
            found.append(int(entry.name))
    return found


def _wait_for_helpers(mountpoint: Path, timeout: float) -> None:
    """A previous mount's auto-unmount helper that is still winding down would unmount by path, so it
    could take down the mount we are about to make: let it finish first."""
    deadline = time.monotonic() + timeout
    while _unmount_helpers(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.02)


def clear_stale_mount(mountpoint: Path) -> None:
    """A FUSE mount whose process died answers ENOTCONN ("Transport endpoint is not connected")
    until it is lazily unmounted; do that, so the next mount on the same point just works."""
    if not is_mount_point(mountpoint):
        _wait_for_helpers(mountpoint, _STALE_GRACE)
        return
    try:
        os.listdir(mountpoint)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise MountError(f"cannot use mount point {mountpoint}: {exc.strerror}") from None
        # A mount made with auto_unmount is taken down by its fusermount3 helper within moments of its
        # process dying. Let the helper finish first: unmounting it ourselves and mounting again races
        # the helper, which would then detach the new mount instead of the dead one.
        if _wait_unmounted(mountpoint, _STALE_GRACE):
            _wait_for_helpers(mountpoint, _STALE_GRACE)
            return
        log.info("clearing a stale mount on %s", mountpoint)
        subprocess.run([_fusermount(), "-u", "-z", str(mountpoint)], check=False, capture_output=True)
        if not _wait_unmounted(mountpoint, _STALE_GRACE):
            hint = f"try: fusermount3 -u -z {mountpoint}"
            raise MountError(f"cannot clear the dead mount on {mountpoint}; {hint}") from None
        return
    raise MountError(f"{mountpoint} is already a mount point (unmount it first: mmfs unmount {mountpoint})")


def unmount(mountpoint: Path, *, lazy: bool = False) -> None:
    args = [_fusermount(), "-u", *(["-z"] if lazy else []), str(mountpoint)]
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise MountError(f"unmounting {mountpoint} failed: {done.stderr.strip() or done.returncode}")


def build_filesystem(config: MountConfig, client: ApiClient | None = None) -> FileSystem:
    """Every layer, wired: API client -> namespace + block cache -> filesystem core."""
    retry = RetryPolicy(deadline=config.read_deadline)
    client = client or ApiClient(config.base_url, config.api_key, op_params=config.op_params, retry=retry)
    downloader = Downloader(retry=retry, pool_size=config.prefetch_workers + 8)
    make_private_dir(config.cache_dir)
    make_private_dir(config.cache_dir / config.account_tag())
    make_private_dir(config.state_dir)
    store = DiskBlockStore(config.blocks_dir, config.cache_size)
    fleet = _join_fleet(config, client)
    source = RemoteSource(client, downloader)
    if fleet is not None:
        source = fleet.wrap_source(source)  # type: ignore[assignment]  # the same calls, Redis first
    window = max(1, config.prefetch_memory // config.block_size)
    reader = BlockReader(
        store,
        source,
        block_size=config.block_size,
        # Every block fetched ahead must still be in memory when the reader reaches it, or it is read back
        # from disk: the whole window, plus the block being read and the one before it.
        memory_blocks=window + 2,
        prefetch_workers=config.prefetch_workers,
        prefetch_memory=config.prefetch_memory,
    )
    upload_purposes = frozenset() if config.read_only else UPLOAD_PURPOSES & frozenset(config.purposes)
    known = KnownFiles(config.known_files_path)
    namespace = Namespace(
        client,
        known,
        purposes=config.purposes,
        upload_purposes=upload_purposes,
        dir_cache_time=config.dir_cache_time,
        lister=fleet.lister(client.list_files) if fleet is not None else None,
    )
    if fleet is not None:
        namespace = fleet.wrap_namespace(namespace, known)  # type: ignore[assignment]  # tells the fleet
    return FileSystem(
        namespace,
        reader,
        source,
        uid=config.uid,
        gid=config.gid,
        client=client,
        read_only=config.read_only,
        upload_purposes=upload_purposes,
        spool_dir=config.spool_dir,
        failed_dir=config.failed_uploads_dir,
        max_prefetch_blocks=window,
    )


def _join_fleet(config: MountConfig, client: ApiClient) -> Fleet | None:
    """The shared tier, if asked for: a refused password or TLS fails here; a Redis that is down does not."""
    if not config.shared:
        return None
    try:
        from mmfs.fleet import Fleet
    except ImportError:
        raise MountError("--shared needs the redis package: pip install 'mmfs[fleet]'") from None
    fleet = Fleet(config.shared, config.account_tag(), dir_cache_time=config.dir_cache_time).start()
    if fleet.budget is not None:
        client.gate = fleet.budget
    return fleet


def mount(config: MountConfig) -> None:
    """Mount and serve until unmounted. Raises ``AuthError`` for a refused key, ``MountError`` else."""
    mountpoint = Path(config.mountpoint)
    if not mountpoint.exists() and not os.path.lexists(mountpoint):
        raise MountError(f"mount point {mountpoint} does not exist")
    clear_stale_mount(mountpoint)
    # Everything this process writes (cache blocks, spools, state) is the user's alone, down to the
    # folders diskcache creates inside the cache.
    os.umask(0o077)
    # FUSE callbacks wait for the GIL behind download threads; Python's default 5 ms switch interval
    # made each 128 KiB read wait up to that long. 0.5 ms keeps readers moving at a small CPU cost.
    sys.setswitchinterval(_GIL_SWITCH_INTERVAL)
    client = ApiClient(config.base_url, config.api_key, op_params=config.op_params,
                       retry=RetryPolicy(deadline=config.read_deadline))
    client.check_key()  # AuthError propagates: the caller says the key was refused
    fs = build_filesystem(config, client)

    # libfuse 3 by default (mfusepy would load libfuse 2 first when both are installed); see README.
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    from mfusepy import FUSE  # late: loading libfuse is the last step, after every check passed

    from mmfs.fuse_adapter import MmfsOperations

    options: dict[str, object] = {
        "foreground": True,
        "nothreads": False,
        "fsname": "mmfs",
        "subtype": "mmfs",
        "attr_timeout": config.attr_timeout,
        "entry_timeout": config.entry_timeout,
        "negative_timeout": config.negative_timeout,
        "default_permissions": True,
        # If this process dies, fusermount3 unmounts for it: no mount left answering ENOTCONN.
        "auto_unmount": True,
        # Worker threads for concurrent requests: readers waiting on the network must not queue behind
        # each other (libfuse's own default is 10; a low cap measured 4x slower).
        "max_threads": 16,
    }
    if config.read_only:
        options["ro"] = True
    log.info("mounting %s on %s", redact_url(config.base_url), mountpoint)
    try:
        FUSE(MmfsOperations(fs), str(mountpoint), raw_fi=True, **options)
    except RuntimeError as exc:
        # libfuse 3's fuse_main answers 8 when its loop was ended by SIGINT/SIGTERM/SIGHUP: the user's
        # way to stop a foreground mount, which libfuse has already unmounted. Anything else failed.
        if exc.args != (_FUSE_MAIN_LOOP_ENDED_BY_SIGNAL,):
            raise MountError(f"libfuse failed with code {exc.args[0] if exc.args else exc}") from None
    finally:
        client.close()
    log.info("unmounted %s", mountpoint)
