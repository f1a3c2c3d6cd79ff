"""The read-only mount for real: a FUSE mount of the emulator driven by ls, stat, cp, cmp, dd, find, du
and Python file I/O, with downloads counted at the emulator."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import TEST_KEY
from mounting import Mounted, require_fuse, wait_for

from mmfs.emulator import Emulator, demo_files

pytestmark = pytest.mark.fuse

MiB = 1 << 20
BLOCK = 4 * MiB
# video_understanding uploads are reachable by id only: no listing shows them.
LISTED_DEMO_FILES = [f for f in demo_files() if f.purpose != "video_understanding"]


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)


def platform_bytes(emu: Emulator, file_id: str) -> bytes:
    """The file as the platform holds it, fetched over the API (not through the mount)."""
    resp = requests.get(f"{emu.base_url}/v1/files/retrieve_content", params={"file_id": file_id},
                        headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=30)
    resp.raise_for_status()
    return resp.content


def listing(emu: Emulator, purpose: str) -> list[dict]:
    resp = requests.get(f"{emu.base_url}/v1/files/list", params={"purpose": purpose},
                        headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=30)
    return resp.json()["files"]


def downloads(emu: Emulator) -> list[dict]:
    return emu.counters()["downloads"]


def test_tree_sizes_and_times_match_the_listing(demo_emulator, mount_of):
    with mount_of(demo_emulator) as m:
        top = set(os.listdir(m.path))
        assert {"voice_clone", "t2a_async_input", "retrieval", ".by-id"} <= top
        for purpose in ("voice_clone", "prompt_audio", "t2a_async_input", "retrieval"):
            files = listing(demo_emulator, purpose)
            names = sorted(os.listdir(m.path / purpose))
            assert len(names) == len(files)
            out = run("ls", "-l", "--time-style=+%s", str(m.path / purpose)).stdout
            for record in files:
                matches = [line for line in out.splitlines() if f" {record['created_at']} " in line
                           and f" {record['bytes']} " in line]
                assert matches, f"{record['filename']} not shown with its size and time:\n{out}"
        # Two files named greeting.wav: both shown, the oldest under the plain name.
        voices = os.listdir(m.path / "voice_clone")
        assert "greeting.wav" in voices
        assert any(n.startswith("greeting~") and n.endswith(".wav") for n in voices)
        # A '/' in a filename becomes a visible stand-in, never a subfolder.
        assert "drafts\uff0fnotes.txt" in os.listdir(m.path / "t2a_async_input")
        st = os.stat(m.path / "retrieval" / "handbook.pdf")
        assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o644  # a folder that takes uploads
        generated = os.stat(m.path / "t2a_async" / "speech_output.tar")
        assert generated.st_mode & 0o777 == 0o444  # a folder the platform fills itself
        found = run("find", str(m.path), "-type", "f").stdout.splitlines()
        assert len([f for f in found if "/.by-id/" not in f]) == len(LISTED_DEMO_FILES)
        du = int(run("du", "-sb", str(m.path / "voice_clone")).stdout.split()[0])
        assert du >= sum(f["bytes"] for f in listing(demo_emulator, "voice_clone"))


def test_every_file_is_byte_identical_including_the_zero_bytes_video(demo_emulator, mount_of, tmp_path):
    with mount_of(demo_emulator) as m:
        video = m.path / "video_generation" / "lighthouse_at_dawn.mp4"
        [record] = [f for f in listing(demo_emulator, "video_generation") if f["filename"] == video.name]
        assert record["bytes"] == 0  # the platform's quirk...
        expected = platform_bytes(demo_emulator, str(record["file_id"]))
        assert os.stat(video).st_size == len(expected) > 0  # ...is not what the mount reports
        checked = 0
        for path in sorted(p for p in m.path.rglob("*") if p.is_file() and ".by-id" not in p.parts):
            copy = tmp_path / "copy"
            run("cp", str(path), str(copy))
            run("cmp", str(path), str(copy))
            assert copy.read_bytes() == path.read_bytes()
            checked += 1
        assert checked == len(LISTED_DEMO_FILES)
        copy = tmp_path / "video.mp4"
        run("cp", str(video), str(copy))
        assert copy.read_bytes() == expected


def test_one_byte_read_downloads_a_small_piece_and_a_reread_nothing(emulator, mount_of):
    data = os.urandom(40 * MiB)
    record = emulator.seed("retrieval", "big.bin", data)
    with mount_of(emulator) as m:
        path = m.path / "retrieval" / "big.bin"
        emulator.reset_counters()
        middle = 20 * MiB + 12345
        with open(path, "rb") as f:
            f.seek(middle)
            assert f.read(1) == data[middle : middle + 1]
        got = downloads(emulator)
        assert {d["file_id"] for d in got} == {str(record["file_id"])}
        # A read after a seek fetches pieces around what it (and the kernel's own readahead, up to the 1 MiB
        # max_readahead) reads, not its 4 MiB block.
        assert got[0]["start"] <= middle < got[0]["end"]
        assert sum(d["end"] - d["start"] for d in got) <= BLOCK // 2
        with open(path, "rb") as f:
            f.seek(middle)
            assert f.read(1) == data[middle : middle + 1]
        dd = subprocess.run(["dd", f"if={path}", "bs=4096", f"skip={middle // 4096}", "count=2", "status=none"],
                            capture_output=True, check=True).stdout
        start = (middle // 4096) * 4096
        assert dd == data[start : start + 8192]
        after = downloads(emulator)
        # The re-reads are served from memory; the kernel may read ahead a little further on its own (a
        # readahead mark in the cached pages), still in pieces, never a whole block.
        assert after[: len(got)] == got
        assert sum(d["end"] - d["start"] for d in after) <= BLOCK // 2


def test_expired_download_urls_are_refreshed_mid_copy(emulator, mount_of, tmp_path):
    data = os.urandom(40 * MiB)
    emulator.seed("retrieval", "slow.bin", data)
    # The first block alone takes 2 s at 2 MB/s: the blocks fetched once the reader has it (past the first
    # readahead window) need a URL newer than the first.
    emulator.configure(url_ttl=1, conn_rate=2)
    with mount_of(emulator) as m:
        emulator.reset_counters()
        run("cp", str(m.path / "retrieval" / "slow.bin"), str(tmp_path / "slow.bin"))
        assert (tmp_path / "slow.bin").read_bytes() == data
        assert emulator.counters()["requests"]["retrieve"] >= 2


def test_every_download_failing_gives_eio_and_the_mount_stays_usable(emulator, mount_of):
    data = os.urandom(MiB)
    emulator.seed("retrieval", "doomed.bin", data)
    with mount_of(emulator, "--retry-deadline", "3") as m:
        os.listdir(m.path / "retrieval")
        emulator.configure(fail_download_every=1)
        started = time.monotonic()
        with pytest.raises(OSError) as caught, open(m.path / "retrieval" / "doomed.bin", "rb") as f:
            f.read()
        assert caught.value.errno == errno.EIO
        assert time.monotonic() - started < 60  # bounded: the retries end, the reader is not held forever
        assert emulator.counters()["faults"]["download_500"] >= 2  # it did retry
        assert "doomed.bin" in run("ls", "-l", str(m.path / "retrieval")).stdout
        emulator.configure(fail_download_every=0)
        assert (m.path / "retrieval" / "doomed.bin").read_bytes() == data  # and recovers


def test_the_disk_cache_survives_a_remount(emulator, mount_of, tmp_path):
    data = os.urandom(9 * MiB)
    emulator.seed("retrieval", "keep.bin", data)
    with mount_of(emulator) as m:
        run("cp", str(m.path / "retrieval" / "keep.bin"), str(tmp_path / "first"))
    emulator.reset_counters()
    with mount_of(emulator) as m:
        run("cmp", str(m.path / "retrieval" / "keep.bin"), str(tmp_path / "first"))
        assert emulator.counters()["requests"]["download"] == 0
        assert emulator.counters()["download_bytes"] == 0
    assert (tmp_path / "first").read_bytes() == data


def test_by_id_reaches_a_file_no_listing_shows_and_remembers_it(emulator, mount_of):
    data = os.urandom(300_000)
    record = emulator.seed("video_understanding", "clip.mp4", data)  # uploads here are never listable
    file_id = str(record["file_id"])
    with mount_of(emulator) as m:
        assert "clip.mp4" not in os.listdir(m.path / "video_understanding")
        assert (m.path / ".by-id" / file_id).read_bytes() == data
        assert os.listdir(m.path / ".by-id") == []  # reachable by id, never walked (see doc/SEMANTICS.md)
        with pytest.raises(FileNotFoundError):
            os.stat(m.path / ".by-id" / "999999999999999")
    with mount_of(emulator, "--list-by-id") as m:  # remembered across remounts; listed when asked
        assert (m.path / "video_understanding" / "clip.mp4").read_bytes() == data
        assert file_id in os.listdir(m.path / ".by-id")


def test_a_wrong_key_fails_the_mount_at_once_with_a_clear_message(emulator, tmp_path):
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, MINIMAX_API_KEY="sk-api-wrong")
    done = subprocess.run([sys.executable, "-m", "mmfs", "mount", str(mnt), "--base-url", emulator.base_url,
                           "--cache-dir", str(tmp_path / "c"), "--state-dir", str(tmp_path / "s")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "refused the API key" in done.stderr
    assert "sk-api-wrong" not in done.stderr
    assert not os.path.ismount(mnt)


def test_the_key_never_leaks_and_the_cache_is_private(demo_emulator, mount_of, tmp_path):
    with mount_of(demo_emulator) as m:
        for path in m.path.rglob("*"):
            if path.is_file():
                path.read_bytes()
        ps = run("ps", "auxww").stdout
        assert TEST_KEY not in ps
        assert m.cache_dir.stat().st_mode & 0o777 == 0o700
        for folder in [p for p in m.cache_dir.rglob("*") if p.is_dir()]:
            assert folder.stat().st_mode & 0o077 == 0, f"{folder} is open to others"
    assert demo_emulator.counters()["auth_on_download"] == 0  # the key never went to a download URL
    needle = TEST_KEY.encode()
    for root in (m.cache_dir, m.state_dir):
        for path in root.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"the key is in {path}"
    log = m.log()
    assert TEST_KEY not in log
    assert "Signature=" not in log  # signed URLs are logged without their query


def test_a_killed_mount_is_cleared_by_the_next_mount(emulator, mount_of):
    data = os.urandom(1000)
    emulator.seed("retrieval", "a.txt", data)
    m = mount_of(emulator).start()
    try:
        assert m.proc is not None
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(timeout=10)
        again = Mounted(m.base_url, m.api_key, m.root)
        with again:
            assert (again.path / "retrieval" / "a.txt").read_bytes() == data
    finally:
        m.stop()


def test_mounting_over_a_stopped_mount_fails_at_once_and_says_why(emulator, mount_of, tmp_path):
    # A mount whose process lives but does not answer: listing it would hang the new mount for good.
    m = mount_of(emulator).start()
    try:
        m.proc.send_signal(signal.SIGSTOP)
        env = dict(os.environ, MINIMAX_API_KEY=emulator.api_key)
        done = subprocess.run([sys.executable, "-m", "mmfs", "mount", str(m.path), "--base-url", emulator.base_url,
                               "--cache-dir", str(tmp_path / "c2"), "--state-dir", str(tmp_path / "s2")],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "does not answer" in done.stderr and "fusermount3 -u -z" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    finally:
        m.proc.send_signal(signal.SIGCONT)
        m.stop()


def test_sigterm_unmounts_cleanly(emulator, mount_of):
    m = mount_of(emulator).start()
    try:
        assert m.proc is not None
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=20) == 0
        wait_for(lambda: not os.path.ismount(m.path), 10, "the mount to go away")
        os.listdir(m.path)  # an ordinary empty folder again, not ENOTCONN
    finally:
        m.stop()


def _thread_signal_masks(pid: int) -> dict[int, int]:
    """Each thread of ``pid`` and the signals it blocks (the ``SigBlk`` bit mask the kernel reports)."""
    masks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        masks[int(tid)] = int(fields["SigBlk"].strip(), 16)
    return masks


def test_a_stop_signal_reaches_the_thread_that_ends_the_mount(emulator, mount_of):
    # libfuse before 3.18 ends its loop on SIGTERM only when the signal interrupts the main thread's wait; a
    # SIGTERM the kernel hands to any other thread sets libfuse's flag and wakes nobody, and the mount lives
    # on until the next request. So every thread but the main one must block the stop signals.
    emulator.seed("retrieval", "r.txt", b"read")
    m = mount_of(emulator).start()
    try:
        assert (m.path / "retrieval" / "r.txt").read_bytes() == b"read"  # readers, pools, writers started
        masks = _thread_signal_masks(m.proc.pid)
        stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        others = {tid: mask for tid, mask in masks.items() if tid != m.proc.pid}
        assert len(others) >= 3
        for tid, mask in others.items():
            assert all(mask >> (sig - 1) & 1 for sig in stops), f"thread {tid} takes stop signals: {mask:#x}"
        assert not any(masks[m.proc.pid] >> (sig - 1) & 1 for sig in stops)
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=20) == 0
        wait_for(lambda: not os.path.ismount(m.path), 10, "the mount to go away")
    finally:
        m.stop()


def test_daemon_mode_returns_once_the_mount_is_live(emulator, tmp_path):
    require_fuse()
    emulator.seed("retrieval", "d.txt", b"daemon")
    mnt = tmp_path / "dmnt"
    mnt.mkdir()
    env = dict(os.environ, MINIMAX_API_KEY=emulator.api_key)
    done = subprocess.run([sys.executable, "-m", "mmfs", "mount", str(mnt), "--daemon", "--base-url",
                           emulator.base_url, "--cache-dir", str(tmp_path / "c"), "--state-dir", str(tmp_path / "s"),
                           "--log-file", str(tmp_path / "d.log")], env=env, capture_output=True, text=True, timeout=90)
    try:
        assert done.returncode == 0, done.stderr
        assert os.path.ismount(mnt)  # live when the command returned, no polling needed
        assert (mnt / "retrieval" / "d.txt").read_bytes() == b"daemon"
    finally:
        subprocess.run([sys.executable, "-m", "mmfs", "unmount", str(mnt)], capture_output=True, timeout=30)
        wait_for(lambda: not os.path.ismount(mnt), 15, "the daemon's mount to go away")


def test_concurrent_readers_share_one_retrieve_and_one_download_per_block(emulator, mount_of):
    data = os.urandom(8 * MiB)
    record = emulator.seed("retrieval", "shared.bin", data)
    emulator.configure(latency=0.3)  # every answer slow: the readers really do overlap
    with mount_of(emulator) as m:
        path = m.path / "retrieval" / "shared.bin"
        os.stat(path)
        emulator.reset_counters()
        results: list[bytes] = []

        def read_one(i: int) -> None:
            with open(path, "rb", buffering=0) as f:  # separate opens, as separate programs would
                f.seek(BLOCK + 1000 + i)
                results.append(f.read(10))

        threads = [threading.Thread(target=read_one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == sorted(data[BLOCK + 1000 + i : BLOCK + 1010 + i] for i in range(6))
        counters = emulator.counters()
        assert counters["requests"]["retrieve"] == 1
        # One download for all of them: the piece the first reader asked for covers the others' reads.
        [download] = counters["downloads"]
        assert download["file_id"] == str(record["file_id"])
        assert download["start"] <= BLOCK + 1000 < BLOCK + 1015 <= download["end"] <= 2 * BLOCK
