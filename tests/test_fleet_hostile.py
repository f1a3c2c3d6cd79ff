"""A hostile Redis: whoever can write to the shared Redis, but does not hold the API key, writes forged and
malformed records, and real mounts must neither serve them, show them, act on them, nor keep them.

Each record is written twice: in the layout and framing an unauthenticated shared tier would trust (a
BLAKE2b frame with no key, plain JSON, pub/sub), and in the current layout sealed under a wrong key, as
an attacker who knows the format but not the API key would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from mounting import Mounted, wait_for
from redis_server import RedisServer, running_redis

from mmfs.api.records import FileRecord
from mmfs.emulator import Emulator
from mmfs.fleet.link import RedisLink, parse_shared_url
from mmfs.fleet.listings import SharedListings
from mmfs.fleet.seal import Seal, derive_key, record_from_json, record_to_json

pytestmark = pytest.mark.fuse

BLOCK = 4 << 20
FORGED = b"FORGED-BYTES!"
WRONG = Seal(derive_key("not-the-api-key", "whatever"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from running_redis(tmp_path)


def prefix(emulator: Emulator) -> str:
    return "mmfs:" + hashlib.sha256(f"{emulator.base_url}\0{emulator.api_key}".encode()).hexdigest()[:16] + ":"


def unkeyed_frame(data: bytes) -> bytes:
    """A frame any writer can make: magic, length and an unkeyed BLAKE2b digest."""
    digest = hashlib.blake2b(data, digest_size=16).digest()
    return struct.pack("<4sQ16s", b"MMS1", len(data), digest) + data


@contextlib.contextmanager
def mounts(emulator: Emulator, tmp_path: Path, server: RedisServer, count: int, *extra: str) -> Iterator[list[Mounted]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(Mounted(emulator.base_url, emulator.api_key, tmp_path / f"m{i}", *extra,
                                           "--shared", server.url)) for i in range(count)]


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_forged_blocks_and_units_are_never_served_nor_cached(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    big = os.urandom(BLOCK + 1000)
    small = os.urandom(200_000)
    big_id = emulator.seed("retrieval", "big.bin", big)["file_id"]
    small_id = emulator.seed("retrieval", "small.bin", small)["file_id"]
    p = prefix(emulator)
    r = redis_server.client()
    for file_id, size in ((big_id, BLOCK), (small_id, len(small))):
        other = (FORGED * (size // len(FORGED) + 1))[:size]
        for key in (f"{p}blk:{file_id}:{BLOCK}:0", f"{p}pc:{file_id}:0-16384"):  # keys without a hash tag
            r.set(key, unkeyed_frame(other[: 16384 if ":pc:" in key else size]))
        key = f"{p}blk:{{{file_id}:{BLOCK}:0}}"
        r.set(key, WRONG.seal(key, other))
        for unit in range(2):
            key = f"{p}blk:{{{file_id}:{BLOCK}:0}}:u{unit}"
            r.set(key, WRONG.seal(key, other[unit * 262144 : (unit + 1) * 262144]))
    with mounts(emulator, tmp_path, redis_server, 1) as (a,):
        assert (a.path / "retrieval" / "big.bin").read_bytes() == big
        assert (a.path / "retrieval" / "small.bin").read_bytes() == small
        with open(a.path / "retrieval" / "big.bin", "rb") as f:  # a small read after a seek: a unit
            f.seek(300_000)
            assert f.read(5000) == big[300_000:305_000]
    assert emulator.counters()["download_bytes"] >= len(big) + len(small)
    assert files_holding(tmp_path / "m0" / "cache", FORGED) == []
    # Remounted without the shared tier, the disk cache serves what the platform holds.
    r.flushall()
    with Mounted(emulator.base_url, emulator.api_key, tmp_path / "m0") as again:
        assert (again.path / "retrieval" / "small.bin").read_bytes() == small


def test_forged_listings_do_not_break_hide_or_misplace_files(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    emulator.seed("retrieval", "real.txt", b"real\n")
    voice = emulator.seed("voice_clone", "voice.mp3", b"ID3 voice")
    p = prefix(emulator)
    r = redis_server.client()
    bad_time = {"file_id": "77", "bytes": 5, "created_at": "yesterday", "filename": "bad.txt", "purpose": "retrieval"}
    misplaced = {"file_id": str(voice["file_id"]), "bytes": 9, "created_at": 1, "filename": "voice.mp3",
                 "purpose": "retrieval"}
    listing = json.dumps({"listable": True, "records": [bad_time, misplaced]}).encode()
    key = f"{p}list:retrieval"
    r.set(key, listing, px=3_600_000)
    r.set(f"{p}list:voice_clone", WRONG.seal_json(f"{p}list:voice_clone", {"listable": True, "records": []}),
          px=3_600_000)
    with mounts(emulator, tmp_path, redis_server, 1) as (a,):
        assert sorted(os.listdir(a.path / "retrieval")) == ["real.txt"]  # no EIO, nothing forged
        assert os.listdir(a.path / "voice_clone") == ["voice.mp3"]  # not hidden by an empty forged listing
        with pytest.raises(FileNotFoundError):
            os.unlink(a.path / "retrieval" / "voice.mp3")
        assert (a.path / "retrieval" / "real.txt").read_bytes() == b"real\n"
    assert emulator.store.get(voice["file_id"]) is not None  # the voice file is still on the platform


def test_forged_known_files_and_events_change_nothing(
        emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    real = emulator.seed("retrieval", "keep.txt", b"keep\n")
    ghost = {"file_id": "4242", "bytes": 3, "created_at": 1, "filename": "ghost.txt", "purpose": "retrieval"}
    p = prefix(emulator)
    r = redis_server.client()
    r.hset(f"{p}known", "4242", json.dumps(ghost))
    r.hset(f"{p}known", "4343", WRONG.seal_json(f"{p}known\x004343", {**ghost, "file_id": "4343"}))
    with mounts(emulator, tmp_path, redis_server, 2, "--dir-cache-time", "3600") as (a, b):
        assert sorted(os.listdir(b.path / "retrieval")) == ["keep.txt"]
        forget = {"op": "forget", "from": "x", "file_id": str(real["file_id"]), "purpose": "retrieval",
                  "record": None}
        remember = {"op": "remember", "from": "x", "file_id": "4242", "purpose": "retrieval", "record": ghost}
        hostile = [json.dumps(forget), json.dumps(remember), "not json at all", json.dumps({"op": "forget",
                   "file_id": 123, "purpose": 5}), json.dumps(["a", "list"])]
        for message in hostile:
            r.publish(f"{p}events", message)
            r.xadd(f"{p}events", {"m": message})
            r.xadd(f"{p}events", {"m": WRONG.seal(f"{p}events", message.encode())})
        r.xadd(f"{p}events", {"other": "field"})
        # A genuine change made after them still arrives: the listener survived every one.
        (a.path / "retrieval" / "after.txt").write_bytes(b"after\n")
        wait_for(lambda: "after.txt" in os.listdir(b.path / "retrieval"), 10, "B to hear of A's upload")
        assert sorted(os.listdir(b.path / "retrieval")) == ["after.txt", "keep.txt"]
        assert not (b.path / ".by-id" / "4242").exists()
    for m in ("m0", "m1"):
        state = (tmp_path / m / "state").rglob("*.json")
        assert not any(b"4242" in f.read_bytes() or b"4343" in f.read_bytes() for f in state)


# -- the checks themselves, without a mount ------------------------------------------------------------


def test_a_genuine_listing_keeps_its_good_records_and_drops_bad_ones(redis_server: RedisServer) -> None:
    seal = Seal(derive_key("k", "acct"))
    link = RedisLink(parse_shared_url(redis_server.url))
    link.check()
    listings = SharedListings(link, "mmfs:acct:", seal, ttl=60)
    rows = [record_to_json(FileRecord("1", 5, 10, "good.txt", "retrieval")),
            {"file_id": "2", "bytes": 5, "created_at": "x", "filename": "t", "purpose": "retrieval"},
            {"file_id": "3", "bytes": 5, "created_at": 1, "filename": "v", "purpose": "voice_clone"},
            {"file_id": 4, "bytes": 5, "created_at": 1, "filename": "i", "purpose": "retrieval"},
            {"file_id": "5", "bytes": True, "created_at": 1, "filename": "b", "purpose": "retrieval"},
            {"file_id": "6", "bytes": 1, "created_at": 1, "filename": "n\0", "purpose": "retrieval"},
            {"file_id": "7", "bytes": -1, "created_at": 1, "filename": "m", "purpose": "retrieval"},
            "not a record"]
    key = listings.key("retrieval")
    redis_server.client().set(key, seal.seal_json(key, {"listable": True, "records": rows}), px=60_000)
    records, _ = listings.list_files("retrieval", lambda _p: pytest.fail("listed although a copy was shared"))
    assert [r.filename for r in records] == ["good.txt"]
    assert listings.counts["bad_records"] == 7
    # Moved to another purpose's key, the same sealed value does not open there.
    other = listings.key("voice_clone")
    redis_server.client().set(other, redis_server.client().get(key))
    assert listings.list_files("voice_clone", lambda _p: [])[0] == []
    assert listings.counts["bad"] >= 1
    link.close()


def test_a_seal_is_bound_to_its_key_and_to_the_api_key() -> None:
    seal = Seal(derive_key("api-key", "acct"))
    value = seal.seal("blk:{1:4194304:0}", b"block zero")
    assert seal.open("blk:{1:4194304:0}", value) == b"block zero"
    assert seal.open("blk:{1:4194304:1}", value) is None  # block 0 filed as block 1
    assert Seal(derive_key("other-key", "acct")).open("blk:{1:4194304:0}", value) is None
    tampered = bytearray(value)
    tampered[-1] ^= 1
    assert seal.open("blk:{1:4194304:0}", bytes(tampered)) is None
    assert seal.open("k", b"") is None and seal.open("k", None) is None and seal.open("k", 5) is None
    assert derive_key("api-key", "acct") == derive_key("api-key", "acct") != derive_key("api-key", "b")
    assert record_from_json({"file_id": "01", "bytes": 1, "created_at": 1, "filename": "x",
                             "purpose": "retrieval"}) is None  # not how mmfs writes an id
    assert record_from_json({"file_id": "9", "bytes": 2**64, "created_at": 1, "filename": "x",
                             "purpose": "retrieval"}) is None
    block = os.urandom(4 << 20)
    assert seal.open("b", seal.seal("b", block)) == block
