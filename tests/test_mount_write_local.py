"""Local files through a real mount: what a file that has not landed looks like while the platform fails or
refuses, across a remount and a kill -9; and the tools whose renames and backups need the landed/local model
(sed -i.bak, perl -pi.orig, cp -b, mv -b, install -b, gawk -i inplace, tempfile + os.replace, rsync
--delay-updates). Every result is checked on the platform, through the emulator's own API."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mounting import require_fuse, wait_for

from mmfs.emulator import Emulator

pytestmark = pytest.mark.fuse


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def mmfs(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "mmfs", *args)


def platform(emu: Emulator, purpose: str) -> dict[str, bytes]:
    """name -> bytes of every file in ``purpose``, asked over the API; one file per name, or it fails."""
    resp = requests.get(f"{emu.base_url}/v1/files/list", params={"purpose": purpose},
                        headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=30)
    files = resp.json()["files"] or []
    names = [f["filename"] for f in files]
    assert len(names) == len(set(names)), f"one file per name expected: {sorted(names)}"
    return {f["filename"]: emu.store.blob_path(int(f["file_id"])).read_bytes() for f in files}


def local_files(mountpoint: Path) -> dict[str, dict]:
    done = mmfs("status", str(mountpoint), "--json")
    assert done.returncode == 0, done.stderr
    return {f["path"]: f for f in json.loads(done.stdout)["local_files"]}


# -- the platform down, refusing, and a mount that stops -------------------------------------------------


def test_a_transient_upload_failure_stays_visible_and_lands_later_by_itself(emulator, mount_of, tmp_path):
    src = tmp_path / "precious.txt"
    data = os.urandom(2 << 20)
    src.write_bytes(data)
    with mount_of(emulator, "--retry-deadline", "1") as m:
        emulator.configure(fail_uploads=1_000_000, upload_fail_mode="error")  # down until switched off
        target = m.path / "t2a_async_input" / "precious.txt"
        done = run("cp", str(src), str(target))
        assert done.returncode != 0 and "Input/output error" in done.stderr  # close() told what it learned
        assert target.read_bytes() == data  # yet the file is there, whole
        assert os.getxattr(target, "user.mmfs.state").startswith(b"retrying: ")
        [info] = local_files(m.path).values()
        assert info["path"] == "/t2a_async_input/precious.txt" and info["state"] == "retrying"
        assert "500" in info["reason"] or "unknown error" in info["reason"]
        assert "retrying" in mmfs("status", str(m.path)).stdout
        assert platform(emulator, "t2a_async_input") == {}
        emulator.configure(fail_uploads=0)  # the platform is back: nobody does anything
        wait_for(lambda: platform(emulator, "t2a_async_input") == {"precious.txt": data}, 60, "the upload to land")
        wait_for(lambda: local_files(m.path) == {}, 10, "the file to be landed")
        assert os.getxattr(target, "user.mmfs.state") == b"landed"
        assert target.read_bytes() == data


def test_an_ambiguous_answer_lands_exactly_once(emulator, mount_of, tmp_path):
    with mount_of(emulator, "--retry-deadline", "1") as m:
        emulator.configure(fail_uploads=3, upload_fail_mode="ambiguous")  # stored, then no answer, 3 times
        target = m.path / "retrieval" / "once.txt"
        run("sh", "-c", f"echo exactly once > '{target}'")
        wait_for(lambda: local_files(m.path) == {}, 60, "the file to land")
        assert platform(emulator, "retrieval") == {"once.txt": b"exactly once\n"}


def test_a_refusal_stays_visible_in_the_mount_and_in_status_until_retried(emulator, mount_of):
    with mount_of(emulator) as m:
        emulator.configure(upload_status=1008)  # insufficient balance
        target = m.path / "retrieval" / "report.txt"
        done = run("sh", "-c", f"echo quarterly > '{target}'")
        assert done.returncode == 0  # the shell never looks at close()
        assert target.read_bytes() == b"quarterly\n"
        assert "report.txt" in os.listdir(m.path / "retrieval")
        info = local_files(m.path)["/retrieval/report.txt"]
        assert info["state"] == "refused" and "insufficient balance" in info["reason"]
        assert "refused   /retrieval/report.txt" in mmfs("status", str(m.path)).stdout
        assert os.getxattr(target, "user.mmfs.state").startswith(b"refused: insufficient balance")
        time.sleep(1.5)  # a refusal is not retried by itself
        assert platform(emulator, "retrieval") == {}
        emulator.configure(upload_status=0)  # topped up
        done = mmfs("retry", str(target))
        assert done.returncode == 0, done.stdout + done.stderr
        assert platform(emulator, "retrieval") == {"report.txt": b"quarterly\n"}
        assert local_files(m.path) == {}


def test_a_remount_keeps_and_lands_pending_files(emulator, mount_of):
    with mount_of(emulator, "--retry-deadline", "1") as m:
        emulator.configure(fail_uploads=1_000_000, upload_fail_mode="error")
        run("sh", "-c", f"printf 'waiting' > '{m.path / 'retrieval' / 'later.txt'}'")
        (m.path / "retrieval" / ".draft.txt.swp").write_bytes(b"an editor's swap")  # local only, never uploaded
        assert set(local_files(m.path)) == {"/retrieval/later.txt", "/retrieval/.draft.txt.swp"}
    emulator.configure(fail_uploads=0)
    assert platform(emulator, "retrieval") == {}
    with mount_of(emulator) as m:
        assert (m.path / "retrieval" / ".draft.txt.swp").read_bytes() == b"an editor's swap"
        wait_for(lambda: platform(emulator, "retrieval") == {"later.txt": b"waiting"}, 30, "the pending file to land")
        assert (m.path / "retrieval" / "later.txt").read_bytes() == b"waiting"
        assert set(local_files(m.path)) == {"/retrieval/.draft.txt.swp"}


def test_mmfs_unmount_says_what_it_keeps_on_this_machine_and_where(emulator, mount_of):
    with mount_of(emulator, "--retry-deadline", "1") as m:
        emulator.configure(fail_uploads=1_000_000, upload_fail_mode="error")
        run("sh", "-c", f"printf 'waiting' > '{m.path / 'retrieval' / 'later.txt'}'")
        done = mmfs("unmount", str(m.path))
        assert done.returncode == 0, done.stderr
        first, *rest = done.stderr.splitlines()
        assert first.startswith("mmfs: kept on this machine, not on the platform yet: 1 file (7 B) in "), first
        assert first.endswith("the next mount of this account lands them (or shows why not: mmfs status)")
        assert [line.split()[:2] for line in rest] == [["retrying", "/retrieval/later.txt"]], rest
    emulator.configure(fail_uploads=0)
    quiet = mount_of(emulator)
    with quiet as m:
        wait_for(lambda: platform(emulator, "retrieval") == {"later.txt": b"waiting"}, 30, "the kept file to land")
        done = mmfs("unmount", str(m.path))  # nothing held: nothing said
        assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_mount_killed_while_an_overwrite_waits_lands_it_once_and_the_old_bytes_go(emulator, mount_of):
    emulator.seed("retrieval", "over.txt", b"old bytes")
    with mount_of(emulator, "--retry-deadline", "1") as m:
        (m.path / "retrieval" / "over.txt").read_bytes()  # the old bytes are in the cache
        emulator.configure(fail_uploads=1_000_000, upload_fail_mode="ambiguous")  # each try lands, unanswered
        run("sh", "-c", f"echo new bytes > '{m.path / 'retrieval' / 'over.txt'}'")
        assert (m.path / "retrieval" / "over.txt").read_bytes() == b"new bytes\n"  # the name shows the new
        assert m.proc is not None
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(timeout=30)
        m.stop()
    emulator.configure(fail_uploads=0)
    with mount_of(emulator) as m:
        wait_for(lambda: platform(emulator, "retrieval") == {"over.txt": b"new bytes\n"}, 30,
                 "one landing, the old file deleted")
        assert (m.path / "retrieval" / "over.txt").read_bytes() == b"new bytes\n"
        run("sh", "-c", f"echo more >> '{m.path / 'retrieval' / 'over.txt'}'")
        assert platform(emulator, "retrieval") == {"over.txt": b"new bytes\nmore\n"}


# -- tools that rename and keep backups --------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["sed -i.bak", "perl -pi.orig", "gawk -i inplace"])
def test_in_place_editors_with_and_without_backups(emulator, mount_of, tool):
    emulator.seed("retrieval", "notes.txt", b"alpha\nbeta\n")
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        command = {"sed -i.bak": ["sed", "-i.bak", "s/alpha/ALPHA/", "notes.txt"],
                   "perl -pi.orig": ["perl", "-pi.orig", "-e", "s/alpha/ALPHA/", "notes.txt"],
                   "gawk -i inplace": ["gawk", "-i", "inplace", "-v", "INPLACE_SUFFIX=.bak",
                                       '{ sub(/alpha/, "ALPHA"); print }', "notes.txt"]}[tool]
        done = run(*command, cwd=folder)
        assert done.returncode == 0, done.stderr
        assert (folder / "notes.txt").read_bytes() == b"ALPHA\nbeta\n"
        backup = folder / ("notes.txt.orig" if "perl" in tool else "notes.txt.bak")
        assert backup.read_bytes() == b"alpha\nbeta\n"  # the backup is a local file
        assert platform(emulator, "retrieval") == {"notes.txt": b"ALPHA\nbeta\n"}  # no temporary name left


@pytest.mark.parametrize("tool", ["cp -b", "mv -b", "install -b"])
def test_backups_made_by_rename_keep_the_old_bytes_locally(emulator, mount_of, tmp_path, tool):
    emulator.seed("retrieval", "data.txt", b"version 1\n")
    src = tmp_path / "data.txt"
    src.write_bytes(b"version 2\n")
    with mount_of(emulator) as m:
        target = m.path / "retrieval" / "data.txt"
        program, flag = tool.split()
        done = run(program, flag, str(src), str(target))
        assert done.returncode == 0, done.stderr
        assert target.read_bytes() == b"version 2\n"
        assert (m.path / "retrieval" / "data.txt~").read_bytes() == b"version 1\n"
        assert platform(emulator, "retrieval") == {"data.txt": b"version 2\n"}


def test_python_temporary_files_with_a_real_extension_replace_the_target(emulator, mount_of):
    emulator.seed("retrieval", "a.txt", b"old a")
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        script = (
            "import os, sys, tempfile\n"
            "folder = sys.argv[1]\n"
            "fd, tmp = tempfile.mkstemp(suffix='.txt', dir=folder)\n"
            "os.write(fd, b'new a'); os.close(fd)\n"
            "os.replace(tmp, os.path.join(folder, 'a.txt'))\n"
            "with tempfile.NamedTemporaryFile('wb', suffix='.txt', dir=folder, delete=False) as f:\n"
            "    f.write(b'fresh b')\n"
            "os.replace(f.name, os.path.join(folder, 'b.txt'))\n"
        )
        done = run(sys.executable, "-c", script, str(folder))
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(folder)) == ["a.txt", "b.txt"]
        assert platform(emulator, "retrieval") == {"a.txt": b"new a", "b.txt": b"fresh b"}


def test_rsync_delay_updates_uses_a_local_hidden_folder(emulator, mount_of, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.txt").write_bytes(b"one")
    (src / "two.txt").write_bytes(b"two")
    with mount_of(emulator) as m:
        done = run("rsync", "-r", "--delay-updates", f"{src}/", f"{m.path / 'retrieval'}/")
        assert done.returncode == 0, done.stderr
        assert platform(emulator, "retrieval") == {"one.txt": b"one", "two.txt": b"two"}
        assert sorted(os.listdir(m.path / "retrieval")) == ["one.txt", "two.txt"]
        with pytest.raises(OSError) as refused:
            os.mkdir(m.path / "retrieval" / "visible")
        assert refused.value.errno == errno.EPERM
        # A hidden folder may hold folders of its own: `git init` makes a local-only .git.
        done = run("git", "init", "-q", cwd=m.path / "retrieval")
        assert done.returncode == 0, done.stderr
        assert (m.path / "retrieval" / ".git" / "HEAD").read_bytes().startswith(b"ref: ")
        assert platform(emulator, "retrieval") == {"one.txt": b"one", "two.txt": b"two"}


def test_touch_dates_a_new_file_now_and_rm_under_by_id_is_read_only(emulator, mount_of):
    stored = emulator.seed("retrieval", "kept.txt", b"kept")
    with mount_of(emulator) as m:
        before = time.time()
        assert run("touch", str(m.path / "retrieval" / "new.txt")).returncode == 0
        assert abs(os.stat(m.path / "retrieval" / "new.txt").st_mtime - before) < 60
        with pytest.raises(OSError) as refused:
            os.unlink(m.path / ".by-id" / str(stored["file_id"]))
        assert refused.value.errno == errno.EROFS
        assert platform(emulator, "retrieval") == {"kept.txt": b"kept"}
