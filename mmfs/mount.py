"""Assemble a mount from a ``MountConfig`` and run it: the one place that knows every layer.

``mount(config)`` checks the key with one API call (a refused key fails here, before anything is
mounted), clears a stale mount left on the mount point by a killed process, and runs FUSE in this
process, multithreaded, until it is unmounted (``mmfs unmount``, ``fusermount3 -u``, Ctrl-C or SIGTERM:
libfuse turns those signals into a clean unmount).
"""

from __future__ import annotations

import ctypes.util
import errno
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.api.retry import RetryPolicy
from mmfs.blocks.pinned import PinningStore
from mmfs.blocks.reader import BlockReader
from mmfs.blocks.source import RemoteSource
from mmfs.blocks.store import DiskBlockStore
from mmfs.config import UPLOAD_PURPOSES, MountConfig
from mmfs.control import ControlServer, socket_path
from mmfs.errors import MmfsError, redact_url
from mmfs.fs import FileSystem
from mmfs.known import KnownFiles
from mmfs.namespace import Namespace
from mmfs.notify import notify
from mmfs.private_dir import make_private_dir
from mmfs.service import MountService
from mmfs.stats import CountingSource, CountingStore, LastErrorHandler, ObservedClient, Stats

if TYPE_CHECKING:
    from mmfs.fleet import Fleet

__all__ = [
    "MountError",
    "build_filesystem",
    "check_libfuse",
    "check_mount_point",
    "clear_stale_mount",
    "is_live_mount",
    "is_mount_point",
    "mount",
    "prepare_folders",
    "tune_this_process",
    "unmount",
]

log = logging.getLogger("mmfs.mount")

_FUSE_MAIN_LOOP_ENDED_BY_SIGNAL = 8
# How long a dead mount's own auto-unmount helper gets before we clear the mount ourselves.
_STALE_GRACE = 3.0
# What a FUSE mount whose process died answers (ECONNABORTED once its connection was aborted).
_DEAD_MOUNT_ERRNOS = frozenset({errno.ENOTCONN, errno.ECONNABORTED})
_GIL_SWITCH_INTERVAL = float(os.environ.get("MMFS_SWITCH_INTERVAL", "0.0005"))


class MountError(MmfsError):
    """The mount could not start; the message says why in words a user can act on."""


def _fusermount() -> str:
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"


def _mount_entry(path: Path) -> tuple[str, str] | None:
    """(fstype, source) of the topmost mount on ``path``, from the kernel's table; None if nothing is mounted
    there. ``os.path.ismount`` stats the folder, which on a dead FUSE mount answers from cached attributes
    or fails, depending on timing."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            # Field 5 is the mount point, with space, tab, newline and backslash as octal escapes; the
            # filesystem type and source follow the "-" that ends the optional fields.
            if len(fields) > 4 and _unescape(fields[4]) == target and "-" in fields[5:]:
                dash = fields.index("-", 5)
                found = (fields[dash + 1], _unescape(fields[dash + 2]) if len(fields) > dash + 2 else "")
    return found


def is_mount_point(path: Path) -> bool:
    """Whether something is mounted on ``path``."""
    try:
        return _mount_entry(path) is not None
    except OSError:
        return os.path.ismount(path)


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
        if exc.errno not in _DEAD_MOUNT_ERRNOS:
            raise MountError(f"cannot use mount point {mountpoint}: {exc.strerror}") from None
        # A mount made with auto_unmount is taken down by its fusermount3 helper within moments of its
        # process dying. Let a live helper finish first: unmounting it ourselves and mounting again races
        # the helper, which would then detach the new mount instead of the dead one. A dead helper (the
        # whole process group was killed) will never do it: clear at once.
        if _unmount_helpers(mountpoint) and _wait_unmounted(mountpoint, _STALE_GRACE):
            _wait_for_helpers(mountpoint, _STALE_GRACE)
            return
        log.info("clearing a dead mount on %s", mountpoint)
        subprocess.run([_fusermount(), "-u", "-z", str(mountpoint)], check=False, capture_output=True)
        if not _wait_unmounted(mountpoint, _STALE_GRACE):
            hint = f"try: fusermount3 -u -z {mountpoint}"
            raise MountError(f"cannot clear the dead mount on {mountpoint}; {hint}") from None
        _wait_for_helpers(mountpoint, _STALE_GRACE)
        return
    raise MountError(f"{mountpoint} is already a mount point (unmount it first: mmfs unmount {mountpoint})")


def check_mount_point(mountpoint: Path, *, allow_non_empty: bool = False) -> None:
    """Refuse a mount point that is missing, not a folder, already mounted, or (unless ``allow_non_empty``)
    not empty: mounting would hide its files. A dead mount passes: ``mount`` clears it."""
    if is_mount_point(mountpoint):
        try:
            os.listdir(mountpoint)
        except OSError as exc:
            if exc.errno in _DEAD_MOUNT_ERRNOS:
                return
            raise MountError(f"cannot use mount point {mountpoint}: {exc.strerror}") from None
        raise MountError(f"{mountpoint} is already a mount point (unmount it first: mmfs unmount {mountpoint})")
    try:
        is_dir = stat.S_ISDIR(os.stat(mountpoint).st_mode)
        empty = not is_dir or not os.listdir(mountpoint)
    except FileNotFoundError:
        raise MountError(f"mount point {mountpoint} does not exist (create it: mkdir -p {mountpoint})") from None
    except OSError as exc:
        raise MountError(f"cannot use mount point {mountpoint}: {exc.strerror}") from None
    if not is_dir:
        raise MountError(f"mount point {mountpoint} is not a folder (mount on an empty folder)")
    if not (empty or allow_non_empty):
        raise MountError(f"mount point {mountpoint} is not empty: mounting would hide its files "
                         "(use an empty folder, or --allow-non-empty)")


def check_libfuse() -> None:
    """Fail before anything else when libfuse 3 is missing, found the way mfusepy will look for it."""
    fix = "install fuse3 (Debian: apt install fuse3)"
    path = os.environ.get("FUSE_LIBRARY_PATH")
    if path:
        if not os.path.exists(path):
            raise MountError(f"FUSE_LIBRARY_PATH={path} does not exist: unset it, or {fix}")
        return
    name = os.environ.get("FUSE_LIBRARY_NAME", "fuse3")
    if not ctypes.util.find_library(name):
        raise MountError(f"libfuse3 is missing (no lib{name}.so): {fix}")
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        raise MountError(f"fusermount3 is missing: {fix}")


def unmount(mountpoint: Path, *, lazy: bool = False) -> None:
    """Unmount an mmfs mount; anything else mounted there is refused, not unmounted."""
    entry = _mount_entry(mountpoint)
    if entry is None:
        raise MountError(f"{mountpoint} is not mounted")
    if entry[0] != "fuse.mmfs":
        raise MountError(f"{mountpoint} is not an mmfs mount (it is {entry[0]}): not unmounting it")
    args = [_fusermount(), "-u", *(["-z"] if lazy else []), str(mountpoint)]
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise MountError(f"unmounting {mountpoint} failed: {done.stderr.strip() or done.returncode}")


def prepare_folders(config: MountConfig) -> None:
    """Create the cache and state folders, owner-only; refuse, naming the option, one that cannot be written
    (a read-only filesystem, a file in the way, no permission)."""
    for folder, option in ((config.cache_dir, "--cache-dir"), (config.state_dir, "--state-dir")):
        try:
            make_private_dir(folder)
            if folder is config.cache_dir:
                make_private_dir(folder / config.account_tag())
            if not os.access(folder, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except OSError as exc:
            raise MountError(f"cannot use {folder} for {option}: {exc.strerror} "
                             f"(choose a writable folder with {option})") from None


def build_filesystem(config: MountConfig, client: ApiClient | None = None) -> FileSystem:
    """Every layer, wired: API client -> namespace + block cache -> filesystem core."""
    return _assemble(config, client)[0]


def _assemble(config: MountConfig, client: ApiClient | None = None) -> tuple[FileSystem, PinningStore, Stats]:
    """The filesystem, its two-tier block store (for pins and cache info) and the counters status reads."""
    retry = RetryPolicy(deadline=config.read_deadline)
    client = client or ApiClient(config.base_url, config.api_key, op_params=config.op_params, retry=retry,
                                 ca_bundle=config.ca_bundle)
    ca_bundle = str(config.ca_bundle) if config.ca_bundle else None
    downloader = Downloader(retry=retry, pool_size=config.prefetch_workers + 8,
                            content_auth=client.content_auth(), ca_bundle=ca_bundle)
    prepare_folders(config)
    stats = Stats()
    store = PinningStore(DiskBlockStore(config.blocks_dir, config.cache_size), config.pinned_dir)
    fleet = _join_fleet(config, client)
    source = RemoteSource(client, downloader)
    if fleet is not None:
        source = fleet.wrap_source(source, config.block_size)  # type: ignore[assignment]  # Redis first
    window = max(1, config.prefetch_memory // config.block_size)
    reader = BlockReader(
        CountingStore(store, stats),
        CountingSource(source, stats),
        block_size=config.block_size,
        # Every block fetched ahead must still be in memory when the reader reaches it, or it is read back
        # from disk: the whole window, plus the block being read and the one before it.
        memory_blocks=window + 2,
        prefetch_workers=config.prefetch_workers,
        prefetch_memory=config.prefetch_memory,
        deadline=config.read_deadline,
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
    fs = FileSystem(
        namespace,
        reader,
        source,
        uid=config.uid,
        gid=config.gid,
        # The same calls, counted and logged; a delete's size comes from the listing it was found in.
        client=ObservedClient(client, stats, lambda fid: namespace.record_by_id(fid).bytes),  # type: ignore[arg-type]
        read_only=config.read_only,
        upload_purposes=upload_purposes,
        spool_dir=config.spool_dir,
        failed_dir=config.failed_uploads_dir,
        max_prefetch_blocks=window,
        min_free_space=config.min_free_space,
        free_cache=store.free_bytes,
    )
    fs.list_by_id = config.list_by_id
    return fs, store, stats


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
    config.validate()
    check_libfuse()
    check_mount_point(mountpoint, allow_non_empty=config.allow_non_empty)
    clear_stale_mount(mountpoint)
    check_mount_point(mountpoint, allow_non_empty=config.allow_non_empty)  # what the dead mount hid
    prepare_folders(config)
    client = ApiClient(config.base_url, config.api_key, op_params=config.op_params,
                       retry=RetryPolicy(deadline=config.read_deadline), ca_bundle=config.ca_bundle)
    client.check_key()  # AuthError propagates: the caller says the key was refused
    fs, store, stats = _assemble(config, client)
    last_error = LastErrorHandler(stats)
    logging.getLogger("mmfs").addHandler(last_error)
    # Spools a dead mount left: uploaded or kept, in the background so the mount comes up at once.
    threading.Thread(target=fs.recover, name="mmfs-recover", daemon=True).start()

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
    if config.allow_other:
        options["allow_other"] = True
    operations = MmfsOperations(fs, umask=config.umask,
                                control_socket=str(socket_path(config.state_dir, mountpoint)))
    service = MountService(config, fs, store, stats, operations.invalidate)
    ready = _Ready(config, service, operations.initialized)
    log.info("mounting %s on %s", redact_url(config.base_url), mountpoint)
    try:
        ready.start()
        FUSE(operations, str(mountpoint), raw_fi=True, **options)
    except RuntimeError as exc:
        # libfuse 3's fuse_main answers 8 when its loop was ended by SIGINT/SIGTERM/SIGHUP: the user's
        # way to stop a foreground mount, which libfuse has already unmounted. Anything else failed.
        if exc.args != (_FUSE_MAIN_LOOP_ENDED_BY_SIGNAL,):
            raise MountError(f"libfuse failed with code {exc.args[0] if exc.args else exc}") from None
    finally:
        ready.stop()
        logging.getLogger("mmfs").removeHandler(last_error)
        client.close()
    log.info("unmounted %s", mountpoint)


def tune_this_process() -> None:
    """Process-wide settings a mount process wants; the CLI calls this, a library caller's process is left
    alone (``mmfs.mount()`` runs the mount in a child process)."""
    # Everything this process writes (cache blocks, spools, state) is the user's alone, down to the
    # folders diskcache creates inside the cache.
    os.umask(0o077)
    # FUSE callbacks wait for the GIL behind download threads; Python's default 5 ms switch interval
    # made each 128 KiB read wait up to that long. 0.5 ms keeps readers moving at a small CPU cost.
    sys.setswitchinterval(_GIL_SWITCH_INTERVAL)


class _Ready:
    """Once the mount answers: open the control channel and tell systemd (``Type=notify``) we are ready."""

    def __init__(self, config: MountConfig, service: MountService, initialized: threading.Event) -> None:
        self._config = config
        self._service = service
        self._initialized = initialized
        self._server: ControlServer | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mmfs-ready", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # "Answers" = the kernel's INIT handshake is done (libfuse called init; requests are served from
        # now on) and the mount is in the kernel's table. Never by touching the mount from this process: a
        # thread of a FUSE server waiting on its own mount cannot be killed, and a SIGKILL at that moment
        # leaves an unkillable process and a hung mount.
        mountpoint = Path(self._config.mountpoint)
        while not self._stopped.is_set() and not (self._initialized.is_set() and is_mount_point(mountpoint)):
            self._stopped.wait(0.02)
        if self._stopped.is_set():
            return
        path = socket_path(self._config.state_dir, mountpoint)
        try:
            self._server = ControlServer(path, self._service.handlers()).start()
        except OSError as exc:
            log.warning("no control channel (mmfs status will not see this mount): %s", exc)
        notify(f"READY=1\nSTATUS=mounted on {mountpoint}")
        log.info("mounted on %s; control channel %s", mountpoint, path)

    def stop(self) -> None:
        self._stopped.set()
        notify("STOPPING=1")
        if self._server is not None:
            self._server.close()
