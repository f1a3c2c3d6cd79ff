"""ApiClient over real HTTP against the emulator on loopback: every endpoint, every error path."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from conftest import KEY

from mmfs.api import ApiClient, FileRecord, RetryPolicy
from mmfs.emulator import SWITCH_NAMES, Emulator
from mmfs.errors import (
    AuthError,
    InvalidParamsError,
    MmfsError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
)

# Quick retries: the tests count tries, they do not wait for them.
FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05, deadline=20.0)


@pytest.fixture
def client(emu: Emulator) -> ApiClient:
    with ApiClient(emu.base_url, emu.api_key, retry=FAST) as api:
        yield api


@pytest.fixture
def make_client() -> ApiClient:
    """Builds clients with other settings (key, base URL, policy); closes them after the test."""
    made: list[ApiClient] = []

    def build(base_url: str, api_key: str = KEY, **kwargs: object) -> ApiClient:
        kwargs.setdefault("retry", FAST)
        made.append(ApiClient(base_url, api_key, **kwargs))
        return made[-1]

    yield build
    for api in made:
        api.close()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _requests(emu: Emulator, op: str) -> int:
    return emu.counters()["requests"][op]


# --- every endpoint ------------------------------------------------------------------------------------
def test_upload_list_retrieve_content_delete(client: ApiClient, emu: Emulator, tmp_path: Path) -> None:
    data = os.urandom(3000)
    record = client.upload(_write(tmp_path / "a.txt", data), "t2a_async_input", "hello.txt")
    assert record.file_id.isdigit()
    assert (record.filename, record.purpose, record.bytes) == ("hello.txt", "t2a_async_input", 3000)
    assert record.created_at is not None

    listed = {r.file_id: r for r in client.list_files("t2a_async_input")}
    assert listed[record.file_id].filename == "hello.txt"
    assert listed[record.file_id].download_url is None  # list never carries URLs

    full = client.retrieve(record.file_id)
    assert full.download_url and full.download_url.startswith(emu.base_url)
    assert dataclasses.replace(full, download_url=None) == listed[record.file_id]

    assert b"".join(client.retrieve_content(record.file_id)) == data

    client.delete(record.file_id, "t2a_async_input")
    assert record.file_id not in {r.file_id for r in client.list_files("t2a_async_input")}
    with pytest.raises(NotFoundError):
        client.retrieve(record.file_id)


@pytest.mark.parametrize("id_type", ["number", "string"])
def test_file_id_as_number_or_string(client: ApiClient, emu: Emulator, id_type: str) -> None:
    emu.configure(file_id_type=id_type)
    seeded = emu.seed("voice_clone", f"{id_type}.mp3", b"x" * 100)
    assert isinstance(seeded["file_id"], int if id_type == "number" else str)
    fid = str(seeded["file_id"])
    assert fid in {r.file_id for r in client.list_files("voice_clone")}
    assert client.retrieve(fid).file_id == fid
    assert b"".join(client.retrieve_content(fid)) == b"x" * 100
    client.delete(fid, "voice_clone")
    with pytest.raises(NotFoundError):
        client.retrieve(fid)


def test_retrieve_content_streams_in_large_chunks(client: ApiClient, emu: Emulator) -> None:
    data = os.urandom(3 * (1 << 20) + 5)
    fid = str(emu.seed("t2a_async_input", "big.txt", data)["file_id"])
    chunks = list(client.retrieve_content(fid))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) > 64 * 1024


def test_retrieve_content_closed_early_releases(client: ApiClient, emu: Emulator) -> None:
    fid = str(emu.seed("t2a_async_input", "c.txt", os.urandom(4 << 20))["file_id"])
    stream = client.retrieve_content(fid)
    assert next(stream)
    stream.close()
    assert client.list_files("t2a_async_input")  # the client still works


def test_unknown_ids(client: ApiClient, emu: Emulator) -> None:
    with pytest.raises(NotFoundError) as info:
        client.retrieve("987654321")
    assert info.value.status_code == 2013 and info.value.trace_id
    with pytest.raises(NotFoundError):
        list(client.retrieve_content("987654321"))
    with pytest.raises(NotFoundError):
        client.retrieve("not-a-number")  # never sent: no id can look like that
    # Delete keeps the platform's verdict; the caller decides whether "already gone" is fine.
    with pytest.raises(InvalidParamsError) as info:
        client.delete("987654321", "voice_clone")
    assert type(info.value) is InvalidParamsError and info.value.status_code == 2013


def test_unlistable_purpose_is_invalid_params(client: ApiClient, emu: Emulator) -> None:
    with pytest.raises(InvalidParamsError) as info:
        client.list_files("video_understanding")
    assert info.value.status_code == 2013 and info.value.trace_id


def test_delete_sends_file_id_as_a_json_number(client: ApiClient, emu: Emulator) -> None:
    fid = str(emu.seed("voice_clone", "d.mp3", b"d")["file_id"])
    bodies: list[bytes] = []
    client._session.hooks["response"].append(lambda r, *a, **k: bodies.append(r.request.body))
    client.delete(fid, "voice_clone")
    assert json.loads(bodies[-1]) == {"file_id": int(fid), "purpose": "voice_clone"}


# --- auth ------------------------------------------------------------------------------------------------
def test_check_key_accepts_the_right_key(client: ApiClient) -> None:
    client.check_key()


def test_wrong_key_is_an_auth_error_and_not_retried(emu: Emulator) -> None:
    with ApiClient(emu.base_url, "sk-api-wrong", retry=FAST) as bad:
        with pytest.raises(AuthError) as info:
            bad.check_key()
        assert info.value.status_code == 1004 and info.value.trace_id
        with pytest.raises(AuthError):
            bad.retrieve("1")
    assert _requests(emu, "list") == 1  # 1004 is final: one try


def test_check_key_accepts_other_platform_refusals(emu: Emulator) -> None:
    emu.configure(fail_api_every=1)  # every call: 1002, even after the retries
    with ApiClient(emu.base_url, emu.api_key, retry=FAST) as api:
        api.check_key()


def test_key_goes_only_to_the_api_origin(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sent: list[requests.PreparedRequest] = []
    with ApiClient(emu.base_url, emu.api_key, retry=FAST) as api:
        api._session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
        fid = str(emu.seed("voice_clone", "k.mp3", b"k")["file_id"])
        url = api.retrieve(fid).download_url
        assert url is not None
        assert all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in sent)
        assert all(KEY not in (r.url or "") for r in sent)
        # A request through the same session to another origin (a download host) carries no key.
        other = url.replace("127.0.0.1", "localhost")
        api._session.get(other, auth=api._auth, timeout=5).close()
        assert "Authorization" not in sent[-1].headers
    assert emu.counters()["auth_on_download"] == 0
    assert not any(KEY in record.getMessage() for record in caplog.records)


def test_redirect_off_the_api_origin_drops_the_key(client: ApiClient, emu: Emulator) -> None:
    # What requests' redirect handling calls for each hop; the emulator never redirects an API call, so the
    # hop is built here rather than served.
    for target, keeps in [(emu.base_url + "/v1/files/list", True), ("http://cdn.invalid/x", False),
                          (emu.base_url.replace("http:", "https:") + "/x", False)]:
        hop = requests.Request("GET", target, headers={"Authorization": "Bearer k"}).prepare()
        client._session.rebuild_auth(hop, requests.Response())
        assert ("Authorization" in hop.headers) is keeps, target


def test_errors_never_show_the_key(emu: Emulator, make_client) -> None:
    bad = make_client(emu.base_url, "sk-api-secret-value")
    with pytest.raises(AuthError) as info:
        bad.list_files("voice_clone")
    assert "sk-api-secret-value" not in str(info.value)
    assert "sk-api-secret-value" not in repr(bad.__dict__)


# --- faults ----------------------------------------------------------------------------------------------
def test_flaky_api_still_gives_the_right_records(client: ApiClient, emu: Emulator, tmp_path: Path) -> None:
    emu.configure(fail_api_every=3)
    made = [client.upload(_write(tmp_path / f"{i}.txt", bytes([i]) * 50), "t2a_async_input", f"flaky{i}.txt")
            for i in range(4)]
    for _ in range(3):
        listed = {r.file_id: r for r in client.list_files("t2a_async_input")}
        for record in made:
            assert listed[record.file_id].filename == record.filename
            assert client.retrieve(record.file_id).bytes == 50
    assert emu.counters()["faults"]["api_1002"] > 0
    names = [r.filename for r in client.list_files("t2a_async_input")]
    assert all(names.count(f"flaky{i}.txt") == 1 for i in range(4))


def test_http_429_retry_after_is_honoured(client: ApiClient, emu: Emulator,
                                          caplog: pytest.LogCaptureFixture) -> None:
    emu.configure(http429_every=2, retry_after=1)
    caplog.set_level(logging.DEBUG, logger="mmfs.api")  # retries are logged at debug
    client.list_files("voice_clone")
    client.list_files("voice_clone")  # the 2nd request is the 429; its retry succeeds
    assert emu.counters()["faults"]["http_429"] == 1
    waits = [r.args[-1] for r in caplog.records if "retrying in" in r.msg]
    assert waits and min(waits) >= 1.0  # the planned wait, not a measured time


def test_http_429_beyond_the_deadline_fails_at_once(emu: Emulator, make_client) -> None:
    emu.configure(http429_every=1, retry_after=30)
    api = make_client(emu.base_url, retry=RetryPolicy(deadline=5.0))
    with pytest.raises(RateLimitError) as info:
        api.list_files("voice_clone")
    assert info.value.retry_after == 30.0
    assert _requests(emu, "list") == 1


def test_retries_are_bounded_by_attempts(emu: Emulator, make_client) -> None:
    emu.configure(fail_api_every=1)
    api = make_client(emu.base_url, retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02))
    with pytest.raises(RateLimitError) as info:
        api.retrieve("1")
    assert info.value.status_code == 1002 and info.value.trace_id
    assert _requests(emu, "retrieve") == 4


def test_retries_are_bounded_by_the_deadline(emu: Emulator, make_client) -> None:
    emu.configure(fail_api_every=1)
    api = make_client(emu.base_url, retry=RetryPolicy(attempts=10_000, base_delay=0.2, max_delay=0.2,
                                                      deadline=1.0))
    with pytest.raises(RateLimitError):
        api.list_files("voice_clone")
    # Waits average 0.1 s and may not run past 1 s: a few dozen tries at most, nowhere near 10,000.
    assert 1 < _requests(emu, "list") < 200


def test_connection_refused_is_a_transport_error(make_client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    api = make_client(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=2, base_delay=0.01))
    with pytest.raises(TransportError) as info:
        api.list_files("voice_clone")
    assert KEY not in str(info.value)


def test_wrong_path_is_a_protocol_error(emu: Emulator, make_client) -> None:
    api = make_client(emu.base_url + "/nowhere")
    with pytest.raises(ProtocolError) as info:
        api.list_files("voice_clone")
    assert "404" in str(info.value)


def test_gateway_op_params_are_sent(emu: Emulator, tmp_path: Path) -> None:
    op_params = {op: {"model": f"minimax-files-{op}"} for op in
                 ("upload", "list", "retrieve", "retrieve_content", "delete")}
    seen: dict[str, list[str]] = {}

    def note(resp: requests.Response, *args: object, **kwargs: object) -> None:
        path, _, query = (resp.request.url or "").partition("?")
        seen.setdefault(path.rsplit("/", 1)[-1], []).append(query)

    with ApiClient(emu.base_url, emu.api_key, op_params=op_params, retry=FAST) as api:
        api._session.hooks["response"].append(note)
        record = api.upload(_write(tmp_path / "g.txt", b"g"), "t2a_async_input", "g.txt")
        api.list_files("t2a_async_input")
        api.retrieve(record.file_id)
        b"".join(api.retrieve_content(record.file_id))
        api.delete(record.file_id, "t2a_async_input")
    for op in op_params:
        assert seen[op], op
        assert all(f"model=minimax-files-{op}" in q for q in seen[op]), (op, seen[op])
    assert all(f"file_id={record.file_id}" in q for q in seen["retrieve"])


# --- uploads ---------------------------------------------------------------------------------------------
def _count_named(client: ApiClient, purpose: str, name: str) -> int:
    return sum(1 for r in client.list_files(purpose) if r.filename == name)


def test_ambiguous_upload_lands_exactly_once(client: ApiClient, emu: Emulator, tmp_path: Path) -> None:
    emu.configure(fail_uploads=2, upload_fail_mode="ambiguous")
    data = os.urandom(200_000)
    record = client.upload(_write(tmp_path / "amb.txt", data), "t2a_async_input", "ambiguous.txt")
    assert _count_named(client, "t2a_async_input", "ambiguous.txt") == 1
    assert record.file_id in {r.file_id for r in client.list_files("t2a_async_input")}
    assert b"".join(client.retrieve_content(record.file_id)) == data
    # The first try landed unanswered; the client found it instead of sending it again.
    assert _requests(emu, "upload") == 1


def test_failed_upload_is_retried_and_lands_once(client: ApiClient, emu: Emulator, tmp_path: Path) -> None:
    emu.configure(fail_uploads=2, upload_fail_mode="error")
    data = os.urandom(100_000)
    record = client.upload(_write(tmp_path / "err.txt", data), "t2a_async_input", "errored.txt")
    assert _count_named(client, "t2a_async_input", "errored.txt") == 1
    assert b"".join(client.retrieve_content(record.file_id)) == data
    assert _requests(emu, "upload") == 3


def test_same_name_uploaded_before_is_not_mistaken_for_a_landed_try(
    client: ApiClient, emu: Emulator, tmp_path: Path
) -> None:
    source = _write(tmp_path / "same.txt", b"s" * 1000)
    earlier = client.upload(source, "t2a_async_input", "same.txt")
    emu.configure(fail_uploads=1, upload_fail_mode="error")
    later = client.upload(source, "t2a_async_input", "same.txt")
    assert later.file_id != earlier.file_id
    assert _count_named(client, "t2a_async_input", "same.txt") == 2


def test_ambiguous_upload_to_an_unlistable_purpose_is_not_resent(
    client: ApiClient, emu: Emulator, tmp_path: Path
) -> None:
    emu.configure(fail_uploads=1, upload_fail_mode="ambiguous")
    with pytest.raises(TransportError):
        client.upload(_write(tmp_path / "v.mp4", b"v" * 1000), "video_understanding", "clip.mp4")
    assert _requests(emu, "upload") == 1  # it may have landed (it did): sending again could duplicate it


def test_plain_failure_to_an_unlistable_purpose_is_retried(
    client: ApiClient, emu: Emulator, tmp_path: Path
) -> None:
    # API calls: the listing snapshot (refused: 2013), then the upload (1002, an answer: nothing landed,
    # so sending again is safe), then the upload again.
    emu.configure(fail_api_every=2)
    record = client.upload(_write(tmp_path / "w.mp4", b"w" * 1000), "video_understanding", "clip2.mp4")
    assert emu.counters()["faults"]["api_1002"] == 1
    assert _requests(emu, "upload") == 2
    emu.configure(fail_api_every=0)
    assert client.retrieve(record.file_id).filename == "clip2.mp4"


@pytest.mark.parametrize("http400", [False, True])
def test_upload_refusal_reads_the_same_as_http_200_or_400(
    client: ApiClient, emu: Emulator, tmp_path: Path, http400: bool
) -> None:
    emu.configure(upload_error_http400=http400)
    with pytest.raises(InvalidParamsError) as info:
        client.upload(_write(tmp_path / "x.exe", b"MZ"), "voice_clone", "x.exe")
    assert info.value.status_code == 2013 and info.value.trace_id
    assert _requests(emu, "upload") == 1  # a verdict, not retried


def test_upload_of_a_missing_file_is_an_oserror(client: ApiClient, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        client.upload(tmp_path / "nope.txt", "t2a_async_input", "nope.txt")


def test_server_error_statuses_are_retried(client: ApiClient, emu: Emulator, tmp_path: Path) -> None:
    emu.configure(fail_uploads=10, upload_fail_mode="error")
    with pytest.raises(ServerError) as info:
        client.upload(_write(tmp_path / "s.txt", b"s"), "t2a_async_input", "always500.txt")
    assert info.value.retryable and info.value.trace_id
    assert _requests(emu, "upload") == FAST.attempts
    assert _count_named(client, "t2a_async_input", "always500.txt") == 0


def test_record_type_is_exported() -> None:
    assert FileRecord.__slots__


# --- memory ----------------------------------------------------------------------------------------------
UPLOAD_RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from mmfs.api import ApiClient, RetryPolicy
    base, key, path = sys.argv[1:4]
    with ApiClient(base, key, retry=RetryPolicy(attempts=1)) as api:
        api.list_files("t2a_async_input")  # warm imports, pool and parser before the baseline
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        record = api.upload(path, "t2a_async_input", "hundred.zip")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after, "bytes": record.bytes, "id": record.file_id}))
    """
)


def test_a_100_mib_upload_streams_from_disk(emu: Emulator, tmp_path: Path) -> None:
    size = 100 << 20
    path = tmp_path / "hundred.zip"
    piece = os.urandom(1 << 20)
    with path.open("wb") as out:
        for _ in range(size >> 20):
            out.write(piece)
    proc = subprocess.run(
        [sys.executable, "-c", UPLOAD_RSS_SCRIPT, emu.base_url, emu.api_key, str(path)],
        capture_output=True, text=True, timeout=240, check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bytes"] == size
    grew_mib = (result["after_kib"] - result["before_kib"]) / 1024
    print(f"100 MiB upload: peak RSS grew {grew_mib:.1f} MiB")
    assert grew_mib < 20, f"upload grew peak RSS by {grew_mib:.1f} MiB"
    with ApiClient(emu.base_url, emu.api_key, retry=FAST) as api:
        assert api.retrieve(result["id"]).bytes == size
        api.delete(result["id"], "t2a_async_input")


def test_errors_are_oserrors_with_errno(client: ApiClient) -> None:
    with pytest.raises(OSError) as info:
        client.retrieve("424242424242")
    assert isinstance(info.value, MmfsError) and info.value.errno == 2


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("voix é 音.txt", "voix é 音.txt"),
        ("x" * 200 + ".txt", "x" * 200 + ".txt"),
        # The multipart header encodes these as browsers do; a server may keep that form or decode it.
        ('quote " semi ; .txt', "quote %22 semi ; .txt"),
        ("line\nbreak.txt", "line%0Abreak.txt"),
    ],
)
def test_unusual_filenames_survive_the_upload(client: ApiClient, tmp_path: Path, name: str, encoded: str) -> None:
    record = client.upload(_write(tmp_path / "u.txt", b"u"), "t2a_async_input", name)
    assert record.filename in (name, encoded)
    assert client.retrieve(record.file_id).filename == record.filename


# Whether the server decodes the browser-style escapes is a switch of the emulator's, where it has one.
DECODE_FORMS = [{}] + ([{"whatwg_filenames": v} for v in (False, True)] if "whatwg_filenames" in SWITCH_NAMES
                       else [])


@pytest.mark.parametrize("form", DECODE_FORMS)
def test_ambiguous_upload_with_an_encoded_name_lands_once(client: ApiClient, emu: Emulator, tmp_path: Path,
                                                          form: dict) -> None:
    emu.configure(fail_uploads=1, upload_fail_mode="ambiguous", **form)
    tag = "-".join(f"{k}{v}" for k, v in form.items())  # one name per form: the emulator outlives a test
    name, encoded = f'a "quoted" name{tag}.txt', f"a %22quoted%22 name{tag}.txt"
    record = client.upload(_write(tmp_path / "q.txt", b"q" * 10), "t2a_async_input", name)
    assert record.filename in (name, encoded)
    assert _count_named(client, "t2a_async_input", name) + _count_named(client, "t2a_async_input", encoded) == 1
    assert _requests(emu, "upload") == 1


# --- the upload body: the file streamed in large pieces from one reused buffer --------------------------------

UPLOAD_PIECE = 1 << 20


@pytest.mark.parametrize("size", [1, UPLOAD_PIECE - 1, UPLOAD_PIECE, UPLOAD_PIECE + 1, 2 * UPLOAD_PIECE + 3])
def test_uploaded_bytes_are_identical_across_piece_boundaries(client: ApiClient, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    record = client.upload(_write(tmp_path / "p.txt", data), "t2a_async_input", f"piece-{size}.txt")
    assert record.bytes == size
    assert b"".join(client.retrieve_content(record.file_id)) == data  # what the platform stored
    client.delete(record.file_id, "t2a_async_input")


def test_upload_body_is_what_a_standard_encoder_makes_and_is_whole_when_sent_again(tmp_path: Path) -> None:
    from requests_toolbelt import MultipartEncoder

    from mmfs.api.client import _MultipartFile

    name = 'a "quoted"\r\nname é 音.txt'
    path = _write(tmp_path / "f.txt", os.urandom(3 * UPLOAD_PIECE + 5))
    with open(path, "rb", buffering=0) as source:
        body = _MultipartFile([("purpose", "retrieval")], "file", source, name, "text/plain")
        first = b"".join(bytes(piece) for piece in body)
        assert os.lseek(source.fileno(), 0, os.SEEK_CUR) == path.stat().st_size  # the progress mmfs shows
        again = b"".join(bytes(piece) for piece in body)  # a try sent again starts from the beginning
        boundary = body.content_type.partition("boundary=")[2]
        source.seek(0)
        reference = MultipartEncoder([("purpose", "retrieval"), ("file", (name, source, "text/plain"))],
                                     boundary=boundary).to_string()
    assert first == again == reference
    assert len(body) == len(reference)
    assert body.content_type == f"multipart/form-data; boundary={boundary}"
