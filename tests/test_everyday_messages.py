"""What mmfs says when something is refused or wrong: one line, why, and what would be accepted. Each message
is asserted by its first line."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from mounting import require_fuse, wait_for

from mmfs.runtime.daemon import _child_reason
from mmfs.runtime.mount import is_live_mount, is_mount_point

MMFS = str(Path(sys.executable).parent / "mmfs")


def mmfs(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MMFS, *args], capture_output=True, text=True, timeout=90, cwd=cwd,
                          env=env if env is not None else dict(os.environ, MINIMAX_API_KEY="sk-api-test-key"))


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- argument values, checked as they are parsed ----------------------------------------------------------


@pytest.mark.parametrize(("args", "line"), [
    (["--base-url", "http://[::1"], "mmfs: argument --base-url: not a URL (Invalid IPv6 URL)"),
    (["--base-url", "http://h:99999"], "mmfs: argument --base-url: not a URL (Port out of range 0-65535)"),
    (["--base-url", "http://h:abc"], "mmfs: argument --base-url: not a URL (Port could not be cast"),
    (["--base-url", "ftp://h"], "mmfs: argument --base-url: needs http:// or https:// and a host"),
    (["--uid", "abc"], "mmfs: argument --uid: not a whole number: 'abc'"),
    (["--gid", "-3"], "mmfs: argument --gid: must be from 0 to 4294967294, got -3"),
    (["--retry-deadline", "0"], "mmfs: argument --retry-deadline: must be more than 0 seconds"),
    (["--dir-cache-time", "inf"], "mmfs: argument --dir-cache-time: must be 0 or more seconds"),
    (["--purposes", "voice"], "mmfs: argument --purposes: unknown purpose 'voice' (did you mean voice_clone?"),
    (["--op-param", "model"], "mmfs: argument --op-param: wants OP:KEY=VALUE"),
    (["--cache-size", "lots"], "mmfs: argument --cache-size: not a size: 'lots'"),
    (["--umask", "999"], "mmfs: argument --umask: not an octal mask"),
    (["--ca-bundle", "/no/such.pem"], "mmfs: argument --ca-bundle: /no/such.pem: no such file"),
    (["--log-level", "loud"], "mmfs: argument --log-level: invalid choice: 'loud'"),
    (["--bwlimit", "fast"], "mmfs: argument --bwlimit: not a size: 'fast'"),
    (["--bwlimit", "10"], "mmfs: argument --bwlimit: a limit under 1K per second would stall every transfer"),
    (["--metrics-addr", "host:0"], "mmfs: argument --metrics-addr: a port is from 1 to 65535, not 0"),
    (["--cache-max-age", "soon"], "mmfs: argument --cache-max-age: not a number of seconds: 'soon'"),
    (["--cache-max-age=-1h"], "mmfs: argument --cache-max-age: must be more than 0 seconds"),
])
def test_every_value_is_checked_when_parsed_in_one_line(tmp_path, args, line):
    done = mmfs("mount", str(tmp_path), *args)
    assert done.returncode == 2
    assert first_line(done.stderr).startswith(line), done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_values_from_the_environment_and_a_profile_are_checked_in_one_line(tmp_path):
    env = dict(os.environ, MINIMAX_API_KEY="sk-api-test-key", MINIMAX_BASE_URL="http://[::1")
    done = mmfs("mount", str(tmp_path), env=env)
    assert first_line(done.stderr).startswith("mmfs: MINIMAX_BASE_URL: not a URL (Invalid IPv6 URL)"), done.stderr
    config = tmp_path / "config.toml"
    config.write_text('[p]\nbase_url = "http://h:99999"\n')
    env = dict(os.environ, MINIMAX_API_KEY="sk-api-test-key", MMFS_CONFIG=str(config))
    env.pop("MINIMAX_BASE_URL", None)
    done = mmfs("mount", "--profile", "p", str(tmp_path), env=env)
    assert first_line(done.stderr).startswith(f"mmfs: profile [p] in {config}: base_url: not a URL"), done.stderr


def test_the_emulator_port_is_checked_in_one_line():
    done = mmfs("emulator", "--port", "99999")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == ("emulator: argument --port: a port is from 0 to 65535 (0: any free port), not 99999 "
                           "(see: python -m mmfs.emulator --help)\n")


# -- secrets and files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--api-key", "sk-api-secret-4242"], ["--api-key=sk-api-secret-4242"],
                                  ["--api-key-fil", "sk-api-secret-4242"], ["--nope", "sk-api-secret-4242"]])
def test_no_abbreviation_and_a_key_is_never_echoed(tmp_path, args):
    done = mmfs("mount", str(tmp_path), *args)
    assert done.returncode == 2
    assert "sk-api-secret-4242" not in done.stdout + done.stderr
    if args[0].startswith("--api-key=") or args[0] == "--api-key":
        expected = "mmfs: the key is never given on the command line (every user can read it with ps)"
    else:
        expected = f"mmfs: unknown option or argument: {args[0]}, and 1 argument (not shown)"
    assert first_line(done.stderr).startswith(expected), done.stderr


def test_a_key_file_others_can_read_is_refused_as_a_config_key_is(tmp_path):
    key = tmp_path / "key"
    key.write_text("sk-api-secret-4242\n")
    key.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if k != "MINIMAX_API_KEY"}
    done = mmfs("mount", str(tmp_path), "--api-key-file", str(key), env=env)
    assert done.returncode != 0
    assert first_line(done.stderr) == (f"mmfs: the API key file {key} is readable by others (mode 0644); "
                                       f"run: chmod 600 {key}")
    config = tmp_path / "config.toml"
    config.write_text('[p]\napi_key = "sk-api-secret-4242"\n')
    config.chmod(0o644)
    done = mmfs("mount", "--profile", "p", str(tmp_path), env=dict(env, MMFS_CONFIG=str(config)))
    assert first_line(done.stderr).startswith(f"mmfs: profile [p] holds an api_key but {config} is readable by "
                                              f"others (mode 0644); run: chmod 600 {config}")
    assert "sk-api-secret-4242" not in done.stderr


def test_a_log_file_in_a_missing_folder_is_refused_and_no_folder_is_made(tmp_path):
    log = tmp_path / "missing" / "dir" / "x.log"
    for extra in ([], ["--daemon"]):
        done = mmfs("mount", str(tmp_path), "--log-file", str(log), *extra)
        assert done.returncode == 2
        assert first_line(done.stderr).startswith(f"mmfs: argument --log-file: {log}: the folder {log.parent} "
                                                  f"does not exist (create it first, or choose another file)")
    assert not (tmp_path / "missing").exists()


# -- the network -------------------------------------------------------------------------------------------


def test_an_unreachable_host_is_one_line_naming_it_and_the_fix(tmp_path):
    require_fuse()
    port = closed_port()
    (tmp_path / "mnt").mkdir()
    done = mmfs("mount", str(tmp_path / "mnt"), "--base-url", f"http://127.0.0.1:{port}", "--retry-deadline", "2",
                "--cache-dir", str(tmp_path / "c"), "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("mmfs: ")]
    assert errors == [f"mmfs: cannot reach 127.0.0.1:{port} (connection refused): check the host and port in "
                      f"--base-url (or MINIMAX_BASE_URL)"], done.stderr
    assert "urllib3" not in done.stderr and "Retrying (Retry" not in done.stderr
    # The mount's own retries are debug lines: the only thing on the terminal (INFO: "mounting ...") is
    # the mount's announcement and the one line that says why it failed.
    assert [line for line in done.stderr.splitlines() if "failed" in line and "retrying" in line] == []
    done = mmfs("mount", str(tmp_path / "mnt"), "--base-url", "http://host.invalid", "--retry-deadline", "2",
                "--cache-dir", str(tmp_path / "c"), "--state-dir", str(tmp_path / "s"))
    assert done.stderr.splitlines()[-1] == ("mmfs: cannot reach host.invalid (the name does not resolve): check "
                                            "the host in --base-url (or MINIMAX_BASE_URL) and your DNS")


# -- the daemon ------------------------------------------------------------------------------------------


def test_the_daemon_reports_libfuses_reason(tmp_path):
    log = tmp_path / "mount.log"
    log.write_text("earlier run\nmmfs: an older failure\n")
    start = log.stat().st_size
    with open(log, "a") as f:
        f.write("2026-01-01 00:00:00,000 INFO mmfs.mount: mounting\n"
                "fuse: device not found, try 'modprobe fuse' first\n"
                "mmfs: libfuse failed with code 1\n")
    assert _child_reason(log, start) == ("mmfs: libfuse failed with code 1 (fuse: device not found, try "
                                         "'modprobe fuse' first)")
    with open(log, "a") as f:
        start = f.tell()
        f.write("Traceback (most recent call last):\n  File \"x\", line 1\nImportError: cannot import name 'x'\n")
    assert _child_reason(log, start) == "mmfs: the mount failed: ImportError: cannot import name 'x'"


# -- through a mount -------------------------------------------------------------------------------------


def test_refusals_say_why_and_what_the_folder_takes(emulator, mount_of, tmp_path):
    require_fuse()
    src = tmp_path / "x.exe"
    src.write_bytes(b"MZ")
    rec = tmp_path / "recording"
    rec.write_bytes(b"RIFF")
    with mount_of(emulator) as m:
        done = subprocess.run(["cp", str(src), str(m.path / "voice_clone")], capture_output=True, text=True)
        assert done.returncode == 1 and "Invalid argument" in done.stderr
        line = ("refused voice_clone/x.exe: the platform takes only .m4a, .mp3, .wav files in voice_clone; "
                "'x.exe' is a .exe file")
        assert line in m.log()
        status = json.loads(mmfs("status", str(m.path), "--json").stdout)
        assert line in status["last_error"]
        # A name with no extension is taken (tools write those and rename them) but said when written.
        subprocess.run(["cp", str(rec), str(m.path / "voice_clone" / "recording")], check=True)
        assert ("voice_clone/recording has no extension, so it is never uploaded: it stays in this mount only; "
                "rename it to a name voice_clone takes (.m4a, .mp3, .wav) to upload it") in m.log()
        os.unlink(m.path / "voice_clone" / "recording")
        # sed -i's own temporary (sedXXXXXX, renamed over the file at once) is not worth a warning.
        (m.path / "retrieval" / "doc.txt").write_text("a line\n")
        subprocess.run(["sed", "-i", "s/a line/the line/", str(m.path / "retrieval" / "doc.txt")], check=True)
        assert (m.path / "retrieval" / "doc.txt").read_text() == "the line\n"
        assert m.log().count("has no extension") == 1


def test_umount_is_unmount(emulator, mount_of):
    require_fuse()
    with mount_of(emulator) as m:
        done = mmfs("umount", str(m.path))
        assert done.returncode == 0, done.stderr
        wait_for(lambda: not is_mount_point(m.path), 15, "the unmount")
        assert not is_live_mount(m.path)
    assert stat.S_ISDIR(os.stat(m.path).st_mode)


def test_the_folder_of_a_log_file_given_is_left_as_it_is(emulator, tmp_path):
    require_fuse()
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o755)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, MINIMAX_API_KEY=emulator.api_key)
    try:
        done = mmfs("mount", str(mnt), "--daemon", "--base-url", emulator.base_url, "--cache-dir",
                    str(tmp_path / "c"), "--state-dir", str(tmp_path / "s"), "--log-file", str(logs / "m.log"),
                    env=env)
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(logs.stat().st_mode) == 0o755
        assert stat.S_IMODE((logs / "m.log").stat().st_mode) == 0o600
    finally:
        mmfs("unmount", str(mnt), env=env)
        wait_for(lambda: not is_mount_point(mnt), 15, "the unmount")


def test_the_daemon_prints_libfuses_own_reason(emulator, tmp_path):
    """/dev/fuse made useless in a mount namespace of the test's own: libfuse (fusermount3) fails, and
    --daemon's one line carries what it said, not only "libfuse failed"."""
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, MINIMAX_API_KEY=emulator.api_key)
    script = (f"mount --bind /dev/null /dev/fuse && exec {MMFS} mount {mnt} --daemon --base-url {emulator.base_url} "
              f"--cache-dir {tmp_path / 'c'} --state-dir {tmp_path / 's'}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=90, env=env)
    assert done.returncode != 0
    line = first_line(done.stderr)
    assert line.startswith("mmfs: libfuse failed with code "), done.stderr
    assert "(fusermount3: " in line or "(fuse: " in line, line
    assert not is_mount_point(mnt)
