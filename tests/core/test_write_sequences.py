"""Random sequences of what users do (write, append, rename, backup, delete) while the platform fails uploads,
fails deletes, and the mount dies and comes back, checked against a plain dict of what a local disk would
hold: whatever happened on the way, once the platform is back the mount shows exactly that, and the
platform holds exactly the files with uploadable names, once each."""

from __future__ import annotations

import contextlib
import os
import random

import pytest

from core.tools import read_all, shell_redirect

NAMES = ["a.txt", "b.txt", "c.txt"]
BACKUPS = ["a.txt~", "b.txt~"]


def _redirect(fs, path: str, data: bytes, *, append: bool = False) -> None:
    with contextlib.suppress(OSError):  # close() told what the first try learned: the file is there anyway
        shell_redirect(fs, path, data, append=append)


@pytest.mark.parametrize("seed", range(6))
def test_a_random_life_ends_as_a_local_disk_would(core, seed):
    rng = random.Random(seed)
    expected: dict[str, bytes] = {}
    done: list[str] = []
    for _ in range(30):
        op = rng.choice(["write", "write", "append", "rename", "backup", "rm", "down", "up", "deletes fail",
                         "deletes work", "die"])
        name = rng.choice(NAMES)
        path = f"/retrieval/{name}"
        data = os.urandom(rng.choice([3, 5000, 70_000]))
        if op == "write":
            _redirect(core.fs, path, data)
            expected[name] = data
        elif op == "append" and name in expected:
            _redirect(core.fs, path, data, append=True)
            expected[name] += data
        elif op in ("rename", "backup") and name in expected:
            target = rng.choice(NAMES) if op == "rename" else name + "~"
            if target != name:
                core.fs.rename(path, f"/retrieval/{target}")
                expected[target] = expected.pop(name)
        elif op == "rm" and name in expected:
            core.fs.unlink(path)
            del expected[name]
        elif op == "down":
            core.emu.configure(fail_uploads=1_000_000, upload_fail_mode=rng.choice(["error", "ambiguous"]))
        elif op == "up":
            core.emu.configure(fail_uploads=0)
        elif op == "deletes fail":
            core.emu.configure(fail_deletes=1_000_000)
        elif op == "deletes work":
            core.emu.configure(fail_deletes=0)
        elif op == "die":
            core.die()
            core.fs = core.reopen().fs
            name = str(core.fs.recover()) + str(sorted(p.name for p in core.spool_files()))
        done.append(f"{op} {name} {sorted(expected)}")
        for shown, data in expected.items():
            try:
                got = read_all(core.fs, f"/retrieval/{shown}")
            except OSError as exc:
                raise AssertionError(f"{shown}: {exc}: " + " | ".join(done)) from exc
            assert got == data, shown + ": " + " | ".join(done)
        assert sorted(core.fs.readdir("/retrieval")) == sorted(expected), " | ".join(done)
    core.emu.configure(fail_uploads=0, fail_deletes=0)
    core.settle()
    core.settle()
    assert sorted(core.fs.readdir("/retrieval")) == sorted(expected)
    for shown, data in expected.items():
        assert read_all(core.fs, f"/retrieval/{shown}") == data
    assert core.platform("retrieval") == {n: d for n, d in expected.items() if n in NAMES}
    assert all(f["state"] == "local" for f in core.fs.local_files())  # only the backups stay local
