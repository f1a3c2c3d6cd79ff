"""The mount as assembled: the reader sees what the remote source can do through every wrapper put around it.

``RemoteSource`` offers ``true_size``, ``ignores_range`` and ``stream`` beside ``fetch``; the mount wraps it
in the fleet's Redis tier (``--shared``) and in the status counters. A wrapper that hid them once made a host
that ignores Range be read block by block, every block a whole-body download. These tests read such a host
through the filesystem wired exactly as a mount wires it, alone and in a fleet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, running_redis

from core.harness import BLOCK, Core
from mmfs.emulator import Emulator

BLOCKS = 12


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from running_redis(tmp_path)


@pytest.fixture(params=["alone", "fleet"])
def assembled(request: pytest.FixtureRequest, emu: Emulator, tmp_path: Path) -> Iterator[Core]:
    for stored in emu.store.all():
        emu.store.delete(stored.file_id)
    settings: dict[str, object] = {"prefetch_workers": 1}
    if request.param == "fleet":
        settings["shared"] = request.getfixturevalue("redis_server").url
    core = Core(emu, tmp_path, **settings)
    yield core
    core.fs.destroy()


def test_a_range_ignoring_host_is_read_as_one_stream_through_every_wrapper(assembled: Core, emu: Emulator) -> None:
    size = BLOCKS * BLOCK + 100
    data = os.urandom(size)
    emu.seed("retrieval", "whole.bin", data)
    emu.configure(ignore_range=True)
    fs = assembled.fs
    fh = fs.open("/retrieval/whole.bin", os.O_RDONLY).fh
    try:
        got = b"".join(fs.read(fh, offset, BLOCK) for offset in range(0, size, BLOCK))
    finally:
        fs.release(fh)
    assert got == data
    # One whole-body stream, plus the first answers that came before the host was known to ignore Range (on
    # loopback each of them sends its whole body too). Read block by block, every block would send it all.
    assert emu.counters()["download_bytes"] < BLOCKS // 2 * size


def test_a_download_corrects_a_listing_size_through_every_wrapper(assembled: Core, emu: Emulator) -> None:
    size = 3 * BLOCK + 7
    data = os.urandom(size)
    emu.seed("retrieval", "shrunk.bin", data)
    emu.configure(listed_size="large")
    fs = assembled.fs
    assert fs.getattr("/retrieval/shrunk.bin").size == 2 * size
    fh = fs.open("/retrieval/shrunk.bin", os.O_RDONLY).fh
    try:
        assert fs.read(fh, 0, 4 * size) == data
    finally:
        fs.release(fh)
    assert fs.getattr("/retrieval/shrunk.bin").size == size  # ``true_size`` reached the core
