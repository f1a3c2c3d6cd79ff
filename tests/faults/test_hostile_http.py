"""A hostile network between the mount and the platform (tests/hostile_http.py): answers that are not the
file, answers that trickle, answers that would eat memory. Each test drives a real mount with real programs
and checks the bytes served, the bound against the deadline, or the mount's memory; then that the mount
recovers once the network does.

Bounds are asserted against the deadline with a stated slack (``SLACK``): scheduling noise on a shared
machine. What they rule out is the old behaviour: a read or listing held for minutes by a trickle.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from hostile_http import Answer, HostileProxy, Request
from mounting import Mounted, require_fuse

pytestmark = pytest.mark.fuse

MiB = 1 << 20
PAGE = b"<html><body>502</body></html>"


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def mount_through(proxy: HostileProxy, emulator, tmp_path: Path, *extra: str) -> Mounted:
    return Mounted(proxy.base_url, emulator.api_key, tmp_path, *extra)


def cp(source: Path, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["cp", str(source), str(target)], capture_output=True, text=True, timeout=120)


def _html_page(request: Request, answer: Answer) -> Answer | None:
    if request.is_download and answer.status in (200, 206):
        return Answer(200, [("Content-Type", "text/html"), ("Content-Length", str(len(PAGE)))], PAGE)
    return None


def _short_whole_body(request: Request, answer: Answer) -> Answer | None:
    # A host that ignores Range and sends a body cut short, its Content-Length agreeing with the cut.
    if request.is_download and answer.status in (200, 206):
        body = answer.body[:27]
        return Answer(200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
                      body)
    return None


@pytest.mark.parametrize("hook", [_html_page, _short_whole_body], ids=["html-page", "short-whole-body"])
def test_an_answer_that_is_not_the_file_is_never_served_nor_cached(emulator, proxy, tmp_path, hook):
    data = os.urandom(5000)
    emulator.seed("retrieval", "report.txt", data)
    proxy.answer = hook
    copy = tmp_path / "copy"
    with mount_through(proxy, emulator, tmp_path, "--retry-deadline", "3") as m:
        path = m.path / "retrieval" / "report.txt"
        done = cp(path, copy)
        assert done.returncode != 0, "cp must fail, not copy the page"
        assert "Input/output error" in done.stderr
        assert "not the file" in m.log() or "bytes, not 5000" in m.log()
        retrieves = sum(1 for r in proxy.requests if r.op == "retrieve")
        assert retrieves >= 2  # tried again on a fresh URL
        proxy.answer = None  # the host recovers
        assert cp(path, copy).returncode == 0
        assert copy.read_bytes() == data
    copy.unlink()
    with mount_through(proxy, emulator, tmp_path) as m:  # and after a remount
        assert cp(m.path / "retrieval" / "report.txt", copy).returncode == 0
        assert copy.read_bytes() == data


def test_a_ranged_answer_that_contradicts_the_size_a_download_stated_is_refused(emulator, proxy, tmp_path):
    # The first block's answer states the true size; a later one claims the file ends right there.
    data = os.urandom(6 * MiB)
    emulator.seed("retrieval", "big.bin", data)

    def shrink(request: Request, answer: Answer) -> Answer | None:
        if request.is_download and answer.status == 206 and not request.headers.get("Range", "").startswith(
                "bytes=0-"):
            start = int(request.headers["Range"].split("=")[1].split("-")[0])
            body = answer.body[:27]
            return Answer(206, [("Content-Type", "application/octet-stream"), ("Content-Length", "27"),
                                ("Content-Range", f"bytes {start}-{start + 26}/{start + 27}")], body)
        return None

    proxy.answer = shrink
    copy = tmp_path / "copy"
    with mount_through(proxy, emulator, tmp_path, "--retry-deadline", "3") as m:
        done = cp(m.path / "retrieval" / "big.bin", copy)
        assert done.returncode != 0, "a short copy that says it succeeded"
        assert "not 6291456" in m.log()
        proxy.answer = None
        assert cp(m.path / "retrieval" / "big.bin", copy).returncode == 0
        assert copy.read_bytes() == data


def test_a_file_named_as_a_page_is_served_as_one(emulator, proxy, tmp_path):
    # The page check is on the type *and* the name: a file that is a page reads as itself.
    data = b"<html><body>" + os.urandom(2000).hex().encode() + b"</body></html>"
    emulator.seed("retrieval", "page.html", data)
    with mount_through(proxy, emulator, tmp_path) as m:
        assert (m.path / "retrieval" / "page.html").read_bytes() == data


# -- bounded memory -------------------------------------------------------------------------------------


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """300 MiB of JSON-looking spaces in about 300 KiB of gzip."""
    import gzip

    return gzip.compress(b"{" + b" " * (300 * MiB) + b"}", compresslevel=9)


def _listing_as(body: bytes, encoding: str | None):
    def hook(request: Request, answer: Answer) -> Answer | None:
        if request.op == "list" and "purpose=retrieval" in request.path:
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            if encoding:
                headers.append(("Content-Encoding", encoding))
            return Answer(200, headers, body)
        return None

    return hook


# Peak memory a mount may reach: what it needs to run (about 100 MiB here) and the 32 MiB a body may take,
# with room to spare; reading either answer whole took over 600 MiB.
PEAK_LIMIT = 300 * MiB


def test_a_gzip_bomb_listing_is_refused_without_inflating_it(emulator, proxy, tmp_path, gzip_bomb):
    emulator.seed("retrieval", "a.txt", b"a\n")
    proxy.answer = _listing_as(gzip_bomb, "gzip")
    with mount_through(proxy, emulator, tmp_path, "--retry-deadline", "3") as m:
        with contextlib.suppress(OSError):  # an empty folder or EIO: what matters is memory and the message
            os.listdir(m.path / "retrieval")
        assert m.proc is not None
        assert _peak_rss(m.proc.pid) < PEAK_LIMIT, _peak_rss(m.proc.pid) >> 20
        assert "larger than 32 MiB" in m.log()
        assert any(r.headers.get("Accept-Encoding") == "identity" for r in proxy.requests if r.op == "list")
        proxy.answer = None


def test_a_300_mib_listing_is_refused_with_a_clear_error(emulator, proxy, tmp_path):
    emulator.seed("retrieval", "a.txt", b"a\n")
    record = (b'{"file_id": 1, "bytes": 5, "created_at": 1700000000, "filename": "x.txt", '
              b'"purpose": "retrieval"},')
    body = b'{"files": [' + record * (300 * MiB // len(record)) + b'{"file_id": 2}], "base_resp": ' \
           b'{"status_code": 0, "status_msg": "success"}}'
    proxy.answer = _listing_as(body, None)
    with mount_through(proxy, emulator, tmp_path, "--retry-deadline", "3") as m:
        with contextlib.suppress(OSError):
            os.listdir(m.path / "retrieval")
        assert m.proc is not None
        assert _peak_rss(m.proc.pid) < PEAK_LIMIT, _peak_rss(m.proc.pid) >> 20
        assert "larger than 32 MiB" in m.log()
        proxy.answer = None
