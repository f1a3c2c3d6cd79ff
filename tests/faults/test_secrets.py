"""Secrets under failure: after a mount run full of failures (the platform unreachable mid-read, expired and
refused URLs, bodies cut short, a stall, uploads failing for good), neither the API key nor a download URL's
signature is in the log, the mount's argv, the cache, the state or any extended attribute; and every file
the mount wrote is the user's alone from its first byte.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import sys
import time
from pathlib import Path

import pytest
from conftest import TEST_KEY
from mounting import Mounted, require_fuse, wait_for

from mmfs.emulator import Emulator, EmulatorConfig
from mmfs.redact import RedactingFilter, add_secret, open_private_log

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
        # An upload that fails for good: its bytes go to failed-uploads/.
        emu.configure(fail_uploads=100)
        with pytest.raises(OSError), open(m.path / "voice_clone" / "mine.mp3", "wb") as out:
            out.write(os.urandom(100 * 1024))
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
    failed = list((m.cache_dir).rglob("failed-uploads/*"))
    assert failed, "the failed upload was not kept"
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
