"""Numbers no file system can hold, and arguments no program can use: clamped or refused in one line.

A listing may state a size past 2^63 (``off_t`` is 64-bit signed) or a creation time past year 9999; the
mount shows the largest size it can state and an unknown time rather than a wrapped one, and the folder
still lists. A port out of range or a base URL that is not one ends the command with one line, never a
traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_KEY
from hostile_http import Answer, HostileProxy, Request
from mounting import Mounted, require_fuse

from mmfs.api.records import MAX_SIZE, parse_file_record


@pytest.mark.parametrize("stated", [1 << 63, (1 << 64) + 5, 10**30])
def test_a_size_past_what_off_t_holds_is_clamped_not_wrapped(stated):
    record = parse_file_record({"file_id": 1, "bytes": stated, "created_at": 10**20})
    assert record.bytes == MAX_SIZE
    assert record.created_at is None  # a time no st_mtime can hold is no time


def test_a_listing_with_sizes_and_times_past_64_bits_lists_and_stats_without_wrapping(emulator, tmp_path: Path):
    require_fuse()
    emulator.seed("retrieval", "huge.bin", b"x" * 5000)
    emulator.seed("retrieval", "plain.txt", b"plain\n")

    def hook(request: Request, answer: Answer) -> Answer | None:
        if request.op == "list" and "purpose=retrieval" in request.path:
            body = re.sub(rb'"bytes": ?5000', b'"bytes": 18446744073709551621', answer.body)
            body = re.sub(rb'"created_at": ?\d+', b'"created_at": 100000000000000000000', body, count=1)
            answer.body = body
            answer.set_header("Content-Length", str(len(body)))
            return answer
        return None

    with HostileProxy(emulator.base_url) as proxy:
        proxy.answer = hook
        with Mounted(proxy.base_url, emulator.api_key, tmp_path) as m:
            folder = m.path / "retrieval"
            assert sorted(os.listdir(folder)) == ["huge.bin", "plain.txt"]
            assert os.stat(folder / "huge.bin").st_size == MAX_SIZE  # 2^64 + 5 wrapped to 5 before
            assert (folder / "plain.txt").read_bytes() == b"plain\n"


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmfs", *argv], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MINIMAX_API_KEY=TEST_KEY), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_an_emulator_port_out_of_range_is_one_line(port):
    done = run("emulator", "--port", port)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"emulator: argument --port: a port is from 0 to 65535 (0: any free port), "
                                   f"not {port} (see: python -m mmfs.emulator --help)")


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "http://host:abc"])
def test_a_base_url_that_is_not_one_is_one_line(tmp_path: Path, url):
    done = run("mount", str(tmp_path / "mnt"), "--base-url", url, "--cache-dir", str(tmp_path / "c"),
               "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2  # refused as it is parsed, before anything is mounted
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("mmfs: argument --base-url: not a URL") and len(done.stderr.splitlines()) == 1
