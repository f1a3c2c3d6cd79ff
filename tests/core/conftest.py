"""Fixtures of the core suite: ``core``, a filesystem wired as a mount wires it, on an empty platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.harness import Core
from mmfs.emulator import Emulator


@pytest.fixture
def core(emu: Emulator, tmp_path: Path) -> Iterator[Core]:
    for stored in emu.store.all():  # the module's emulator: start from an empty platform
        emu.store.delete(stored.file_id)
    made = Core(emu, tmp_path)
    yield made
    made.fs.destroy()
