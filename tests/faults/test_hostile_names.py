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


def _status_of(mountpoint: str, fleet: dict | None = None) -> dict:
    counters = dict.fromkeys(("block_hits", "block_misses", "downloaded_bytes", "uploaded_bytes", "uploads_done",
                              "uploads_failed", "reads", "reads_from_network"), 0)
    return {"mountpoint": mountpoint, "cache": {"files": 0, "bytes": 0, "limit": 1, "pinned_bytes": 0},
            "downloads_in_flight": [], "uploads_in_flight": [], "failed_uploads": {"files": []},
            "scratch_files": {"count": 0}, **counters, **({"fleet": fleet} if fleet else {})}


def test_prometheus_labels_escape_only_as_the_text_format_allows():
    # The text format knows three escapes (\\, \", \n); JSON's \uXXXX or \t would make the scrape fail.
    from mmfs.commands.running import render_prometheus

    text = render_prometheus([_status_of('/mnt/vidéo "a"\\b\tc\nd')])
    line = next(x for x in text.splitlines() if x.startswith("mmfs_cache_bytes{"))
    assert line == 'mmfs_cache_bytes{mountpoint="/mnt/vidéo \\"a\\"\\\\b\tc\\nd"} 0'


def test_prometheus_shows_whether_the_shared_tier_is_joined():
    from mmfs.commands.running import render_prometheus

    text = render_prometheus([_status_of("/a", {"shared": True, "state": "alone"}), _status_of("/b")])
    assert 'mmfs_shared_tier_up{mountpoint="/a"} 0' in text
    assert 'mmfs_shared_tier_up{mountpoint="/b"}' not in text


def test_status_for_people_shows_a_hostile_name_on_one_line_without_escapes():
    from mmfs.commands.running import render_status

    s = _status_of("/mnt")
    s.update(pid=1, uptime_seconds=1.0, base_url="http://x", hit_ratio=None, last_error=None,
             uploads_in_flight=[{"what": "retrieval/ev\x1b[31mil\nforged.txt", "done": 0, "size": 1, "seconds": 0.1}])
    s["cache"].update(free_margin=0, disk_free=0, folder="/c", pinned_files=0)
    s["failed_uploads"]["folder"] = "/c/failed-uploads"
    s["scratch_files"]["bytes"] = 0
    text = render_status(s)
    assert "\x1b" not in text and "forged.txt" in text
    assert not any(line.startswith("forged") for line in text.splitlines())
