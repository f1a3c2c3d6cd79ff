"""Secrets under failure: after a mount run full of failures (the platform unreachable mid-read, expired and
refused URLs, bodies cut short, a stall, uploads failing for good), neither the API key nor a download URL's
signature is in the log, the mount's argv, the cache, the state or any extended attribute; and every file
the mount wrote is the user's alone from its first byte.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEST_KEY
from mounting import Mounted, require_fuse, wait_for
from redis_server import RedisServer

from mmfs.emulator import Emulator, EmulatorConfig
from mmfs.redact import RedactingFilter, add_secret, open_private_log
from mmfs.runtime.mount import is_live_mount, is_mount_point
from mmfs.stats import LastErrorHandler, Stats

MiB = 1 << 20
SIGNED_URL = "http://127.0.0.1:9/_dl/7/a.mp3?Expires=1893456000&OSSAccessKeyId=LTAI5tEmu&Signature=q%2Bz0abc%3D"
# What must never be written anywhere: the key, and the fields that make a download URL a credential.
NEEDLES = [TEST_KEY.encode(), b"Signature=", b"Expires=", b"OSSAccessKeyId=", b"q%2Bz0abc"]


def _leaks(blob: bytes) -> list[bytes]:
    return [n for n in NEEDLES if n in blob]


# --- the filter, record by record ------------------------------------------------------------------------

def _filtered(logger_name: str, msg: str, *args: object, exc: BaseException | None = None) -> str:
    logger = logging.getLogger(logger_name)
    record = logger.makeRecord(logger_name, logging.WARNING, __file__, 1, msg, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    RedactingFilter().filter(record)
    return logging.Formatter("%(name)s: %(message)s").format(record)


def test_third_party_records_lose_queries_signatures_and_the_key():
    add_secret(TEST_KEY)
    # urllib3's own retry warning, as it formats it: the request path with its query.
    line = _filtered("urllib3.connectionpool", "Retrying (%r) after connection broken by '%r': %s",
                     "Retry(total=1)", "NewConnectionError('refused')", "/_dl/7/a.mp3?" + SIGNED_URL.split("?")[1])
    assert not _leaks(line.encode()) and "/_dl/7/a.mp3" in line
    line = _filtered("requests", "GET %s with Authorization: Bearer %s", SIGNED_URL, TEST_KEY)
    assert not _leaks(line.encode()) and "127.0.0.1:9/_dl/7/a.mp3" in line
    try:
        raise ConnectionError(f"HTTPConnectionPool: Max retries exceeded with url: {SIGNED_URL}")
    except ConnectionError as error:
        line = _filtered("mfusepy", "read failed", exc=error)
    assert "Traceback" in line and "Max retries" in line and not _leaks(line.encode())


def test_status_last_error_is_redacted_and_one_line():
    # The handler that keeps the last warning for `mmfs status` sits on the "mmfs" logger, ahead of the log
    # handler's filter: it must redact on its own, and a file name must not bring escapes or new lines.
    add_secret(TEST_KEY)
    stats = Stats()
    handler = LastErrorHandler(stats)
    logger = logging.getLogger("mmfs.qa-probe")
    logger.addHandler(handler)
    try:
        logger.warning("download of %s failed: %s", "ev\x1b[31mil\nforged line.txt", SIGNED_URL + " " + TEST_KEY)
    finally:
        logger.removeHandler(handler)
    shown = stats.snapshot()["last_error"]
    assert not _leaks(shown.encode()) and "/_dl/7/a.mp3" in shown
    assert "\n" not in shown and "\x1b" not in shown and "forged line.txt" in shown


def test_a_password_inside_any_url_is_masked():
    # A gateway reached as https://user:pass@host, or a Redis URL quoted by a library's error message.
    for url in ("https://gw-user:gw-Pass-123@gw.example/minimax", "redis://:gw-Pass-123@cache.lan:6379/0"):
        line = _filtered("mmfs.mount", "mounting %s on /mnt", url)
        assert "gw-Pass-123" not in line and "@" in line and "/mnt" in line


def test_a_log_line_never_carries_a_raw_control_character():
    line = _filtered("mmfs.writes", "uploading %s", "ev\x1b[31mil\nforged line.txt")
    assert "\n" not in line and "\x1b" not in line and "forged line.txt" in line


def test_a_log_file_is_owner_only_from_its_first_byte(tmp_path: Path):
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.log"
        os.close(open_private_log(fresh))
        widened = tmp_path / "old.log"
        widened.write_text("")
        widened.chmod(0o644)
        os.close(open_private_log(widened))
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert stat.S_IMODE(widened.stat().st_mode) == 0o600


# --- a whole mount run -----------------------------------------------------------------------------------

def _xattrs(path: Path) -> bytes:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENOSYS, errno.ENODATA):
            return b""
        raise
    return b"".join(name.encode() + os.getxattr(path, name, follow_symlinks=False) for name in names)


def _try(action) -> None:
    with contextlib.suppress(OSError):  # failures are the point here
        action()


def _start_emulator(data_dir: Path, port: int = 0) -> Emulator:
    return Emulator(EmulatorConfig(data_dir=data_dir, port=port, api_key=TEST_KEY)).start()


@pytest.mark.fuse
def test_after_a_run_full_of_failures_no_secret_is_anywhere(tmp_path: Path):
    require_fuse()
    data_dir = tmp_path / "platform"
    emu = _start_emulator(data_dir)
    port = emu.port
    big = os.urandom(12 * MiB)
    emu.seed("retrieval", "big.bin", big)
    emu.seed("retrieval", "other.txt", b"other\n")
    emu.seed("voice_clone", "voice.mp3", os.urandom(64 * 1024))
    m = Mounted(emu.base_url, TEST_KEY, tmp_path, "--retry-deadline", "2", "--dir-cache-time", "1", "-v")
    started = False
    try:
        m.start()
        started = True
        assert m.proc is not None
        argv = Path(f"/proc/{m.proc.pid}/cmdline").read_bytes()
        retrieval = m.path / "retrieval"
        with open(retrieval / "big.bin", "rb", buffering=0) as f:
            assert f.read(4096) == big[:4096]  # a signed URL is now cached in the mount
            emu.stop()  # the platform is unreachable: the next block's download cannot connect
            f.seek(9 * MiB)
            _try(lambda: f.read(4096))
            _try(lambda: (retrieval / "other.txt").read_bytes())
            emu = _start_emulator(data_dir, port)  # back, on the same address
            time.sleep(1.1)  # past the failure memory: the next read goes to the network again
            # Expired and refused URLs, bodies cut short, failing downloads, a short stall.
            emu.configure(url_ttl=1, drop_every=2, fail_download_every=3)
            time.sleep(1.1)
            f.seek(5 * MiB)
            _try(lambda: f.read(MiB))
            emu.configure(stall=True)
            _try(lambda: os.listdir(retrieval))
            f.seek(1 * MiB)
            _try(lambda: f.read(4096))
            emu.configure(stall=False, drop_every=0, fail_download_every=0, url_ttl=3600)
        # An upload that fails: its bytes stay in the mount, journalled in the spool folder, until they land.
        emu.configure(fail_uploads=100)
        with pytest.raises(OSError), open(m.path / "voice_clone" / "mine.mp3", "wb") as out:
            out.write(os.urandom(100 * 1024))
        assert (m.path / "voice_clone" / "mine.mp3").stat().st_size == 100 * 1024
        assert list(m.cache_dir.rglob("spool/*.json")), "the local file has no journal"
        emu.configure(fail_uploads=0)
        time.sleep(1.1)
        wait_for(lambda: _read_ok(retrieval / "big.bin", big), 30, "the mount to recover")
        xattrs = b"".join(_xattrs(p) for p in m.path.rglob("*"))
    finally:
        if started:
            m.stop()
        emu.stop()

    log = m.log_path.read_bytes()
    assert b"failed" in log  # the run did fail, and said so
    assert _leaks(log) == [], "the log holds a secret"
    assert _leaks(argv) == [], "the mount's argv holds a secret"
    assert stat.S_IMODE(m.log_path.stat().st_mode) == 0o600
    for root in (m.cache_dir, m.state_dir):
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        for path in [root, *root.rglob("*")]:
            mode = path.lstat().st_mode
            assert mode & 0o077 == 0, f"{path} is open to others ({oct(mode)})"
            xattrs += _xattrs(path) + os.fsencode(path.name)
            if stat.S_ISREG(mode):
                assert _leaks(path.read_bytes()) == [], f"{path} holds a secret"
    assert _leaks(xattrs) == [], "an extended attribute or a file name holds a secret"
    print(f"\nsecrets: {len(log.splitlines())} log lines after the failures, none with the key or a signature",
          file=sys.stderr)


def _read_ok(path: Path, expected: bytes) -> bool:
    try:
        return path.read_bytes() == expected
    except OSError:
        return False


# --- the everyday commands and the shared tier -----------------------------------------------------------

REDIS_PASSWORD = "redis-Pw-7f3kq"


def _cli(*args: str, env: dict[str, str]) -> bytes:
    done = subprocess.run([sys.executable, "-m", "mmfs", *args], env=env, capture_output=True, timeout=120)
    assert b"Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def _redis_contents(server: RedisServer) -> bytes:
    client = server.client()
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        out.append(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out += [k + v for k, v in client.hgetall(key).items()]
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"zset":
            out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
    return b"\n".join(out)


@pytest.mark.fuse
def test_profile_daemon_status_pin_refresh_and_shared_tier_keep_every_secret(tmp_path: Path):
    """A mount started as users start it for good: a profile (key and a Redis URL with its password inside a
    0600 config file), ``--daemon``, then pin, refresh, status in its three forms, cache info and an upload
    that fails. No secret in any output, the daemon's argv or log, the folders, Redis, or a download request."""
    require_fuse()
    needles = [*NEEDLES, REDIS_PASSWORD.encode()]
    emu = _start_emulator(tmp_path / "platform")
    redis_server = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD).start()
    mnt, cache, state = tmp_path / "mnt", tmp_path / "cache", tmp_path / "state"
    mnt.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[work]\nbase_url = "{emu.base_url}"\napi_key = "{TEST_KEY}"\ncache_dir = "{cache}"\n'
                      f'state_dir = "{state}"\nshared = "{redis_server.url}"\n')
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIMAX_", "MMFS_"))}
    env["MMFS_CONFIG"] = str(config)
    seen = b""
    try:
        emu.seed("voice_clone", "take 1.mp3", os.urandom(300 * 1024))
        emu.seed("retrieval", "notes.txt", b"notes\n" * 1000)
        seen += _cli("mount", "--profile", "work", str(mnt), "--daemon", "-v", env=env)
        assert is_live_mount(mnt), seen
        status = json.loads(_cli("status", str(mnt), "--json", env=env))
        argv = Path(f"/proc/{status['pid']}/cmdline").read_bytes()
        seen += _cli("pin", str(mnt / "voice_clone"), env=env)
        assert (mnt / "retrieval" / "notes.txt").read_bytes() == b"notes\n" * 1000
        seen += _cli("refresh", str(mnt), env=env)
        emu.configure(fail_uploads=100)
        with pytest.raises(OSError), open(mnt / "retrieval" / "lost.txt", "wb") as out:
            out.write(b"lost\n" * 10000)
        emu.configure(fail_uploads=0)
        for args in (["status", str(mnt)], ["status", str(mnt), "--json"], ["status", str(mnt), "--prometheus"],
                     ["cache", "info", str(mnt)], ["cache", "info", str(mnt), "--json"]):
            seen += _cli(*args, env=env)
        assert b"lost.txt" in seen  # status did report the failed upload
        xattrs = b"".join(_xattrs(p) for p in mnt.rglob("*")) + _xattrs(mnt)
    finally:
        subprocess.run([sys.executable, "-m", "mmfs", "unmount", str(mnt)], env=env, capture_output=True)
        wait_for(lambda: not is_mount_point(mnt), 20, "the daemon to unmount")
        in_redis = _redis_contents(redis_server)
        redis_server.stop()
        emu.stop()
    assert in_redis, "the shared tier was not used"
    assert emu.counters()["auth_on_download"] == 0
    for what, blob in (("command output", seen), ("daemon argv", argv), ("xattrs", xattrs), ("Redis", in_redis)):
        assert [n for n in needles if n in blob] == [], f"{what} holds a secret"
    logs = list(state.rglob("*.log"))
    assert logs, "--daemon wrote no log under the state folder"
    for root in (cache, state):
        for path in [root, *root.rglob("*")]:
            assert path.lstat().st_mode & 0o077 == 0, f"{path} is open to others"
            blob = os.fsencode(path.name) + (path.read_bytes() if path.is_file() else b"")
            assert [n for n in needles if n in blob] == [], f"{path} holds a secret"


@pytest.mark.fuse
def test_python_api_keeps_the_redis_password_out_of_the_mounts_argv(tmp_path: Path):
    require_fuse()
    import mmfs

    emu = _start_emulator(tmp_path / "platform")
    redis_server = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD).start()
    (tmp_path / "mnt").mkdir()
    try:
        with mmfs.mount(tmp_path / "mnt", api_key=TEST_KEY, base_url=emu.base_url, cache_dir=tmp_path / "cache",
                        state_dir=tmp_path / "state", shared=redis_server.url) as m:
            argv = Path(f"/proc/{m.pid}/cmdline").read_bytes()
            assert m.status()["fleet"]["state"] == "joined"
    finally:
        redis_server.stop()
        emu.stop()
    assert REDIS_PASSWORD.encode() not in argv and TEST_KEY.encode() not in argv


def test_control_answers_carry_no_signature_or_key(tmp_path: Path):
    # A pin failing mid-download answers the client with the error's text: it goes through the redaction
    # the log gets.
    from mmfs.runtime.control import ControlError, ControlServer, request

    add_secret(TEST_KEY)

    def failing(req, progress):
        raise OSError(errno.EIO, f"download failed: {SIGNED_URL} with {TEST_KEY}")

    def crashing(req, progress):
        raise ValueError(f"unexpected: {SIGNED_URL}")

    server = ControlServer(tmp_path / "c.sock", {"pin": failing, "status": crashing}).start()
    try:
        for cmd in ("pin", "status"):
            with pytest.raises(ControlError) as caught:
                list(request(tmp_path / "c.sock", cmd))
            assert _leaks(str(caught.value).encode()) == [] and "/_dl/7/a.mp3" in str(caught.value)
    finally:
        server.close()
