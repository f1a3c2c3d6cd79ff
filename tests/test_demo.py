"""scripts/demo, run as a user would: it mounts the demo tree, says where, and cleans up on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mounting import require_fuse, wait_for

pytestmark = pytest.mark.fuse

ROOT = Path(__file__).resolve().parent.parent


def test_demo_mounts_lists_and_stops(tmp_path):
    require_fuse()
    demo_dir = tmp_path / "demo"
    # The running interpreter's venv already holds the project: the script must reuse it, not rebuild it.
    env = dict(os.environ, MMFS_DEMO_DIR=str(demo_dir), MMFS_VENV=sys.prefix)
    env.pop("MINIMAX_API_KEY", None)
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "demo")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    mnt = demo_dir / "mnt"
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        assert os.path.ismount(mnt), output
        assert str(mnt) in output  # it tells the user where
        assert output.startswith("mmfs demo: "), output  # nothing else on the user's terminal (libfuse's noise)
        assert "greeting.wav" in subprocess.run(["ls", "-l", str(mnt / "voice_clone")], capture_output=True,
                                                text=True, check=True).stdout
        assert (mnt / "retrieval" / "handbook.pdf").read_bytes().startswith(b"%PDF-")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a user would press it
        rest, _ = proc.communicate(timeout=60)
        assert "unmounted and stopped" in rest
        wait_for(lambda: not os.path.ismount(mnt), 10, "the demo mount to go away")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
