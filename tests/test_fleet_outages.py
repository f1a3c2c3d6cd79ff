"""The shared tier through outages and at every file size, with real mounts of one emulator account.

What must hold: a change made on one mount while Redis is stopped, paused or restarted empty reaches the
other mounts within seconds of Redis returning; a file of any size read by one mount is read by the others
with no download and no retrieve; an exhausted fleet budget never holds ``ls`` past the listing's own
bound, nor a read past its deadline. The tests marked so run through each engine an operator may run: one
node, a three-master Redis Cluster (no proxy) and a master with a replica behind Sentinel.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import Mounted, wait_for
from redis_server import RedisServer, redis_of_kind, running_redis

from mmfs.emulator import Emulator
from mmfs.tree.namespace import REFRESH_WAIT

pytestmark = pytest.mark.fuse

UNIT = 256 << 10
BLOCK = 4 << 20


@pytest.fixture(scope="module", params=["single", "cluster", "sentinel"])
def any_redis(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One of each engine for the module (each test's emulator is a new account: its keys are its own)."""
    yield from redis_of_kind(request.param, tmp_path_factory.mktemp(request.param))  # type: ignore[misc]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from running_redis(tmp_path)


@contextlib.contextmanager
def fleet(emulator: Emulator, tmp_path: Path, count: int, shared: str, *extra: str) -> Iterator[list[Mounted]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(Mounted(emulator.base_url, emulator.api_key, tmp_path / f"m{i}", *extra,
                                           "--shared", shared)) for i in range(count)]


def account_prefix(emulator: Emulator) -> str:
    return "mmfs:" + hashlib.sha256(f"{emulator.base_url}\0{emulator.api_key}".encode()).hexdigest()[:16] + ":"


def fleet_status(m: Mounted) -> dict:
    done = subprocess.run([sys.executable, "-m", "mmfs", "status", str(m.path), "--json"], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)["fleet"]


# -- changes made while alone ---------------------------------------------------------------------------


def test_changes_made_while_redis_is_away_reach_the_fleet_when_it_returns(
        emulator: Emulator, any_redis: RedisServer, tmp_path: Path) -> None:
    redis_server = any_redis
    outages = ("stopped", "paused", "emptied")
    hidden = {}  # files no listing shows, reached by id on A while alone
    for outage in outages:
        emulator.seed("retrieval", f"old-{outage}.txt", b"old\n")
        hidden[outage] = str(emulator.seed("video_understanding", f"seen-{outage}.mp4", b"\0" * 10)["file_id"])
    with fleet(emulator, tmp_path, 2, redis_server.url, "--dir-cache-time", "3600") as (a, b):
        # Both hold these listings for an hour: only the fleet can tell B of A's changes.
        expected = sorted(os.listdir(b.path / "retrieval"))
        assert expected == sorted(os.listdir(a.path / "retrieval")) == sorted(f"old-{o}.txt" for o in outages)
        assert os.listdir(b.path / "video_understanding") == []  # the platform does not list these
        for outage in outages:
            alone = a.log().count("going on alone")
            if outage == "paused":
                redis_server.pause()
            else:
                redis_server.stop(keep_data=outage == "stopped")
            try:
                (a.path / "retrieval" / f"new-{outage}.txt").write_bytes(b"made alone\n")
                os.unlink(a.path / "retrieval" / f"old-{outage}.txt")
                assert (a.path / ".by-id" / hidden[outage]).stat().st_size == 10
                wait_for(lambda alone=alone: a.log().count("going on alone") > alone, 10, "A to say it is alone")
                assert fleet_status(a)["events"]["pending"] >= 1
            finally:
                if outage == "paused":
                    redis_server.resume()
                else:
                    redis_server.start()
            back = time.monotonic()
            expected = sorted({*expected, f"new-{outage}.txt"} - {f"old-{outage}.txt"})
            wait_for(lambda expected=expected: sorted(os.listdir(b.path / "retrieval")) == expected, 10,
                     f"B to see the upload and delete A made while Redis was {outage}")
            assert time.monotonic() - back < 10
            assert (b.path / "retrieval" / f"new-{outage}.txt").read_bytes() == b"made alone\n"
            wait_for(lambda outage=outage: f"seen-{outage}.mp4" in os.listdir(b.path / "video_understanding"), 10,
                     f"B to show the file A reached by id while Redis was {outage}")
        status = fleet_status(a)
        assert status["state"] == "joined" and status["events"]["pending"] == 0
    assert {f["filename"] for f in emulator_files(emulator)} == {f"new-{o}.txt" for o in outages} | {
        f"seen-{o}.mp4" for o in outages}


def emulator_files(emulator: Emulator) -> list[dict]:
    return [{"filename": f.filename, "file_id": f.file_id} for f in emulator.store.all()]


def test_an_idle_mount_notices_redis_back_within_seconds(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    with fleet(emulator, tmp_path, 1, redis_server.url) as (a,):
        redis_server.stop()
        wait_for(lambda: fleet_status(a)["state"] == "alone", 10, "the idle mount to notice Redis gone")
        redis_server.start()
        back = time.monotonic()
        wait_for(lambda: fleet_status(a)["state"] == "joined", 10, "the idle mount to rejoin", interval=0.2)
        assert time.monotonic() - back < 5


@pytest.mark.parametrize("how", ["flushed", "restarted"])
def test_after_redis_is_emptied_every_mount_writes_back_its_files(
        how: str, emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    hidden = [str(emulator.seed("video_understanding", f"v{i}.mp4", b"\0" * 100)["file_id"]) for i in range(2)]
    for i, file_id in enumerate(hidden):  # each known to one mount only, from an earlier mount without the fleet
        with Mounted(emulator.base_url, emulator.api_key, tmp_path / f"m{i}") as alone:
            assert (alone.path / ".by-id" / file_id).stat().st_size == 100
    with fleet(emulator, tmp_path, 2, redis_server.url, "--dir-cache-time", "3600"):
        wait_for(lambda: len(redis_server.keys("mmfs:*:events:marker")) == 1, 10, "the mounts to join")
        if how == "flushed":
            redis_server.flushall()
        else:
            redis_server.stop()
            redis_server.start()
        wait_for(lambda: sorted(known_ids(redis_server)) == sorted(hidden), 10,
                 "both mounts to write their files back")
        # A mount started now learns both, though each was known to one mount only.
        with Mounted(emulator.base_url, emulator.api_key, tmp_path / "late", "--shared", redis_server.url) as d:
            wait_for(lambda: sorted(os.listdir(d.path / "video_understanding")) == ["v0.mp4", "v1.mp4"], 10,
                     "a new mount to learn both files")


def known_ids(server: RedisServer) -> list[str]:
    r = server.client()
    return [k.decode() for key in server.keys("mmfs:*:known") for k in r.hkeys(key)]


# -- every size shared ----------------------------------------------------------------------------------


def shared_whole(server: RedisServer, file_id: int, size: int) -> bool:
    """Every byte of the file's first block is in Redis: as the block, or as all its units."""
    first = min(size, BLOCK)
    if server.keys(f"mmfs:*:blk:{{{file_id}:{BLOCK}:0}}"):
        return True
    return len(server.keys(f"mmfs:*:blk:{{{file_id}:{BLOCK}:0}}:u*")) >= -(-first // UNIT)


SIZES = (100_000, 200_000, 300_000, 1 << 20, 3 << 20)


def test_a_file_of_any_size_is_downloaded_once_for_three_mounts(
        emulator: Emulator, any_redis: RedisServer, tmp_path: Path) -> None:
    redis_server = any_redis
    files: dict[int, tuple[bytes, dict]] = {}
    for size in SIZES:
        data = os.urandom(size)
        files[size] = (data, emulator.seed("retrieval", f"{size}.bin", data))
    downloaded, retrieved = {}, {}
    with fleet(emulator, tmp_path, 3, redis_server.url) as mounts:
        for m in mounts:
            os.listdir(m.path / "retrieval")
        for size, (data, record) in files.items():
            emulator.reset_counters()
            for m in mounts:
                assert (m.path / "retrieval" / f"{size}.bin").read_bytes() == data
                wait_for(lambda record=record, size=size: shared_whole(redis_server, record["file_id"], size), 10,
                         "the file to be shared")
            counters = emulator.counters()
            downloaded[size], retrieved[size] = counters["download_bytes"], counters["requests"]["retrieve"]
    assert downloaded == {size: size for size in SIZES}  # each once, and no byte twice
    assert retrieved == dict.fromkeys(SIZES, 1)


def test_the_true_size_of_a_file_listed_without_one_is_probed_once(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    data = os.urandom(150_000)
    emulator.seed("video_generation", "render.mp4", data)  # listed with bytes: 0, as the platform does
    with fleet(emulator, tmp_path, 3, redis_server.url) as (a, b, c):
        emulator.reset_counters()
        assert (a.path / "video_generation" / "render.mp4").stat().st_size == len(data)
        probes = dict(emulator.counters()["requests"])
        for m in (b, c):
            assert (m.path / "video_generation" / "render.mp4").stat().st_size == len(data)
        requests = emulator.counters()["requests"]
    assert probes["retrieve"] >= 1  # A had to ask
    assert requests == probes  # B and C asked nothing: the listing and the size came from the fleet


# -- the budget -----------------------------------------------------------------------------------------


def test_an_exhausted_budget_holds_ls_no_longer_than_the_listing_bound(
        emulator: Emulator, any_redis: RedisServer, tmp_path: Path) -> None:
    redis_server = any_redis
    emulator.seed("retrieval", "a.txt", b"a")
    emulator.seed("retrieval", "b.txt", b"b")
    deadline = 4.0
    shared = f"{redis_server.url}?budget=1&burst=3"  # one call a minute once the burst is spent
    with fleet(emulator, tmp_path, 1, shared, "--dir-cache-time", "0.5", "--retry-deadline", str(deadline),
               "--purposes", "retrieval,voice_clone") as (a,):
        assert sorted(os.listdir(a.path / "retrieval")) == ["a.txt", "b.txt"]
        r = redis_server.client()
        bucket = next(k for k in redis_server.keys(f"{{{account_prefix(emulator)}rate}}:bucket"))
        r.hset(bucket, mapping={"tokens": "0", "ts": str(int(r.time()[0]) * 1000)})  # spent, for a minute
        time.sleep(0.6)  # the listing is now due a refresh the budget cannot pay for
        for _ in range(3):
            started = time.monotonic()
            assert sorted(os.listdir(a.path / "retrieval")) == ["a.txt", "b.txt"]  # the last listing
            os.stat(a.path / "retrieval" / "a.txt")
            assert time.monotonic() - started < REFRESH_WAIT + 1.5
        # A read that needs an API call (the file's download URL) waits at most its deadline, not a minute.
        started = time.monotonic()
        with pytest.raises(OSError):
            (a.path / "retrieval" / "b.txt").read_bytes()
        assert time.monotonic() - started < deadline + 2.0
        budget = fleet_status(a)["budget"]
        assert budget["refused"] >= 1


# -- failover -------------------------------------------------------------------------------------------


@pytest.fixture(params=["sentinel", "cluster"])
def failing_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    yield from redis_of_kind(request.param, tmp_path)  # type: ignore[misc]


def test_a_failover_mid_read_changes_nothing_the_reader_sees(
        emulator: Emulator, failing_redis, tmp_path: Path) -> None:
    """Sentinel: the master killed, the replica promoted. Cluster (no replicas here): one master killed,
    so a third of the slots are gone until it returns."""
    data = os.urandom(6 * BLOCK)
    emulator.seed("retrieval", "long.bin", data)
    with fleet(emulator, tmp_path, 2, failing_redis.url) as (a, b):
        assert (a.path / "retrieval" / "long.bin").read_bytes() == data  # shared through the first master
        wait_for(lambda: len(failing_redis.keys("mmfs:*:blk:*}")) >= 6, 10, "A's blocks to reach Redis")
        emulator.configure(conn_rate=40.0)  # what B downloads itself is still going when the master dies
        digest = hashlib.sha256()
        with open(b.path / "retrieval" / "long.bin", "rb") as f:
            digest.update(f.read(2 * BLOCK))
            if hasattr(failing_redis, "failover"):
                failing_redis.failover()  # master killed, replica promoted
            else:
                failing_redis.nodes[0].stop()
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        assert digest.digest() == hashlib.sha256(data).digest()
        emulator.configure(conn_rate=0.0)
        if not hasattr(failing_redis, "failover"):
            failing_redis.start()  # the lost master back, with the cluster's config
        # Both mounts find the new master (or the whole cluster again) and go on sharing through it.
        (a.path / "retrieval" / "after.txt").write_bytes(b"after the failover\n")
        wait_for(lambda: "after.txt" in os.listdir(b.path / "retrieval"), 15, "B to hear of A's upload")
        assert fleet_status(b)["state"] == "joined"
