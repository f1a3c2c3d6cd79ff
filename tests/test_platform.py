"""The platform module: one surface, chosen by the system, and Linux's answers checked against the real kernel."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import sys
from pathlib import Path

import pytest

import mmfs.platform as platform
import mmfs.platform_linux as linux

# A mountinfo text as the kernel writes it: optional fields (shared:N, master:N) before the "-", octal escapes
# for space, tab, newline and backslash, and two mounts stacked on one folder (the last is the topmost).
MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "35 22 0:31 / /home/u/my\\040drive rw,nosuid shared:12 master:3 - fuse.mmfs mmfs rw,user_id=0\n"
    "36 22 0:32 / /srv/a\\011b\\134c rw - tmpfs tmp\\040fs rw\n"
    "37 36 0:33 / /srv/a\\011b\\134c rw - fuse.mmfs mmfs rw\n"
    "38 22 0:34 / /bare rw -\n"
)


def test_mountinfo_entries_are_unescaped_in_order() -> None:
    entries = platform.parse_mountinfo(MOUNTINFO)
    assert [e.target for e in entries] == ["/", "/home/u/my drive", "/srv/a\tb\\c", "/srv/a\tb\\c", "/bare"]
    assert entries[1] == platform.MountEntry("/home/u/my drive", platform.MMFS_FSTYPE, "mmfs")
    assert entries[2].source == "tmp fs"
    assert entries[3].fstype == "fuse.mmfs"  # stacked on the tmpfs: the later line is the one on top
    assert entries[4] == platform.MountEntry("/bare", "", "")


def test_the_real_mount_table_holds_proc() -> None:
    assert platform.MountEntry("/proc", "proc", "proc") in platform.mount_table()


def test_the_surface_is_the_linux_modules_whole() -> None:
    # mmfs.platform re-exports exactly what a platform module implements: a name added to one but not the
    # other would work here and be missing from the next system's module.
    assert sorted(platform.__all__) == sorted(linux.__all__)
    for name in platform.__all__:
        assert getattr(platform, name) is getattr(linux, name), name


@pytest.mark.parametrize(("system", "module"), [("darwin", "mmfs.platform_macos"), ("win32", "mmfs.platform_windows"),
                                                ("freebsd14", "mmfs.platform_freebsd14")])
def test_another_system_is_told_which_module_it_lacks(monkeypatch, system: str, module: str) -> None:
    monkeypatch.setattr(sys, "platform", system)
    spec = importlib.util.spec_from_file_location("mmfs_platform_elsewhere", Path(platform.__file__))
    assert spec is not None and spec.loader is not None
    with pytest.raises(ModuleNotFoundError) as caught:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert caught.value.name == module
    assert module in str(caught.value) and system in str(caught.value) and "doc/DESIGN.md" in str(caught.value)


def test_read_offset_is_how_far_this_process_read(tmp_path) -> None:
    path = tmp_path / "spool"
    path.write_bytes(b"x" * 10_000)
    assert platform.read_offset(str(path)) == 0  # not open
    with open(path, "rb", buffering=0) as f, open(path, "rb", buffering=0) as g:
        f.read(1234)
        g.read(99)
        assert platform.read_offset(str(path)) == 1234  # the furthest of its descriptors


def test_peer_uid_is_the_other_ends() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert platform.peer_uid(a) == os.getuid()


def test_unmount_is_lazy_only_when_asked(tmp_path) -> None:
    assert "-z" not in platform.unmount_command(tmp_path)
    assert platform.unmount_command(tmp_path, lazy=True)[-2:] == ["-z", str(tmp_path)]
    assert str(tmp_path) in platform.detach_hint(tmp_path)


def test_the_journal_is_stderr_only_when_systemd_says_so(monkeypatch, tmp_path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        st = os.fstat(stream.fileno())
        assert platform.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not platform.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not platform.stderr_is_journal({})


# What only the platform module may say: Linux's files, calls and variables. sd_notify.py is the systemd protocol
# the Linux module re-exports; the emulator imports nothing from mmfs and runs anywhere.
_LINUX_ONLY = re.compile(r'"/proc|/proc/self|os\.getxattr|SO_PEERCRED|"fusermount|NOTIFY_SOCKET|JOURNAL_STREAM')
_ALLOWED = {"platform_linux.py", "sd_notify.py"}


def test_nothing_outside_the_platform_module_speaks_linux() -> None:
    package = Path(platform.__file__).parent
    found = [f"{path.relative_to(package)}:{number}: {line.strip()}"
             for path in sorted(package.rglob("*.py"))
             if path.name not in _ALLOWED and "emulator" not in path.relative_to(package).parts
             for number, line in enumerate(path.read_text().splitlines(), 1) if _LINUX_ONLY.search(line)]
    assert found == []
