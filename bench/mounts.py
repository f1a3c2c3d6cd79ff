"""FUSE mounts and local servers as child processes, always cleaned up, with every wait bounded.

``FuseProcess`` starts a mount command in the foreground, waits (with a deadline) until the mount point is
in the mount table, and on ``stop`` unmounts, waits, kills if it must, and lazily unmounts after a kill (a
killed FUSE process leaves the mount point answering ENOTCONN until ``fusermount3 -u -z``). ``watchdog``
kills the mount if a measurement overruns, which turns a hung read into an error instead of a hung run.
``ServerProcess`` runs a local server that prints its URL as the last word of its first line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.cpu import tree_cpu_seconds

__all__ = [
    "FuseProcess",
    "MountFailed",
    "ServerProcess",
    "clear_stale_mount",
    "drop_page_cache",
    "evict_files",
    "is_mounted",
    "read_through",
]

MOUNT_DEADLINE = 60.0
UNMOUNT_DEADLINE = 15.0


class MountFailed(RuntimeError):
    pass


def _mount_points() -> set[str]:
    points = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                points.add(fields[4].encode().decode("unicode_escape"))  # octal escapes such as \040
    return points


def is_mounted(path: Path) -> bool:
    return str(Path(path).resolve()) in _mount_points()


def _fusermount(*args: str) -> None:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["fusermount3", *args], capture_output=True, timeout=UNMOUNT_DEADLINE, check=False)


def clear_stale_mount(path: Path) -> None:
    """Lazily unmount whatever is still mounted at ``path`` (a run that died left it behind)."""
    if is_mounted(path):
        _fusermount("-u", "-z", str(Path(path).resolve()))


def drop_page_cache() -> bool:
    """Write back dirty pages and drop the page cache (root only); False when the kernel refused."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def evict_files(paths: Sequence[Path]) -> None:
    """Ask the kernel to forget the cached pages of these files (works without root, on local files)."""
    for path in paths:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_through(paths: Sequence[Path]) -> None:
    """Read files once so they sit in the page cache (an origin's data must not make a cold run disk-bound)."""
    buf = bytearray(1 << 20)
    for path in paths:
        with contextlib.suppress(OSError), open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def _status_kib(pid: int, field: str) -> int | None:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class FuseProcess:
    """One foreground FUSE mount in a child process."""

    def __init__(self, name: str, argv: Sequence[str], mountpoint: Path, log_path: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.mountpoint = Path(mountpoint).resolve()
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False

    def start(self, deadline: float = MOUNT_DEADLINE) -> FuseProcess:
        clear_stale_mount(self.mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, cwd=self.cwd, start_new_session=True)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if is_mounted(self.mountpoint):
                return self
            if self.proc.poll() is not None:
                raise MountFailed(f"{self.name} exited with {self.proc.returncode} before mounting: "
                                  f"{self.log_tail()}")
            time.sleep(0.05)
        self.stop()
        raise MountFailed(f"{self.name} did not mount within {deadline:.0f} s: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def peak_rss_kib(self) -> int | None:
        """Peak resident memory (VmHWM) of the mount process, None once it has exited."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return _status_kib(self.pid, "VmHWM")

    def cpu_seconds(self) -> float | None:
        """CPU used so far by the mount process and the helpers it started; None once it has exited."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return tree_cpu_seconds(self.pid)

    def settled_cpu_seconds(self, limit: float = 5.0) -> float | None:
        """``cpu_seconds`` once the tool has stopped working in the background (cache writes after the last
        read are part of the read's bill): no CPU for 0.1 s, or ``limit`` seconds at most."""
        last = self.cpu_seconds()
        end = time.monotonic() + limit
        while last is not None and time.monotonic() < end:
            time.sleep(0.1)
            now = self.cpu_seconds()
            if now is None or now == last:
                return now if now is not None else last
            last = now
        return last

    def log_tail(self, limit: int = 600) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " ".join(text[-limit:].split())

    def log_has_traceback(self) -> bool:
        try:
            return "Traceback (most recent call last)" in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Unmount; kill if the process does not leave; lazily unmount after a kill. Never raises."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _fusermount("-u", str(self.mountpoint))
            try:
                self.proc.wait(timeout=UNMOUNT_DEADLINE)
            except subprocess.TimeoutExpired:
                self.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=UNMOUNT_DEADLINE)
        # Whatever is left in its process group (auto_unmount's fusermount3 watcher) goes with it.
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        clear_stale_mount(self.mountpoint)

    @contextlib.contextmanager
    def watchdog(self, seconds: float) -> Iterator[None]:
        """Kill the mount if the block takes longer than ``seconds``; the block then fails with an OSError."""
        timer = threading.Timer(seconds, self.kill)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
        if self.killed:
            raise TimeoutError(f"{self.name}: gave up after {seconds:.0f} s (mount killed)")

    def __enter__(self) -> FuseProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess:
    """A local server in a child process; ``url`` is the last word of the first line it prints."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, deadline: float = 600.0) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.deadline = deadline
        self.proc: subprocess.Popen[bytes] | None = None
        self.first_line = ""

    @property
    def url(self) -> str:
        return self.first_line.split()[-1]

    def cpu_seconds(self) -> float | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        return tree_cpu_seconds(self.proc.pid)

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 -- the child writes to it for its whole life
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
        log.close()
        assert self.proc.stdout is not None
        # The first line may take long (an emulator seeding a gibibyte): read it in a thread, bounded.
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.deadline)
        if not got or not got[0].strip():
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {self._log_tail()}")
        self.first_line = got[0].decode(errors="replace").strip()
        # Keep draining stdout so the child never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for line in self.proc.stdout:
                with open(self.log_path, "ab") as log:
                    log.write(line)

    def _log_tail(self) -> str:
        try:
            return " ".join(self.log_path.read_text(errors="replace")[-600:].split())
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
