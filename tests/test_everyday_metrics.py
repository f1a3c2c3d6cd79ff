"""``--metrics-addr``: a mount's counters over HTTP, read by Prometheus' own text parser."""

from __future__ import annotations

import os
import socket

import pytest
import requests
from mounting import require_fuse
from prometheus_client.parser import text_string_to_metric_families

from mmfs.runtime.metrics import parse_metrics_addr

MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    resp = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    resp.raise_for_status()
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            samples[sample.name] = sample.value
            assert sample.labels.get("mountpoint"), sample
    return samples


def test_the_metrics_endpoint_serves_the_mounts_counters(emulator, mount_of):
    require_fuse()
    data = os.urandom(5 * MiB)
    emulator.seed("retrieval", "m.bin", data)
    port = free_port()
    with mount_of(emulator, "--cache-size", "64M", "--metrics-addr", str(port)) as m:
        before = scrape(port)
        assert before["mmfs_cache_limit_bytes"] == 64 * MiB
        assert before["mmfs_reads_total"] == 0
        assert (m.path / "retrieval" / "m.bin").read_bytes() == data
        after = scrape(port)
        assert after["mmfs_reads_total"] > 0
        assert after["mmfs_downloaded_bytes_total"] >= len(data)
        assert after["mmfs_block_misses_total"] == 2
        assert f"metrics on http://127.0.0.1:{port}/metrics" in m.log()  # loopback when no host is given


def test_metrics_addresses():
    assert parse_metrics_addr("9100") == ("127.0.0.1", 9100)
    assert parse_metrics_addr(":9100") == ("127.0.0.1", 9100)
    assert parse_metrics_addr("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_metrics_addr("[::1]:9100") == ("::1", 9100)
    for bad in ("", "abc", "host:0", "host:70000"):
        with pytest.raises(ValueError):
            parse_metrics_addr(bad)


def test_bwlimit_values_and_a_throttled_mount_reads_and_writes_whole_files(emulator, mount_of):
    from mmfs.settings.config import parse_bwlimit

    assert parse_bwlimit("10M") == (10 * MiB, 10 * MiB)
    assert parse_bwlimit("2M:off") == (2 * MiB, None)
    assert parse_bwlimit("off") == (None, None)
    require_fuse()
    data = os.urandom(3 * MiB)
    emulator.seed("retrieval", "slow.bin", data)
    with mount_of(emulator, "--bwlimit", "64M:32M") as m:
        assert (m.path / "retrieval" / "slow.bin").read_bytes() == data
        (m.path / "retrieval" / "up.txt").write_bytes(b"y" * MiB)
        assert next(r for r in emulator.store.all() if r.filename == "up.txt").bytes == MiB
