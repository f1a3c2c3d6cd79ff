"""Downloader over real HTTP against the emulator: exact ranges whatever the object store does."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
import requests
from conftest import SWITCH_DEFAULTS

from mmfs.api import ApiClient, Downloader, RetryPolicy, url_expires_at
from mmfs.emulator import Emulator
from mmfs.errors import (
    NotFoundError,
    ProtocolError,
    RangeNotSatisfiableError,
    ServerError,
    TransportError,
    UrlExpiredError,
)

MiB = 1 << 20
FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05, deadline=20.0)


@pytest.fixture(scope="module")
def api(server: Emulator) -> ApiClient:
    with ApiClient(server.base_url, server.api_key, retry=FAST) as client:
        yield client


@pytest.fixture
def dl() -> Downloader:
    with Downloader(retry=FAST) as downloader:
        yield downloader


@pytest.fixture(scope="module")
def small(server: Emulator) -> tuple[str, bytes]:
    """A 3 MiB + 17 B object (not a whole number of chunks): its file id and its bytes."""
    data = os.urandom(3 * MiB + 17)
    return str(server.seed("t2a_async_input", "small.txt", data)["file_id"]), data


@pytest.fixture(scope="module")
def big(server: Emulator, api: ApiClient, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, int]:
    """A 40 MiB file uploaded through the client: (file id, local copy, size)."""
    size = 40 * MiB
    path = tmp_path_factory.mktemp("big") / "forty.zip"
    with path.open("wb") as out:
        for _ in range(size // MiB):
            out.write(os.urandom(MiB))
    server.configure(**SWITCH_DEFAULTS)
    record = api.upload(path, "t2a_async_input", "forty.zip")
    assert record.bytes == size
    return record.file_id, path, size


def _url(api: ApiClient, file_id: str) -> str:
    url = api.retrieve(file_id).download_url
    assert url is not None
    return url


def _read(dl: Downloader, url: str, start: int, end: int) -> bytes:
    return b"".join(dl.iter_range(url, start, end))


def _local(path: Path, start: int, end: int) -> bytes:
    with path.open("rb") as source:
        source.seek(start)
        return source.read(end - start)


def _digest_range(dl: Downloader, url: str, start: int, end: int) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for chunk in dl.iter_range(url, start, end):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


# --- the 40 MiB round trip ------------------------------------------------------------------------------
def test_forty_mib_round_trip_whole_and_in_ranges(
    emu: Emulator, api: ApiClient, dl: Downloader, big: tuple[str, Path, int]
) -> None:
    file_id, path, size = big
    url = _url(api, file_id)
    assert dl.probe_size(url) == size
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert _digest_range(dl, url, 0, size) == (expected, size)
    for start, end in [(0, 1), (MiB - 3, MiB + 5), (17 * MiB + 123, 23 * MiB), (size - 10, size)]:
        assert _read(dl, url, start, end) == _local(path, start, end), (start, end)
    asked = [(d["start"], d["end"]) for d in emu.counters()["downloads"]]
    assert (17 * MiB + 123, 23 * MiB) in asked  # a real ranged request, not a cut of a whole body
    assert emu.counters()["download_bytes"] < 2 * size  # nothing fetched twice or whole


def test_forty_mib_with_ranges_ignored(
    emu: Emulator, api: ApiClient, dl: Downloader, big: tuple[str, Path, int]
) -> None:
    file_id, path, size = big
    emu.configure(ignore_range=True)
    url = _url(api, file_id)
    assert _read(dl, url, 30 * MiB + 7, 30 * MiB + 1000) == _local(path, 30 * MiB + 7, 30 * MiB + 1000)
    assert _read(dl, url, size - 5, size) == _local(path, size - 5, size)
    with pytest.raises(RangeNotSatisfiableError):
        _read(dl, url, size, size + 10)
    # The connection was dropped once the wanted bytes were in: the rest of the body was never sent whole
    # (the emulator counts bytes as it writes them; socket buffers let a few MiB through).
    assert emu.counters()["download_bytes"] < 3 * size


# --- range arithmetic -----------------------------------------------------------------------------------
@pytest.mark.parametrize("ignore_range", [False, True])
def test_range_arithmetic(emu: Emulator, api: ApiClient, dl: Downloader, small: tuple[str, bytes],
                          ignore_range: bool) -> None:
    emu.configure(ignore_range=ignore_range)
    file_id, data = small
    url = _url(api, file_id)
    size = len(data)
    cases = [
        (0, 1),  # first byte
        (size - 1, size),  # last byte
        (MiB - 1, 2 * MiB + 1),  # a middle range across chunk boundaries
        (12345, size),  # up to EOF
        (0, size),  # whole
        (size - 100, size + 1000),  # runs past EOF: clipped, as a file read is
        (5, 5),  # empty
    ]
    for start, end in cases:
        assert _read(dl, url, start, end) == data[start:end], (start, end)
    for start in (size, size + 1, size + MiB):  # starts past EOF
        with pytest.raises(RangeNotSatisfiableError):
            _read(dl, url, start, start + 10)


def test_bad_ranges_are_refused_before_any_request(dl: Downloader) -> None:
    with pytest.raises(ValueError):
        list(dl.iter_range("http://127.0.0.1:9/x", 10, 5))
    with pytest.raises(ValueError):
        list(dl.iter_range("http://127.0.0.1:9/x", -1, 5))


def test_chunks_are_large(api: ApiClient, dl: Downloader, small: tuple[str, bytes]) -> None:
    file_id, data = small
    chunks = list(dl.iter_range(_url(api, file_id), 0, len(data)))
    assert max(len(c) for c in chunks) > 256 * 1024


def test_closing_early_keeps_the_downloader_usable(
    emu: Emulator, api: ApiClient, dl: Downloader, big: tuple[str, Path, int]
) -> None:
    file_id, path, size = big
    url = _url(api, file_id)
    for _ in range(20):  # more than the pool holds: each early close must give its connection back
        stream = dl.iter_range(url, 0, size)
        assert next(stream)
        stream.close()
    assert _read(dl, url, 100, 200) == _local(path, 100, 200)


# --- faults ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("every", [1, 2])
def test_body_cut_mid_stream_is_resumed(emu: Emulator, api: ApiClient, dl: Downloader,
                                        small: tuple[str, bytes], every: int) -> None:
    file_id, data = small
    url = _url(api, file_id)
    emu.configure(drop_every=every)
    if every == 1:
        # Cut only the first answer: the hook runs once its headers are in, after the emulator has decided
        # to cut it, so the resumption is answered whole.
        dl._session.hooks["response"].append(lambda r, *a, **k: emu.configure(drop_every=0))
    for start, end in [(0, len(data)), (1000, 2 * MiB + 3), (5, len(data) - 5)]:
        assert _read(dl, url, start, end) == data[start:end], (start, end)
    counters = emu.counters()
    assert counters["faults"]["drop"] == (1 if every == 1 else 2)
    # Each resumption asks only for what is missing: the first asks from 0, later ones from further on.
    starts = [d["start"] for d in counters["downloads"]]
    assert starts[0] == 0 and len(set(starts)) > 1


def test_body_cut_with_ranges_ignored_is_resumed(emu: Emulator, api: ApiClient, dl: Downloader,
                                                 small: tuple[str, bytes]) -> None:
    file_id, data = small
    emu.configure(drop_every=2, ignore_range=True)
    url = _url(api, file_id)
    for start, end in [(0, len(data)), (2 * MiB, len(data) - 1)]:
        assert _read(dl, url, start, end) == data[start:end]


def test_flaky_server_still_gives_the_right_bytes(emu: Emulator, api: ApiClient, dl: Downloader,
                                                  small: tuple[str, bytes]) -> None:
    file_id, data = small
    emu.configure(fail_download_every=2, fail_api_every=3)
    for start, end in [(0, len(data)), (7, 70_000), (MiB, 3 * MiB), (len(data) - 1, len(data))]:
        url = _url(api, file_id)
        assert _read(dl, url, start, end) == data[start:end]
        assert dl.probe_size(url) == len(data)
    faults = emu.counters()["faults"]
    assert faults["download_500"] > 0 and faults["api_1002"] > 0


def test_a_server_that_always_fails_is_given_up_on(emu: Emulator, api: ApiClient,
                                                   small: tuple[str, bytes]) -> None:
    file_id, _ = small
    url = _url(api, file_id)
    emu.configure(fail_download_every=1)
    emu.reset_counters()
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, deadline=20.0)
    with Downloader(retry=policy) as dl, pytest.raises(ServerError):
        _read(dl, url, 0, 100)
    assert emu.counters()["requests"]["download"] == 3


def test_a_body_cut_every_time_is_given_up_on(emu: Emulator, api: ApiClient,
                                              small: tuple[str, bytes]) -> None:
    file_id, _ = small
    url = _url(api, file_id)
    emu.configure(drop_every=1)
    emu.reset_counters()
    # Every answer sends half of what was asked and then drops: progress halves each time until a
    # one-byte request yields nothing; from there the tries run out.
    with Downloader(retry=FAST) as dl, pytest.raises(TransportError):
        _read(dl, url, 0, 64)
    requests_made = emu.counters()["requests"]["download"]
    assert requests_made <= 7 + FAST.attempts  # log2(64) + 1 answers with progress, then the tries


def test_retry_deadline_bounds_the_tries(emu: Emulator, api: ApiClient, small: tuple[str, bytes]) -> None:
    file_id, _ = small
    url = _url(api, file_id)
    emu.configure(fail_download_every=1)
    emu.reset_counters()
    policy = RetryPolicy(attempts=10_000, base_delay=0.2, max_delay=0.2, deadline=1.0)
    with Downloader(retry=policy) as dl, pytest.raises(ServerError):
        _read(dl, url, 0, 100)
    assert 1 < emu.counters()["requests"]["download"] < 200


# --- URLs -----------------------------------------------------------------------------------------------
def test_expired_url_is_refused(emu: Emulator, api: ApiClient, dl: Downloader,
                                small: tuple[str, bytes]) -> None:
    file_id, data = small
    emu.configure(url_ttl=0)  # expires within the second it is made
    url = _url(api, file_id)
    expires = url_expires_at(url)
    assert expires is not None and expires <= time.time()
    with pytest.raises(UrlExpiredError) as info:
        _read(dl, url, 0, 10)
    assert "Signature" not in str(info.value) and "AccessDenied" in str(info.value)
    with pytest.raises(UrlExpiredError):
        dl.probe_size(url)
    assert emu.counters()["requests"]["download"] == 2  # not retried: only a fresh URL helps
    emu.configure(url_ttl=3600)
    fresh = _url(api, file_id)
    assert _read(dl, fresh, 0, 10) == data[:10]
    expires = url_expires_at(fresh)
    assert expires is not None and time.time() < expires <= time.time() + 3600


def test_tampered_url_is_refused(api: ApiClient, dl: Downloader, small: tuple[str, bytes]) -> None:
    url = _url(api, small[0])
    with pytest.raises(UrlExpiredError):
        _read(dl, url.replace("Signature=", "Signature=x"), 0, 10)


def test_unknown_object_is_not_found(emu: Emulator, api: ApiClient, dl: Downloader) -> None:
    with pytest.raises(NotFoundError):
        _read(dl, emu.base_url + "/_dl/abc/x", 0, 10)


def test_redirects_are_followed_without_the_key(emu: Emulator, api: ApiClient, dl: Downloader,
                                                small: tuple[str, bytes]) -> None:
    file_id, data = small
    emu.configure(redirect_downloads=True)
    url = _url(api, file_id)
    assert "/_cdn/" in url
    assert _read(dl, url, 10, MiB) == data[10:MiB]
    assert dl.probe_size(url) == len(data)
    assert emu.counters()["auth_on_download"] == 0


def test_downloader_never_sends_authorization(emu: Emulator, api: ApiClient, dl: Downloader,
                                              small: tuple[str, bytes]) -> None:
    sent: list[requests.PreparedRequest] = []
    dl._session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    # Even a caller that passes the header gets it stripped, as would ~/.netrc credentials.
    url = _url(api, small[0])
    dl._session.get(url, headers={"Authorization": "Bearer leak"}, timeout=5).close()
    _read(dl, url, 0, 10)
    assert sent and all("Authorization" not in r.headers for r in sent)
    assert emu.counters()["auth_on_download"] == 0


def test_probe_size(api: ApiClient, dl: Downloader, emu: Emulator, small: tuple[str, bytes]) -> None:
    file_id, data = small
    assert dl.probe_size(_url(api, file_id)) == len(data)
    empty = str(emu.seed("t2a_async_input", "empty.txt", b"")["file_id"])
    assert dl.probe_size(_url(api, empty)) == 0
    with pytest.raises(RangeNotSatisfiableError):  # an empty object has no byte 0
        _read(dl, _url(api, empty), 0, 10)


def test_zero_byte_video_has_its_true_size(api: ApiClient, dl: Downloader, emu: Emulator) -> None:
    seeded = emu.seed("video_generation", "out.mp4", b"v" * 5000)
    record = api.retrieve(str(seeded["file_id"]))
    assert record.bytes == 0  # as the platform reports generated videos
    assert dl.probe_size(record.download_url or "") == 5000


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x.oss.example/a?Expires=1700000000&OSSAccessKeyId=k&Signature=s", 1700000000.0),
        ("https://x.example/a?x-oss-date=20240101T000000Z&x-oss-expires=3600&x-oss-signature=s",
         1704067200.0 + 3600),
        ("https://s3.example/a?X-Amz-Date=20240101T000000Z&X-Amz-Expires=60&X-Amz-Signature=s",
         1704067200.0 + 60),
        ("https://cdn.example/a", None),
        ("https://cdn.example/a?Expires=soon", None),
        ("not a url", None),
    ],
)
def test_url_expires_at(url: str, expected: float | None) -> None:
    assert url_expires_at(url) == expected


def test_wrong_content_range_is_a_protocol_error(dl: Downloader) -> None:
    # The emulator always answers the range asked, so a wrong one is checked on the answer-checking step.
    resp = requests.Response()
    resp.status_code = 206
    resp.headers["Content-Range"] = "bytes 5-9/100"
    with pytest.raises(ProtocolError):
        dl._check_range_answer("http://h/x", resp, 0, 10)
    resp.headers["Content-Range"] = "bytes 0-9/100"
    assert dl._check_range_answer("http://h/x", resp, 0, 10) == (0, 10, True)
    resp.headers["Content-Range"] = "bytes 0-4/5"  # ends early exactly at the object's end: fine
    assert dl._check_range_answer("http://h/x", resp, 0, 10) == (0, 5, True)
    resp.headers["Content-Range"] = "bytes 0-4/100"  # ends early for no reason
    with pytest.raises(ProtocolError):
        dl._check_range_answer("http://h/x", resp, 0, 10)
    del resp.headers["Content-Range"]
    with pytest.raises(ProtocolError):
        dl._check_range_answer("http://h/x", resp, 0, 10)


def _pooled_sockets(dl: Downloader, url: str) -> list[object]:
    """The open sockets of the idle connections in the downloader's pools."""
    manager = dl._session.get_adapter(url).poolmanager
    # keys(): urllib3's pool container refuses plain iteration
    pools = [manager.pools[key] for key in manager.pools.keys()]  # noqa: SIM118
    return [conn.sock for pool in pools for conn in list(pool.pool.queue) if conn and conn.sock]


def test_ranged_reads_reuse_one_connection(api: ApiClient, dl: Downloader, small: tuple[str, bytes]) -> None:
    file_id, data = small
    url = _url(api, file_id)
    seen = set()
    for start in range(0, len(data), 300_000):
        assert _read(dl, url, start, start + 1000) == data[start:start + 1000]
        # The answer was read to its end, so its connection is back in the pool, still open.
        sockets = _pooled_sockets(dl, url)
        assert len(sockets) == 1
        seen.update(map(id, sockets))
    assert len(seen) == 1


def test_a_whole_answer_cut_short_is_not_reused(emu: Emulator, api: ApiClient, dl: Downloader,
                                                small: tuple[str, bytes]) -> None:
    file_id, data = small
    emu.configure(ignore_range=True)
    url = _url(api, file_id)
    for _ in range(3):
        assert _read(dl, url, 10, 20) == data[10:20]
        # The rest of the whole-object body was left unread: its connection was closed, not pooled.
        assert _pooled_sockets(dl, url) == []
