"""``mmfs config list|check|new``: profiles made, listed and checked from the command line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib


def mmfs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmfs", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_config_new_list_and_check(emulator, tmp_path):
    config = tmp_path / "conf" / "config.toml"
    env = {k: v for k, v in os.environ.items() if k != "MINIMAX_API_KEY"}
    env["MMFS_CONFIG"] = str(config)
    assert mmfs("config", "list", env=env).stdout.startswith(f"no profiles in {config}")
    key = tmp_path / "work.key"
    key.write_text(emulator.api_key + "\n")
    key.chmod(0o644)
    done = mmfs("config", "new", "work", "--base-url", emulator.base_url, "--api-key-file", str(key), "--set",
                "cache_size=20G", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"added [work] to {config}:")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert tomllib.loads(config.read_text())["work"] == {"base_url": emulator.base_url, "api_key_file": str(key),
                                                        "cache_size": "20G"}
    listed = mmfs("config", "list", env=env).stdout.splitlines()
    assert listed == [f"{config}:", f"  work  {emulator.base_url}  key: api_key_file {key}"]

    checked = mmfs("config", "check", env=env)
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[0] == (f"  [work] the API key file {key} is readable by others (mode 0644); "
                                              f"run: chmod 600 {key}")
    assert checked.stderr.startswith("mmfs: 1 of 1 profile would not mount")
    key.chmod(0o600)
    assert mmfs("config", "check", env=env).stdout == "  [work] ok\n"
    assert mmfs("config", "check", "work", "--online", env=env).stdout == "  [work] ok\n"
    key.write_text("sk-api-wrong\n")
    online = mmfs("config", "check", "work", "--online", env=env)
    assert online.returncode == 1 and online.stdout.startswith(f"  [work] {emulator.base_url} refused the key")

    again = mmfs("config", "new", "work", env=env)
    assert again.returncode == 1
    assert again.stderr == f"mmfs: {config} already has a profile [work] (edit the file to change it)\n"
    bad = mmfs("config", "new", "other", "--set", "cache_size=lots", env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("mmfs: cache_size: not a size: 'lots'")
    assert "other" not in tomllib.loads(config.read_text())


def test_bash_completion_completes_commands_and_options():
    script = subprocess.run([sys.executable, "-m", "mmfs", "completion", "bash"], capture_output=True, text=True,
                            check=True, timeout=60).stdout

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        probe = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
                 f"COMP_POINT=${{#COMP_LINE}}; _shtab_mmfs; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
        return done.stdout.split()

    assert complete("mmfs", "mo") == ["mount"]
    assert set(complete("mmfs", "u")) >= {"unmount", "umount", "unpin"}
    assert "--cache-size" in complete("mmfs", "mount", "--cache-s")
    assert complete("mmfs", "mount", "--log-level", "w") == ["warning"]


def test_fish_and_zsh_completion_and_the_man_page_come_from_the_parser():
    fish = subprocess.run([sys.executable, "-m", "mmfs", "completion", "fish"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    assert "complete -c mmfs -n __fish_use_subcommand -a umount -d 'unmount a mmfs mount'" in fish
    assert "complete -c mmfs -n '__fish_seen_subcommand_from mount' -l bwlimit -r -d" in fish
    zsh = subprocess.run([sys.executable, "-m", "mmfs", "completion", "zsh"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert zsh.startswith("#compdef mmfs") and "--metrics-addr" in zsh
    from mmfs.commands.completion import man_page

    page = man_page()
    assert page.startswith('.TH MMFS "1"')
    for needed in ("mount", "config", "completion", r"\-\-cache\-max\-age", r"\-\-bwlimit"):
        assert needed in page, needed
