"""Secrets on every output channel, and folders that are not mmfs's to change.

* What mmfs prints to the terminal is redacted as its log is: a base URL's ``user:password@`` never shows,
  whatever error quotes it (a TLS failure at the key check, here).
* A password in any form of a Redis URL on the command line is warned about; any secret in a profile file
  others can read is refused.
* mmfs never chmods a folder it did not create: a shared sticky folder (1777) as ``--cache-dir`` stays as
  it was and the cache lives in mmfs's own 0700 folder inside; a folder others can write without the sticky
  bit, or one another user owns inside a shared folder, is refused in one line that says what to do.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_KEY
from mounting import Mounted, require_fuse

from mmfs.emulator import Emulator, EmulatorConfig
from mmfs.settings.profiles import ProfileError, load_profile

PASSWORD = "pw-Zq81-never-shown"


def mmfs(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmfs", *argv], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MINIMAX_API_KEY=TEST_KEY, **(env or {})), stdin=subprocess.DEVNULL)


def test_a_tls_failure_never_prints_the_base_urls_password(tmp_path: Path):
    require_fuse()
    emu = Emulator(EmulatorConfig(data_dir=tmp_path / "platform", port=0, api_key=TEST_KEY, tls=True)).start()
    try:
        host = emu.base_url.split("://", 1)[1]
        (tmp_path / "mnt").mkdir()
        done = mmfs("mount", str(tmp_path / "mnt"), "--base-url", f"https://gateway-user:{PASSWORD}@{host}",
                    "--cache-dir", str(tmp_path / "cache"), "--state-dir", str(tmp_path / "state"))
    finally:
        emu.stop()
    assert done.returncode != 0
    assert "TLS" in done.stderr, done.stderr  # it failed where it should, and said so
    assert PASSWORD not in done.stderr + done.stdout
    assert "gateway-user:***@" in done.stderr


def test_a_redis_password_in_the_query_on_the_command_line_is_warned_about(tmp_path: Path):
    done = mmfs("mount", str(tmp_path / "mnt"), "--shared", f"redis://cache.lan:6379/0?password={PASSWORD}",
                "--api-key-file", str(tmp_path / "no-such-key"))
    assert "warning: the --shared URL holds a password" in done.stderr, done.stderr
    assert PASSWORD not in done.stderr


@pytest.mark.parametrize("option,value", [
    ("shared", f"redis://cache.lan:6379/0?password={PASSWORD}"),
    ("base_url", f"https://user:{PASSWORD}@gateway.lan"),
], ids=["redis-query-password", "gateway-userinfo"])
def test_any_secret_in_a_profile_others_can_read_is_refused(tmp_path: Path, option: str, value: str):
    config = tmp_path / "config.toml"
    config.write_text(f'[p]\n{option} = "{value}"\n')
    config.chmod(0o644)
    with pytest.raises(ProfileError, match=r"password.*readable by others \(mode 0644\).*chmod 600") as caught:
        load_profile("p", config)
    assert PASSWORD not in str(caught.value)
    config.chmod(0o600)
    assert load_profile("p", config)[option] == value


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_dir()}


def test_a_shared_sticky_cache_folder_is_left_as_it_is_and_the_cache_lives_in_a_private_one_inside(
        emulator, tmp_path: Path):
    require_fuse()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as the system's temporary folders are
    emulator.seed("retrieval", "a.bin", os.urandom(100_000))
    with Mounted(emulator.base_url, emulator.api_key, tmp_path, cache_dir=shared) as m:
        assert len((m.path / "retrieval" / "a.bin").read_bytes()) == 100_000
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # not chmodded: everyone can still use it
    inside = _modes(shared)
    assert inside and all(mode == 0o700 for mode in inside.values()), inside


def test_a_folder_others_can_write_is_refused_in_one_line_with_the_fix(tmp_path: Path):
    require_fuse()
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    (tmp_path / "mnt").mkdir()
    done = mmfs("mount", str(tmp_path / "mnt"), "--base-url", "http://127.0.0.1:9", "--cache-dir",
                str(open_folder), "--state-dir", str(tmp_path / "state"))
    assert done.returncode != 0
    assert "can be written by other users" in done.stderr and "chmod o-w,g-w" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert stat.S_IMODE(open_folder.stat().st_mode) == 0o777  # refused, not changed


def test_a_folder_another_user_owns_inside_a_shared_one_is_refused(tmp_path: Path):
    require_fuse()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "cache"  # made first by someone else, under the name this mount will use
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    planted.chmod(0o755)
    (tmp_path / "mnt").mkdir()
    done = mmfs("mount", str(tmp_path / "mnt"), "--base-url", "http://127.0.0.1:9", "--cache-dir",
                str(planted), "--state-dir", str(tmp_path / "state"))
    assert done.returncode != 0
    assert "belongs to another user" in done.stderr, done.stderr
    assert stat.S_IMODE(planted.stat().st_mode) == 0o755 and planted.stat().st_uid == 65534
