"""One deadline for everything: whatever a read, a listing or a command waits on, it ends by its bound.

Each test makes one thing wait for ever (a mount stopped with SIGSTOP, answers trickled a byte at a time by
tests/hostile_http.py, downloads that never finish) and asserts the bound with a stated slack:

* ``SLACK``: scheduling noise and Python's start-up on a shared machine. A bound it rules out is always the
  old behaviour: minutes, or for ever.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hostile_http import Answer, HostileProxy, Request
from mounting import Mounted, require_fuse, wait_for

pytestmark = pytest.mark.fuse

MiB = 1 << 20
DEADLINE = 3.0  # --retry-deadline of the mounts below
SLACK = 4.0
ANSWER_WAIT = 2.0  # mmfs.commands.running.ANSWER_WAIT: how long a command waits on a mount that does not answer


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def mmfs(*argv: str, timeout: float = 20) -> tuple[float, subprocess.CompletedProcess]:
    """Run an mmfs command; one that hangs raises ``TimeoutExpired`` well before the test's own timeout, so
    a stopped mount is always let go on again."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mmfs", *argv], capture_output=True, text=True, timeout=timeout)
    return time.monotonic() - started, done


def timed(call) -> tuple[float, object]:
    """Seconds ``call`` took, and what it returned or raised."""
    started = time.monotonic()
    try:
        result: object = call()
    except OSError as exc:
        result = exc
    return time.monotonic() - started, result


# -- control commands ---------------------------------------------------------------------------------


def _state(pid: int) -> str:
    """The process's state letter (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]



def test_commands_on_a_stopped_mount_say_so_within_their_bound_and_status_goes_on(emulator, mount_of, tmp_path):
    emulator.seed("retrieval", "a.txt", b"a\n")
    with mount_of(emulator, root=tmp_path / "healthy") as healthy, \
            mount_of(emulator, root=tmp_path / "stopped") as stopped:
        assert (healthy.path / "retrieval" / "a.txt").read_bytes() == b"a\n"
        assert stopped.proc is not None
        os.kill(stopped.proc.pid, signal.SIGSTOP)
        wait_for(lambda: _state(stopped.proc.pid) == "T", 10, "the mount to stop")
        try:
            took, done = mmfs("status")
            assert took < ANSWER_WAIT * 2 + SLACK, took  # its attribute, then its socket: one bound each at most
            assert done.returncode == 0, done.stderr
            assert f"mmfs on {healthy.path}" in done.stdout  # the others still answer
            assert str(stopped.path) in done.stderr and "no answer within 2 s" in done.stderr, (done.stdout,
                                                                                                done.stderr)
            for argv in (["status", str(stopped.path)], ["refresh", str(stopped.path)],
                         ["cache", "info", str(stopped.path)]):
                took, done = mmfs(*argv)
                assert took < ANSWER_WAIT + SLACK, (argv, took)
                assert done.returncode == 1 and "no answer within 2 s" in done.stderr, (argv, done.stderr)
                assert "Traceback" not in done.stderr
        finally:
            os.kill(stopped.proc.pid, signal.SIGCONT)
        took, done = mmfs("status", str(stopped.path))  # once it goes on, it answers again
        assert done.returncode == 0, done.stderr


# -- trickled answers -----------------------------------------------------------------------------------


def trickle_headers(op: str, per_byte: float = 0.5, only: str = ""):
    def hook(request: Request, answer: Answer) -> Answer | None:
        if request.op == op and only in request.path:
            answer.header_delay = per_byte
            return answer
        return None

    return hook


def trickle_body(op: str, per_piece: float = 0.5, only: str = ""):
    def hook(request: Request, answer: Answer) -> Answer | None:
        if request.op == op and only in request.path:
            answer.body_delay = per_piece
            answer.body_piece = 1
            return answer
        return None

    return hook


def through(proxy: HostileProxy, emulator, root: Path, *extra: str) -> Mounted:
    return Mounted(proxy.base_url, emulator.api_key, root, "--retry-deadline", str(DEADLINE), *extra)


@pytest.mark.parametrize("hook", [trickle_headers("download"), trickle_body("download", 2.0),
                                  trickle_headers("retrieve"), trickle_body("retrieve")],
                         ids=["download-headers", "download-body", "retrieve-headers", "retrieve-body"])
def test_a_read_whose_answers_trickle_fails_by_its_deadline(emulator, proxy, tmp_path, hook):
    data = os.urandom(MiB)
    emulator.seed("retrieval", "slow.bin", data)
    with through(proxy, emulator, tmp_path) as m:
        path = m.path / "retrieval" / "slow.bin"
        os.stat(path)  # listed before the trickle begins
        proxy.answer = hook
        took, result = timed(path.read_bytes)
        assert isinstance(result, OSError) and result.errno == errno.EIO, result
        assert took < DEADLINE + SLACK, took
        proxy.answer = None
        assert path.read_bytes() == data  # the mount goes on once the network does


@pytest.mark.parametrize("hook", [trickle_headers("download"), trickle_body("download", 1.0)],
                         ids=["headers", "body"])
def test_a_whole_body_stream_that_trickles_is_abandoned_and_the_next_read_works(emulator, proxy, tmp_path, hook):
    # A host that ignores Range is read as one background stream: a trickle must not keep it, and every
    # reader joining it, stuck once the network is back.
    data = os.urandom(6 * MiB)
    emulator.seed("retrieval", "whole.bin", data)
    emulator.configure(ignore_range=True)
    with through(proxy, emulator, tmp_path) as m:
        path = m.path / "retrieval" / "whole.bin"
        os.stat(path)
        proxy.answer = hook
        took, result = timed(path.read_bytes)
        assert isinstance(result, OSError) and result.errno == errno.EIO, result
        assert took < DEADLINE + SLACK, took
        proxy.answer = None
        started = time.monotonic()
        while True:  # a read may still meet the dying stream once: it fails by its deadline
            took, result = timed(path.read_bytes)
            if result == data or time.monotonic() - started > 3 * DEADLINE + SLACK:
                break
        assert result == data
        assert time.monotonic() - started < 3 * DEADLINE + SLACK


# The mount's key check at start lists voice_clone: only the folder read later trickles.
@pytest.mark.parametrize("hook", [trickle_headers("list", only="purpose=retrieval"),
                                  trickle_body("list", only="purpose=retrieval")], ids=["headers", "body"])
def test_a_first_listing_whose_answer_trickles_ends_by_its_deadline(emulator, proxy, tmp_path, hook):
    emulator.seed("retrieval", "a.txt", b"a\n")
    proxy.answer = hook
    with through(proxy, emulator, tmp_path) as m:
        took, result = timed(lambda: os.listdir(m.path / "retrieval"))
        # A listing is one call: its tries end by the deadline; the folder then answers from what is known
        # (nothing yet), or EIO.
        assert took < DEADLINE + SLACK, took
        assert result == [] or (isinstance(result, OSError) and result.errno == errno.EIO), result
        proxy.answer = None


def test_a_read_of_a_healthy_file_does_not_wait_for_slots_held_by_stuck_downloads(emulator, proxy, tmp_path):
    stuck = [os.urandom(8 * MiB) for _ in range(15)]
    for i, data in enumerate(stuck):
        emulator.seed("retrieval", f"stuck{i}.bin", data)
    healthy = os.urandom(2 * MiB)
    emulator.seed("retrieval", "healthy.bin", healthy)

    def hook(request: Request, answer: Answer) -> Answer | None:
        if request.is_download and "stuck" in request.path:
            answer.header_delay = 0.5
            return answer
        return None

    with through(proxy, emulator, tmp_path) as m:
        folder = m.path / "retrieval"
        assert len(os.listdir(folder)) == 16
        proxy.answer = hook
        readers = [threading.Thread(target=timed, args=(lambda p=folder / f"stuck{i}.bin": p.read_bytes(),))
                   for i in range(15)]
        for t in readers:
            t.start()
        time.sleep(0.5)  # every stuck read has its download under way
        took, result = timed((folder / "healthy.bin").read_bytes)
        assert took < DEADLINE + SLACK, took
        assert result == healthy or (isinstance(result, OSError) and result.errno == errno.EIO), result
        for t in readers:
            t.join(DEADLINE * 4 + SLACK)
            assert not t.is_alive()
        proxy.answer = None
        assert (folder / "healthy.bin").read_bytes() == healthy


def test_an_upload_whose_answer_never_ends_fails_within_its_stated_bound(emulator, proxy, tmp_path):
    # The upload's answer trickles one byte a second: its bound is the request timeout or the retry
    # deadline, whichever is shorter, from the body being sent; close() must not wait for the whole trickle.
    def hook(request: Request, answer: Answer) -> Answer | None:
        if request.op == "upload":
            answer.header_delay = 1.0
            return answer
        return None

    proxy.answer = hook
    with through(proxy, emulator, tmp_path) as m:
        target = m.path / "retrieval" / "up.txt"
        took, result = timed(lambda: target.write_bytes(b"hello\n"))
        assert took < 2 * DEADLINE + SLACK, (took, result)  # the answer's bound, then the landed check
        proxy.answer = None


# -- the fleet's waits -----------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path):
    from redis_server import running_redis

    yield from running_redis(tmp_path)


def test_the_fleets_budget_and_listing_lease_waits_end_at_the_callers_deadline(redis_server):
    from mmfs.api import deadline
    from mmfs.errors import RateLimitError
    from mmfs.fleet.budget import FleetBudget
    from mmfs.fleet.link import RedisLink, parse_shared_url
    from mmfs.fleet.listings import SharedListings
    from mmfs.fleet.seal import Seal, derive_key

    link = RedisLink(parse_shared_url(redis_server.url))
    link.check()
    budget = FleetBudget(link, "mmfs:deadline:", 6000, 50)
    budget.after_failure(RateLimitError("1002", status_code=1002, retry_after=60.0))  # a long pause
    with deadline.within(1.0):
        took, result = timed(lambda: budget.before_call("list"))
    assert isinstance(result, deadline.DeadlineError), result
    assert took < 1.0 + SLACK, took

    listings = SharedListings(link, "mmfs:deadline:", Seal(derive_key("sk-api-deadline", "deadline")), ttl=30)
    link.redis.set("mmfs:deadline:lease:list:retrieval", "another-mount", px=60_000)  # held elsewhere
    with deadline.within(0.5):
        took, _ = timed(lambda: listings.list_files("retrieval", lambda purpose: []))
    assert took < 0.5 + 1.0, took  # not the lease's whole wait (5 s); slack: one poll and a Redis call
