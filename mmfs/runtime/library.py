"""``mmfs.mount()``: a mount for Python programs, run in a child process so the caller's process keeps its
umask, signal handlers and GIL settings; see ``mmfs/__init__.py`` for an example."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mmfs.errors import MmfsError

__all__ = ["Mount", "MountFailed", "mount"]


class MountFailed(MmfsError):
    """The mount did not come up; the message carries the end of its log."""


def _flags(options: dict[str, Any]) -> list[str]:
    """``cache_size="20G", read_only=True, op_param=["a:b=c"]`` -> the matching ``mmfs mount`` flags."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple) and name == "purposes":
            argv += [flag, ",".join(value)]
        elif isinstance(value, list | tuple):
            for item in value:
                argv += [flag, str(item)]
        elif name == "umask" and isinstance(value, int):
            argv += [flag, f"{value:o}"]
        else:
            argv += [flag, str(value)]
    return argv


class Mount:
    """A running mount: ``path``, ``pid``, ``log_file``; ``status()``, ``refresh()``, ``unmount()``."""

    def __init__(self, mountpoint: str | os.PathLike[str], *, api_key: str | None = None, timeout: float = 60.0,
                 **options: Any) -> None:
        self.path = Path(mountpoint).absolute()
        self._api_key = api_key
        self._timeout = timeout
        self._options = options
        given = options.pop("log_file", None)
        self._own_log_folder = not given  # a log file given is in the caller's folder: never made or chmodded
        self.log_file = Path(given or self._default_log())
        self._proc: subprocess.Popen[bytes] | None = None

    def _default_log(self) -> Path:
        from mmfs.runtime.daemon import daemon_log_path
        from mmfs.settings.config import MountConfig

        config = MountConfig(mountpoint=self.path, api_key="")
        if self._options.get("state_dir"):
            config.state_dir = Path(self._options["state_dir"]).absolute()
        return daemon_log_path(config)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Mount:
        from mmfs.private_dir import make_private_dir
        from mmfs.runtime.mount import is_live_mount

        if self._own_log_folder:
            make_private_dir(self.log_file.parent)
        env = dict(os.environ)
        if self._api_key is not None:
            env["MINIMAX_API_KEY"] = self._api_key  # the environment, never argv
        options = dict(self._options)
        if options.get("shared"):
            env["MMFS_SHARED"] = str(options.pop("shared"))  # a Redis URL may hold a password: not argv either
        from mmfs.runtime.daemon import child_command

        argv = child_command("mount", str(self.path), "--foreground", "--log-file", str(self.log_file),
                             *_flags(options))
        self._proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + self._timeout
        while not is_live_mount(self.path):
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode(errors="replace").strip() if code is not None else ""
                self.unmount()
                raise MountFailed(f"mounting {self.path} failed: {err or self._log_tail()}")
            time.sleep(0.02)
        return self

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def status(self) -> dict[str, Any]:
        from mmfs.runtime.control import ask

        return ask(self.path, "status")

    def refresh(self, purpose: str | None = None) -> dict[str, Any]:
        from mmfs.runtime.control import ask

        return ask(self.path, "refresh", purpose=purpose)

    def unmount(self, timeout: float = 30.0) -> None:
        """Unmount and wait for the mount process to end (files open for writing are kept as failed uploads)."""
        from mmfs.runtime.mount import MountError, is_mount_point, unmount

        if self._proc is None:
            return
        if is_mount_point(self.path):
            try:
                unmount(self.path)
            except MountError:
                self._proc.send_signal(signal.SIGTERM)  # libfuse unmounts on SIGTERM
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            if is_mount_point(self.path):
                unmount(self.path, lazy=True)
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def __enter__(self) -> Mount:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.unmount()


def mount(mountpoint: str | os.PathLike[str], *, api_key: str | None = None, timeout: float = 60.0,
          **options: Any) -> Mount:
    """Mount and return once the mount answers. ``options`` are ``mmfs mount``'s long options with ``_``
    for ``-`` (``profile="work"``, ``base_url=...``, ``cache_size="20G"``, ``read_only=True``). The key comes
    from ``api_key``, else as for the command (``api_key_file``, ``MINIMAX_API_KEY``, the profile)."""
    return Mount(mountpoint, api_key=api_key, timeout=timeout, **options).start()
