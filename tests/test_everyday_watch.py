"""``mmfs status --watch``: live transfers, and a line for an upload that took a while."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from mounting import require_fuse, wait_for


def mount_status(m) -> dict:
    done = subprocess.run([sys.executable, "-m", "mmfs", "status", str(m.path), "--json"], capture_output=True,
                          text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_watch_shows_transfers_and_says_when_a_slow_upload_ends(emulator, mount_of, tmp_path):
    require_fuse()
    with mount_of(emulator) as m:
        watch = subprocess.Popen([sys.executable, "-m", "mmfs", "status", str(m.path), "--watch", "--interval",
                                  "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            emulator.configure(latency=3.5)  # the upload's answer comes 3.5 s after its body
            (m.path / "retrieval" / "slow.txt").write_bytes(b"x" * 100_000)
            emulator.configure(latency=0)
            wait_for(lambda: any(r.filename == "slow.txt" for r in emulator.store.all()), 30, "the upload")
            wait_for(lambda: not mount_status(m)["uploads_in_flight"], 30, "the upload's end")
            time.sleep(0.6)  # a few more frames after the upload ended
        finally:
            watch.send_signal(signal.SIGINT)
            out, err = watch.communicate(timeout=30)
        assert watch.returncode == 0, err
        lines = out.splitlines()
        assert lines[0].split(" ", 1)[1].startswith(f"{m.path}: down ")  # one line per frame into a pipe
        assert any("uploads retrieval/slow.txt 0 B/97.7 KiB" in line for line in lines), out
        done = [line for line in lines if line.startswith("upload of ")]
        assert len(done) == 1 and done[0].startswith("upload of retrieval/slow.txt (97.7 KiB) done after "), out
        assert "\033" not in out and "\r" not in out


def test_watch_on_a_terminal_redraws_in_place_with_rates(emulator, mount_of):
    import os
    import pty

    require_fuse()
    with mount_of(emulator) as m:
        main, side = pty.openpty()
        watch = subprocess.Popen([sys.executable, "-m", "mmfs", "status", str(m.path), "--watch", "--interval",
                                  "0.1"], stdin=subprocess.DEVNULL, stdout=side, stderr=subprocess.PIPE)
        os.close(side)
        seen = b""
        try:
            deadline = time.monotonic() + 20
            while seen.count(b"\033[H\033[J") < 2 and time.monotonic() < deadline:
                seen += os.read(main, 65536)
        finally:
            watch.send_signal(signal.SIGINT)
            watch.wait(timeout=30)
            os.close(main)
        assert watch.returncode == 0
        frame = seen.split(b"\033[H\033[J")[1].decode()
        assert frame.startswith(f"mmfs on {m.path}  (pid ")
        assert "  rates:      down 0 B/s, up 0 B/s" in frame
