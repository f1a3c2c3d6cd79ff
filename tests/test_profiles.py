"""The config file, -o options and the precedence flags > environment > profile > defaults. No FUSE needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmfs.commands.main import _config, _helper_form, allow_other_problem, build_parser
from mmfs.settings.profiles import ProfileError, load_profile, parse_mount_options, resolve

CONFIG = """\
[work]
base_url = "http://127.0.0.1:1"
api_key_file = "{key_file}"
cache_size = "1G"
purposes = ["voice_clone", "retrieval"]
read_only = true
umask = "027"

[inline]
api_key = "sk-inline-0123"
"""


def mmfs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmfs", *args], capture_output=True, text=True, timeout=60,
                          env=env)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    key_file = tmp_path / "work.key"
    key_file.write_text("sk-from-file-0123\n")
    key_file.chmod(0o600)  # a key file others can read is refused
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(key_file=key_file))
    path.chmod(0o600)
    return path


def parsed_config(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    for name in [n for n in os.environ if n.startswith(("MMFS_", "MINIMAX_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return _config(build_parser().parse_args(argv))


def test_a_profile_gives_every_option(config_file, tmp_path, monkeypatch):
    config = parsed_config(["mount", "--profile", "work", str(tmp_path)], {"MMFS_CONFIG": str(config_file)},
                           monkeypatch)
    assert config.base_url == "http://127.0.0.1:1"
    assert config.api_key == "sk-from-file-0123"
    assert config.cache_size == 1 << 30
    assert config.purposes == ("voice_clone", "retrieval")
    assert config.read_only is True
    assert config.umask == 0o027


def test_flags_beat_environment_beats_profile(config_file, tmp_path, monkeypatch):
    env = {"MMFS_CONFIG": str(config_file), "MMFS_CACHE_SIZE": "2G", "MMFS_DIR_CACHE_TIME": "7",
           "MINIMAX_API_KEY": "sk-from-env"}
    config = parsed_config(["mount", "--profile", "work", str(tmp_path), "--dir-cache-time", "3"], env, monkeypatch)
    assert config.cache_size == 2 << 30  # environment over profile
    assert config.dir_cache_time == 3.0  # flag over environment
    assert config.api_key == "sk-from-env"  # the environment's key over the profile's key file
    config = parsed_config(["mount", "--profile", "work", str(tmp_path), "-o", "cache_size=3G"], env, monkeypatch)
    assert config.cache_size == 3 << 30  # -o is a flag too
    config = parsed_config(["mount", str(tmp_path)], {"MINIMAX_API_KEY": "k"}, monkeypatch)
    assert (config.cache_size, config.dir_cache_time, config.read_only) == (10 << 30, 30.0, False)  # defaults


def test_a_key_in_the_file_needs_a_private_file(config_file, tmp_path, monkeypatch):
    assert load_profile("inline", config_file)["api_key"] == "sk-inline-0123"
    config_file.chmod(0o644)
    with pytest.raises(ProfileError, match=r"readable by others \(mode 0644\); run: chmod 600"):
        load_profile("inline", config_file)
    load_profile("work", config_file)  # no key in it: the file's mode does not matter
    env = {k: v for k, v in os.environ.items() if k != "MINIMAX_API_KEY"}
    done = mmfs("mount", "--profile", "inline", str(tmp_path), env={**env, "MMFS_CONFIG": str(config_file)})
    assert done.returncode != 0
    assert "chmod 600" in done.stderr and "sk-inline" not in done.stderr


def test_a_redis_password_in_the_file_needs_a_private_file_too(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[fleet]\nshared = "redis://:pw-in-file-77@cache.lan:6379/0"\n'
                      '[open]\nshared = "redis://cache.lan:6379/0"\n')
    config.chmod(0o644)
    with pytest.raises(ProfileError, match=r"password.*readable by others \(mode 0644\)") as caught:
        load_profile("fleet", config)
    assert "pw-in-file-77" not in str(caught.value)
    assert load_profile("open", config)["shared"] == "redis://cache.lan:6379/0"  # no password: mode is moot
    config.chmod(0o600)
    assert load_profile("fleet", config)["shared"].startswith("redis://:pw-in-file-77@")


def test_unknown_profiles_and_options_say_what_exists(config_file):
    with pytest.raises(ProfileError, match=r"no profile \[play\].*work, inline"):
        load_profile("play", config_file)
    config_file.write_text('[x]\ncache_sise = "1G"\n')
    with pytest.raises(ProfileError, match="unknown option 'cache_sise'"):
        load_profile("x", config_file)


def test_mount_options_as_mount8_passes_them():
    assert parse_mount_options(["ro,dev,suid,noauto,_netdev,x-systemd.automount,allow_other",
                                "uid=1000,gid=100,umask=022,cache_size=2G,list_by_id"]) == {
        "read_only": True, "allow_other": True, "uid": 1000, "gid": 100, "umask": 0o022,
        "cache_size": 2 << 30, "list_by_id": True}
    with pytest.raises(ProfileError, match="unknown option"):
        parse_mount_options(["bogus=1"])
    with pytest.raises(ProfileError, match="needs a value"):
        parse_mount_options(["cache_size"])
    assert resolve({}, {}, {})["cache_size"] == 10 << 30


def test_several_purposes_in_one_mount_option():
    # In -o (and so in fstab) commas separate options: several purposes are joined with ':' instead.
    assert parse_mount_options(["ro,purposes=retrieval:voice_clone"])["purposes"] == "retrieval,voice_clone"
    with pytest.raises(ProfileError, match="retrieval:voice_clone"):
        parse_mount_options(["purposes=retrieval,voice_clone"])


def test_the_mount_helper_form_becomes_a_daemon_mount(tmp_path):
    mnt = str(tmp_path)
    expected = ["mount", mnt, "--profile", "work", "--daemon", "-o", "ro,dev"]
    assert _helper_form(["work", mnt, "-o", "ro,dev"]) == expected
    assert _helper_form(["mmfs", mnt]) == ["mount", mnt, "--daemon"]
    assert _helper_form(["status", mnt]) == ["status", mnt]


def test_version_and_help_with_examples_for_every_argument():
    env = dict(os.environ)
    version = mmfs("--version", env=env)
    assert version.returncode == 0 and version.stdout.startswith("mmfs 0.")
    text = mmfs("mount", "--help", env=env).stdout
    assert "examples:" in text and "config file:" in text and "fuse.mmfs" in text
    mount_parser = build_parser()._subparsers._group_actions[0].choices["mount"]
    for action in mount_parser._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help"
        takes_value = action.nargs != 0 and action.option_strings
        if takes_value and action.dest not in ("help",):
            assert "e.g." in action.help, f"{action.option_strings} has no example"
    assert "examples:" in mmfs("--help", env=env).stdout
    for command in ("status", "refresh", "pin", "unpin", "cache", "unmount"):
        done = mmfs(command, "--help", env=env)
        assert done.returncode == 0 and "examples:" in done.stdout, command


def test_allow_other_says_what_a_user_needs(tmp_path):
    conf = tmp_path / "fuse.conf"
    conf.write_text("# mount_max = 1000\n#user_allow_other\n")
    assert "user_allow_other" in allow_other_problem(1000, conf)
    assert allow_other_problem(0, conf) is None
    conf.write_text("user_allow_other\n")
    assert allow_other_problem(1000, conf) is None


def test_the_helper_form_needs_an_existing_folder(tmp_path):
    assert _helper_form(["moutn", str(tmp_path / "nope")]) == ["moutn", str(tmp_path / "nope")]


def test_the_public_api_is_explicit_and_importing_it_changes_nothing():
    probe = """
import logging, os, sys
before = os.umask(0o022); os.umask(before)
import mmfs, mmfs.emulator
# the emulator's one import from mmfs: the purpose table, pure data
assert sorted(m for m in sys.modules if m.startswith("mmfs") and not m.startswith("mmfs.emulator")) == [
    "mmfs", "mmfs.purposes"]
import mmfs.runtime.mount  # the internal module: mmfs.mount stays the public function
assert callable(mmfs.mount) and mmfs.mount.__module__ == "mmfs.runtime.library"
assert set(mmfs.__all__) == {"Mount", "MountFailed", "__version__", "mount"}
assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("mmfs").handlers)
assert os.umask(before) == before and not logging.getLogger().handlers
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
