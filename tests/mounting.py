"""Real mounts for tests: an mmfs process on a temporary folder, and the checks every mount test wants.

``Mounted`` starts ``python -m mmfs mount`` as a subprocess (as a user would), waits for the mount with a
deadline, and on exit unmounts, kills what does not exit, clears a stale mount, and fails the test if the
mount's log holds a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmfs.runtime.mount import is_live_mount, is_mount_point

FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"


def fuse_available() -> str | None:
    """None when real mounts can run here, else why not."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if not shutil.which("fusermount3") and not shutil.which("fusermount"):
        return "fusermount3 is not installed"
    return None


def require_fuse() -> None:
    why = fuse_available()
    if why is None:
        return
    if os.environ.get("MMFS_REQUIRE_FUSE") == "1":
        pytest.fail(f"FUSE is required (MMFS_REQUIRE_FUSE=1) but {why}")
    pytest.skip(why)


def abort_fuse_connection(path: Path) -> None:
    """End the FUSE connection mounted on ``path`` through fusectl, as ``umount -f`` cannot for FUSE."""
    target = os.path.realpath(os.path.dirname(path)) + "/" + os.path.basename(path)  # no stat of the mount
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == target:
            minor = fields[2].split(":")[1]
            connections = Path("/sys/fs/fuse/connections")
            if not any(connections.iterdir()):
                subprocess.run(["mount", "-t", "fusectl", "none", str(connections)], check=False, capture_output=True)
            with contextlib.suppress(OSError):
                (connections / minor / "abort").write_text("1")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Mounted:
    """A live mmfs mount. Use as a context manager; ``path`` is the mount point."""

    def __init__(self, base_url: str, api_key: str, root: Path, *extra: str, cache_dir: Path | None = None,
                 state_dir: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.root = root
        self.path = root / "mnt"
        self.cache_dir = cache_dir or root / "cache"
        self.state_dir = state_dir or root / "state"
        self.log_path = root / "mount.log"
        self.extra = list(extra)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "mmfs", "mount", str(self.path), "--base-url", self.base_url,
                "--cache-dir", str(self.cache_dir), "--state-dir", str(self.state_dir), "-v",
                "--log-file", str(self.log_path), *self.extra]

    def start(self) -> Mounted:
        require_fuse()
        if not is_mount_point(self.path):  # a dead mount left here answers ENOTCONN to mkdir's stat
            self.path.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MINIMAX_API_KEY=self.api_key, **self.env)
        self.proc = subprocess.Popen(self.argv(), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not is_live_mount(self.path):
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise AssertionError(f"mount exited with {self.proc.returncode}: {out}\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"mount did not come up: {self.log()}")
            time.sleep(0.02)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        subprocess.run([FUSERMOUNT, "-u", str(self.path)], capture_output=True, check=False)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Unkillable: one of its threads waits on its own mount. Abort the connection so the machine is
                # not left with a mount that hangs whoever touches it, then fail loudly.
                abort_fuse_connection(self.path)
                self.proc.wait(timeout=10)
                raise AssertionError(f"the mount process survived SIGKILL (it waited on its own mount):\n"
                                     f"{self.log()}") from None
        if is_mount_point(self.path):
            subprocess.run([FUSERMOUNT, "-u", "-z", str(self.path)], capture_output=True, check=False)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self) -> Mounted:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        log = self.log()
        assert "Traceback" not in log, f"the mount logged a traceback:\n{log}"
