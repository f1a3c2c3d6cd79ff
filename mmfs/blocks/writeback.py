"""Write-behind for downloaded blocks: the disk cache is filled by writer threads, off the download path.

Storing a 4 MiB block (checksum, file write, SQLite transaction) took about a fifth of a capped cold read
when the download worker did it before fetching its next block. Here the worker hands the block to a
bounded queue and goes back to the network; when the writer falls behind, the queue is full and the
worker waits (so memory stays bounded). A block waiting in the queue can still be read (``get``), and
``flush`` waits for the queue to drain (unmount, tests).

Concurrency: ``_lock`` guards ``_pending`` and ``_dropped``; the queue has its own.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from mmfs.blocks.store import BlockStore
from mmfs.threads import start_thread

__all__ = ["WriteBehind"]

log = logging.getLogger("mmfs.blocks")

Block = bytes | bytearray | memoryview


class WriteBehind:
    def __init__(self, store: BlockStore, depth: int = 4, writers: int = 2,
                 stored: Callable[[str], None] = lambda key: None) -> None:
        """``stored(key)`` is called once a block is on disk."""
        self._store = store
        self._stored = stored
        self._queue: queue.Queue[tuple[str, Block, str] | None] = queue.Queue(maxsize=max(1, depth))
        self._lock = threading.Lock()
        self._pending: dict[str, Block] = {}
        self._dropped: set[str] = set()  # files evicted while their blocks waited: not to be written
        self._closed = False
        self._threads = [start_thread(self._run, name="mmfs-cache-writer") for _ in range(max(1, writers))]

    def put(self, key: str, data: Block, file_id: str) -> None:
        """Queue a block for the store; waits while the queue is full."""
        with self._lock:
            if self._closed:  # a download finishing during unmount: nobody will read it from disk
                return
            self._pending[key] = data
            self._dropped.discard(file_id)
        self._queue.put((key, data, file_id))

    def get(self, key: str) -> Block | None:
        """A block still waiting to be written."""
        with self._lock:
            return self._pending.get(key)

    def holds(self, key: str) -> bool:
        with self._lock:
            return key in self._pending

    def drop_file(self, file_id: str) -> None:
        """Forget a file's queued blocks (it was deleted): the writer skips them."""
        prefix = f"{file_id}/"
        with self._lock:
            for key in [k for k in self._pending if k.startswith(prefix)]:
                del self._pending[key]
            self._dropped.add(file_id)

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.flush()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                key, data, file_id = item
                with self._lock:
                    wanted = key in self._pending and file_id not in self._dropped
                if wanted:
                    self._store.put(key, data, file_id)
                    self._stored(key)
                with self._lock:
                    if self._pending.get(key) is data:
                        del self._pending[key]
            except Exception:  # a failed write costs a download later, never the mount
                log.exception("writing a block to the cache failed")
            finally:
                self._queue.task_done()
