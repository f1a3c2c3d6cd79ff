"""A mount that dies: what its spools become at the next mount. The writer runs in a process of its own,
killed with SIGKILL, so nothing of it gets a chance to clean up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.harness import Core

HERE = Path(__file__).parent


def killed_writer(core: Core, path: str, size: int, then: str) -> None:
    env = dict(os.environ, MINIMAX_API_KEY=core.emu.api_key, PYTHONPATH=f"{HERE.parent.parent}:{HERE}")
    proc = subprocess.Popen([sys.executable, str(HERE / "crashing_writer.py"), core.emu.base_url, str(core.root),
                             path, str(size), then], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        if then == "close":  # wait until the upload started: the manifest says the spool is complete
            deadline = time.monotonic() + 30
            while not any(json.loads(m.read_text()).get("state") == "complete"
                          for m in core.config.spool_dir.glob("*.json")):
                assert time.monotonic() < deadline, "the upload never started"
                time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()


def test_a_spool_complete_when_the_mount_died_is_uploaded_by_the_next(core, caplog):
    core.emu.configure(latency=2.0)  # the upload is in flight when the process dies
    killed_writer(core, "/retrieval/crash.txt", 300_000, "close")
    core.emu.configure(latency=0)
    after = core.reopen()
    try:
        lines = after.fs.recover()
        assert len(lines) == 1 and "crash.txt" in lines[0]
        assert after.platform("retrieval") == {"crash.txt": b"w" * 300_000}  # once, even if the first landed
        assert after.spool_files() == [] and after.failed_uploads() == []
        assert "crash.txt" in after.fs.readdir("/retrieval")
    finally:
        after.fs.destroy()


def test_a_recovered_overwrite_deletes_the_file_it_replaces(core):
    core.emu.seed("retrieval", "over.txt", b"the old bytes")
    core.emu.configure(latency=2.0)
    killed_writer(core, "/retrieval/over.txt", 100_000, "close")
    core.emu.configure(latency=0)
    after = core.reopen()
    try:
        [line] = after.fs.recover()
        assert "replacing" in line
        assert after.platform("retrieval") == {"over.txt": b"w" * 100_000}
    finally:
        after.fs.destroy()


def test_a_spool_still_being_written_is_kept_as_cut_with_its_purpose_and_name(core):
    killed_writer(core, "/voice_clone/take.wav", 200_000, "keep")
    after = core.reopen()
    try:
        [line] = after.fs.recover()
        assert "take.wav" in line and "cut" in line
        assert after.uploads() == 0 and after.platform("voice_clone") == {}
        [kept] = after.failed_uploads()
        assert str(kept) in line and kept.read_bytes() == b"w" * 200_000
        about = json.loads(kept.with_name(kept.name + ".json").read_text())
        assert about == {"purpose": "voice_clone", "filename": "take.wav", "bytes": 200_000, "complete": False,
                         "why": "the mount stopped while it was being written"}
        assert after.spool_files() == []
    finally:
        after.fs.destroy()


def test_recovery_leaves_a_live_mounts_spools_alone(core):
    fh = core.fs.create("/retrieval/live.txt").fh
    core.fs.write(fh, b"still writing", 0)
    other = core.reopen()
    try:
        assert other.fs.recover() == []
        assert len(core.spool_files()) == 2  # the spool and its manifest, untouched
    finally:
        other.fs.destroy()
    core.fs.flush(fh)
    core.fs.release(fh)
    assert core.platform("retrieval") == {"live.txt": b"still writing"}


def test_a_recovered_overwrite_of_the_same_size_is_not_mistaken_for_the_file_it_replaces(core):
    # An edit that keeps the size (sed s/o/w/ of a file uploaded a minute ago), and the mount dies while it
    # uploads: the stored file has the spool's name and size and is recent, yet it is not the new bytes.
    core.emu.seed("retrieval", "same.txt", b"o" * 100_000)
    core.emu.configure(latency=2.0)
    killed_writer(core, "/retrieval/same.txt", 100_000, "close")
    core.emu.configure(latency=0)
    after = core.reopen()
    try:
        [line] = after.fs.recover()
        assert after.platform("retrieval") == {"same.txt": b"w" * 100_000}, line
        assert after.spool_files() == [] and after.failed_uploads() == []
    finally:
        after.fs.destroy()
