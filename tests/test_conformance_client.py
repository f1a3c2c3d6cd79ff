"""The API client against the forms real clients meet: new status codes, gateways, no ``download_url``.

Driven against the module's emulator over loopback (``emu`` checks after each test that the key never
reached a download URL).
"""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import pytest
from conftest import TEST_KEY

from mmfs.api.answers import status_error
from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.api.records import FileRecord
from mmfs.api.retry import RetryPolicy
from mmfs.blocks.source import RemoteSource
from mmfs.emulator import Emulator, EmulatorConfig
from mmfs.errors import (
    MmfsError,
    NotFoundError,
    ProtocolError,
    QuotaError,
    RateLimitError,
    UnsupportedFormatError,
)
from mmfs.upload_rules import check_create, size_limit

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, deadline=10.0)
GATEWAY_PREFIX = "/minimaxi"
OPS = ("list", "retrieve", "retrieve_content", "upload", "delete")


def _client(emu: Emulator, base_url: str | None = None, **kw) -> ApiClient:
    return ApiClient(base_url or emu.base_url, TEST_KEY, retry=FAST, **kw)


# --- status codes --------------------------------------------------------------------------------------------
def test_error_classes_of_the_new_codes() -> None:
    assert isinstance(status_error(2045, "growth"), RateLimitError)
    for code in (1028, 1030, 2061):
        error = status_error(code, "quota")
        assert isinstance(error, QuotaError) and error.errno == errno.EDQUOT and not error.retryable
    for code in (1042, 1043, 1044, 2037, 2039, 2042, 2048, 20132):
        error = status_error(code, "platform says no")
        assert type(error) is MmfsError and error.errno == errno.EIO and not error.retryable
        assert "platform says no" in str(error) and error.status_code == code


def test_rate_growth_limit_is_retried_with_backoff(emu: Emulator) -> None:
    emu.configure(fail_status=2045, fail_status_every=2)
    emu.seed("voice_clone", "a.wav", b"RIFF" + bytes(10))
    with _client(emu) as client:
        client.list_files("voice_clone")  # call 1 passes
        assert client.list_files("voice_clone")  # call 2 is refused with 2045, call 3 passes
    assert emu.counters()["faults"]["api_status"] == 1
    assert emu.counters()["requests"]["list"] == 3


@pytest.mark.parametrize("code", [1028, 1030, 2061])
def test_quota_codes_are_edquot_at_once(emu: Emulator, code: int) -> None:
    emu.configure(fail_status=code, fail_status_every=1)
    with _client(emu) as client, pytest.raises(QuotaError) as caught:
        client.list_files("voice_clone")
    assert caught.value.errno == errno.EDQUOT and caught.value.status_code == code
    assert emu.counters()["requests"]["list"] == 1


@pytest.mark.parametrize("code", [1042, 2037, 2048, 20132])
def test_client_seen_codes_are_eio_with_the_message_and_not_retried(emu: Emulator, code: int) -> None:
    emu.configure(fail_status=code, fail_status_every=1)
    with _client(emu) as client, pytest.raises(MmfsError) as caught:
        client.list_files("voice_clone")
    assert caught.value.errno == errno.EIO and caught.value.status_code == code
    assert caught.value.message  # the platform's own words
    assert emu.counters()["requests"]["list"] == 1


# --- gateways ------------------------------------------------------------------------------------------------
def test_a_prefixed_gateway_with_model_params_does_every_call(emu: Emulator, tmp_path: Path) -> None:
    emu.configure(path_prefix=GATEWAY_PREFIX, gateway_model=True)
    op_params = {op: {"model": f"minimax-files-{op}"} for op in OPS}
    source = tmp_path / "a.wav"
    source.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    with _client(emu, emu.base_url + GATEWAY_PREFIX + "/", op_params=op_params) as client:
        record = client.upload(source, "voice_clone", "a.wav")
        assert record.file_id in [r.file_id for r in client.list_files("voice_clone")]
        assert client.retrieve(record.file_id).download_url
        assert b"".join(client.retrieve_content(record.file_id)) == source.read_bytes()
        client.delete(record.file_id, "voice_clone")
    assert emu.store.get(int(record.file_id)) is None


# --- no download_url: read through retrieve_content ----------------------------------------------------------
def _reader(client: ApiClient) -> Downloader:
    return Downloader(retry=FAST, chunk_size=4096, content_auth=client.content_auth())


@pytest.mark.parametrize("switches", [
    {},
    {"content_range": True},
    {"content_json": False},
    {"content_redirect": True},
    {"content_redirect": True, "url_form": "unsigned"},
])
def test_without_download_url_ranges_come_from_retrieve_content(emu: Emulator, switches: dict) -> None:
    emu.configure(drop_fields="download_url", **switches)
    data = bytes(range(256)) * 400
    file_id = str(emu.seed("video_generation", "output.mp4", data)["file_id"])
    with _client(emu) as client, _reader(client) as downloader:
        url = client.retrieve(file_id).download_url
        assert url == client.content_url(file_id)
        assert b"".join(downloader.iter_range(url, 1000, 5000)) == data[1000:5000]
        assert b"".join(downloader.iter_range(url, len(data) - 10, len(data) + 100)) == data[-10:]
        assert downloader.probe_size(url) == len(data)
    counters = emu.counters()
    assert counters["requests"]["retrieve_content"] >= 3
    assert counters["auth_on_download"] == 0  # a redirect to the object store goes without the key


def test_the_content_url_carries_the_key_only_to_its_own_endpoint(emu: Emulator) -> None:
    file_id = str(emu.seed("voice_clone", "a.wav", b"RIFF" + bytes(100))["file_id"])
    with _client(emu) as client, _reader(client) as downloader:
        signed_url = client.retrieve(file_id).download_url
        assert b"".join(downloader.iter_range(signed_url, 0, 10)) == b"RIFF" + bytes(6)
    assert emu.counters()["auth_on_download"] == 0


def test_content_url_errors_are_seen_in_json_bodies(emu: Emulator) -> None:
    emu.configure(drop_fields="download_url", fail_api_every=2)
    data = bytes(range(256)) * 100
    file_id = str(emu.seed("video_generation", "output.mp4", data)["file_id"])
    with _client(emu) as client, _reader(client) as downloader:
        url = client.retrieve(file_id).download_url  # call 1
        # call 2 answers HTTP 200 + 1002 as JSON: a retry, never those bytes taken for the file's
        assert b"".join(downloader.iter_range(url, 0, 1000)) == data[:1000]
        assert emu.counters()["faults"]["api_1002"] == 1
        emu.configure(fail_api_every=0)
        emu.store.delete(int(file_id))
        with pytest.raises(NotFoundError):
            b"".join(downloader.iter_range(url, 0, 10))


# --- URLs without Expires: refreshed on 403 and 404 only ----------------------------------------------------
def test_unsigned_urls_are_refreshed_when_refused(emu: Emulator) -> None:
    data = bytes(range(256)) * 64
    file_id = str(emu.seed("video_generation", "output.mp4", data)["file_id"])
    emu.configure(url_form="unsigned", url_ttl=0)  # the first URL handed out is already refused
    with _client(emu) as client, Downloader(retry=FAST) as downloader:
        source = RemoteSource(client, downloader)
        first = source.url(file_id)
        assert "?" not in first
        emu.configure(url_ttl=3600)
        assert bytes(source.fetch(file_id, 0, 100)) == data[:100]
        assert bytes(source.fetch(file_id, 100, 200)) == data[100:200]  # the fresh URL is kept
    assert emu.counters()["requests"]["retrieve"] == 2


class _WithdrawnFirst(ApiClient):
    """Hands out ``withdrawn`` once, a URL whose object the CDN no longer has (404), then the real ones."""

    withdrawn: str | None = None

    def retrieve(self, file_id: str) -> FileRecord:
        record = super().retrieve(file_id)
        if self.withdrawn is not None:
            record = dataclasses.replace(record, download_url=self.withdrawn)
            self.withdrawn = None
        return record


def test_a_404_download_url_is_refreshed(emu: Emulator) -> None:
    emu.configure(url_form="unsigned")
    data = bytes(range(256)) * 64
    file_id = str(emu.seed("video_generation", "output.mp4", data)["file_id"])
    doomed = str(emu.seed("video_generation", "output.mp4", b"gone")["file_id"])
    with _WithdrawnFirst(emu.base_url, TEST_KEY, retry=FAST) as client, Downloader(retry=FAST) as downloader:
        client.withdrawn = client.retrieve(doomed).download_url
        emu.store.delete(int(doomed))
        with pytest.raises(NotFoundError):  # the withdrawn link itself answers 404
            b"".join(downloader.iter_range(client.withdrawn or "", 0, 4))
        source = RemoteSource(client, downloader)
        assert bytes(source.fetch(file_id, 50, 150)) == data[50:150]
    assert emu.counters()["requests"]["retrieve"] == 3  # the doomed file's, the withdrawn one, the fresh one


def test_an_untrusted_certificate_fails_at_once_and_says_what_to_do(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig(data_dir=tmp_path / "platform", api_key=TEST_KEY, tls=True)) as https:
        with ApiClient(https.base_url, TEST_KEY, retry=FAST) as client, pytest.raises(ProtocolError) as caught:
            client.list_files("voice_clone")
        assert "--ca-bundle" in str(caught.value)
        assert https.counters()["requests"]["list"] == 0  # refused before a request was made
        with ApiClient(https.base_url, TEST_KEY, retry=FAST, ca_bundle=https.ca_path) as client:
            assert client.list_files("voice_clone") == []


def test_mount_side_rules_for_video_generation_input_follow_the_docs() -> None:
    for name in ("still.heic", "still.HEIF", "still.webp", "ref.wav", "ref.mp3", "motion.mp4"):
        check_create("video_generation_input", name)
    for name in ("ref.m4a", "ref.aac"):
        with pytest.raises(UnsupportedFormatError):
            check_create("video_generation_input", name)
    assert size_limit("video_generation_input", "still.heic") == 30 * 1_000_000
    assert size_limit("video_generation_input", "ref.mp3") == 15 * 1_000_000
