"""The log as rclone users expect it: --log-level, -q, --log-format json, and the journal under systemd."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from mounting import FUSERMOUNT, require_fuse, wait_for

from mmfs.runtime.mount import is_live_mount, is_mount_point


def _refuse_an_exe(m) -> None:
    with pytest.raises(OSError) as caught:
        open(m.path / "voice_clone" / "x.exe", "wb").close()
    assert caught.value.errno == errno.EINVAL


def test_json_lines(emulator, mount_of):
    require_fuse()
    with mount_of(emulator, "--log-format", "json") as m:
        _refuse_an_exe(m)
        wait_for(lambda: "refused voice_clone/x.exe" in m.log(), 10, "the refusal in the log")
    entries = [json.loads(line) for line in m.log().splitlines() if line.strip()]
    assert entries and all(set(e) >= {"time", "level", "logger", "message"} for e in entries)
    refused = [e for e in entries if e["message"].startswith("refused voice_clone/x.exe")]
    assert refused[0]["level"] == "warning" and refused[0]["logger"] == "mmfs.refusals"
    assert any(e["message"].startswith("mounted on ") and e["level"] == "info" for e in entries)


def test_quiet_keeps_warnings_only(emulator, mount_of):
    require_fuse()
    with mount_of(emulator, "-q") as m:  # the harness adds -v: -q wins
        _refuse_an_exe(m)
        wait_for(lambda: "refused voice_clone/x.exe" in m.log(), 10, "the refusal in the log")
    assert " INFO " not in m.log() and " DEBUG " not in m.log()


def test_log_level_error_keeps_errors_only(emulator, mount_of):
    require_fuse()
    with mount_of(emulator, "--log-level", "error") as m:
        _refuse_an_exe(m)
    assert "refused" not in m.log() and " INFO " not in m.log()


def test_under_systemd_the_journal_gets_plain_lines_with_their_priority(emulator, tmp_path):
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    err = tmp_path / "stderr"
    with open(err, "wb") as sink:
        st = os.fstat(sink.fileno())
        env = dict(os.environ, MINIMAX_API_KEY=emulator.api_key, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        proc = subprocess.Popen([sys.executable, "-m", "mmfs", "mount", str(mnt), "--base-url", emulator.base_url,
                                 "--cache-dir", str(tmp_path / "c"), "--state-dir", str(tmp_path / "s")],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink)
        try:
            wait_for(lambda: is_live_mount(mnt), 30, "the mount")
            with pytest.raises(OSError):
                open(mnt / "voice_clone" / "x.exe", "wb").close()
            wait_for(lambda: "x.exe" in err.read_text(), 10, "the refusal")
        finally:
            subprocess.run([FUSERMOUNT, "-u", str(mnt)], check=False, capture_output=True)
            proc.wait(timeout=30)
            if is_mount_point(mnt):
                subprocess.run([FUSERMOUNT, "-u", "-z", str(mnt)], check=False, capture_output=True)
    lines = err.read_text().splitlines()
    assert "<4>mmfs.refusals: refused voice_clone/x.exe: the platform takes only .m4a, .mp3, .wav files in " \
           "voice_clone; 'x.exe' is a .exe file" in lines
    assert any(line.startswith("<6>mmfs.mount: mounted on ") for line in lines)
    assert all(line.startswith("<") for line in lines), lines  # no timestamps: the journal has its own
