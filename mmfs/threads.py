"""Threads and pools for a mount process: none of them takes the stop signals (SIGTERM, SIGINT, SIGHUP).

libfuse before 3.18 ends its loop only when a stop signal interrupts the wait of the thread that runs the
loop (the main one); a signal the kernel hands to any other thread sets libfuse's exit flag and wakes
nobody, so the mount lives on until the next request arrives, which may be never. libfuse's own workers
block every signal; these helpers make ours do the same, so the kernel can only pick the main thread.
A thread started while the signals are blocked is born with them blocked, as are the threads it starts.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

__all__ = ["STOP_SIGNALS", "block_stop_signals", "start_thread", "thread_pool"]

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def block_stop_signals() -> None:
    """Block the stop signals in the calling thread (a pool's initializer)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


@contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_thread(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Start a daemon thread that never takes a stop signal, even in its first instant."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    with _stop_signals_blocked():
        thread.start()
    return thread


def thread_pool(max_workers: int, name: str) -> ThreadPoolExecutor:
    """A pool whose workers never take a stop signal (each blocks them before its first task)."""
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name, initializer=block_stop_signals)
