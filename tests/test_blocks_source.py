"""RemoteSource against the emulator: signed URLs refreshed before they expire, and after a 403."""

from __future__ import annotations

import os
import time

from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.blocks.source import RemoteSource


class FrozenClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_refused_url_is_replaced_and_the_range_retried(emulator):
    data = os.urandom(300_000)
    record = emulator.seed("retrieval", "a.bin", data)
    file_id = str(record["file_id"])
    emulator.configure(url_ttl=1)
    clock = FrozenClock()  # mmfs believes no time passes: only the server's 403 can tell it the URL expired
    with ApiClient(emulator.base_url, emulator.api_key) as client, Downloader() as downloader:
        source = RemoteSource(client, downloader, clock=clock)
        assert source.fetch(file_id, 0, 1000) == data[:1000]
        time.sleep(1.6)
        emulator.reset_counters()
        assert source.fetch(file_id, 1000, 250_000) == data[1000:250_000]
    counters = emulator.counters()
    assert counters["requests"]["retrieve"] == 1  # one fresh URL
    assert counters["requests"]["download"] == 2  # the refused try and the good one


def test_a_url_about_to_expire_is_refreshed_before_use(emulator):
    data = os.urandom(10_000)
    record = emulator.seed("retrieval", "b.bin", data)
    file_id = str(record["file_id"])
    emulator.configure(url_ttl=100)
    clock = FrozenClock()
    with ApiClient(emulator.base_url, emulator.api_key) as client, Downloader() as downloader:
        source = RemoteSource(client, downloader, clock=clock)
        first = source.url(file_id)
        assert source.url(file_id) == first  # fresh: reused, no request
        clock.now += 90  # within the last quarter of its life
        emulator.reset_counters()
        assert source.fetch(file_id, 0, 10_000) == data
    assert emulator.counters()["requests"]["retrieve"] == 1
    assert emulator.counters()["requests"]["download"] == 1  # no 403 needed


def test_true_size_of_a_zero_bytes_file_comes_from_the_download(emulator):
    data = os.urandom(123_457)
    record = emulator.seed("video_generation", "v.mp4", data)
    assert record["bytes"] == 0
    with ApiClient(emulator.base_url, emulator.api_key) as client, Downloader() as downloader:
        assert RemoteSource(client, downloader).size(str(record["file_id"])) == len(data)
