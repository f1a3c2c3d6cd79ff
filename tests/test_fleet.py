"""The shared tier's pieces against a real redis-server on loopback (and the emulator where a client is needed).

Each piece is checked for what it shares (a second member does not go to the platform) and for what happens
when Redis is away (the member carries on alone, and rejoins).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from mounting import wait_for
from range_hosts import HonoursRange
from redis_server import RedisServer, running_redis

from mmfs.api import deadline as api_deadline
from mmfs.api.client import ApiClient
from mmfs.api.records import FileRecord
from mmfs.errors import InvalidParamsError, RateLimitError
from mmfs.fleet import Fleet, FleetError, fleet_status
from mmfs.fleet.blocks import SharedBlockSource
from mmfs.fleet.budget import FleetBudget
from mmfs.fleet.link import RedisLink, parse_shared_url
from mmfs.fleet.listings import SharedListings
from mmfs.fleet.seal import Seal, derive_key
from mmfs.tree.known import KnownFiles
from mmfs.tree.namespace import Namespace

PREFIX = "mmfs:test:"
API_KEY = "test-api-key"
SEAL = Seal(derive_key(API_KEY, "test"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from running_redis(tmp_path)


def link_to(server: RedisServer, url: str | None = None) -> RedisLink:
    link = RedisLink(parse_shared_url(url or server.url))
    link.check()
    return link


class CountingSource(HonoursRange):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def fetch(self, file_id: str, start: int, end: int) -> bytearray:
        self.calls.append((file_id, start, end))
        return bytearray((i * 7 + int(file_id)) % 251 for i in range(start, end))

    def size(self, file_id: str) -> int:
        return 123


    def forget(self, file_id: str) -> None:
        pass


# -- the link -----------------------------------------------------------------------------------------


def test_url_keeps_mmfs_params_from_redis_and_hides_the_password() -> None:
    url = parse_shared_url("redis://:s3cret@10.0.0.5:6380/2?budget=300&burst=20&socket_keepalive=true"
                           "&socket_timeout=0.5")
    assert (url.budget, url.burst, url.timeout) == (300, 20, 0.5)
    assert "budget" not in url.redis_url and "socket_keepalive=true" in url.redis_url
    assert "socket_timeout" not in url.redis_url  # mmfs's own: the listener must not get it
    cluster = parse_shared_url("redis+cluster://:pw@[::1]:7000,10.0.0.2:7001,node3?socket_timeout=1")
    assert cluster.kind == "cluster" and cluster.hosts() == [("::1", 7000), ("10.0.0.2", 7001), ("node3", 6379)]
    assert "pw" not in cluster.redacted() and cluster.timeout == 1.0
    sentinel = parse_shared_url("rediss+sentinel://s1,s2:26380/mymaster/2")
    assert sentinel.kind == "sentinel" and sentinel.hosts() == [("s1", 26379), ("s2", 26380)]
    with pytest.raises(FleetError, match="names its service"):
        parse_shared_url("redis+sentinel://s1:26379")
    with pytest.raises(FleetError, match="host:port"):
        parse_shared_url("redis+cluster://a:b,c:7000")
    assert "s3cret" not in url.redacted() and "10.0.0.5:6380/2" in url.redacted()
    with pytest.raises(FleetError):
        parse_shared_url("http://example/")
    with pytest.raises(FleetError):
        parse_shared_url("redis://h/0?budget=lots")


def test_wrong_password_fails_at_start(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password="right-one").start()
    try:
        with pytest.raises(FleetError, match=r"refused the credentials|wants a password") as info:
            link_to(server, f"redis://:wrong@127.0.0.1:{server.port}/0")
        assert "wrong" not in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(FleetError) as info:
            link_to(server, f"redis://127.0.0.1:{server.port}/0")
        assert str(info.value) == (f"Redis at redis://127.0.0.1:{server.port}/0 wants a password, and the "
                                   "--shared URL has none (redis://:PASSWORD@host:port/0, best kept in MMFS_SHARED)")
        assert link_to(server).joined
    finally:
        server.stop()


def test_tls_to_a_plain_redis_fails_at_start(redis_server: RedisServer) -> None:
    with pytest.raises(FleetError, match="TLS"):
        link_to(redis_server, f"rediss://127.0.0.1:{redis_server.port}/0?ssl_cert_reqs=none")


def test_down_at_start_goes_alone_then_rejoins(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    link = link_to(server)  # nothing listens yet: no error, just alone
    assert link.state()["state"] == "alone" and "did not answer" in str(link.state()["reason"])
    assert link.run("ping", lambda r: r.ping(), "skipped") == "skipped"
    server.start()
    try:
        wait_for(lambda: link.run("ping", lambda r: r.ping(), False), 10, "the link to rejoin")
        assert link.state()["state"] == "joined"
    finally:
        server.stop()


def test_redis_going_away_is_a_miss_not_an_error(redis_server: RedisServer) -> None:
    link = link_to(redis_server)
    assert link.run("set", lambda r: r.set("k", b"v"), None)
    redis_server.stop()
    assert link.run("get", lambda r: r.get("k"), "fallback") == "fallback"
    assert link.state()["state"] == "alone"
    # While alone, commands are skipped rather than tried (no connect cost on every read).
    assert link.run("get", lambda r: r.get("k"), "fallback") == "fallback"
    assert link.skipped >= 1


# -- listings -----------------------------------------------------------------------------------------


def test_one_list_per_purpose_for_the_fleet(redis_server: RedisServer) -> None:
    calls: list[str] = []
    gate = threading.Event()

    def list_fn(purpose: str) -> list[FileRecord]:
        calls.append(purpose)
        gate.wait(5)
        return [FileRecord("11", 5, 1, "a.txt", purpose)]

    members = [SharedListings(link_to(redis_server), PREFIX, SEAL, ttl=30) for _ in range(3)]
    results: list[tuple[list[FileRecord], float]] = []
    threads = [threading.Thread(target=lambda m=m: results.append(m.list_files("voice_clone", list_fn)))
               for m in members]
    for t in threads:
        t.start()
    wait_for(lambda: calls, 5, "the lease holder to list")
    gate.set()
    for t in threads:
        t.join(10)
    assert calls == ["voice_clone"]
    assert [r[0][0].filename for r in results] == ["a.txt"] * 3
    # Another purpose is listed on its own.
    members[0].list_files("prompt_audio", list_fn)
    assert calls == ["voice_clone", "prompt_audio"]


def test_shared_listing_reports_its_age_and_expires_with_the_refresh(redis_server: RedisServer) -> None:
    calls: list[str] = []

    def list_fn(purpose: str) -> list[FileRecord]:
        calls.append(purpose)
        return []

    a = SharedListings(link_to(redis_server), PREFIX, SEAL, ttl=0.5)
    b = SharedListings(link_to(redis_server), PREFIX, SEAL, ttl=0.5)
    a.list_files("voice_clone", list_fn)
    time.sleep(0.2)
    _, age = b.list_files("voice_clone", list_fn)
    assert calls == ["voice_clone"] and 0.1 <= age <= 0.5
    wait_for(lambda: not redis_server.client().exists(f"{PREFIX}list:voice_clone"), 5, "the copy to expire")
    b.list_files("voice_clone", list_fn)
    assert calls == ["voice_clone", "voice_clone"]


def test_an_unlistable_purpose_is_shared_as_such(redis_server: RedisServer) -> None:
    calls: list[str] = []

    def list_fn(purpose: str) -> list[FileRecord]:
        calls.append(purpose)
        raise InvalidParamsError("2013")

    a = SharedListings(link_to(redis_server), PREFIX, SEAL, ttl=30)
    b = SharedListings(link_to(redis_server), PREFIX, SEAL, ttl=30)
    for member in (a, b):
        with pytest.raises(InvalidParamsError):
            member.list_files("video_generation", list_fn)
    assert calls == ["video_generation"]


def test_listings_without_redis_list_for_themselves(redis_server: RedisServer) -> None:
    member = SharedListings(link_to(redis_server), PREFIX, SEAL, ttl=30)
    redis_server.stop()
    records, age = member.list_files("voice_clone", lambda p: [FileRecord("1", 1, 1, "x", p)])
    assert records[0].filename == "x" and age == 0.0


# -- blocks -------------------------------------------------------------------------------------------


def test_a_block_fetched_by_one_member_is_read_by_another_from_redis(redis_server: RedisServer) -> None:
    inner_a, inner_b = CountingSource(), CountingSource()
    a = SharedBlockSource(inner_a, link_to(redis_server), PREFIX, SEAL)
    b = SharedBlockSource(inner_b, link_to(redis_server), PREFIX, SEAL)
    data = a.fetch("42", 0, 1000)
    wait_for(lambda: a.counts["filled"] == 1, 5, "the block to reach Redis")
    assert b.fetch("42", 0, 1000) == data
    assert inner_b.calls == [] and b.counts["hits"] == 1
    assert b.size("42") == 123  # everything else is the inner source's
    a.close()
    b.close()


def test_members_reading_one_block_at_once_download_it_once(redis_server: RedisServer) -> None:
    release = threading.Event()

    class SlowSource(CountingSource):
        def fetch(self, file_id: str, start: int, end: int) -> bytearray:
            release.wait(5)
            return super().fetch(file_id, start, end)

    inners = [SlowSource() for _ in range(3)]
    members = [SharedBlockSource(inner, link_to(redis_server), PREFIX, SEAL) for inner in inners]
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda m=m: got.append(bytes(m.fetch("8", 0, 5000)))) for m in members]
    for t in threads:
        t.start()
    wait_for(lambda: sum(m.counts["waits"] for m in members) == 2, 5, "two members to wait for the third")
    release.set()
    for t in threads:
        t.join(10)
    assert sum(len(i.calls) for i in inners) == 1
    assert got == [bytes(CountingSource().fetch("8", 0, 5000))] * 3
    for m in members:
        m.close()


def test_a_corrupt_shared_block_is_downloaded_again(redis_server: RedisServer) -> None:
    inner = CountingSource()
    member = SharedBlockSource(inner, link_to(redis_server), PREFIX, SEAL)
    good = bytes(CountingSource().fetch("7", 0, 64))
    key = f"{PREFIX}blk:{{7:{4 << 20}:0}}"
    stored = bytearray(SEAL.seal(key, good))
    stored[-1] ^= 0xFF
    redis_server.client().set(key, bytes(stored))
    assert member.fetch("7", 0, 64) == good
    assert inner.calls == [("7", 0, 64)] and member.counts["bad"] == 1
    assert SEAL.open(key, SEAL.seal(key, good)) == good and SEAL.open(key, b"junk") is None
    member.close()


def test_blocks_read_through_when_redis_stops(redis_server: RedisServer) -> None:
    inner = CountingSource()
    member = SharedBlockSource(inner, link_to(redis_server), PREFIX, SEAL)
    redis_server.stop()
    assert member.fetch("9", 0, 100) == CountingSource().fetch("9", 0, 100)
    assert member.fetch("9", 100, 200) == CountingSource().fetch("9", 100, 200)
    assert len(inner.calls) == 2
    member.close()


def test_a_hung_redis_costs_a_timeout_not_a_read(redis_server: RedisServer) -> None:
    inner = CountingSource()
    link = link_to(redis_server)
    member = SharedBlockSource(inner, link, PREFIX, SEAL)
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        assert member.fetch("3", 0, 100) == CountingSource().fetch("3", 0, 100)
        assert link.state()["state"] == "alone" and "Timeout" in str(link.state()["reason"])
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: link.run("ping", lambda r: r.ping(), False), 10, "the link to rejoin")
    member.close()


def test_a_full_redis_is_noted_and_reads_go_on(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", "--maxmemory", "2mb", "--maxmemory-policy", "noeviction").start()
    try:
        link = link_to(server)
        member = SharedBlockSource(CountingSource(), link, PREFIX, SEAL)
        for i in range(6):
            member.fetch("5", i * 600_000, (i + 1) * 600_000)
            wait_for(lambda: member._pending == 0, 5, "the fill to finish")
        assert link.state()["full"] is True and link.state()["state"] == "joined"
        member.close()
    finally:
        server.stop()


# -- the budget ---------------------------------------------------------------------------------------


def test_the_budget_holds_across_members(redis_server: RedisServer) -> None:
    per_minute, burst, calls = 600, 2, 8  # 10 calls/s
    members = [FleetBudget(link_to(redis_server), PREFIX, per_minute, burst) for _ in range(2)]
    started = time.monotonic()
    for i in range(calls):
        members[i % 2].before_call("list")
    elapsed = time.monotonic() - started
    # However the calls were spread, the bucket cannot have given out more than burst + rate * elapsed.
    assert calls <= burst + per_minute / 60 * elapsed + 1
    assert sum(m.counts["waits"] for m in members) >= 1


def test_a_rate_limit_seen_by_one_member_pauses_all(redis_server: RedisServer) -> None:
    slept: list[float] = []
    a = FleetBudget(link_to(redis_server), PREFIX, 6000, 50)
    b = FleetBudget(link_to(redis_server), PREFIX, 6000, 50, sleep=lambda s: (slept.append(s), time.sleep(s)))
    b.before_call("list")
    assert slept == []
    a.after_failure(RateLimitError("1002", status_code=1002, retry_after=1.0))
    b.before_call("list")
    assert sum(slept) > 0.5  # b waited out (most of) a's pause without seeing a 1002 itself
    assert a.counts["rate_limited"] == 1 and b.counts["rate_limited"] == 0


def test_the_budget_goes_local_without_redis(redis_server: RedisServer) -> None:
    member = FleetBudget(link_to(redis_server), PREFIX, 600, 3)
    redis_server.stop()
    for _ in range(3):
        member.before_call("list")
    assert member.counts["local"] == 3


# -- known files and events -----------------------------------------------------------------------------


def _member(redis_server: RedisServer, client: ApiClient, state: Path) -> tuple[Fleet, Namespace]:
    fleet = Fleet(redis_server.url, "test", API_KEY, dir_cache_time=30).start()
    known = KnownFiles(state / "known.json")
    inner = Namespace(client, known, purposes=("voice_clone", "video_understanding"),
                      upload_purposes=("video_understanding",), lister=fleet.lister(client.list_files))
    return fleet, fleet.wrap_namespace(inner, known)  # type: ignore[return-value]


def test_remember_and_forget_reach_every_member(redis_server: RedisServer, emu, tmp_path: Path) -> None:
    client = ApiClient(emu.base_url, emu.api_key)
    fleet_a, a = _member(redis_server, client, tmp_path / "a")
    fleet_b, b = _member(redis_server, client, tmp_path / "b")
    try:
        wait_for(lambda: fleet_a.listener.listening and fleet_b.listener.listening, 10, "both to listen")
        record = FileRecord("987654", 3, 1, "clip.mp4", "video_understanding")
        b.names("video_understanding")
        a.remember(record)
        wait_for(lambda: "clip.mp4" in b.names("video_understanding"), 10, "b to hear of the file")
        # A member that joins later learns it from the shared hash.
        fleet_c, c = _member(redis_server, client, tmp_path / "c")
        wait_for(lambda: "clip.mp4" in c.names("video_understanding"), 10, "c to catch up")
        a.forget("987654", "video_understanding")
        wait_for(lambda: "clip.mp4" not in b.names("video_understanding"), 10, "b to hear of the delete")
        assert fleet_status()["shared"] is True and fleet_status()["events"]["listening"]
        fleet_c.close()
    finally:
        a.close()
        b.close()
        client.close()


def test_a_flush_is_noticed_and_repaired(redis_server: RedisServer, emu, tmp_path: Path) -> None:
    client = ApiClient(emu.base_url, emu.api_key)
    fleet, ns = _member(redis_server, client, tmp_path / "a")
    try:
        ns.remember(FileRecord("555", 3, 1, "x.mp4", "video_understanding"))
        wait_for(lambda: fleet.listener.listening, 10, "the listener")
        redis_server.client().flushall()
        wait_for(lambda: fleet.listener.flushes == 1, 10, "the flush to be noticed")
        assert redis_server.client().hget(f"{fleet.prefix}known", "555") is not None
    finally:
        ns.close()
        client.close()
    assert fleet_status() == {"shared": False}


def test_status_says_alone_and_why(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url + "?budget=60", "test", API_KEY, dir_cache_time=30).start()
    try:
        redis_server.stop()
        fleet.listings.list_files("voice_clone", lambda p: [])
        status = fleet_status()
        assert status["state"] == "alone" and status["reason"]
        assert status["budget"]["per_minute"] == 60
        assert "password" not in str(status)
    finally:
        fleet.close()


def test_redis_package_is_the_only_new_import() -> None:
    assert redis.__version__


def test_a_lease_held_by_someone_else_costs_at_most_half_the_deadline(redis_server: RedisServer) -> None:
    # A listing lease and a block lease that nobody will release (a crashed holder, or a hostile writer).
    r = redis_server.client()
    r.set(f"{PREFIX}lease:list:voice_clone", "someone", px=60_000)
    r.set(f"{PREFIX}blk:{{5:{4 << 20}:0}}:lease", "someone", px=60_000)
    listings = SharedListings(link_to(redis_server), PREFIX, SEAL, ttl=30)
    blocks = SharedBlockSource(CountingSource(), link_to(redis_server), PREFIX, SEAL)
    started = time.monotonic()
    with api_deadline.within(2.0):
        records, _ = listings.list_files("voice_clone", lambda p: [FileRecord("1", 1, 1, "x", p)])
    assert records[0].filename == "x" and time.monotonic() - started < 1.5
    started = time.monotonic()
    with api_deadline.within(2.0):
        assert blocks.fetch("5", 0, 100) == CountingSource().fetch("5", 0, 100)
    assert time.monotonic() - started < 1.5
    blocks.close()


def test_status_says_what_waits_for_the_fleet_and_what_it_rejected() -> None:
    from mmfs.commands.running import _fleet_lines

    lines = _fleet_lines({"shared": True, "state": "alone", "url": "redis://h:6379/0", "alone_for_s": 3.0,
                          "reason": "block get: ConnectionError", "events": {"pending": 2, "bad": 1},
                          "blocks": {"bad": 3}, "listings": {"bad": 0},
                          "budget": {"waiting": 1, "last_wait_s": 2.5, "refused": 4}})
    assert lines[0].startswith("  shared tier: alone (redis://h:6379/0), alone for 3 s")
    assert "2 changes made here waiting to be told to the fleet" in lines[1]
    assert "4 records from Redis rejected" in lines[2]
    assert "1 calls waiting now, last wait 2.5 s, 4 refused at their deadline" in lines[3]
    assert _fleet_lines({"shared": True, "state": "joined", "url": "u"}) == ["  shared tier: joined (u)"]
