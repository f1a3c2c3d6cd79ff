"""Everyday use over real mounts: profiles, df and .by-id, xattrs and the log, status, refresh, pin and the
cache, uid/gid/umask, systemd readiness, the mount(8) helper form, the Python API, and desktop tools."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from mounting import FUSERMOUNT, require_fuse, wait_for

import mmfs
from mmfs.emulator import demo_files
from mmfs.runtime.mount import is_live_mount, is_mount_point

pytestmark = pytest.mark.fuse

MiB = 1 << 20
LISTED_DEMO_FILES = [f for f in demo_files() if f.purpose != "video_understanding"]


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def run(*cmd: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120, env=env)


def mmfs_cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "mmfs", *args], capture_output=True, text=True, timeout=120,
                          env=env or dict(os.environ))
    if check:
        assert done.returncode == 0, f"mmfs {' '.join(args)} failed: {done.stdout}{done.stderr}"
    return done


def api(emu, op: str, **params) -> dict:
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    if op == "delete":
        resp = requests.post(f"{emu.base_url}/v1/files/delete", json=params, headers=headers, timeout=30)
    else:
        resp = requests.get(f"{emu.base_url}/v1/files/{op}", params=params, headers=headers, timeout=30)
    resp.raise_for_status()
    return resp.json()


def test_df_and_du_count_each_file_once_and_by_id_lists_nothing(demo_emulator, mount_of, tmp_path):
    with mount_of(demo_emulator) as m:
        assert os.listdir(m.path / ".by-id") == []
        found = run("find", str(m.path), "-type", "f").stdout.split()
        assert len(found) == len(LISTED_DEMO_FILES)  # nothing found twice through .by-id
        listed = {p: api(demo_emulator, "list", purpose=p)["files"]
                  for p in ("voice_clone", "prompt_audio", "t2a_async_input", "retrieval")}
        sizes = sum(os.stat(f).st_size for f in found)
        du = int(run("du", "-sb", "--apparent-size", str(m.path)).stdout.split()[0])
        assert du - sizes < 4096 * 64  # the folders' own sizes only
        run("cp", "-r", str(m.path), str(tmp_path / "copy"))
        copied = [p for p in (tmp_path / "copy").rglob("*") if p.is_file()]
        assert len(copied) == len(LISTED_DEMO_FILES)
        # Any id is still reachable by name.
        some = listed["retrieval"][0]
        assert (m.path / ".by-id" / str(some["file_id"])).stat().st_size == some["bytes"]
        st = os.statvfs(m.path)
        assert st.f_blocks * st.f_frsize == 100 * 10**9
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        assert sizes <= used < sizes + 512
        df = run("df", "-B1", "--output=size,used", str(m.path)).stdout.split()
        assert int(df[2]) == 100 * 10**9 and int(df[3]) == used


def test_xattrs_name_the_file_and_the_log_names_uploads_and_deletes(emulator, mount_of):
    record = emulator.seed("retrieval", "manual.txt", b"read me\n")
    with mount_of(emulator) as m:
        path = m.path / "retrieval" / "manual.txt"
        assert sorted(os.listxattr(path)) == ["user.minimax.created_at", "user.minimax.file_id",
                                              "user.minimax.purpose", "user.mmfs.state"]
        assert os.getxattr(path, "user.mmfs.state") == b"landed"
        assert os.getxattr(path, "user.minimax.file_id").decode() == str(record["file_id"])
        assert os.getxattr(path, "user.minimax.purpose") == b"retrieval"
        assert int(os.getxattr(path, "user.minimax.created_at")) == record["created_at"]
        dump = run("getfattr", "-d", "-m", "-", str(path)).stdout
        assert f'user.minimax.file_id="{record["file_id"]}"' in dump and "http" not in dump
        with pytest.raises(OSError):
            os.getxattr(path, "user.minimax.download_url")
        with pytest.raises(OSError) as refused:
            os.setxattr(path, "user.note", b"x")
        assert refused.value.errno == errno.ENOTSUP
        assert os.listxattr(m.path / "retrieval") == []

        (m.path / "retrieval" / "new.txt").write_bytes(b"x" * 5000)
        new_id = os.getxattr(m.path / "retrieval" / "new.txt", "user.minimax.file_id").decode()
        os.unlink(m.path / "retrieval" / "new.txt")
        emulator.configure(upload_status=1008)  # insufficient balance
        with pytest.raises(OSError):
            (m.path / "retrieval" / "refused.txt").write_bytes(b"no")
        log = m.log()
        assert f"uploaded new.txt to retrieval: file_id {new_id}, 5000 bytes in" in log and "MB/s" in log
        assert f"deleted file_id {new_id} (5000 bytes) from retrieval" in log
        assert "upload refused: refused.txt to retrieval (2 bytes)" in log
        assert emulator.api_key not in log


def test_uid_gid_umask_and_allow_other(emulator, mount_of, tmp_path):
    emulator.seed("retrieval", "a.txt", b"a")
    with mount_of(emulator, "--uid", "1234", "--gid", "4321", "--umask", "027") as m:
        st = os.stat(m.path / "retrieval" / "a.txt")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 4321, 0o640)
        assert os.stat(m.path / "retrieval").st_mode & 0o777 == 0o750
        assert "allow_other" not in _mount_options(m.path)
    with mount_of(emulator, "-o", "allow_other,uid=99", root=tmp_path / "other") as m:
        assert "allow_other" in _mount_options(m.path)
        assert os.stat(m.path / "retrieval" / "a.txt").st_uid == 99


def fields(text: str) -> dict[str, str]:
    """``Key   : value`` lines (pdfinfo, soxi) -> a dict."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _mount_options(path: Path) -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if left.split()[4] == str(path):
            return right.split()[2]
    raise AssertionError(f"{path} is not mounted")


def test_status_refresh_pin_and_cache(emulator, mount_of, tmp_path):
    keep = os.urandom(6 * MiB)
    kept = emulator.seed("retrieval", "keep.bin", keep)
    other = os.urandom(12 * MiB)
    emulator.seed("retrieval", "other.bin", other)
    # A cache of 8 MiB: reading other.bin pushes everything unpinned out.
    with mount_of(emulator, "--cache-size", "8M", "--retry-deadline", "2") as m:
        status = json.loads(mmfs_cli("status", str(m.path), "--json").stdout)
        assert status["mountpoint"] == str(m.path) and status["cache"]["limit"] == 8 * MiB
        assert status["uploads_in_flight"] == [] and status["failed_uploads"]["files"] == []

        pinned = mmfs_cli("pin", str(m.path / "retrieval" / "keep.bin"))
        assert "pinned 1 file" in pinned.stdout
        assert "\r" not in pinned.stderr  # no bar's frames into a pipe
        assert (m.path / "retrieval" / "other.bin").read_bytes() == other
        info = json.loads(mmfs_cli("cache", "info", str(m.path), "--json").stdout)
        assert info["pinned_bytes"] >= len(keep) and info["cached_bytes"] <= 8 * MiB + 4 * MiB
        assert info["pinned"] == {str(kept["file_id"]): "/retrieval/keep.bin"}

        status = json.loads(mmfs_cli("status", str(m.path), "--json").stdout)
        assert status["block_misses"] == 5
        # What status says was downloaded is what the platform sent: every byte of both files at least (a
        # reader's first small fetches may overlap the block that follows them by a few hundred KiB).
        assert status["downloaded_bytes"] == emulator.counters()["download_bytes"] >= len(keep) + len(other)

    # Remounted on the same cache: the bounded cache has evicted, the pinned file is all on disk. Offline
    # (every download and API call fails) it still reads, downloading nothing.
    with mount_of(emulator, "--cache-size", "8M", "--retry-deadline", "2") as m:
        os.stat(m.path / "retrieval" / "keep.bin")  # the listing, fetched while online
        emulator.reset_counters()
        emulator.configure(fail_download_every=1, fail_api_every=1)
        assert (m.path / "retrieval" / "keep.bin").read_bytes() == keep
        assert emulator.counters()["downloads"] == []
        emulator.configure(fail_download_every=0, fail_api_every=0)

        text = mmfs_cli("status", str(m.path)).stdout
        for needed in ("cache:", "pinned:     1 files", "hit ratio:  100.0% of", "downloads:",
                       "uploads:", "failed uploads waiting: 0", "scratch files: 0", "last error:"):
            assert needed in text, text
        metrics = mmfs_cli("status", str(m.path), "--prometheus").stdout
        assert f'mmfs_cache_limit_bytes{{mountpoint="{m.path}"}} {8 * MiB}' in metrics

        cleared = mmfs_cli("cache", "clear", str(m.path))
        assert "pinned kept" in cleared.stdout
        assert json.loads(mmfs_cli("cache", "info", str(m.path), "--json").stdout)["cached_blocks"] == 0
        mmfs_cli("unpin", str(m.path / "retrieval"))
        assert json.loads(mmfs_cli("cache", "info", str(m.path), "--json").stdout)["pinned"] == {}

        # Refresh: a file uploaded and one deleted elsewhere show at once, not after --dir-cache-time.
        os.stat(m.path / "retrieval" / "other.bin")
        fresh = emulator.seed("retrieval", "fresh.txt", b"new")
        api(emulator, "delete", file_id=int(kept["file_id"]), purpose="retrieval")
        assert "fresh.txt" not in os.listdir(m.path / "retrieval")
        assert os.path.exists(m.path / "retrieval" / "keep.bin")  # the listing and the kernel remember
        out = mmfs_cli("refresh", str(m.path), "retrieval").stdout
        assert out.startswith("refreshed retrieval:")
        assert "fresh.txt" in os.listdir(m.path / "retrieval")
        assert not os.path.exists(m.path / "retrieval" / "keep.bin")
        assert os.getxattr(m.path / "retrieval" / "fresh.txt", "user.minimax.file_id").decode() == \
            str(fresh["file_id"])
        last = json.loads(mmfs_cli("status", str(m.path), "--json").stdout)["last_error"]
        assert last is None or "Traceback" not in last
        (m.path / "retrieval" / "fresh.txt").read_bytes()
        # keep.bin's blocks went with it (no block of a gone id stays): cache some of another file.
        assert (m.path / "retrieval" / "other.bin").read_bytes() == other

    # With no mount running, the cache folder itself.
    offline = json.loads(mmfs_cli("cache", "info", "--cache-dir", str(m.cache_dir), "--json").stdout)
    assert len(offline) == 1 and offline[0]["cached_blocks"] >= 1 and offline[0]["pinned"] == {}
    mmfs_cli("cache", "clear", "--cache-dir", str(m.cache_dir))
    offline = json.loads(mmfs_cli("cache", "info", "--cache-dir", str(m.cache_dir), "--json").stdout)
    assert offline[0]["cached_blocks"] == 0


def test_status_shows_local_files_waiting_and_the_last_error(emulator, mount_of):
    with mount_of(emulator, "--retry-deadline", "1") as m:
        emulator.configure(fail_uploads=1_000_000, upload_fail_mode="error")
        with pytest.raises(OSError):
            (m.path / "retrieval" / "lost.txt").write_bytes(b"keep me")
        (m.path / "retrieval" / ".lost.txt.swp").write_bytes(b"an editor's swap file")  # held here, never uploaded
        status = json.loads(mmfs_cli("status", str(m.path), "--json").stdout)
        local = {f["path"]: f for f in status["local_files"]}
        assert local["/retrieval/lost.txt"]["state"] == "retrying" and local["/retrieval/lost.txt"]["size"] == 7
        assert local["/retrieval/.lost.txt.swp"]["state"] == "local"
        assert (m.path / "retrieval" / "lost.txt").read_bytes() == b"keep me"
        assert status["failed_uploads"]["files"] == []
        scratch = status["scratch_files"]
        assert (scratch["count"], scratch["bytes"]) == (1, len(b"an editor's swap file"))
        assert scratch["paths"] == ["/retrieval/.lost.txt.swp"]
        assert status["last_error"] and status["uploads_failed"] >= 1
        held = len(b"keep me") + len(b"an editor's swap file")
        assert f"local files (not on the platform yet): 2 ({held} B held on this machine)" in mmfs_cli(
            "status", str(m.path)).stdout
        emulator.configure(fail_uploads=0)


def test_a_profile_mount_in_the_background_logs_under_the_state_folder(emulator, tmp_path):
    emulator.seed("voice_clone", "v.wav", b"RIFF")
    emulator.seed("retrieval", "r.txt", b"r")
    config = tmp_path / "config.toml"
    config.write_text(f'[work]\nbase_url = "{emulator.base_url}"\napi_key = "{emulator.api_key}"\n'
                      f'cache_dir = "{tmp_path / "cache"}"\nstate_dir = "{tmp_path / "state"}"\n'
                      f'purposes = ["retrieval"]\nread_only = true\ncache_size = "1G"\n')
    config.chmod(0o600)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MINIMAX_API_KEY"}
    env.update(MMFS_CONFIG=str(config), MMFS_CACHE_SIZE="2G")
    try:
        done = mmfs_cli("mount", "--profile", "work", str(mnt), "--daemon", env=env)
        assert is_live_mount(mnt), done.stderr
        assert os.listdir(mnt) == ["retrieval", ".by-id"]
        with pytest.raises(OSError):
            (mnt / "retrieval" / "w.txt").write_bytes(b"w")
        logs = list((tmp_path / "state" / "log").glob("mount-*.log"))
        assert len(logs) == 1 and "mounted on" in logs[0].read_text()
        assert oct((tmp_path / "state" / "log").stat().st_mode & 0o777) == "0o700"
        status = json.loads(mmfs_cli("status", str(mnt), "--json", env=env).stdout)
        assert status["cache"]["limit"] == 2 << 30  # the environment beat the profile
    finally:
        mmfs_cli("unmount", str(mnt), check=False)
        wait_for(lambda: not is_mount_point(mnt), 15, "the mount to go away")


def _end_notified_mount(sock: socket.socket, proc: subprocess.Popen, mnt: Path) -> None:
    """Teardown of a mount started with a fake NOTIFY_SOCKET: whatever the test got to, nothing stays."""
    sock.close()
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if is_mount_point(mnt):
        subprocess.run([FUSERMOUNT, "-u", "-z", str(mnt)], check=False)


def test_systemd_readiness_is_sent_only_once_the_mount_answers(emulator, tmp_path):
    emulator.seed("retrieval", "r.txt", b"r")
    emulator.configure(latency=0.2)  # listing the root takes a while: READY must wait for it
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(60)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, MINIMAX_API_KEY=emulator.api_key, NOTIFY_SOCKET=str(notify_path))
    proc = subprocess.Popen([sys.executable, "-m", "mmfs", "mount", str(mnt), "--base-url", emulator.base_url,
                             "--cache-dir", str(tmp_path / "c"), "--state-dir", str(tmp_path / "s")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        message = sock.recv(4096).decode()
        assert is_mount_point(mnt)  # checked the moment READY arrived
        assert message.startswith("READY=1") and f"STATUS=mounted on {mnt}" in message
        emulator.configure(latency=0)
        assert os.listdir(mnt / "retrieval") == ["r.txt"]
        subprocess.run([FUSERMOUNT, "-u", str(mnt)], check=True)
        assert sock.recv(4096) == b"STOPPING=1"
        assert proc.wait(timeout=30) == 0
    finally:
        _end_notified_mount(sock, proc, mnt)


def test_mount_dash_t_fuse_mmfs_through_mount_fuse3(emulator, tmp_path):
    """``mount -t fuse.mmfs PROFILE MNT -o opts`` as root, as /etc/fstab does it. mount(8) runs
    mount.fuse3, which runs ``mmfs`` from the default PATH (it drops the caller's): the test puts mmfs in
    /usr/local/bin inside a private mount namespace, so nothing outside the test changes."""
    if os.getuid() != 0 or not shutil.which("unshare") or not Path("/sbin/mount.fuse3").exists():
        pytest.fail("this test needs root, unshare and mount.fuse3 (Debian's fuse3)")
    emulator.seed("retrieval", "fstab.txt", b"from fstab")
    config = tmp_path / "config.toml"
    config.write_text(f'[work]\nbase_url = "{emulator.base_url}"\napi_key = "{emulator.api_key}"\n'
                      f'cache_dir = "{tmp_path / "cache"}"\nstate_dir = "{tmp_path / "state"}"\n')
    config.chmod(0o600)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mmfs").symlink_to(Path(sys.executable).parent / "mmfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f"""
set -e
mount --bind {bindir} /usr/local/bin
mount -t fuse.mmfs work {mnt} -o ro,uid=4242,dev,suid,noauto,_netdev
cat {mnt}/retrieval/fstab.txt; echo
stat -c '%u %a' {mnt}/retrieval/fstab.txt
getfattr --only-values -n user.minimax.purpose {mnt}/retrieval/fstab.txt; echo
touch {mnt}/retrieval/no.txt 2>&1 || true
umount {mnt}
"""
    env = dict(os.environ, MMFS_CONFIG=str(config))
    env.pop("MINIMAX_API_KEY", None)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"mmfs: mounted on {mnt}"), done.stdout
    assert lines[1:4] == ["from fstab", "4242 444", "retrieval"], done.stdout
    assert "Read-only file system" in done.stdout
    logs = list((tmp_path / "state" / "log").glob("mount-*.log"))
    assert len(logs) == 1 and "Traceback" not in logs[0].read_text()


def test_a_pin_stays_with_its_path_through_overwrites(emulator, mount_of):
    # The platform gives new bytes a new id; the user pinned the file, not the id.
    emulator.seed("t2a_async_input", "notes.txt", b"first\n")
    with mount_of(emulator, "--retry-deadline", "2") as m:
        path = m.path / "t2a_async_input" / "notes.txt"
        mmfs_cli("pin", str(path))
        subprocess.run(["sh", "-c", f"echo second > '{path}'"], check=True)
        subprocess.run(["sed", "-i", "s/second/third/", str(path)], check=True)

        def stored() -> list[dict]:
            return [r for r in api(emulator, "list", purpose="t2a_async_input")["files"]
                    if r["filename"] == "notes.txt"]

        wait_for(lambda: len(stored()) == 1 and os.getxattr(path, "user.minimax.file_id").decode()
                 == str(stored()[0]["file_id"]), 20, "the last overwrite to land and the old ids to go")
        info = json.loads(mmfs_cli("cache", "info", str(m.path), "--json").stdout)
        assert info["pinned"] == {str(stored()[0]["file_id"]): "/t2a_async_input/notes.txt"}
        assert info["pinned_bytes"] >= len(b"third\n")
        # The pin that followed the overwrites is checked like any other: its new bytes are all there.
        assert [(p["path"], p["state"]) for p in info["pins"]] == [("/t2a_async_input/notes.txt", "complete")]

    # Remounted and offline: the latest bytes read from the pinned store, nothing downloaded.
    with mount_of(emulator, "--retry-deadline", "2") as m:
        os.stat(m.path / "t2a_async_input" / "notes.txt")
        emulator.reset_counters()
        emulator.configure(fail_download_every=1, fail_api_every=1)
        assert (m.path / "t2a_async_input" / "notes.txt").read_bytes() == b"third\n"
        assert emulator.counters()["downloads"] == []
        emulator.configure(fail_download_every=0, fail_api_every=0)


def test_the_python_api_mounts_as_a_context_manager_without_side_effects(emulator, tmp_path):
    emulator.seed("retrieval", "api.txt", b"from python")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    umask = os.umask(0o022)
    os.umask(umask)
    interval = sys.getswitchinterval()
    with mmfs.mount(mnt, api_key=emulator.api_key, base_url=emulator.base_url, cache_dir=tmp_path / "c",
                    state_dir=tmp_path / "s", read_only=True) as m:
        assert (m.path / "retrieval" / "api.txt").read_bytes() == b"from python"
        assert m.status()["mountpoint"] == str(mnt)
        assert os.umask(umask) == umask and sys.getswitchinterval() == interval
    assert not is_mount_point(mnt)
    assert {"mount", "Mount", "__version__"} <= set(mmfs.__all__)
    with pytest.raises(mmfs.runtime.library.MountFailed, match="refused"):
        mmfs.mount(mnt, api_key="sk-wrong", base_url=emulator.base_url, cache_dir=tmp_path / "c",
                   state_dir=tmp_path / "s")


def test_desktop_tools_read_files_through_the_mount(demo_emulator, mount_of, tmp_path):
    if not all(shutil.which(t) for t in ("ffmpeg", "ffprobe", "pdfinfo", "soxi")):
        pytest.fail("ffmpeg, poppler-utils and sox are needed (scripts/lib/setup.sh installs them)")
    clip = tmp_path / "clip.mp4"
    run("ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "mpeg4", "-c:a", "aac", "-shortest",
        str(clip))
    video_id = str(demo_emulator.seed("video_understanding", "clip.mp4", clip)["file_id"])
    record = next(r for r in api(demo_emulator, "list", purpose="retrieval")["files"]
                  if r["filename"] == "handbook.pdf")
    with mount_of(demo_emulator) as m:
        # video_understanding is never listed: reach the clip by id, as a player given the path would.
        probe = json.loads(run("ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
                               str(m.path / ".by-id" / video_id)).stdout)
        kinds = sorted(s["codec_type"] for s in probe["streams"])
        assert kinds == ["audio", "video"]
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert (video["width"], video["height"]) == (320, 240)
        assert 1.9 < float(probe["format"]["duration"]) < 2.2
        info = fields(run("pdfinfo", str(m.path / "retrieval" / "handbook.pdf")).stdout)
        assert (info["Pages"], info["File size"], info["PDF version"]) == ("1", f"{record['bytes']} bytes", "1.4")
        soxi = fields(run("soxi", str(m.path / "voice_clone" / "greeting.wav")).stdout)
        assert (soxi["Sample Rate"], soxi["Channels"], soxi["Precision"]) == ("16000", "1", "16-bit")
        wav = next(f for f in demo_files() if f.filename == "greeting.wav")
        seconds = (len(wav.data) - 44) / 2 / 16000
        assert run("soxi", "-D", str(m.path / "voice_clone" / "greeting.wav")).stdout.strip() == f"{seconds:.6f}"



def test_the_systemd_user_unit_mounts_a_profile_and_says_when_it_is_ready(emulator, tmp_path):
    """contrib/systemd/mmfs@.service, checked by systemd-analyze and run as systemd would run it: %h and %i
    expanded, NOTIFY_SOCKET set, ExecStartPre, ExecStart until READY=1, then ExecStop."""
    unit = Path(__file__).resolve().parent.parent / "contrib" / "systemd" / "mmfs@.service"
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "mmfs").symlink_to(Path(sys.executable).parent / "mmfs")
    (home / ".config" / "mmfs").mkdir(parents=True)
    config = home / ".config" / "mmfs" / "config.toml"
    config.write_text(f'[work]\nbase_url = "{emulator.base_url}"\napi_key = "{emulator.api_key}"\n')
    config.chmod(0o600)
    emulator.seed("retrieval", "boot.txt", b"back after boot")
    text = unit.read_text().replace("%h", str(home)).replace("%i", "work")
    if shutil.which("systemd-analyze"):
        (tmp_path / "mmfs@work.service").write_text(text)
        verify = run("systemd-analyze", "verify", str(tmp_path / "mmfs@work.service"), check=False)
        assert verify.returncode == 0, verify.stderr
    lines = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith(("#", "[")))
    assert lines["Type"] == "notify"
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(60)
    env = {k: v for k, v in os.environ.items() if k not in ("MINIMAX_API_KEY", "MMFS_CONFIG")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_STATE_HOME=str(home / ".local/state"),
               XDG_CACHE_HOME=str(home / ".cache"), NOTIFY_SOCKET=str(notify_path))
    mnt = home / "minimax" / "work"
    run(*lines["ExecStartPre"].split(), env=env)
    proc = subprocess.Popen(lines["ExecStart"].split(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert sock.recv(4096).startswith(b"READY=1")
        assert (mnt / "retrieval" / "boot.txt").read_bytes() == b"back after boot"
        run(*lines["ExecStop"].split(), env=env)
        assert proc.wait(timeout=30) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        _end_notified_mount(sock, proc, mnt)
        if proc.stderr:
            proc.stderr.close()


def test_hit_ratio_counts_reads_served_from_memory_and_disk_after_a_pin(emulator, mount_of):
    pinned, cold = os.urandom(6 * MiB), os.urandom(3 * MiB)
    emulator.seed("retrieval", "pinned.bin", pinned)
    emulator.seed("retrieval", "cold.bin", cold)
    with mount_of(emulator) as m:
        mmfs_cli("pin", str(m.path / "retrieval" / "pinned.bin"))
        downloads = len(emulator.counters()["downloads"])
        # Read twice: from the blocks the pin left in memory, then (the kernel's pages dropped) from them
        # again or from disk by fd; none of it needs the network.
        assert (m.path / "retrieval" / "pinned.bin").read_bytes() == pinned
        with open(m.path / "retrieval" / "pinned.bin", "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            assert f.read() == pinned
        assert len(emulator.counters()["downloads"]) == downloads
        status = json.loads(mmfs_cli("status", str(m.path), "--json").stdout)
        assert status["reads"] > 0 and status["reads_from_network"] == 0 and status["hit_ratio"] == 1.0
        assert "hit ratio:  100.0% of" in mmfs_cli("status", str(m.path)).stdout
        # A file read for the first time waits for the network at least for its first block.
        assert (m.path / "retrieval" / "cold.bin").read_bytes() == cold
        status = json.loads(mmfs_cli("status", str(m.path), "--json").stdout)
        assert status["reads_from_network"] >= 1 and status["hit_ratio"] < 1.0


def test_status_shows_an_upload_in_flight_with_its_progress(emulator, mount_of, tmp_path):
    source = tmp_path / "big.txt"
    source.write_bytes(os.urandom(24 * MiB))
    with mount_of(emulator) as m:
        os.listdir(m.path / "retrieval")
        # Every call waits 5 s before the emulator reads it: the body stops part-way into the socket buffers
        # and the upload stays in flight, partly sent, while we look (two `mmfs status` runs must fit in that
        # window on a loaded machine: once the emulator reads, the body goes in a fraction of a second).
        emulator.configure(latency=5.0)
        copy = subprocess.Popen(["cp", str(source), str(m.path / "retrieval")])
        seen: list[dict] = []

        def in_flight() -> bool:
            seen[:] = json.loads(mmfs_cli("status", str(m.path), "--json").stdout)["uploads_in_flight"]
            return bool(seen) and seen[0]["done"] > 0

        try:
            wait_for(in_flight, 60, "the upload to show in status with its progress")
            [upload] = seen
            assert upload["what"] == "retrieval/big.txt" and upload["size"] == 24 * MiB
            assert 0 < upload["done"] <= upload["size"]
            assert "retrieval/big.txt" in mmfs_cli("status", str(m.path)).stdout
        finally:
            assert copy.wait(timeout=120) == 0
        emulator.configure(latency=0)
        status = json.loads(mmfs_cli("status", str(m.path), "--json").stdout)
        assert status["uploads_in_flight"] == [] and status["uploads_done"] == 1
        assert status["uploaded_bytes"] == 24 * MiB


def test_a_profile_can_take_its_key_from_the_system_keyring(emulator, tmp_path):
    emulator.seed("retrieval", "k.txt", b"from the keyring")
    config = tmp_path / "config.toml"
    config.write_text(f'[work]\nbase_url = "{emulator.base_url}"\napi_key_keyring = true\n'
                      f'cache_dir = "{tmp_path / "c"}"\nstate_dir = "{tmp_path / "s"}"\n')
    env = {k: v for k, v in os.environ.items() if k != "MINIMAX_API_KEY"}
    env.update(MMFS_CONFIG=str(config), MMFS_TEST_KEYRING=str(tmp_path / "keyring.json"),
               PYTHON_KEYRING_BACKEND="filekeyring.FileKeyring",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")]))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    missing = mmfs_cli("mount", "--profile", "work", str(mnt), env=env, check=False)
    assert missing.returncode != 0 and "keyring set mmfs work" in missing.stderr
    stored = subprocess.run([sys.executable, "-m", "keyring", "set", "mmfs", "work"], input=emulator.api_key + "\n",
                            env=env, capture_output=True, text=True, timeout=60)
    assert stored.returncode == 0, stored.stderr
    try:
        mmfs_cli("mount", "--profile", "work", str(mnt), "--daemon", env=env)
        assert (mnt / "retrieval" / "k.txt").read_bytes() == b"from the keyring"
    finally:
        mmfs_cli("unmount", str(mnt), check=False)
        wait_for(lambda: not is_mount_point(mnt), 15, "the mount to go away")
