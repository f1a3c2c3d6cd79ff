"""``mmfs mount --daemon``: the same mount in a detached child, and the wait until it is live or failed.

The child gets the API key in its environment, never in argv; it logs to a private file under the state
folder, and a child that fails is reported by its own last ``mmfs: ...`` line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mmfs
from mmfs.errors import MmfsError
from mmfs.platform import FUSE_MESSAGE_PREFIXES
from mmfs.private_dir import make_private_dir
from mmfs.redact import open_private_log
from mmfs.runtime.mount_point import check_mount_point, is_live_mount
from mmfs.settings.config import MountConfig

__all__ = ["child_command", "daemon_log_path", "start_daemon"]

# How long --daemon waits for the child's mount to go live before giving up on it.
_DAEMON_START_TIMEOUT = 60.0


def child_command(*args: str) -> list[str]:
    """The argv that runs this very mmfs with ``args``, whatever folder the child starts in: ``python -m
    mmfs`` would put the working folder first on the path, and a folder there named ``mmfs`` (a clone's
    parent) would be imported instead. ``-P`` drops that entry; the package's own folder goes first."""
    home = str(Path(mmfs.__file__).resolve().parent.parent)  # the folder that holds the package
    code = f"import sys; sys.path.insert(0, {home!r}); from mmfs.commands.main import main; sys.exit(main())"
    return [sys.executable, "-P", "-c", code, *args]


def start_daemon(config: MountConfig, argv: list[str], log_file: Path, *, own_folder: bool = True) -> int:
    """Run ``mmfs`` with ``argv`` (the same mount, without ``--daemon``) detached, logging to ``log_file``;
    wait until the mount is live or the child failed, and return the exit code the command should have.
    ``own_folder``: the log's folder is mmfs's own (made private); else it is the user's and must exist."""
    # A mount already live there would read as this one's success: refuse it here, as the child would.
    check_mount_point(config.mountpoint, allow_non_empty=config.allow_non_empty)
    if own_folder:
        make_private_dir(log_file.parent)
    child_argv = [*argv, "--foreground", "--log-file", str(log_file)]
    env = dict(os.environ, MINIMAX_API_KEY=config.api_key)  # the environment, never argv
    try:
        with open(open_private_log(log_file), "ab") as sink:
            start = sink.tell()
            child = subprocess.Popen(child_command(*child_argv), env=env,
                                     stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, start_new_session=True)
    except OSError as exc:
        raise MmfsError(f"cannot write the log {log_file}: {exc.strerror} (choose another with --log-file)") from None
    deadline = time.monotonic() + _DAEMON_START_TIMEOUT
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            print(f"{_child_reason(log_file, start)} (exit {code}; log {log_file})", file=sys.stderr)
            return code or 1
        if is_live_mount(config.mountpoint):
            print(f"mmfs: mounted on {config.mountpoint} (pid {child.pid}, log {log_file})")
            return 0
        time.sleep(0.05)
    child.terminate()
    print(f"mmfs: the mount did not come up within {_DAEMON_START_TIMEOUT:.0f} s; see {log_file}",
          file=sys.stderr)
    return 1


def _child_reason(log_file: Path, start: int) -> str:
    """The failed child's own one-line message, from what it wrote to the log since it started, with what
    libfuse (or fusermount3) printed about it: that is where "/dev/fuse: Permission denied" is said."""
    try:
        with open(log_file, "rb") as log:
            log.seek(start)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    reasons = [line for line in lines if line.startswith("mmfs: ")]
    libfuse = [line.strip() for line in lines if line.lstrip().startswith(FUSE_MESSAGE_PREFIXES)]
    if reasons:
        reason = reasons[-1]
    else:  # a child that died before it could say why: its last words (a traceback's last line)
        last = [line.strip() for line in lines if line.strip() and not line.startswith(" ")]
        reason = f"mmfs: the mount failed: {last[-1]}" if last else "mmfs: the mount failed"
    if libfuse and not any(line in reason for line in libfuse):
        reason += f" ({'; '.join(dict.fromkeys(libfuse))})"
    return reason


def daemon_log_path(config: MountConfig) -> Path:
    """``--daemon``'s log: under the state folder, one file per mount point."""
    where = Path(config.mountpoint)
    if where.is_relative_to(Path.home()):
        where = where.relative_to(Path.home())  # ~/minimax -> mount-minimax.log
    slug = "".join(c if c.isalnum() else "-" for c in str(where).strip("/")) or "root"
    return config.state_dir / "log" / f"mount-{slug}.log"
