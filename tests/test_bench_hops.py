"""``bench.hops`` measures what it says: a read that downloads goes through the reader to the network, a
warm one stays in the reader's memory, and the small write lands on the platform."""

from __future__ import annotations

from pathlib import Path

from bench.hops import count_hops, measure


def test_hop_counts_follow_the_path_each_operation_takes(tmp_path: Path) -> None:
    rows = measure(tmp_path, runs=1)
    cold, warm, write = rows["cold read"], rows["warm read"], rows["small write"]
    assert "mmfs.api.client" in cold["module_names"] and "mmfs.api.client" not in warm["module_names"]
    assert "mmfs.blocks.reader" in warm["module_names"] and "mmfs.core.writes" in write["module_names"]
    assert 0 < warm["calls"] < cold["calls"] and 0 < warm["changes"] < cold["changes"]
    assert cold["by_call"] == sum(cold["crossings"].values()) and cold["changes"] >= cold["by_call"]


def test_a_call_outside_mmfs_is_no_module_change() -> None:
    import json

    from mmfs.blocks.arithmetic import clamp_read

    hops = count_hops(lambda: json.loads(json.dumps([clamp_read(0, 10, 5)])))
    assert hops.calls == 1 and hops.changes == 0 and hops.all_calls > hops.calls
