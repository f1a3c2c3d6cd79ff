"""Fixtures shared by the suite: a running emulator on loopback, and real mounts of it."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hostile_http import HostileProxy
from mounting import Mounted

from mmfs.emulator import SWITCH_NAMES, Emulator, EmulatorConfig

TEST_KEY = "sk-api-test-0123456789abcdef"
KEY = TEST_KEY
SWITCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(EmulatorConfig) if f.name in SWITCH_NAMES}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator for a whole test module (the API tests make hundreds of calls)."""
    emu = Emulator(EmulatorConfig(data_dir=tmp_path_factory.mktemp("emulator"), port=0, api_key=TEST_KEY)).start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(server: Emulator) -> Iterator[Emulator]:
    """The module's emulator with every switch at its default and fresh counters; after each test, checks
    that the key never reached a download URL."""
    server.configure(**SWITCH_DEFAULTS)
    server.reset_counters()
    yield server
    assert server.counters()["auth_on_download"] == 0


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(data_dir=tmp_path / "platform", port=0, api_key=TEST_KEY)).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[HostileProxy]:
    """A hostile HTTP proxy in front of ``emulator``: tests script what it does to each answer."""
    with HostileProxy(emulator.base_url) as p:
        yield p


@pytest.fixture
def demo_emulator(tmp_path: Path) -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(data_dir=tmp_path / "platform", port=0, api_key=TEST_KEY, demo=True)).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def mount_of(tmp_path: Path) -> Callable[..., Mounted]:
    """``mount_of(emu, *extra_args, root=...)`` -> an unstarted ``Mounted``; use it in a ``with``."""

    def make(emu: Emulator, *extra: str, root: Path | None = None, **kw) -> Mounted:
        return Mounted(emu.base_url, emu.api_key, root or tmp_path, *extra, **kw)

    return make
