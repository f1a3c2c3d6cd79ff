"""The emulator's switches for the forms the platform's own clients meet, over real HTTP(S) on loopback.

https with a self-signed certificate, the unsigned and ``%2F`` download URL forms, a gateway's path prefix and
``model=`` parameters, ``retrieve_content`` as documented (JSON content type, redirect, Range), a list without
purpose, the status codes seen in clients as injectable faults, and the ``video_generation_input`` rules.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import TEST_KEY
from test_emulator import Client, status

from mmfs.emulator import MB, Emulator, EmulatorConfig
from mmfs.emulator.rules import check_upload


@pytest.fixture
def client(emulator: Emulator) -> Iterator[Client]:
    """A fresh, empty emulator per test (these tests count what the store holds)."""
    yield Client(emulator)
    assert emulator.counters()["auth_on_download"] == 0


def _seeded_video(emu: Emulator, size: int = 40_000) -> tuple[int, bytes]:
    record = emu.seed("video_generation", "output.mp4", bytes(range(256)) * (size // 256))
    file_id = int(record["file_id"])
    return file_id, emu.store.blob_path(file_id).read_bytes()


# --- https and the request log -------------------------------------------------------------------------------
@pytest.fixture
def https_emu(tmp_path: Path) -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(data_dir=tmp_path / "platform", api_key=TEST_KEY, tls=True)).start()
    try:
        yield emu
    finally:
        emu.stop()


def test_https_form_is_trusted_through_its_certificate_only(https_emu: Emulator) -> None:
    assert https_emu.base_url.startswith("https://") and https_emu.ca_path is not None
    client = Client(https_emu)
    client.http.verify = str(https_emu.ca_path)
    client.http.trust_env = False  # else REQUESTS_CA_BUNDLE would replace the verify above
    file_id, data = _seeded_video(https_emu)
    url = client.url_of(file_id)
    assert url.startswith("https://")
    assert client.download(url).content == data
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https_emu.base_url + "/v1/files/list", timeout=10, verify=True)


def test_a_tls_handshake_on_the_plain_server_logs_no_traceback(client: Client,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    host, port = client.emu.base_url.rsplit("/", 1)[-1].split(":")
    context = ssl.create_default_context()
    caplog.set_level(logging.DEBUG, logger="mmfs.emulator")
    with socket.create_connection((host, int(port)), timeout=10) as raw, pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname=host)
    assert status(client.list("voice_clone")) == 0  # still serving
    failures = [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert not failures, [r.getMessage() for r in failures]


# --- download URL forms --------------------------------------------------------------------------------------
def test_unsigned_urls_have_no_query_and_are_refused_once_expired(client: Client) -> None:
    client.emu.configure(url_form="unsigned")
    file_id, data = _seeded_video(client.emu)
    url = client.url_of(file_id)
    assert "?" not in url and "/_pub/" in url
    assert client.download(url).content == data
    assert client.download(url, "bytes=100-199").content == data[100:200]
    token = url.split("/_pub/", 1)[1].split("/", 1)[0]
    forged = url.replace(token, "0" * len(token))
    assert client.download(forged).status_code == 403
    client.emu.configure(url_ttl=0)
    expired = client.url_of(file_id)
    refused = client.download(expired)
    assert refused.status_code == 403 and b"AccessDenied" in refused.content


def test_mainland_urls_keep_an_encoded_slash_that_must_not_be_decoded(client: Client) -> None:
    client.emu.configure(url_form="oss_slash")
    file_id, data = _seeded_video(client.emu)
    url = client.url_of(file_id)
    assert f"/_dl/{file_id}%2F" in url and "Expires=" in url
    assert client.download(url).content == data
    rewritten = client.download(url.replace("%2F", "/", 1))
    assert rewritten.status_code == 403 and b"SignatureDoesNotMatch" in rewritten.content


def test_redirected_downloads_work_in_every_form(client: Client) -> None:
    file_id, data = _seeded_video(client.emu)
    for form in ("signed", "unsigned", "oss_slash"):
        client.emu.configure(url_form=form, redirect_downloads=True)
        url = client.url_of(file_id)
        assert "/_cdn/" in url
        assert client.download(url).content == data, form


# --- gateways ------------------------------------------------------------------------------------------------
def test_path_prefix_moves_the_api_and_model_params_are_required(client: Client) -> None:
    emu = client.emu
    emu.configure(path_prefix="minimaxi/", gateway_model=True)
    assert emu.switches.path_prefix == "/minimaxi"
    seeded = emu.seed("voice_clone", "a.wav", b"RIFF" + bytes(100))
    assert client.call("GET", "/v1/files/list", params={"purpose": "voice_clone"}).status_code == 404
    bare = client.call("GET", "/minimaxi/v1/files/list", params={"purpose": "voice_clone"})
    assert status(bare) == 2013
    listed = client.call("GET", "/minimaxi/v1/files/list",
                         params={"purpose": "voice_clone", "model": "minimax-files-list"})
    assert [f["file_id"] for f in listed.json()["files"]] == [seeded["file_id"]]
    wrong_op = client.call("GET", "/minimaxi/v1/files/retrieve",
                           params={"file_id": seeded["file_id"], "model": "minimax-files-list"})
    assert status(wrong_op) == 2013


# --- retrieve_content ----------------------------------------------------------------------------------------
def test_retrieve_content_type_redirect_and_range_switches(client: Client) -> None:
    emu = client.emu
    file_id, data = _seeded_video(emu)
    params = {"file_id": file_id}
    emu.configure(content_json=False)
    plain = client.call("GET", "/v1/files/retrieve_content", params=params)
    assert plain.headers["Content-Type"] == "application/octet-stream" and plain.content == data
    ignored = client.call("GET", "/v1/files/retrieve_content", params=params, headers={"Range": "bytes=10-19"})
    assert ignored.status_code == 200 and ignored.content == data
    emu.configure(content_range=True, content_json=True)
    ranged = client.call("GET", "/v1/files/retrieve_content", params=params, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    emu.configure(content_redirect=True)
    moved = client.call("GET", "/v1/files/retrieve_content", params=params, allow_redirects=False)
    assert moved.status_code == 302 and "/_dl/" in moved.headers["Location"]
    assert client.download(moved.headers["Location"]).content == data


# --- list without purpose, injected status codes -------------------------------------------------------------
def test_what_a_purpose_less_list_answers_is_a_switch(client: Client) -> None:
    emu = client.emu
    emu.seed("voice_clone", "a.wav", b"RIFF" + bytes(10))
    emu.seed("video_understanding", "clip.mp4", bytes(10))
    assert len(client.list().json()["files"]) == 2
    emu.configure(unpurposed_list="listable")
    assert [f["purpose"] for f in client.list().json()["files"]] == ["voice_clone"]
    emu.configure(unpurposed_list="empty")
    empty = client.list()
    assert status(empty) == 0 and empty.json()["files"] == []
    emu.configure(require_purpose=True)
    assert status(client.list()) == 2013


@pytest.mark.parametrize("code", [2045, 1028, 1030, 2061, 1042, 1043, 1044, 2037, 2039, 2042, 2048, 20132])
def test_status_codes_seen_in_clients_are_injectable(client: Client, code: int) -> None:
    client.emu.configure(fail_status=code, fail_status_every=2)
    answers = [client.list("voice_clone") for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert [status(a) for a in answers] == [0, code, 0, code]
    assert answers[1].json()["base_resp"]["status_msg"]
    assert client.emu.counters()["faults"]["api_status"] == 2


# --- video_generation_input ----------------------------------------------------------------------------------
def test_video_generation_input_rules_follow_the_docs() -> None:
    for name in ("a.jpg", "a.jpeg", "a.png", "a.webp", "a.heic", "a.HEIF"):
        assert check_upload("video_generation_input", name, 30 * MB, check_format=True) is None, name
        assert check_upload("video_generation_input", name, 30 * MB + 1, check_format=True) is not None, name
    for name in ("a.wav", "a.mp3"):
        assert check_upload("video_generation_input", name, 15 * MB, check_format=True) is None
        assert check_upload("video_generation_input", name, 15 * MB + 1, check_format=True) is not None
    assert check_upload("video_generation_input", "a.mp4", 50 * MB, check_format=True) is None
    assert check_upload("video_generation_input", "a.mp4", 50 * MB + 1, check_format=True) is not None
    for name in ("a.m4a", "a.aac", "a.gif"):
        assert check_upload("video_generation_input", name, 1000, check_format=True) is not None, name


def test_a_refused_video_generation_input_upload_is_http_400_and_stores_nothing(client: Client) -> None:
    refused = client.upload("video_generation_input", "voice.m4a", b"x" * 1000)
    assert refused.status_code == 400 and status(refused) == 2013
    assert not client.emu.store.all()
    accepted = client.upload("video_generation_input", "photo.heic", b"x" * 1000)
    assert accepted.status_code == 200 and status(accepted) == 0
    other = client.upload("voice_clone", "voice.exe", b"x" * 1000)  # other purposes: per upload_error_http400
    assert other.status_code == 200 and status(other) == 2013
