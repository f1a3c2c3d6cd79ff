"""The background mount's child runs this mmfs whatever folder it starts in: a folder holding another
``mmfs/`` (a clone's parent) is not imported in its place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mounting import require_fuse, wait_for

from mmfs.runtime.mount import is_live_mount, is_mount_point

pytestmark = pytest.mark.fuse

MMFS = str(Path(sys.executable).parent / "mmfs")  # the installed command, as a user runs it


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """A working folder holding an ``mmfs/`` that is not this one."""
    folder = tmp_path / "work"
    (folder / "mmfs").mkdir(parents=True)
    (folder / "mmfs" / "__init__.py").write_text("raise ImportError('the decoy mmfs was imported')\n")
    (folder / "mmfs" / "__main__.py").write_text("raise SystemExit('the decoy mmfs ran')\n")
    return folder


def _unmount(mnt: Path) -> None:
    subprocess.run([MMFS, "unmount", str(mnt)], capture_output=True, check=False, timeout=60)
    wait_for(lambda: not is_mount_point(mnt), 15, "the mount to go away")


def test_daemon_started_from_a_folder_holding_mmfs_mounts(emulator, tmp_path, decoy):
    emulator.seed("retrieval", "r.txt", b"real")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, MINIMAX_API_KEY=emulator.api_key)
    try:
        done = subprocess.run([MMFS, "mount", str(mnt), "--daemon", "--base-url", emulator.base_url,
                               "--cache-dir", str(tmp_path / "c"), "--state-dir", str(tmp_path / "s")],
                              cwd=decoy, env=env, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        assert is_live_mount(mnt)
        assert (mnt / "retrieval" / "r.txt").read_bytes() == b"real"
    finally:
        _unmount(mnt)


def test_python_api_started_from_a_folder_holding_mmfs_mounts(emulator, tmp_path, decoy):
    emulator.seed("retrieval", "r.txt", b"real")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "app" / "use_mmfs.py"
    script.parent.mkdir()
    script.write_text(
        "import sys, mmfs\n"
        f"with mmfs.mount({str(mnt)!r}, api_key={emulator.api_key!r}, base_url={emulator.base_url!r},\n"
        f"                cache_dir={str(tmp_path / 'c')!r}, state_dir={str(tmp_path / 's')!r}) as m:\n"
        "    print((m.path / 'retrieval' / 'r.txt').read_text())\n")
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=decoy, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "real"
    finally:
        if is_mount_point(mnt):
            _unmount(mnt)
