"""Threads a mount starts never take the stop signals: libfuse's loop only ends when its own thread does."""

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
