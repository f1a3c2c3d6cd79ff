"""One deadline across layers: nesting keeps the earlier bound; the client and the downloader end by it."""

from __future__ import annotations

import os
import time

import pytest

from mmfs.api import deadline
from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.api.retry import RetryPolicy
from mmfs.emulator import Emulator
from mmfs.errors import MmfsError

SLACK = 5.0  # a loaded machine; still far below one 30 s request timeout


def test_a_nested_deadline_never_extends_the_outer_one():
    assert deadline.current() is None
    with deadline.within(1.0) as outer:
        with deadline.within(100.0) as inner:
            assert inner == outer
        with deadline.within(0.5) as shorter:
            assert outer is not None and shorter is not None and shorter < outer
        assert deadline.current() == outer
    assert deadline.current() is None
    assert deadline.timeout(30.0) == 30.0  # no deadline: the request's own limit


def test_the_deadline_reached_is_an_eio_that_is_not_retried():
    with deadline.within(0.0), pytest.raises(deadline.DeadlineError) as caught:
        deadline.timeout(30.0)
    assert caught.value.errno == 5 and not caught.value.retryable


def test_a_stalled_api_call_ends_by_the_retry_deadline(emu: Emulator):
    api = ApiClient(emu.base_url, emu.api_key, retry=RetryPolicy(deadline=1.0))
    emu.configure(stall=True)
    started = time.monotonic()
    with pytest.raises(MmfsError):
        api.list_files("voice_clone")
    assert time.monotonic() - started < 1.0 + SLACK
    emu.configure(stall=False)
    assert api.list_files("voice_clone") == []
    api.close()


@pytest.mark.parametrize("hold", [0.0, 0.2])
def test_a_trickling_download_ends_by_the_callers_deadline(emu: Emulator, hold: float):
    record = emu.seed("retrieval", "t.bin", os.urandom(1 << 20))
    api = ApiClient(emu.base_url, emu.api_key)
    url = api.retrieve(str(record["file_id"])).download_url
    assert url is not None
    emu.configure(trickle_bytes=8 * 1024, trickle_hold=hold)
    got = 0
    started = time.monotonic()
    with Downloader() as downloader, deadline.within(1.5), pytest.raises(MmfsError):
        for chunk in downloader.iter_range(url, 0, 1 << 20):
            got += len(chunk)
    assert time.monotonic() - started < 1.5 + SLACK
    assert 0 < got < 1 << 20  # it made progress, and progress did not buy more time
    emu.configure(trickle_bytes=0, trickle_hold=0)
    api.close()
