"""Run a mount from a ``MountConfig`` under FUSE until it is unmounted.

``mount(config)`` checks the key with one API call (a refused key fails here, before anything is
mounted), clears a stale mount left on the mount point by a killed process (``mmfs.runtime.mount_point``), wires
the layers (``mmfs.runtime.assembly``) and runs FUSE in this process, multithreaded, until it is unmounted
(``mmfs unmount``, ``fusermount3 -u``, Ctrl-C or SIGTERM: libfuse turns those signals into a clean unmount).
The mount-point checks and the assembly are re-exported here, where callers have always found them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

from mmfs.errors import redact_url
from mmfs.platform import LIBFUSE_NAME, fuse_options, notify
from mmfs.runtime.assembly import build_filesystem, make_client, open_account, prepare_folders
from mmfs.runtime.control import ControlServer, socket_path
from mmfs.runtime.metrics import serve_metrics
from mmfs.runtime.mount_point import (
    MountError,
    check_libfuse,
    check_mount_point,
    clear_stale_mount,
    is_live_mount,
    is_mount_point,
    unmount,
)
from mmfs.runtime.service import MountService
from mmfs.settings.config import MountConfig
from mmfs.stats import LastErrorHandler
from mmfs.threads import start_thread

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
_GIL_SWITCH_INTERVAL = float(os.environ.get("MMFS_SWITCH_INTERVAL", "0.0005"))


def mount(config: MountConfig) -> None:
    """Mount and serve until unmounted. Raises ``AuthError`` for a refused key, ``MountError`` else."""
    mountpoint = Path(config.mountpoint)
    config.validate()
    check_libfuse()
    clear_stale_mount(mountpoint)  # refuses a live or stuck mount; a dead one is detached
    check_mount_point(mountpoint, allow_non_empty=config.allow_non_empty)  # and what the dead mount hid
    client = make_client(config)
    fs, store, stats = open_account(config, client)  # AuthError propagates: the caller says the key was refused
    last_error = LastErrorHandler(stats)
    logging.getLogger("mmfs").addHandler(last_error)
    # Spools a dead mount left: uploaded or kept, in the background so the mount comes up at once.
    start_thread(fs.recover, name="mmfs-recover")

    # libfuse 3 by default (mfusepy would load libfuse 2 first when both are installed); see README.
    os.environ.setdefault("FUSE_LIBRARY_NAME", LIBFUSE_NAME)
    # late: loading libfuse is the last step, after every check passed
    from mmfs.doors.fuse import MmfsFUSE, MmfsOperations

    options: dict[str, object] = {
        "foreground": True,
        "nothreads": False,
        "fsname": "mmfs",
        "attr_timeout": config.attr_timeout,
        "entry_timeout": config.entry_timeout,
        "negative_timeout": config.negative_timeout,
        # The system's own: permissions checked by the kernel, an unmount if this process dies, and worker
        # threads for concurrent requests: readers waiting on the network must not queue behind each other
        # (libfuse's own default is 10; a low cap measured 4x slower).
        **fuse_options(threads=16),
    }
    if config.read_only:
        options["ro"] = True
    if config.allow_other:
        options["allow_other"] = True
    # Resolved now, while the folder is still a plain one: once mounted, resolving it asks the mount itself.
    resolved = Path(os.path.realpath(mountpoint))
    control = socket_path(config.state_dir, resolved)
    operations = MmfsOperations(fs, umask=config.umask, control_socket=str(control))
    service = MountService(config, fs, store, stats, operations.invalidate)
    metrics = serve_metrics(config, service)
    ready = _Ready(resolved, control, service, operations.initialized)
    log.info("mounting %s on %s", redact_url(config.base_url), mountpoint)
    try:
        ready.start()
        MmfsFUSE(operations, str(mountpoint), raw_fi=True, **options)
    except RuntimeError as exc:
        # libfuse 3's fuse_main answers 8 when its loop was ended by SIGINT/SIGTERM/SIGHUP: the user's
        # way to stop a foreground mount, which libfuse has already unmounted. Anything else failed.
        if exc.args != (_FUSE_MAIN_LOOP_ENDED_BY_SIGNAL,):
            raise MountError(f"libfuse failed with code {exc.args[0] if exc.args else exc}") from None
    finally:
        ready.stop()
        if metrics is not None:
            metrics.close()
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
    """The control channel, opened before libfuse runs so that a mount that answers always answers
    ``mmfs status`` too; and, once the mount answers, systemd's ``READY=1`` (``Type=notify``)."""

    def __init__(self, mountpoint: Path, control: Path, service: MountService, initialized: threading.Event) -> None:
        self._mountpoint = mountpoint
        self._control = control
        self._service = service
        self._initialized = initialized
        self._server: ControlServer | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        try:
            self._server = ControlServer(self._control, self._service.handlers()).start()
        except OSError as exc:
            log.warning("no control channel (mmfs status will not see this mount): %s", exc)
        start_thread(self._run, name="mmfs-ready")

    def _run(self) -> None:
        # "Answers" = the kernel's INIT handshake is done (libfuse called init; requests are served from
        # now on) and the mount is in the kernel's table. Never by touching the mount from this process: a
        # thread of a FUSE server waiting on its own mount cannot be killed, and a SIGKILL at that moment
        # leaves an unkillable process and a hung mount.
        mountpoint = self._mountpoint
        while not self._stopped.is_set() and not (self._initialized.is_set()
                                                  and is_mount_point(mountpoint, resolved=True)):
            self._stopped.wait(0.02)
        if self._stopped.is_set():
            return
        notify(f"READY=1\nSTATUS=mounted on {mountpoint}")
        where = self._server.path if self._server is not None else "none"
        log.info("mounted on %s; control channel %s", mountpoint, where)

    def stop(self) -> None:
        self._stopped.set()
        notify("STOPPING=1")
        if self._server is not None:
            self._server.close()
