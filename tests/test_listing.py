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
