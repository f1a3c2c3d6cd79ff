"""Bad input through the real ``mmfs`` command, as a new user types it: each is refused with one line that
names the option or the fix, a non-zero exit, and no traceback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY
from mounting import Mounted, require_fuse, wait_for

from mmfs.runtime.mount import is_live_mount, is_mount_point


def mmfs(*args: str, key: str | None = TEST_KEY, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("MINIMAX_API_KEY", "MINIMAX_BASE_URL")}
    if key is not None:
        full_env["MINIMAX_API_KEY"] = key
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "mmfs", *args], env=full_env, capture_output=True, text=True,
                          timeout=90)


def refused(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Assert a one-line refusal holding every ``expected`` text; return the line."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


def mount_args(mnt: Path, tmp_path: Path, *extra: str, base_url: str = "http://127.0.0.1:9") -> list[str]:
    return ["mount", str(mnt), "--base-url", base_url, "--cache-dir", str(tmp_path / "cache"),
            "--state-dir", str(tmp_path / "state"), *extra]


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A small tmpfs on ``path`` (root only: the one way to get a read-only or foreign filesystem here)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=1m", *options)), "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize(("extra", "expected"), [
    (["--cache-size", "0"], "--cache-size"),
    (["--cache-size", "lots"], "--cache-size"),
    (["--dir-cache-time", "-5"], "--dir-cache-time"),
    (["--purposes", "voice_clon"], "did you mean voice_clone"),
    (["--retry-deadline", "0"], "--retry-deadline"),
    (["--umask", "999"], "octal"),
    (["-o", "umask=999"], "octal"),
    (["-o", "uid=bob"], "uid"),
    (["-o", "dir_cache_time=soon"], "dir_cache_time"),
    (["--ca-bundle", "no-such-ca.pem"], "--ca-bundle"),
    (["-o", "ca_bundle=no-such-ca.pem"], "-o ca_bundle="),  # named as it was given
    (["--shared", "http://127.0.0.1:9"], "--shared"),
    (["--shared", "redis://[::1:6379/0"], "--shared"),
    (["--profile", "nowhere"], "config"),
])
def test_bad_option_values_are_named(mnt, tmp_path, extra, expected):
    refused(mmfs(*mount_args(mnt, tmp_path, *extra)), expected)


def test_base_url_without_a_scheme(mnt, tmp_path):
    args = mount_args(mnt, tmp_path)
    args[args.index("--base-url") + 1] = "api.minimax.io"
    refused(mmfs(*args), "--base-url", "https://")


def test_missing_libfuse_is_reported_first_with_the_fix(mnt, tmp_path):
    # No key either: the libfuse message must come first all the same.
    line = refused(mmfs(*mount_args(mnt, tmp_path), key=None, FUSE_LIBRARY_NAME="fuse-not-installed"),
                   "install fuse3 (Debian: apt install fuse3)")
    assert "MINIMAX_API_KEY" not in line


def test_mount_point_that_is_a_file_or_missing_or_not_empty(mnt, tmp_path, emulator):
    require_fuse()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused(mmfs(*mount_args(a_file, tmp_path, base_url=emulator.base_url)), "not a folder")
    refused(mmfs(*mount_args(tmp_path / "nope", tmp_path, base_url=emulator.base_url)), "does not exist", "mkdir")
    (mnt / "mine.txt").write_text("hidden if mounted over")
    refused(mmfs(*mount_args(mnt, tmp_path, base_url=emulator.base_url)), "not empty", "--allow-non-empty")
    assert not is_mount_point(mnt)
    with Mounted(emulator.base_url, emulator.api_key, tmp_path, "--allow-non-empty"):
        assert "mine.txt" not in os.listdir(mnt)  # the mount is on top
    assert (mnt / "mine.txt").read_text() == "hidden if mounted over"


def test_cache_or_state_dir_on_a_read_only_filesystem(mnt, tmp_path, emulator):
    with tmpfs(tmp_path / "ro", "ro") as ro:
        args = mount_args(mnt, tmp_path, base_url=emulator.base_url)
        args[args.index("--cache-dir") + 1] = str(ro / "cache")
        refused(mmfs(*args), "--cache-dir", "Read-only file system")
        args = mount_args(mnt, tmp_path, base_url=emulator.base_url)
        args[args.index("--state-dir") + 1] = str(ro / "state")
        refused(mmfs(*args), "--state-dir", "Read-only file system")
    assert not is_mount_point(mnt)


def test_unmount_refuses_what_is_not_an_mmfs_mount(tmp_path):
    with tmpfs(tmp_path / "foreign") as foreign:
        refused(mmfs("unmount", str(foreign)), "not an mmfs mount", "tmpfs")
        assert is_mount_point(foreign)
    refused(mmfs("unmount", str(tmp_path)), "not mounted")


def test_emulator_port_in_use_names_the_option():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "mmfs", "emulator", "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    refused(done, f"port {port} is in use", "--port")


def test_daemon_exits_non_zero_with_the_childs_reason(mnt, tmp_path, emulator):
    require_fuse()
    args = mount_args(mnt, tmp_path, "--daemon", "--log-file", str(tmp_path / "d.log"), base_url=emulator.base_url)
    refused(mmfs(*args, key="sk-api-wrong"), "refused the API key")
    assert not is_mount_point(mnt)
    # A live mount already there must not pass for the daemon's own.
    with Mounted(emulator.base_url, emulator.api_key, tmp_path):
        refused(mmfs(*args, key=emulator.api_key), "already a mount point")
    # And a daemon that does come up says so and exits 0.
    done = mmfs(*args, key=emulator.api_key)
    try:
        assert done.returncode == 0, done.stderr
        assert is_live_mount(mnt)
    finally:
        mmfs("unmount", str(mnt))
        wait_for(lambda: not is_mount_point(mnt), 15, "the daemon's mount to go away")


def test_a_redis_password_on_the_command_line_is_pointed_at_never_echoed(mnt, tmp_path):
    # argv is readable by every user (ps): the mount says where the URL belongs instead, without repeating it.
    done = mmfs(*mount_args(mnt, tmp_path, "-o", "shared=redis://:hunter2-redis@127.0.0.1:9/0"))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "MMFS_SHARED" in done.stderr and "hunter2-redis" not in done.stderr, done.stderr


def test_pin_of_a_missing_path_or_a_folder_outside_any_mount(tmp_path):
    refused(mmfs("pin", str(tmp_path / "no-such-file.mp3")), "no-such-file.mp3")
    outside = tmp_path / "outside"
    for i in range(3):
        (outside / str(i)).mkdir(parents=True)
        (outside / str(i) / "f.txt").write_text("x")
    # Refused for the folder given, before walking what is under it (a pin of ~ would stat every file).
    line = refused(mmfs("pin", "-q", str(outside)), "not inside a running mmfs mount")
    assert str(outside) + " " in line
