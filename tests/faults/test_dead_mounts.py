"""A mount whose process and auto-unmount helper both died (an OOM or cgroup kill takes the whole group):
the folder answers ENOTCONN until the next ``mmfs mount`` on it clears the dead mount and mounts again."""

from __future__ import annotations

import errno
import os
import signal

import pytest
from mounting import require_fuse, wait_for

from mmfs.runtime.mount import is_mount_point

pytestmark = pytest.mark.fuse


def unmount_helpers(mountpoint) -> list[int]:
    """fusermount3 processes whose argv names ``mountpoint`` (the auto_unmount helper)."""
    target = os.fsencode(os.path.realpath(mountpoint))
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"fusermount3") and target in argv:
            found.append(int(pid))
    return found


def test_mount_and_helper_both_killed_is_cleared_by_the_next_mount(emulator, mount_of):
    require_fuse()
    emulator.seed("retrieval", "r.txt", b"still here")
    m = mount_of(emulator).start()
    try:
        helpers = unmount_helpers(m.path)
        assert helpers, "no auto_unmount helper found"
        for pid in helpers:
            os.kill(pid, signal.SIGKILL)
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(timeout=10)
        wait_for(lambda: not unmount_helpers(m.path), 10, "the helper to die")
        with pytest.raises(OSError) as dead:
            os.listdir(m.path)
        assert dead.value.errno == errno.ENOTCONN  # the fault: a dead mount nobody will clear
        assert is_mount_point(m.path)
        m.proc = None
        m.start()  # a plain `mmfs mount` on the same folder
        assert (m.path / "retrieval" / "r.txt").read_bytes() == b"still here"
    finally:
        m.stop()
    assert not is_mount_point(m.path)
