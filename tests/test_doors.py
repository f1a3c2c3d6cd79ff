"""One suite, two doors: the same programs on the same core, through the FUSE mount and through the WebDAV door
mounted by davfs2 (``mount -t davfs``), each checked on the platform through the emulator.

What differs between the doors is named where it shows (doc/SEMANTICS.md, "The WebDAV door"): davfs2 keeps
its own whole-file cache and sends a file with one PUT when it is closed, so its writes reach the core only
at close; a refusal by name comes at create on both doors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mounting import require_fuse, wait_for

from mmfs.emulator import Emulator
from mmfs.runtime.serve import DavServer, ServeOptions
from mmfs.settings.config import MountConfig

pytestmark = pytest.mark.fuse

AUDIO = b"RIFF" + os.urandom(200_000)

# davfs2: no upload delay (the test reads the platform after close); buf_size 64 KiB, which Linux 6.16 and
# newer need for davfs2's directory reads (smaller buffers answer EINVAL to getdents).
DAVFS_CONF = "delay_upload 0\nbuf_size 64\n"


@dataclass
class Door:
    name: str
    path: Path
    emu: Emulator
    settle: Callable[[], None]  # what the door needs before the platform is read: nothing, or davfs2's sync


def platform(emu: Emulator, purpose: str) -> dict[str, bytes]:
    files = [f for f in emu.store.all() if f.purpose == purpose]
    return {f.filename: emu.store.blob_path(f.file_id).read_bytes() for f in files}


def sh(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def _fuse_door(emu: Emulator, tmp: Path, mount_of) -> Iterator[Door]:
    with mount_of(emu, "--dir-cache-time", "0") as m:
        yield Door("fuse", m.path, emu, lambda: None)


@contextlib.contextmanager
def _webdav_door(emu: Emulator, tmp: Path) -> Iterator[Door]:
    require_fuse()  # davfs2 mounts through FUSE too
    if shutil.which("mount.davfs") is None:
        pytest.fail("davfs2 is missing: scripts/test installs it")
    config = MountConfig(mountpoint=tmp / "unused", api_key=emu.api_key, base_url=emu.base_url,
                         cache_dir=tmp / "cache", state_dir=tmp / "state", dir_cache_time=0)
    server = DavServer(config, ServeOptions(port=0))
    url = server.start()
    mnt = tmp / "dav"
    mnt.mkdir()
    conf = tmp / "davfs2.conf"
    conf.write_text(DAVFS_CONF)
    try:
        # davfs2 asks for a user and a password on its terminal: the door on loopback wants none.
        subprocess.run(["mount", "-t", "davfs", url, str(mnt), "-o", f"conf={conf}"], input=b"\n\n",
                       check=True, capture_output=True, timeout=60, env={**os.environ, "HOME": str(tmp)})
        try:
            yield Door("webdav", mnt, emu, lambda: None)
        finally:
            subprocess.run(["umount", str(mnt)], check=False, capture_output=True, timeout=120)
    finally:
        server.stop()


@pytest.fixture(params=["fuse", "webdav"])
def door(request, emulator: Emulator, tmp_path: Path, mount_of) -> Iterator[Door]:
    emulator.seed("voice_clone", "take.wav", AUDIO)
    make = _fuse_door(emulator, tmp_path, mount_of) if request.param == "fuse" else _webdav_door(emulator, tmp_path)
    with make as d:
        yield d


def test_a_stored_file_reads_whole_and_in_part(door: Door) -> None:
    assert (door.path / "voice_clone" / "take.wav").read_bytes() == AUDIO
    with open(door.path / "voice_clone" / "take.wav", "rb") as f:
        f.seek(150_000)
        assert f.read(1000) == AUDIO[150_000:151_000]


def test_a_shell_redirect_lands_and_an_overwrite_replaces_it(door: Door) -> None:
    folder = door.path / "t2a_async_input"
    assert sh("echo hello > a.txt", folder).returncode == 0
    wait_for(lambda: platform(door.emu, "t2a_async_input") == {"a.txt": b"hello\n"}, 30, "a.txt to land")
    assert sh("echo bye > a.txt", folder).returncode == 0
    wait_for(lambda: platform(door.emu, "t2a_async_input") == {"a.txt": b"bye\n"}, 30, "the overwrite to land")
    assert (folder / "a.txt").read_bytes() == b"bye\n"


def test_cp_in_and_rm(door: Door, tmp_path: Path) -> None:
    src = tmp_path / "clip.wav"
    src.write_bytes(AUDIO[::-1])
    assert subprocess.run(["cp", str(src), str(door.path / "voice_clone")], capture_output=True).returncode == 0
    wait_for(lambda: platform(door.emu, "voice_clone").get("clip.wav") == AUDIO[::-1], 30, "clip.wav to land")
    assert subprocess.run(["rm", str(door.path / "voice_clone" / "take.wav")], capture_output=True).returncode == 0
    wait_for(lambda: "take.wav" not in platform(door.emu, "voice_clone"), 30, "take.wav to go")


def test_a_name_the_purpose_refuses_fails_at_once_and_stores_nothing(door: Door, tmp_path: Path) -> None:
    src = tmp_path / "tool.exe"
    src.write_bytes(b"MZ" + os.urandom(100))
    done = subprocess.run(["cp", str(src), str(door.path / "voice_clone")], capture_output=True, text=True)
    assert done.returncode != 0
    assert "Invalid argument" in done.stderr
    assert set(platform(door.emu, "voice_clone")) == {"take.wav"}
    assert src.read_bytes().startswith(b"MZ")


def test_sed_in_place_edits_land_under_the_real_name_only(door: Door) -> None:
    folder = door.path / "t2a_async_input"
    assert sh("printf 'one\\ntwo\\n' > notes.txt", folder).returncode == 0
    wait_for(lambda: platform(door.emu, "t2a_async_input") == {"notes.txt": b"one\ntwo\n"}, 30, "notes.txt")
    done = sh("sed -i s/two/three/ notes.txt", folder)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: platform(door.emu, "t2a_async_input") == {"notes.txt": b"one\nthree\n"}, 30,
             "the edit to land under notes.txt alone")


def test_mv_within_a_folder_renames_on_the_platform(door: Door) -> None:
    folder = door.path / "voice_clone"
    done = subprocess.run(["mv", str(folder / "take.wav"), str(folder / "renamed.wav")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: platform(door.emu, "voice_clone") == {"renamed.wav": AUDIO}, 30, "the rename on the platform")
    assert (folder / "renamed.wav").read_bytes() == AUDIO
