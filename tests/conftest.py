"""Fixtures shared by the suite: a running emulator on loopback, and real mounts of it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mounting import Mounted

from mmfs.emulator import Emulator, EmulatorConfig

TEST_KEY = "sk-api-test-0123456789abcdef"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(data_dir=tmp_path / "platform", port=0, api_key=TEST_KEY)).start()
    try:
        yield emu
    finally:
        emu.stop()


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
