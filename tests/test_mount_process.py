"""What a mount process must never do to itself: take a stop signal on the wrong thread, or wait on its own mount."""

from __future__ import annotations

import signal
import threading

from mmfs.threads import STOP_SIGNALS, start_thread, thread_pool


def _blocked_here() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_started_threads_and_their_children_block_the_stop_signals() -> None:
    seen: dict[str, set[int]] = {}

    def child() -> None:
        seen["child"] = _blocked_here()

    def parent() -> None:
        seen["parent"] = _blocked_here()
        plain = threading.Thread(target=child)  # started the ordinary way, from a quiet thread
        plain.start()
        plain.join()

    start_thread(parent, name="t").join()
    assert seen["parent"] >= STOP_SIGNALS and seen["child"] >= STOP_SIGNALS
    assert not STOP_SIGNALS & _blocked_here()  # the starting thread keeps taking them


def test_pool_workers_block_the_stop_signals() -> None:
    pool = thread_pool(2, "t")
    try:
        masks = [f.result(timeout=10) for f in [pool.submit(_blocked_here) for _ in range(4)]]
    finally:
        pool.shutdown()
    assert all(mask >= STOP_SIGNALS for mask in masks)
    assert not STOP_SIGNALS & _blocked_here()


def test_the_mount_process_checks_its_mount_in_the_table_without_touching_it(tmp_path, monkeypatch) -> None:
    # A thread of a FUSE server that stats its own mount waits on its own workers; a SIGKILL then leaves a
    # process that cannot die and a mount that answers nothing. The resolved form must not stat the path.
    import os

    from mmfs.runtime.mount_point import is_mount_point

    touched: list[str] = []
    real_lstat, real_stat = os.lstat, os.stat

    def lstat(path, *args, **kwargs):
        touched.append(str(path))
        return real_lstat(path, *args, **kwargs)

    def stat(path, *args, **kwargs):
        touched.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    monkeypatch.setattr(os, "stat", stat)
    assert is_mount_point(tmp_path, resolved=True) is False
    assert is_mount_point(tmp_path.__class__("/proc"), resolved=True) is True
    assert touched == []
    assert is_mount_point(tmp_path) is False  # the ordinary form resolves, and so stats, the path
    assert touched
