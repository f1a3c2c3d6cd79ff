"""Listing a large folder through a real mount: `ls -l` costs no per-file work the kernel or ls could skip.

`ls -l` asks two extended attributes of every file it lists (``security.selinux`` for the SELinux marker,
``system.posix_acl_access`` for the ACL ``+``). The kernel caches neither answer for a FUSE mount, so each
would reach the mount's Python; ls itself stops asking a device that answered ENOTSUP once. mmfs owns only
names in the ``user.`` namespace, and answers every other namespace ENOTSUP without looking the file up.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

FILES = 200


def _seed_folder(emulator, count: int) -> dict[str, bytes]:
    contents = {f"f{i:04d}.txt": b"x" * (i % 7 + 1) for i in range(count)}
    for name, data in contents.items():
        emulator.seed("retrieval", name, data)
    return contents


def test_ls_l_asks_foreign_xattr_namespaces_once_and_user_ones_still_answer(emulator, mount_of, tmp_path: Path):
    contents = _seed_folder(emulator, FILES)
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        trace = tmp_path / "ls.trace"
        done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=getxattr,lgetxattr", "-o", str(trace),
                               "ls", "-l", "--color=never", str(folder)], capture_output=True, text=True,
                              env=dict(os.environ, LC_ALL="C"), timeout=120, check=True)
        listed = {line.split()[-1]: int(line.split()[4]) for line in done.stdout.splitlines()[1:]}
        assert listed == {name: len(data) for name, data in contents.items()}
        calls = trace.read_text()
        # Once each (ls then skips the device), not once per file.
        assert calls.count("security.selinux") <= 1 and calls.count("system.posix_acl_access") <= 1, calls[:2000]
        assert "ENOTSUP" in calls or "EOPNOTSUPP" in calls

        path = folder / "f0003.txt"
        for name in ("security.selinux", "system.posix_acl_access", "trusted.anything", "security.capability"):
            for where in (path, folder, m.path):
                with pytest.raises(OSError) as refused:
                    os.getxattr(where, name)
                assert refused.value.errno == errno.ENOTSUP, (where, name)
        # The namespace mmfs owns is answered as before: its names, and ENODATA for any other user name.
        assert os.getxattr(path, "user.minimax.purpose") == b"retrieval"
        assert os.getxattr(m.path, "user.mmfs.control")
        with pytest.raises(OSError) as missing:
            os.getxattr(path, "user.something.else")
        assert missing.value.errno == errno.ENODATA
        with pytest.raises(OSError) as gone:
            os.getxattr(folder / "no-such-file.txt", "security.selinux")
        assert gone.value.errno == errno.ENOENT  # a missing file is missing, whatever the attribute


def _ls_l(folder: Path) -> dict[str, tuple[str, int, str]]:
    """name -> (mode string, size, mtime as ls prints it), from a real ``ls -l``."""
    done = subprocess.run(["ls", "-l", "--color=never", "--time-style=+%s", str(folder)], capture_output=True,
                          text=True, env=dict(os.environ, LC_ALL="C"), timeout=120, check=True)
    rows = [line.split(maxsplit=6) for line in done.stdout.splitlines()[1:]]
    return {row[6]: (row[0], int(row[4]), row[5]) for row in rows}


def _stat_view(folder: Path) -> dict[str, tuple[str, int, str]]:
    import stat as stat_mod

    out = {}
    for name in os.listdir(folder):
        st = os.stat(folder / name)
        out[name] = (stat_mod.filemode(st.st_mode), st.st_size, str(int(st.st_mtime)))
    return out


def test_long_listings_are_whole_and_their_attributes_are_the_files(emulator, mount_of):
    """A listing long enough to take many kernel requests (each resuming at an offset) names every file once,
    with the attributes ``stat`` gives, cold and warm, and follows changes made through the mount."""
    count = 2500  # about a dozen READDIRPLUS answers
    contents = _seed_folder(emulator, count)
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        cold = _ls_l(folder)
        assert {name: size for name, (_, size, _) in cold.items()} == {n: len(d) for n, d in contents.items()}
        assert all(mode == "-rw-r--r--" or mode.startswith("-rw") for mode, _, _ in cold.values())
        warm = _ls_l(folder)
        assert warm == cold == _stat_view(folder)
        listed = os.listdir(folder)
        assert len(listed) == len(set(listed)) == count

        # Changes through the mount: a new file (while still being written, then stored), a removed one.
        with open(folder / "new.txt", "wb") as f:
            f.write(b"n" * 5000)
            f.flush()
            assert _ls_l(folder)["new.txt"][1] == 5000  # the writer's size, before close
        os.unlink(folder / "f0001.txt")
        after = _ls_l(folder)
        assert "f0001.txt" not in after and after["new.txt"][1] == 5000 and len(after) == count
        assert after == _stat_view(folder)
        stored = {r.filename: r.bytes for r in emulator.store.all() if r.purpose == "retrieval"}
        assert stored["new.txt"] == 5000 and "f0001.txt" not in stored and len(stored) == count


def test_a_listing_never_asks_the_size_of_a_file_listed_without_one(emulator, mount_of):
    """Generated videos are listed with bytes 0: only a download tells their size. Listing their folder hands
    the kernel no attributes for them (it looks them up when someone stats one), so a plain listing costs
    no request about them."""
    video = emulator.seed("video_generation", "clip.mp4", os.urandom(300_000))
    emulator.seed("video_generation", "other.mp4", os.urandom(1000))
    with mount_of(emulator) as m:
        folder = m.path / "video_generation"
        emulator.reset_counters()
        for _ in range(2):
            assert sorted(os.listdir(folder)) == ["clip.mp4", "other.mp4"]
        asked = emulator.counters()["requests"]
        assert asked["retrieve"] == asked["head"] == asked["download"] == 0, asked
        assert os.stat(folder / "clip.mp4").st_size == 300_000  # a stat asks, as before
        assert _ls_l(folder)["clip.mp4"][1] == 300_000
        assert video["bytes"] == 0  # the platform's quirk is still there
