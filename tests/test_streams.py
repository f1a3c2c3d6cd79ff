"""How many block downloads run at once: the controller's logic on a simulated link, its gate, and the
--max-streams / --chunk-size options that bound it. No HTTP: the link is a formula, the clock a number."""

from __future__ import annotations

import threading

import pytest

from mmfs.blocks.streams import StreamControl, StreamGate
from mmfs.settings.config import ConfigError, MountConfig, parse_chunk_size, parse_max_streams
from mmfs.settings.profiles import OPTIONS, resolve

MiB = 1 << 20
BLOCK = 4 * MiB


def run(control: StreamControl, rate_of, seconds: float, *, demand: int = 64, step: float = 0.05) -> list[int]:
    """Drive ``control`` for ``seconds`` on a link where ``rate_of(streams)`` is the aggregate bytes per
    second; readers want ``demand`` downloads at once. The limit after each step."""
    now, limits, owed = 0.0, [], 0.0
    while now < seconds:
        streams = min(control.limit, demand)
        if demand > control.limit:
            control.held_back(now)
        owed += rate_of(streams) * step
        while owed >= BLOCK:  # whole blocks land
            owed -= BLOCK
            control.landed(BLOCK, now)
        now += step
        limits.append(control.limit)
    return limits


def per_connection_cap(cap: float, link: float):
    return lambda streams: min(streams * cap, link)


def test_streams_grow_while_each_one_adds_to_the_aggregate():
    # 20 MB/s per connection on a 1 GB/s link (a CDN's per-connection cap, or long round trips).
    control = StreamControl(32, start=4)
    limits = run(control, per_connection_cap(20e6, 1e9), 20)
    assert limits[0] == 4
    assert limits[-1] == 32  # the most it may, since each stream adds 20 MB/s
    assert limits == sorted(limits)  # only ever up on such a link


def test_streams_stop_where_the_link_is_full_and_come_back_to_the_best():
    # 50 MB/s per connection, 200 MB/s in all: four streams fill it; more only cost memory.
    control = StreamControl(64, start=2, retry_after=5.0)
    limits = run(control, per_connection_cap(50e6, 200e6), 30)
    assert max(limits) <= 16  # it tried beyond the knee once or so, not up to 64
    settled = limits[len(limits) // 2:]
    assert settled.count(4) > 0.7 * len(settled)  # mostly at the knee
    assert 8 in settled  # and it looks again now and then, links change


def test_on_a_link_that_more_streams_slow_down_it_stays_at_the_start():
    # CPU-bound: every stream past four costs (lock waits, the interpreter): the aggregate falls.
    control = StreamControl(16, start=8, retry_after=5.0)
    limits = run(control, lambda streams: 400e6 - 10e6 * max(0, streams - 4), 30)
    settled = limits[len(limits) // 2:]
    assert settled.count(8) > 0.7 * len(settled)
    assert max(limits) == 16  # tried once, and again after retry_after


def test_without_readers_wanting_more_nothing_changes():
    # Readers want two downloads at once: the limit never held anything back, so there is nothing to learn.
    control = StreamControl(16, start=4)
    limits = run(control, per_connection_cap(20e6, 1e9), 10, demand=2)
    assert set(limits) == {4}


def test_the_limit_never_passes_max_streams():
    control = StreamControl(5, start=8)
    assert control.limit == 5
    assert set(run(control, per_connection_cap(20e6, 1e9), 10)) == {5}


def test_the_gate_holds_background_downloads_to_the_limit():
    clock = [0.0]
    gate = StreamGate(StreamControl(8, start=2), clock=lambda: clock[0])
    inside, most = [0], [0]
    lock = threading.Lock()
    release = threading.Event()

    def download() -> None:
        with gate.stream(timeout=10) as admitted:
            assert admitted
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            release.wait(timeout=10)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=download) for _ in range(6)]
    for t in threads:
        t.start()
    while gate.running < 2:
        threading.Event().wait(0.01)
    with gate.stream(timeout=0.05) as admitted:  # full: a caller that cannot wait drops its download
        assert not admitted
    release.set()
    for t in threads:
        t.join(timeout=10)
    assert most[0] == 2 and gate.running == 0


def test_a_faster_aggregate_lets_waiting_downloads_in():
    clock = [0.0]
    gate = StreamGate(StreamControl(8, start=1, interval=0.5), clock=lambda: clock[0])
    with gate.stream(timeout=1) as first:
        assert first
        waiter = threading.Thread(target=lambda: gate.stream(timeout=10).__enter__())
        waiter.start()  # held back: the limit is one
        for _ in range(4):
            clock[0] += 0.25
            gate.landed(BLOCK)
        waiter.join(timeout=10)
        assert not waiter.is_alive() and gate.control.limit == 2


# -- the options --------------------------------------------------------------------------------------------

def test_the_defaults_let_streams_grow_within_the_memory_budget():
    config = MountConfig(mountpoint=".", api_key="k")
    assert config.prefetch_workers == OPTIONS["max_streams"].default_value == 16
    assert config.block_size == OPTIONS["chunk_size"].default_value == 4 * MiB
    assert config.prefetch_workers <= config.prefetch_memory // config.block_size  # every stream has memory


@pytest.mark.parametrize("text, value", [("1", 1), ("32", 32), ("64", 64)])
def test_max_streams_takes_a_count(text, value):
    assert parse_max_streams(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "65", "lots", "8.5", ""])
def test_max_streams_refuses_what_is_not_one(text):
    with pytest.raises(ValueError, match="1 to 64"):
        parse_max_streams(text)


@pytest.mark.parametrize("text, value", [("4M", 4 * MiB), ("64K", 64 << 10), ("1m", MiB), ("64M", 64 * MiB)])
def test_chunk_size_takes_a_size(text, value):
    assert parse_chunk_size(text) == value


@pytest.mark.parametrize("text", ["32K", "65M", "100000", "big", "1G"])
def test_chunk_size_refuses_what_no_block_can_be(text):
    with pytest.raises(ValueError, match="64K to 64M"):
        parse_chunk_size(text)


def test_the_environment_and_a_profile_set_them_as_flags_do():
    merged = resolve({}, {"MMFS_MAX_STREAMS": "24"}, {"chunk_size": 8 * MiB})
    assert merged["max_streams"] == 24 and merged["chunk_size"] == 8 * MiB
    assert resolve({"max_streams": 4}, {"MMFS_MAX_STREAMS": "24"}, {})["max_streams"] == 4


def test_a_config_outside_the_bounds_is_refused_before_mounting():
    config = MountConfig(mountpoint=".", api_key="k", prefetch_workers=0)
    with pytest.raises(ConfigError, match="--max-streams"):
        config.validate()
