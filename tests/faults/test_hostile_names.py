"""Hostile platform filenames over a real mount: every one becomes a valid, unique, stable name, and one bad
record never hides its neighbours (the emulator's ``hostile_names`` switch renames every listed file)."""

from __future__ import annotations

import os
import subprocess

import pytest
from mounting import require_fuse

from mmfs.emulator.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.fuse

_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _contents(emulator) -> dict[bytes, str]:
    """Seed one file per hostile name; return content -> file_id."""
    seeded = {}
    for i in range(len(HOSTILE_NAMES)):
        data = f"file {i} ".encode() * (100 + i)
        seeded[data] = str(emulator.seed("voice_clone", f"plain{i}.wav", data)["file_id"])
    return seeded


def test_every_hostile_name_is_listed_valid_unique_and_stable(emulator, mount_of):
    require_fuse()
    seeded = _contents(emulator)
    emulator.configure(hostile_names=True)
    with mount_of(emulator, "--dir-cache-time", "0") as m:
        folder = m.path / "voice_clone"
        ls = subprocess.run(["ls", "-la", str(folder)], capture_output=True)
        assert ls.returncode == 0, ls.stderr
        names = os.listdir(folder)
        assert len(names) == len(set(names)) == len(HOSTILE_NAMES)  # none hidden, none merged
        for name in names:
            encoded = name.encode("utf-8")  # strict: no lone surrogate survives
            assert 0 < len(encoded) <= 255 and b"/" not in encoded and b"\0" not in encoded
            assert name not in (".", "..") and not _BIDI & set(name)
        # Each name leads to its own file's bytes.
        read = {(folder / name).read_bytes(): name for name in names}
        assert set(read) == set(seeded)
        assert sorted(os.listdir(folder)) == sorted(names)  # the listing was fetched again: same names
    with mount_of(emulator) as m:
        assert sorted(os.listdir(m.path / "voice_clone")) == sorted(names)  # and across a remount
    assert emulator.counters()["auth_on_download"] == 0
