"""The emulator over real HTTP on loopback: endpoints, quirks, switches, faults, storage, demo, admin, CLI.

Every test starts its own emulator on port 0 in a temp folder and talks to it with requests, as mmfs would.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import pytest
import requests
from requests_toolbelt import MultipartEncoder

from mmfs.emulator import DEMO_API_KEY, MB, UPLOAD_RULES, Emulator, EmulatorConfig, demo_files
from mmfs.emulator.rules import check_upload

REPO = Path(__file__).resolve().parent.parent


class Client:
    """A thin client over one emulator: the key goes only to API calls, never to download URLs."""

    def __init__(self, emu: Emulator, key: str | None = None) -> None:
        self.emu = emu
        self.http = requests.Session()
        self.auth = {"Authorization": f"Bearer {key or emu.api_key}"}

    def url(self, path: str) -> str:
        return self.emu.base_url + path

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {**self.auth, **kw.pop("headers", {})}
        return self.http.request(method, self.url(path), headers=headers, timeout=30, **kw)

    def upload(self, purpose: str, filename: str, data: bytes | Path, **kw: Any) -> requests.Response:
        if isinstance(data, Path):
            with data.open("rb") as f:
                enc = MultipartEncoder({"purpose": purpose, "file": (filename, f, "application/octet-stream")})
                return self.call("POST", "/v1/files/upload", data=enc,
                                 headers={"Content-Type": enc.content_type}, **kw)
        return self.call("POST", "/v1/files/upload", data={"purpose": purpose},
                         files={"file": (filename, data)}, **kw)

    def list(self, purpose: str | None = None) -> requests.Response:
        return self.call("GET", "/v1/files/list", params={"purpose": purpose} if purpose else {})

    def retrieve(self, file_id: Any) -> requests.Response:
        return self.call("GET", "/v1/files/retrieve", params={"file_id": str(file_id)})

    def delete(self, file_id: Any, purpose: str | None = None) -> requests.Response:
        body: dict[str, Any] = {"file_id": file_id}
        if purpose is not None:
            body["purpose"] = purpose
        return self.call("POST", "/v1/files/delete", json=body)

    def url_of(self, file_id: Any) -> str:
        resp = self.retrieve(file_id)
        assert status(resp) == 0, resp.text
        return str(resp.json()["file"]["download_url"])

    def download(self, url: str, range_: str | None = None, **kw: Any) -> requests.Response:
        headers = {"Range": range_} if range_ else {}
        return self.http.get(url, headers=headers, timeout=30, **kw)


def status(resp: requests.Response) -> int:
    return int(resp.json()["base_resp"]["status_code"])


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(data_dir=tmp_path / "data", api_key="sk-api-test-key")) as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> Client:
    return Client(emu)


@pytest.fixture(scope="module")
def demo_emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(data_dir=tmp_path_factory.mktemp("demo"), demo=True)) as e:
        yield e


def seeded(emu: Emulator, purpose: str = "voice_clone", name: str = "a.wav", data: bytes = b"") -> tuple[int, bytes]:
    data = data or bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable
    return int(emu.seed(purpose, name, data)["file_id"]), data


# --- auth ------------------------------------------------------------------------------------------------
def test_missing_or_wrong_key_answers_http_200_with_1004_and_is_counted(emu: Emulator) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-api-wrong"}, {"Authorization": "sk-api-test-key"}):
        resp = requests.get(emu.base_url + "/v1/files/list", headers=headers, timeout=10)
        assert resp.status_code == 200
        assert status(resp) == 1004
    assert emu.counters()["bad_auth"] == 3
    assert emu.counters()["requests"]["list"] == 3
    wrong = Client(emu, key="sk-api-wrong")
    refused = wrong.upload("voice_clone", "a.wav", os.urandom(3 * MB))  # drained, then answered
    assert refused.status_code == 200 and status(refused) == 1004
    assert status(wrong.list("voice_clone")) == 1004  # the same connection still works
    assert emu.store.all() == []


def test_api_key_comes_from_config_then_env_then_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIMAX_API_KEY", raising=False)
    assert Emulator(EmulatorConfig(data_dir=tmp_path / "a")).api_key == DEMO_API_KEY
    monkeypatch.setenv("MINIMAX_API_KEY", "sk-api-from-env")
    assert Emulator(EmulatorConfig(data_dir=tmp_path / "b")).api_key == "sk-api-from-env"
    assert Emulator(EmulatorConfig(data_dir=tmp_path / "c", api_key="sk-cp-x")).api_key == "sk-cp-x"


# --- the five endpoints ------------------------------------------------------------------------------------
def test_upload_list_retrieve_download_round_trip(client: Client) -> None:
    data = os.urandom(100_000)
    resp = client.upload("voice_clone", "voice.wav", data)
    assert resp.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["Trace-Id"])
    body = resp.json()
    assert body["base_resp"] == {"status_code": 0, "status_msg": "success"}
    obj = body["file"]
    assert isinstance(obj["file_id"], int) and len(str(obj["file_id"])) == 15
    assert obj["bytes"] == len(data) and obj["filename"] == "voice.wav" and obj["purpose"] == "voice_clone"
    assert abs(obj["created_at"] - time.time()) < 60

    listed = client.list("voice_clone").json()
    assert listed["files"] == [obj]  # no download_url in a listing

    got = client.retrieve(obj["file_id"]).json()["file"]
    assert {k: v for k, v in got.items() if k != "download_url"} == obj
    url = got["download_url"]
    assert url.startswith(client.emu.base_url + f"/_dl/{obj['file_id']}/voice.wav?")
    assert set(parse_qs(urlsplit(url).query)) == {"Expires", "OSSAccessKeyId", "Signature"}
    downloaded = client.download(url)
    assert downloaded.status_code == 200 and downloaded.content == data
    assert downloaded.headers["Accept-Ranges"] == "bytes"
    assert downloaded.headers["Content-Disposition"].startswith("attachment;")
    counters = client.emu.counters()
    assert counters["upload_bytes"] == len(data) and counters["download_bytes"] == len(data)
    assert counters["downloads"] == [{"file_id": str(obj["file_id"]), "start": 0, "end": len(data)}]
    assert counters["requests"]["upload"] == 1 and counters["requests"]["retrieve"] == 1


def test_40_mib_upload_streams_in_and_ranged_downloads_match(client: Client, tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    digest = hashlib.sha256()
    with big.open("wb") as out:
        for _ in range(40):
            piece = os.urandom(1024 * 1024)
            digest.update(piece)
            out.write(piece)
    resp = client.upload("video_understanding", "big.mp4", big)
    assert status(resp) == 0, resp.text
    file_id = resp.json()["file"]["file_id"]
    assert resp.json()["file"]["bytes"] == 40 * 1024 * 1024
    url = client.url_of(file_id)
    back = hashlib.sha256()
    step = 7 * 1024 * 1024 + 3  # odd steps: every boundary lands mid-piece
    for start in range(0, 40 * 1024 * 1024, step):
        end = min(start + step, 40 * 1024 * 1024)
        part = client.download(url, f"bytes={start}-{end - 1}")
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes {start}-{end - 1}/{40 * 1024 * 1024}"
        assert len(part.content) == end - start
        back.update(part.content)
    assert back.hexdigest() == digest.hexdigest()
    with big.open("rb") as f:
        f.seek(12345)
        assert client.download(url, "bytes=12345-12444").content == f.read(100)


def test_retrieve_content_answers_raw_bytes_and_errors_as_json(client: Client) -> None:
    file_id, data = seeded(client.emu)
    resp = client.call("GET", "/v1/files/retrieve_content", params={"file_id": file_id})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"  # as documented, over the binary body
    assert resp.content == data
    missing = client.call("GET", "/v1/files/retrieve_content", params={"file_id": "123456789012345"})
    assert missing.status_code == 200 and status(missing) == 2013
    assert client.emu.counters()["requests"]["retrieve_content"] == 2


def test_delete_then_retrieve_is_2013(client: Client) -> None:
    file_id, _ = seeded(client.emu)
    assert status(client.delete(file_id, "prompt_audio")) == 2013  # not the file's purpose
    resp = client.delete(file_id, "voice_clone")
    assert status(resp) == 0 and resp.json()["file_id"] == file_id
    assert status(client.retrieve(file_id)) == 2013
    assert status(client.delete(file_id, "voice_clone")) == 2013
    assert client.list("voice_clone").json()["files"] == []
    assert not any(client.emu.store.blob_dir.iterdir())


def test_delete_accepts_a_string_id_and_a_missing_purpose_unless_required(client: Client) -> None:
    first, _ = seeded(client.emu)
    assert status(client.delete(str(first), "voice_clone")) == 0
    second, _ = seeded(client.emu)
    client.emu.configure(require_purpose=True)
    assert status(client.delete(second)) == 2013
    assert status(client.list()) == 2013
    client.emu.configure(require_purpose=False)
    assert status(client.delete(second)) == 0
    assert status(client.call("POST", "/v1/files/delete", data=b"not json")) == 2013


def test_unknown_or_malformed_file_id_is_2013(client: Client) -> None:
    for value in ("999999999999999", "abc", ""):
        assert status(client.retrieve(value)) == 2013
    assert status(client.call("GET", "/v1/files/retrieve")) == 2013


def test_list_without_purpose_shows_every_file(client: Client) -> None:
    seeded(client.emu, "voice_clone", "a.wav")
    seeded(client.emu, "video_understanding", "b.mp4")
    names = sorted(f["filename"] for f in client.list().json()["files"])
    assert names == ["a.wav", "b.mp4"]


def test_extra_query_parameters_are_ignored(client: Client) -> None:
    file_id, _ = seeded(client.emu)
    resp = client.call("GET", "/v1/files/retrieve", params={"model": "minimax-files-retrieve", "file_id": file_id})
    assert status(resp) == 0 and resp.json()["file"]["file_id"] == file_id


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/files"), ("POST", "/v1/files"), ("GET", "/v1/files/123"), ("DELETE", "/v1/files/123"),
     ("GET", "/v2/whatever"), ("GET", "/v1/files/upload"), ("HEAD", "/v1/files/list")],
)
def test_openai_style_and_unknown_paths_are_404(client: Client, method: str, path: str) -> None:
    resp = client.call(method, path)
    assert resp.status_code == 404
    assert "Trace-Id" in resp.headers


def test_same_name_twice_gets_two_ids_and_names_keep_slashes(client: Client) -> None:
    a = client.upload("t2a_async_input", "drafts/x.txt", b"one").json()["file"]
    b = client.upload("t2a_async_input", "drafts/x.txt", b"two").json()["file"]
    assert a["file_id"] != b["file_id"] and a["filename"] == b["filename"] == "drafts/x.txt"
    url = client.url_of(b["file_id"])
    assert f"/{quote('drafts/x.txt', safe='')}?" in url
    assert client.download(url).content == b"two"


@pytest.mark.parametrize(
    "name", ["..", ".", "", "a/../b", "tab\there\n", "x" * 2000, "%2F", 'quote"d\\', "ünï 名前.wav"]
)
def test_awkward_names_download_through_their_url(client: Client, name: str) -> None:
    obj = client.emu.seed("voice_clone", name, b"hello")
    got = client.retrieve(obj["file_id"]).json()["file"]
    assert got["filename"] == name
    resp = client.download(got["download_url"])
    assert resp.status_code == 200 and resp.content == b"hello"
    resp.headers["Content-Disposition"].encode("latin-1")  # a header must stay latin-1


def test_whatwg_escapes_in_upload_filenames_are_kept_unless_switched_on(client: Client) -> None:
    name = 'say "hi"\r\n 100%.txt'
    kept = client.upload("retrieval", name, b"q")  # urllib3 sends " CR LF as %22 %0D %0A, as browsers do
    assert kept.json()["file"]["filename"] == 'say %22hi%22%0D%0A 100%.txt'
    client.emu.configure(whatwg_filenames=True)
    decoded = client.upload("retrieval", name, b"q")
    assert decoded.json()["file"]["filename"] == name


def test_non_ascii_filename_and_chunked_upload(client: Client) -> None:
    enc = MultipartEncoder({"purpose": "retrieval", "file": ("résumé 履歴.txt", b"x" * 5000)})

    def chunked() -> Iterator[bytes]:  # a generator body goes out with chunked transfer coding
        while piece := enc.read(1000):
            yield piece

    resp = client.call("POST", "/v1/files/upload", data=chunked(), headers={"Content-Type": enc.content_type})
    assert status(resp) == 0, resp.text
    obj = resp.json()["file"]
    assert obj["filename"] == "résumé 履歴.txt" and obj["bytes"] == 5000
    download = client.download(client.url_of(obj["file_id"]))
    assert download.content == b"x" * 5000
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9" in download.headers["Content-Disposition"]


# --- purposes ----------------------------------------------------------------------------------------------
def test_purposes_per_endpoint_in_strict_mode(client: Client) -> None:
    emu = client.emu
    assert status(client.list("video_understanding")) == 2013  # never listable
    assert status(client.list("no_such_purpose")) == 2013
    for purpose in ("voice_clone", "prompt_audio", "t2a_async_input", "video_generation_input",
                    "t2a_async", "video_generation", "retrieval"):
        assert status(client.list(purpose)) == 0, purpose
    assert status(client.upload("video_generation", "v.mp4", b"x")) == 2013  # generated: not uploadable
    assert status(client.upload("t2a_async", "a.tar", b"x")) == 2013
    assert status(client.upload("nonsense", "a.wav", b"x")) == 2013
    understanding, _ = seeded(emu, "video_understanding", "c.mp4")
    assert status(client.delete(understanding, "video_understanding")) == 2013  # delete does not take it
    assert status(client.delete(understanding)) == 2013  # nor without a purpose
    generated, _ = seeded(emu, "video_generation", "g.mp4")
    assert status(client.delete(generated, "video_generation")) == 0


def test_list_generated_off_hides_generated_purposes(client: Client) -> None:
    client.emu.configure(list_generated=False)
    for purpose in ("t2a_async", "video_generation", "retrieval"):
        assert status(client.list(purpose)) == 2013
    assert status(client.list("voice_clone")) == 0


def test_lenient_purposes_accept_everything_known(client: Client) -> None:
    client.emu.configure(lenient_purposes=True)
    assert status(client.list("video_understanding")) == 0
    resp = client.upload("video_generation", "v.mp4", b"\x00" * 10)
    assert status(resp) == 0
    understanding, _ = seeded(client.emu, "video_understanding", "c.mp4")
    assert status(client.delete(understanding, "video_understanding")) == 0
    assert status(client.list("no_such_purpose")) == 2013


# --- upload checks -----------------------------------------------------------------------------------------
def test_upload_format_size_and_empty_refusals_as_status_2013(client: Client, tmp_path: Path) -> None:
    assert status(client.upload("voice_clone", "voice.txt", b"abc")) == 2013
    assert status(client.upload("voice_clone", "noextension", b"abc")) == 2013
    assert status(client.upload("voice_clone", "empty.wav", b"")) == 2013
    big = tmp_path / "big.wav"
    with big.open("wb") as out:
        out.truncate(20 * MB + 1)
    refused = client.upload("voice_clone", "big.wav", big)
    assert refused.status_code == 200 and status(refused) == 2013
    assert "20 MB" in refused.json()["base_resp"]["status_msg"]
    assert status(client.upload("voice_clone", "VOICE.WAV", b"abc")) == 0  # extensions ignore case
    assert len(client.list().json()["files"]) == 1
    assert not any(client.emu.store.tmp_dir.iterdir())  # refused uploads leave nothing behind


def test_upload_refusals_as_http_400_when_switched(client: Client) -> None:
    client.emu.configure(upload_error_http400=True)
    resp = client.upload("voice_clone", "voice.txt", b"abc")
    assert resp.status_code == 400 and status(resp) == 2013
    resp = client.upload("video_generation", "v.mp4", b"abc")
    assert resp.status_code == 400 and status(resp) == 2013


def test_check_uploads_off_accepts_any_format(client: Client) -> None:
    client.emu.configure(check_uploads=False)
    assert status(client.upload("voice_clone", "voice.txt", b"abc")) == 0
    assert status(client.upload("voice_clone", "empty.wav", b"")) == 2013  # still not empty


def test_upload_rules_table() -> None:
    assert UPLOAD_RULES["voice_clone"].limit_for("wav") == 20 * MB
    assert check_upload("video_generation_input", "a.png", 30 * MB, check_format=True) is None
    assert check_upload("video_generation_input", "a.png", 30 * MB + 1, check_format=True) is not None
    assert check_upload("video_generation_input", "a.mov", 50 * MB, check_format=True) is None
    assert check_upload("video_generation_input", "a.mp3", 15 * MB + 1, check_format=True) is not None
    assert check_upload("retrieval", "a.docx", 1, check_format=True) is None
    assert check_upload("retrieval", "a.doc", 1, check_format=True) is not None
    assert check_upload("t2a_async_input", "a.zip", 512 * MB + 1, check_format=True) is not None
    assert check_upload("video_understanding", "a.mkv", 1, check_format=True) is None


def test_malformed_multipart_is_2013(client: Client) -> None:
    resp = client.call("POST", "/v1/files/upload", data=b"purpose=voice_clone",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status(resp) == 2013
    resp = client.call("POST", "/v1/files/upload", data={"purpose": "voice_clone"}, files={"other": ("a.wav", b"x")})
    assert status(resp) == 2013  # the part must be named "file"


def test_an_upload_cut_off_mid_body_leaves_nothing(client: Client) -> None:
    enc = MultipartEncoder({"purpose": "voice_clone", "file": ("cut.wav", b"a" * 200_000)})
    body = enc.to_string()
    with socket.create_connection(("127.0.0.1", client.emu.port)) as sock:
        head = (f"POST /v1/files/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {client.emu.api_key}\r\n"
                f"Content-Type: {enc.content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
        sock.sendall(head.encode() + body[:100_000])
    deadline = time.monotonic() + 10
    while client.emu.counters()["requests"]["upload"] == 0 or client.emu.open_connections():
        assert time.monotonic() < deadline, "the server never finished with the broken upload"
        time.sleep(0.02)
    assert not any(client.emu.store.tmp_dir.iterdir())
    assert client.list().json()["files"] == []
    assert not any(client.emu.store.blob_dir.iterdir())


# --- FileObject forms --------------------------------------------------------------------------------------
def test_file_id_as_string_when_switched(client: Client) -> None:
    client.emu.configure(file_id_type="string")
    obj = client.upload("voice_clone", "a.wav", b"abc").json()["file"]
    assert isinstance(obj["file_id"], str) and obj["file_id"].isdigit()
    assert client.list("voice_clone").json()["files"][0]["file_id"] == obj["file_id"]
    assert client.retrieve(obj["file_id"]).json()["file"]["file_id"] == obj["file_id"]
    assert client.delete(int(obj["file_id"]), "voice_clone").json()["file_id"] == obj["file_id"]


def test_generated_videos_report_zero_bytes_but_download_whole(client: Client) -> None:
    data = os.urandom(50_000)
    obj = client.emu.seed("video_generation", "out.mp4", data)
    assert obj["bytes"] == 0
    assert client.list("video_generation").json()["files"][0]["bytes"] == 0
    got = client.retrieve(obj["file_id"]).json()["file"]
    assert got["bytes"] == 0
    head = requests.head(got["download_url"], timeout=10)
    assert int(head.headers["Content-Length"]) == len(data)
    tail = client.download(got["download_url"], "bytes=-10")
    assert tail.headers["Content-Range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
    client.emu.configure(zero_bytes_video=False)
    assert client.retrieve(obj["file_id"]).json()["file"]["bytes"] == len(data)


# --- downloads ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-0", 0, 1), ("bytes=10239-10239", 10239, 10240), ("bytes=-100", 10140, 10240),
     ("bytes=10000-", 10000, 10240), ("bytes=100-199", 100, 200), ("bytes=10200-99999", 10200, 10240),
     ("bytes=-99999", 0, 10240)],
)
def test_range_arithmetic(client: Client, header: str, start: int, end: int) -> None:
    file_id, data = seeded(client.emu)
    resp = client.download(client.url_of(file_id), header)
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(data)}"
    assert int(resp.headers["Content-Length"]) == end - start
    assert resp.content == data[start:end]
    assert client.emu.counters()["downloads"][-1] == {"file_id": str(file_id), "start": start, "end": end}


def test_range_past_the_end_is_416_and_bad_ranges_give_the_whole_body(client: Client) -> None:
    file_id, data = seeded(client.emu)
    url = client.url_of(file_id)
    resp = client.download(url, f"bytes={len(data)}-")
    assert resp.status_code == 416 and resp.headers["Content-Range"] == f"bytes */{len(data)}"
    for ignored in ("bytes=5-2", "items=0-1", "bytes=0-1,5-6"):
        resp = client.download(url, ignored)
        assert resp.status_code == 200 and resp.content == data


def test_head_reports_size_and_ranges_without_a_body(client: Client) -> None:
    file_id, data = seeded(client.emu)
    url = client.url_of(file_id)
    resp = requests.head(url, timeout=10)
    assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == len(data) and resp.content == b""
    resp = requests.head(url, headers={"Range": "bytes=0-9"}, timeout=10)
    assert resp.status_code == 206 and resp.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    counters = client.emu.counters()
    assert counters["requests"]["head"] == 2 and counters["requests"]["download"] == 0
    assert counters["download_bytes"] == 0


def test_ignore_range_answers_200_with_the_whole_body(client: Client) -> None:
    file_id, data = seeded(client.emu)
    client.emu.configure(ignore_range=True)
    resp = client.download(client.url_of(file_id), "bytes=100-199")
    assert resp.status_code == 200 and resp.content == data and "Content-Range" not in resp.headers


def test_expired_url_is_403_with_oss_xml(client: Client) -> None:
    file_id, data = seeded(client.emu)
    client.emu.configure(url_ttl=1)
    url = client.url_of(file_id)
    expires = int(parse_qs(urlsplit(url).query)["Expires"][0])
    assert expires <= time.time() + 1
    time.sleep(1.5)
    resp = client.download(url)
    assert resp.status_code == 403
    assert resp.headers["Content-Type"] == "application/xml"
    assert "<Code>AccessDenied</Code>" in resp.text and "Request has expired." in resp.text
    client.emu.configure(url_ttl=3600)
    assert client.download(client.url_of(file_id)).content == data  # a fresh retrieve works again


def test_tampered_url_is_403_signature_does_not_match(client: Client) -> None:
    file_id, _ = seeded(client.emu, name="a.wav")
    url = client.url_of(file_id)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    forged = dict(query, Signature=["AAAA" + query["Signature"][0][4:]])
    bad_sig = urlunsplit(parts._replace(query="&".join(f"{k}={quote(v[0], safe='')}" for k, v in forged.items())))
    later = dict(query, Expires=[str(int(query["Expires"][0]) + 1000)])
    bad_exp = urlunsplit(parts._replace(query="&".join(f"{k}={quote(v[0], safe='')}" for k, v in later.items())))
    renamed = url.replace("/a.wav?", "/b.wav?")
    for bad in (bad_sig, bad_exp, renamed):
        resp = client.download(bad)
        assert resp.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in resp.text
    no_query = client.download(url.split("?")[0])
    assert no_query.status_code == 403 and "<Code>AccessDenied</Code>" in no_query.text


def test_deleted_file_download_is_404_nosuchkey(client: Client) -> None:
    file_id, _ = seeded(client.emu)
    url = client.url_of(file_id)
    client.delete(file_id, "voice_clone")
    resp = client.download(url)
    assert resp.status_code == 404 and "NoSuchKey" in resp.text


def test_redirect_downloads_go_through_a_302(client: Client) -> None:
    file_id, data = seeded(client.emu)
    client.emu.configure(redirect_downloads=True)
    url = client.url_of(file_id)
    assert "/_cdn/" in url
    hop = client.download(url, allow_redirects=False)
    assert hop.status_code == 302 and "/_dl/" in hop.headers["Location"]
    followed = client.download(url, "bytes=5-9")
    assert followed.status_code == 206 and followed.content == data[5:10]


def test_download_never_needs_the_key_and_counts_one_that_carries_it(client: Client) -> None:
    file_id, data = seeded(client.emu)
    url = client.url_of(file_id)
    assert requests.get(url, timeout=10).content == data
    assert client.emu.counters()["auth_on_download"] == 0
    requests.get(url, headers=client.auth, timeout=10)
    requests.head(url, headers=client.auth, timeout=10)
    assert client.emu.counters()["auth_on_download"] == 2


def test_parallel_ranged_downloads_and_uploads(client: Client) -> None:
    file_id, data = seeded(client.emu, data=os.urandom(4 * 1024 * 1024))
    url = client.url_of(file_id)
    piece = 256 * 1024

    def fetch(index: int) -> bytes:
        start = index * piece
        return requests.get(url, headers={"Range": f"bytes={start}-{start + piece - 1}"}, timeout=30).content

    def put(index: int) -> int:
        return status(Client(client.emu).upload("voice_clone", f"p{index}.wav", bytes([index]) * 1000))

    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(fetch, range(16)))
        assert list(pool.map(put, range(8))) == [0] * 8
    assert b"".join(parts) == data
    assert len(client.list("voice_clone").json()["files"]) == 9


def test_a_client_leaving_mid_download_does_not_hurt_the_server(client: Client) -> None:
    file_id, data = seeded(client.emu, data=os.urandom(8 * 1024 * 1024))
    url = client.url_of(file_id)
    for _ in range(3):
        with requests.get(url, stream=True, timeout=10) as resp:
            next(resp.iter_content(1024))
    assert client.download(url).content == data


# --- faults ------------------------------------------------------------------------------------------------
def test_fail_download_every_second_answers_500(client: Client) -> None:
    file_id, _ = seeded(client.emu)
    url = client.url_of(file_id)
    client.emu.configure(fail_download_every=2)
    codes = [client.download(url).status_code for _ in range(4)]
    assert codes == [200, 500, 200, 500]
    assert client.emu.counters()["faults"]["download_500"] == 2
    client.emu.configure(fail_download_every=0)
    assert all(client.download(url).status_code == 200 for _ in range(3))


def test_fail_api_every_third_call_is_1002(client: Client) -> None:
    client.emu.configure(fail_api_every=3)
    codes = [status(client.list("voice_clone")) for _ in range(6)]
    assert codes == [0, 0, 1002, 0, 0, 1002]
    assert client.emu.counters()["faults"]["api_1002"] == 2


def test_http429_with_retry_after(client: Client) -> None:
    client.emu.configure(http429_every=2, retry_after=7)
    first, second = client.list("voice_clone"), client.list("voice_clone")
    assert first.status_code == 200
    assert second.status_code == 429 and second.headers["Retry-After"] == "7"
    upload = client.upload("voice_clone", "a.wav", b"abc")  # the fault drains the body: connection reusable
    assert upload.status_code == 200 and status(upload) == 0
    assert client.upload("voice_clone", "a.wav", b"abc").status_code == 429
    assert client.emu.counters()["faults"]["http_429"] == 2


def test_http502_every_answers_like_a_gateway(client: Client) -> None:
    client.emu.configure(http502_every=2)
    assert client.list("voice_clone").status_code == 200
    resp = client.list("voice_clone")
    assert resp.status_code == 502 and "Bad Gateway" in resp.text
    assert client.emu.counters()["faults"]["http_502"] == 1


def test_bad_key_status_and_upload_status(client: Client) -> None:
    client.emu.configure(bad_key_status=2049)
    assert status(Client(client.emu, key="sk-api-wrong").list("voice_clone")) == 2049
    client.emu.configure(upload_status=1008)
    resp = client.upload("voice_clone", "a.wav", b"abc")
    assert resp.status_code == 200 and status(resp) == 1008
    assert client.list().json()["files"] == []
    client.emu.configure(upload_status=0)
    assert status(client.upload("voice_clone", "a.wav", b"abc")) == 0


def test_fields_can_be_missing_or_null(client: Client) -> None:
    obj = client.emu.seed("voice_clone", "a.wav", b"abc")
    client.emu.configure(drop_fields="bytes, download_url", null_fields="created_at")
    listed = client.list("voice_clone").json()["files"][0]
    assert "bytes" not in listed and listed["created_at"] is None and listed["file_id"] == obj["file_id"]
    got = client.retrieve(obj["file_id"]).json()["file"]
    assert "download_url" not in got and "bytes" not in got
    with pytest.raises(ValueError, match="not FileObject fields"):
        client.emu.configure(drop_fields="colour")


def test_drop_every_cuts_the_body_short(client: Client) -> None:
    file_id, data = seeded(client.emu, data=os.urandom(1024 * 1024))
    url = client.url_of(file_id)
    client.emu.configure(drop_every=1)
    received = bytearray()
    with pytest.raises(requests.exceptions.RequestException), requests.get(url, stream=True, timeout=10) as resp:
        assert int(resp.headers["Content-Length"]) == len(data)
        for piece in resp.iter_content(64 * 1024):
            received += piece
    assert 0 < len(received) < len(data) and bytes(received) == data[: len(received)]
    counters = client.emu.counters()
    assert counters["faults"]["drop"] == 1 and counters["download_bytes"] == len(received)


def test_latency_delays_every_answer(client: Client) -> None:
    client.emu.configure(latency=0.3)
    began = time.monotonic()
    client.list("voice_clone")
    assert time.monotonic() - began >= 0.3


def test_conn_rate_caps_download_throughput(client: Client) -> None:
    file_id, data = seeded(client.emu, data=os.urandom(MB))
    url = client.url_of(file_id)
    client.emu.configure(conn_rate=2.0)
    began = time.monotonic()
    assert client.download(url).content == data
    assert time.monotonic() - began >= 0.4  # 1 MB at 2 MB/s: 0.5 s at best


def test_fail_uploads_error_mode_stores_nothing_and_is_spent(client: Client) -> None:
    client.emu.configure(fail_uploads=2, upload_fail_mode="error")
    for _ in range(2):
        resp = client.upload("voice_clone", "a.wav", b"abc")
        assert resp.status_code == 500
    assert client.list().json()["files"] == []
    assert status(client.upload("voice_clone", "a.wav", b"abc")) == 0
    assert client.emu.switches.fail_uploads == 0
    assert client.emu.counters()["faults"]["upload_fail"] == 2


def test_fail_uploads_ambiguous_mode_stores_but_never_answers(client: Client) -> None:
    client.emu.configure(fail_uploads=1, upload_fail_mode="ambiguous")
    with pytest.raises(requests.exceptions.ConnectionError):
        client.upload("voice_clone", "lost.wav", b"abc")
    files = client.list("voice_clone").json()["files"]
    assert [f["filename"] for f in files] == ["lost.wav"]
    assert status(client.upload("voice_clone", "next.wav", b"abc")) == 0


def test_short_uploads_store_and_answer_half_the_body_and_are_spent(client: Client) -> None:
    client.emu.configure(short_uploads=1)
    resp = client.upload("voice_clone", "cut.wav", b"0123456789")
    assert status(resp) == 0 and resp.json()["file"]["bytes"] == 5
    assert client.emu.store.blob_path(int(resp.json()["file"]["file_id"])).read_bytes() == b"01234"
    whole = client.upload("voice_clone", "whole.wav", b"0123456789").json()["file"]
    assert whole["bytes"] == 10 and client.emu.counters()["faults"]["upload_short"] == 1


def test_fail_deletes_answer_500_delete_nothing_and_are_spent(client: Client) -> None:
    file_id, _ = seeded(client.emu)
    client.emu.configure(fail_deletes=1)
    assert client.delete(file_id).status_code == 500
    assert client.emu.store.get(int(file_id)) is not None
    assert status(client.delete(file_id)) == 0 and client.emu.store.get(int(file_id)) is None
    assert client.emu.counters()["faults"]["delete_fail"] == 1


def test_configure_refuses_unknown_switches_and_bad_values(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown switch"):
        emu.configure(no_such_switch=1)
    with pytest.raises(ValueError):
        emu.configure(file_id_type="float")
    with pytest.raises(ValueError):
        emu.configure(latency=-1)
    emu.configure(url_ttl="2.5", ignore_range="true")
    assert emu.switches.url_ttl == 2.5 and emu.switches.ignore_range is True


# --- counters, storage, logging ----------------------------------------------------------------------------
def test_counters_shape_and_reset(client: Client) -> None:
    file_id, _ = seeded(client.emu)
    client.download(client.url_of(file_id), "bytes=0-9")
    counters = client.emu.counters()
    assert set(counters) == {"requests", "download_bytes", "upload_bytes", "faults", "auth_on_download",
                             "bad_auth", "downloads"}
    assert set(counters["requests"]) == {"upload", "list", "retrieve", "retrieve_content", "delete",
                                         "download", "head"}
    assert set(counters["faults"]) == {"download_500", "api_1002", "http_429", "http_502", "drop",
                                       "upload_fail", "upload_short", "delete_fail", "api_status", "stall",
                                       "trickle"}
    counters["requests"]["download"] = 999  # a copy: changing it changes nothing
    assert client.emu.counters()["requests"]["download"] == 1
    client.emu.reset_counters()
    after = client.emu.counters()
    assert after["requests"]["download"] == 0 and after["downloads"] == [] and after["download_bytes"] == 0


def test_files_survive_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    cfg = EmulatorConfig(data_dir=tmp_path / "data", api_key="k")
    with Emulator(cfg) as first:
        client = Client(first)
        obj = client.upload("voice_clone", "keep.wav", b"persistent").json()["file"]
        old_url = client.url_of(obj["file_id"])
    with Emulator(cfg) as second:
        client = Client(second)
        assert client.list("voice_clone").json()["files"] == [obj]
        assert client.download(client.url_of(obj["file_id"])).content == b"persistent"
        # The signing secret is kept too: a URL handed out before the restart still works (same path).
        moved = second.base_url + "/" + old_url.split("/", 3)[3]  # only the port changed
        assert client.download(moved).content == b"persistent"


def test_logs_never_hold_the_key_or_a_signature(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mmfs.emulator")
    file_id, _ = seeded(client.emu)
    url = client.url_of(file_id)
    client.download(url)
    client.download(url.replace("Signature=", "Signature=x"))
    assert "/_dl/" in caplog.text  # it does log the requests
    assert client.emu.api_key not in caplog.text
    assert "Signature" not in caplog.text and "Expires" not in caplog.text


# --- demo --------------------------------------------------------------------------------------------------
def test_demo_tree_has_every_awkward_case(demo_emu: Emulator) -> None:
    client = Client(demo_emu)
    files = client.list().json()["files"]
    by_purpose: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        by_purpose.setdefault(f["purpose"], []).append(f)
    for purpose in ("voice_clone", "prompt_audio", "t2a_async_input", "t2a_async", "retrieval",
                    "video_generation"):
        assert by_purpose.get(purpose), purpose
    greetings = [f for f in by_purpose["voice_clone"] if f["filename"] == "greeting.wav"]
    assert len(greetings) == 2 and greetings[0]["created_at"] != greetings[1]["created_at"]
    assert any(f["filename"] == "drafts/notes.txt" for f in by_purpose["t2a_async_input"])
    video = by_purpose["video_generation"][0]
    assert video["bytes"] == 0
    body = client.download(client.url_of(video["file_id"])).content
    assert len(body) > 1024 * 1024 and body[4:8] == b"ftyp"

    expected = {(d.purpose, d.filename, d.created_at): d.data for d in demo_files()}
    assert len(files) == len(expected)
    for f in files:
        got = client.download(client.url_of(f["file_id"])).content
        assert got == expected[(f["purpose"], f["filename"], f["created_at"])], f["filename"]
        if f["filename"].endswith(".wav"):
            with wave.open(io.BytesIO(got)) as w:
                seconds = w.getnframes() / w.getframerate()
            assert seconds > 1
        if f["filename"] == "narrator_sample.wav":
            assert 10 <= seconds <= 15


def test_demo_pdf_xref_and_tar_are_valid() -> None:
    by_name = {d.filename: d.data for d in demo_files()}
    pdf = by_name["handbook.pdf"]
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    xref_at = int(pdf.rsplit(b"startxref", 1)[1].split()[0])
    assert pdf[xref_at:].startswith(b"xref")
    entries = pdf[xref_at:].split(b"\n")[3:8]
    for number, entry in enumerate(entries, start=1):
        offset = int(entry.split()[0])
        assert pdf[offset:].startswith(b"%d 0 obj" % number)
    with tarfile.open(fileobj=io.BytesIO(by_name["speech_output.tar"])) as tar:
        names = tar.getnames()
    assert any(n.endswith(".mp3") for n in names) and any(n.endswith(".json") for n in names)
    assert all(json.loads(line) for line in by_name["faq.jsonl"].splitlines())
    assert [d.data for d in demo_files()] == [d.data for d in demo_files()]


def test_demo_seeds_only_an_empty_data_dir(tmp_path: Path) -> None:
    cfg = EmulatorConfig(data_dir=tmp_path, demo=True)
    with Emulator(cfg) as first:
        count = len(first.store)
        first.seed("voice_clone", "extra.wav", b"x")
    with Emulator(cfg) as second:
        assert len(second.store) == count + 1


# --- admin over HTTP ---------------------------------------------------------------------------------------
def test_admin_endpoints(emu: Emulator) -> None:
    base = emu.base_url
    seeded_obj = requests.post(f"{base}/_emulator/seed", params={"purpose": "t2a_async", "filename": "o.tar"},
                               data=b"tar bytes", timeout=10).json()
    assert seeded_obj["purpose"] == "t2a_async" and seeded_obj["bytes"] == 9
    client = Client(emu)
    assert client.download(client.url_of(seeded_obj["file_id"])).content == b"tar bytes"
    counters = requests.get(f"{base}/_emulator/counters", timeout=10).json()
    assert counters["requests"]["download"] == 1
    assert requests.post(f"{base}/_emulator/counters/reset", timeout=10).json() == {"ok": True}
    assert requests.get(f"{base}/_emulator/counters", timeout=10).json()["requests"]["download"] == 0
    answer = requests.post(f"{base}/_emulator/config", json={"file_id_type": "string", "url_ttl": 60},
                           timeout=10)
    assert answer.status_code == 200 and answer.json()["file_id_type"] == "string"
    assert isinstance(client.list().json()["files"][0]["file_id"], str)
    assert requests.post(f"{base}/_emulator/config", json={"bogus": 1}, timeout=10).status_code == 400
    assert requests.get(f"{base}/_emulator/config", timeout=10).json()["url_ttl"] == 60
    assert requests.get(f"{base}/_emulator/nothing", timeout=10).status_code == 404


# --- CLI ---------------------------------------------------------------------------------------------------
def test_cli_refuses_a_bad_switch_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mmfs.emulator.__main__ import main

    assert main(["--data", str(tmp_path), "--file-id-type", "float"]) == 2
    assert "file_id_type" in capsys.readouterr().err


def test_cli_serves_the_demo_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MINIMAX_API_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmfs.emulator", "--port", "0", "--data", str(tmp_path), "--demo",
         "--file-id-type", "string", "--no-zero-bytes-video"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+)\n", first)
        assert match, first
        assert DEMO_API_KEY in proc.stdout.readline()
        resp = requests.get(match.group(1) + "/v1/files/list", params={"purpose": "video_generation"},
                            headers={"Authorization": f"Bearer {DEMO_API_KEY}"}, timeout=10)
        video = resp.json()["files"][0]
        assert isinstance(video["file_id"], str) and video["bytes"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "meta.sqlite").exists()
