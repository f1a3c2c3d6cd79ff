"""A hostile network between the mount and the platform (tests/hostile_http.py): answers that are not the
file, answers that trickle, answers that would eat memory. Each test drives a real mount with real programs
and checks the bytes served, the bound against the deadline, or the mount's memory; then that the mount
recovers once the network does.

Bounds are asserted against the deadline with a stated slack (``SLACK``): scheduling noise on a shared
machine. What they rule out is the old behaviour: a read or listing held for minutes by a trickle.
"""

from __future__ import annotations

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


@pytest.fixture
def proxy(emulator):
    with HostileProxy(emulator.base_url) as p:
        yield p


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


def test_a_file_named_as_a_page_is_served_as_one(emulator, proxy, tmp_path):
    # The page check is on the type *and* the name: a file that is a page reads as itself.
    data = b"<html><body>" + os.urandom(2000).hex().encode() + b"</body></html>"
    emulator.seed("retrieval", "page.html", data)
    with mount_through(proxy, emulator, tmp_path) as m:
        assert (m.path / "retrieval" / "page.html").read_bytes() == data
