"""Two and three real mounts of one emulator, each with its own cache folders, sharing one loopback Redis.

What the fleet must show: a file read on one mount is read on another with no download from the platform;
an upload through one mount shows on another before its listing is due; mounts listing in a loop cost one
``list`` per purpose per refresh between them; a fleet budget holds at the emulator; Redis stopped in the
middle of a read changes nothing the reader sees; a wrong Redis password stops the mount at start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mounting import Mounted, wait_for
from redis_server import RedisServer, redis_of_kind, running_redis

from mmfs.emulator import Emulator

pytestmark = pytest.mark.fuse

BLOCK = 4 << 20
API_KINDS = ("list", "retrieve", "retrieve_content", "upload", "delete")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from running_redis(tmp_path)


@pytest.fixture(scope="module", params=["single", "cluster", "sentinel"])
def any_redis(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One of each engine for the module (each test's emulator is a new account: its keys are its own)."""
    yield from redis_of_kind(request.param, tmp_path_factory.mktemp(request.param))  # type: ignore[misc]


@contextlib.contextmanager
def fleet(emulator: Emulator, tmp_path: Path, count: int, *extra: str,
          shared: str | None = None) -> Iterator[list[Mounted]]:
    """``count`` mounts, each with its own cache and state folders, all given ``--shared shared``."""
    args = [*extra, *(["--shared", shared] if shared else [])]
    mounts = [Mounted(emulator.base_url, emulator.api_key, tmp_path / f"m{i}", *args) for i in range(count)]
    with contextlib.ExitStack() as stack:
        for m in mounts:
            stack.enter_context(m)
        yield mounts


def block_keys(server: RedisServer, file_id: object = "*") -> int:
    """Whole blocks in Redis (not their units or leases)."""
    return len(server.keys(f"mmfs:*:blk:{{{file_id}:*}}"))


def api_calls(emulator: Emulator) -> int:
    requests = emulator.counters()["requests"]
    return sum(requests[k] for k in API_KINDS)


def loop_for(seconds: float, mounts: list[Mounted], body: Callable[[Mounted], None]) -> float:
    """Run ``body`` in a loop on every mount at once, for ``seconds``; return how long it really took."""
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []

    def run(m: Mounted) -> None:
        try:
            while time.monotonic() < stop:
                body(m)
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(m,)) for m in mounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return time.monotonic() - started


def test_a_file_read_on_one_mount_is_read_on_another_without_downloads(
        emulator: Emulator, any_redis: RedisServer, tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK + 12345)
    file_id = emulator.seed("retrieval", "render.bin", data)["file_id"]
    with fleet(emulator, tmp_path, 2, shared=any_redis.url) as (a, b):
        assert (a.path / "retrieval" / "render.bin").read_bytes() == data
        wait_for(lambda: block_keys(any_redis, file_id) == 3, 10, "A's blocks to reach Redis")
        emulator.reset_counters()
        assert (b.path / "retrieval" / "render.bin").read_bytes() == data
        counters = emulator.counters()
        assert counters["requests"]["download"] == 0 and counters["download_bytes"] == 0
        assert counters["requests"]["retrieve"] == 0  # not even a download URL was needed


def test_an_upload_through_one_mount_shows_on_another_before_its_refresh(
        emulator: Emulator, any_redis: RedisServer, tmp_path: Path) -> None:
    with fleet(emulator, tmp_path, 2, "--dir-cache-time", "3600", shared=any_redis.url) as (a, b):
        assert "notes.txt" not in os.listdir(b.path / "retrieval")  # B now holds a listing for an hour
        (a.path / "retrieval" / "notes.txt").write_bytes(b"made on A")
        wait_for(lambda: "notes.txt" in os.listdir(b.path / "retrieval"), 10, "B to show A's upload")
        assert (b.path / "retrieval" / "notes.txt").read_bytes() == b"made on A"
        os.unlink(a.path / "retrieval" / "notes.txt")
        wait_for(lambda: "notes.txt" not in os.listdir(b.path / "retrieval"), 10, "B to drop A's delete")
        # A file no listing shows, reached by id on A, shows in its folder on B.
        hidden = emulator.seed("video_understanding", "hidden.mp4", b"\0" * 1000)
        assert "hidden.mp4" not in os.listdir(b.path / "video_understanding")
        assert (a.path / ".by-id" / str(hidden["file_id"])).stat().st_size == 1000
        wait_for(lambda: "hidden.mp4" in os.listdir(b.path / "video_understanding"), 10, "B to show it")


def test_three_mounts_listing_in_a_loop_list_once_per_purpose_per_refresh(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    purposes = ("voice_clone", "retrieval")
    refresh = 1.0
    with fleet(emulator, tmp_path, 3, "--dir-cache-time", str(refresh), "--purposes", ",".join(purposes),
               shared=redis_server.url) as mounts:
        emulator.reset_counters()
        elapsed = loop_for(4.0, mounts, lambda m: [os.listdir(m.path / p) for p in purposes])
        lists = emulator.counters()["requests"]["list"]
    # A shared copy lives one refresh interval and only its absence (with the lease) lets a mount list, so
    # the fleet lists a purpose at most once per interval (+1 for the interval under way at the start).
    assert 2 <= lists <= len(purposes) * (math.floor(elapsed / refresh) + 1)


def test_the_fleet_budget_holds_at_the_emulator(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    per_minute, burst = 120, 4
    shared = f"{redis_server.url}?budget={per_minute}&burst={burst}"
    with fleet(emulator, tmp_path, 3, "--dir-cache-time", "0", "--purposes", "voice_clone",
               shared=shared) as mounts:
        emulator.reset_counters()
        elapsed = loop_for(4.0, mounts, lambda m: os.listdir(m.path / "voice_clone"))
        calls = api_calls(emulator)
    # Each listdir wants a list call; the shared bucket hands out at most burst + rate x time of them.
    assert burst < calls <= burst + per_minute / 60 * elapsed + 1


def test_a_rate_limit_seen_by_one_mount_slows_the_other(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    shared = f"{redis_server.url}?budget=6000"  # a budget far above this test's calls: only the pause counts
    with fleet(emulator, tmp_path, 2, "--dir-cache-time", "0", "--purposes", "voice_clone",
               shared=shared) as (a, b):
        first, second = (emulator.seed("retrieval", f"{n}.txt", n.encode()) for n in ("first", "second"))
        emulator.configure(fail_api_every=1)
        # Retrieves (by id), not listings: a listing B would simply take from A once A had it.
        reader = threading.Thread(target=(a.path / ".by-id" / str(first["file_id"])).read_bytes)
        reader.start()
        wait_for(lambda: "the fleet pauses API calls" in a.log(), 10, "A to be rate limited")
        emulator.configure(fail_api_every=0)
        assert (b.path / ".by-id" / str(second["file_id"])).read_bytes() == b"second"
        reader.join(30)
        assert emulator.counters()["faults"]["api_1002"] >= 1
        assert "the fleet pauses API calls" not in b.log()  # B was never refused itself...
        assert "waited" in b.log() and "API budget" in b.log()  # ...but held off on A's word


def _fleet_status(m: Mounted) -> dict:
    done = subprocess.run([sys.executable, "-m", "mmfs", "status", str(m.path), "--json"], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)["fleet"]


def test_redis_stopped_mid_read_changes_nothing_the_reader_sees(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    data = os.urandom(6 * BLOCK)
    emulator.seed("retrieval", "long.bin", data)
    with fleet(emulator, tmp_path, 2, shared=redis_server.url) as (a, b):
        with open(a.path / "retrieval" / "long.bin", "rb") as f:
            f.read(3 * BLOCK)  # A shares the first half (and whatever it prefetched)
        wait_for(lambda: block_keys(redis_server) >= 3, 10, "A's blocks to reach Redis")
        emulator.configure(conn_rate=40.0)  # B's downloads of the rest are still going when Redis stops
        digest = hashlib.sha256()
        with open(b.path / "retrieval" / "long.bin", "rb") as f:
            digest.update(f.read(BLOCK // 2))
            redis_server.stop()
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        assert digest.digest() == hashlib.sha256(data).digest()
        wait_for(lambda: "going on alone" in b.log(), 10, "B to say it is alone")
        assert _fleet_status(b)["state"] == "alone"  # and `mmfs status` says so
        # Back on the same port (empty): B rejoins at its next use of Redis and fills it again.
        rejoins = b.log().count("rejoined")
        redis_server.start()

        def read_a_new_file() -> bool:
            record = emulator.seed("retrieval", "after.bin", b"x" * 5000)
            assert (b.path / ".by-id" / str(record["file_id"])).read_bytes() == b"x" * 5000
            return b.log().count("rejoined") > rejoins

        wait_for(read_a_new_file, 10, "B to rejoin", interval=0.3)
        assert _fleet_status(b)["state"] == "joined"
        wait_for(lambda: block_keys(redis_server) >= 1, 10, "B to share a block again")


def test_a_wrong_redis_password_stops_the_mount_with_one_line(emulator: Emulator, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password="the-right-one").start()
    try:
        (tmp_path / "mnt").mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "mmfs", "mount", str(tmp_path / "mnt"), "--base-url", emulator.base_url,
             "--cache-dir", str(tmp_path / "cache"), "--state-dir", str(tmp_path / "state")],
            # where a URL with a password belongs (on the command line it draws a warning line too)
            env=dict(os.environ, MINIMAX_API_KEY=emulator.api_key,
                     MMFS_SHARED=f"redis://:not-it@127.0.0.1:{server.port}/0"),
            capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the credentials" in lines[0] and "not-it" not in lines[0]


def test_mmfs_refresh_lists_from_the_platform_not_the_fleets_copy(emulator: Emulator, tmp_path: Path,
                                                                  redis_server: RedisServer) -> None:
    # A file added to the account by another client (not a mount): only the platform knows it. A refresh
    # must ask the platform, even while the fleet's shared listing is young.
    with fleet(emulator, tmp_path, 2, "--dir-cache-time", "600", shared=redis_server.url) as (a, b):
        assert os.listdir(a.path / "retrieval") == []
        assert os.listdir(b.path / "retrieval") == []  # b took a's shared copy
        emulator.seed("retrieval", "from-elsewhere.txt", b"elsewhere\n")
        done = subprocess.run([sys.executable, "-m", "mmfs", "refresh", str(b.path), "retrieval"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert os.listdir(b.path / "retrieval") == ["from-elsewhere.txt"]
