"""A mount killed between each two steps of a landing and of the old id's delete, and taken back by a new
mount over the same cache and state folders: every file lands exactly once, with exactly its bytes, the
old file goes, the tree shows the new bytes, and nothing is left in the spool folder.

The kill is simulated in process: a step raises ``Killed`` (not an OSError, so nothing below catches it),
and the core is dropped as a dead process is (``Core.die``: no cleanup, descriptors closed).
tests/core/test_recovery.py kills a real process; tests/test_mount_write_local.py kills a real mount.
"""

from __future__ import annotations

import pytest

from core.tools import read_all, shell_redirect


class Killed(BaseException):
    """The process died here."""


def kill_at(core, monkeypatch, step: str) -> None:
    client = core.fs.client
    real_upload, real_delete = client.upload, client.delete

    def upload(*args):
        if step == "before the upload":
            raise Killed
        record = real_upload(*args)
        if step == "after the upload, before its answer":
            raise Killed
        return record

    def delete(*args):
        if step == "before the old id's delete":
            raise Killed
        real_delete(*args)
        if step == "after the old id's delete, before the journal knew":
            raise Killed

    monkeypatch.setattr(client, "upload", upload)
    monkeypatch.setattr(client, "delete", delete)


STEPS = ["before the upload", "after the upload, before its answer", "before the old id's delete",
         "after the old id's delete, before the journal knew"]


KINDS = ["new file", "overwrite", "overwrite of its own upload", "rename of a stored file"]
# A new file has no old id to delete: only the steps before the delete apply to it.
CELLS = [(kind, step) for kind in KINDS for step in STEPS if not (kind == "new file" and "delete" in step)]


@pytest.mark.parametrize(("kind", "step"), CELLS)
def test_killed_between_two_steps_lands_exactly_once(core, monkeypatch, kind, step):
    if kind == "overwrite of its own upload":
        # The old version is one this mount uploaded a moment ago: remembered, and not to be kept as a ghost.
        shell_redirect(core.fs, "/retrieval/f.txt", b"the old bytes")
    elif kind != "new file":
        core.emu.seed("retrieval", "old.txt" if kind.startswith("rename") else "f.txt", b"the old bytes")
        read_all(core.fs, "/retrieval/old.txt" if kind.startswith("rename") else "/retrieval/f.txt")  # cached
    kill_at(core, monkeypatch, step)
    with pytest.raises(Killed):
        if kind.startswith("rename"):
            core.fs.rename("/retrieval/old.txt", "/retrieval/f.txt")
        else:
            shell_redirect(core.fs, "/retrieval/f.txt", b"the new bytes")
    core.die()
    monkeypatch.undo()

    after = core.reopen()
    core.fs = after.fs  # the fixture destroys it
    after.fs.recover()
    after.settle()
    expected = b"the old bytes" if kind.startswith("rename") else b"the new bytes"
    assert after.platform("retrieval") == {"f.txt": expected}  # one file of that name, nothing else
    assert read_all(after.fs, "/retrieval/f.txt") == expected
    assert after.fs.readdir("/retrieval") == ["f.txt"]
    assert after.spool_files() == [] and after.failed_uploads() == []
    assert after.fs.local_files() == []
    assert after.assert_cache_matches_platform() >= 0
    # The dead mount's upload, if it was sent, and no second one (plus the old version's, when it made it).
    assert after.uploads() == 1 + (kind == "overwrite of its own upload")


@pytest.mark.parametrize("step", STEPS[2:])
def test_killed_while_a_stored_file_moves_to_a_backup_name_keeps_it_once(core, monkeypatch, step):
    # `mv -b`, `sed -i.bak`: the stored file becomes a local backup and its old id is deleted.
    core.emu.seed("retrieval", "doc.txt", b"the old bytes")
    kill_at(core, monkeypatch, step)
    with pytest.raises(Killed):
        core.fs.rename("/retrieval/doc.txt", "/retrieval/doc.txt~")
    core.die()
    monkeypatch.undo()

    after = core.reopen()
    core.fs = after.fs
    after.fs.recover()
    after.settle()
    assert after.platform("retrieval") == {}  # the old id went, once
    assert read_all(after.fs, "/retrieval/doc.txt~") == b"the old bytes"  # and its bytes are here
    assert after.fs.readdir("/retrieval") == ["doc.txt~"]
    assert [f["state"] for f in after.fs.local_files()] == ["local"]
