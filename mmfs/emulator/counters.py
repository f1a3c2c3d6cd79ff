"""What the emulator has served, and the schedule of injected faults.

``Counters`` is what tests read to check a client's behaviour (how many downloads, which ranges, whether the
key ever went to a download URL). ``FaultSchedule`` decides "is this the Nth event of its kind"; each fault
kind counts its own events, and changing a fault's N restarts its count so "every 2nd" starts afresh.

Concurrency: each class guards its state with its own lock; ``snapshot`` returns a deep copy.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from typing import Any

__all__ = ["REQUEST_KINDS", "Counters", "FaultSchedule"]

REQUEST_KINDS = ("upload", "list", "retrieve", "retrieve_content", "delete", "download", "head")
FAULT_KINDS = ("download_500", "api_1002", "http_429", "http_502", "drop", "upload_fail", "upload_short",
               "delete_fail", "api_status", "stall", "trickle")
# Enough to check a client's access pattern over a long test, bounded so a benchmark cannot grow it forever.
_MAX_DOWNLOAD_LOG = 10_000


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = dict.fromkeys(REQUEST_KINDS, 0)
            self._faults = dict.fromkeys(FAULT_KINDS, 0)
            self._download_bytes = 0
            self._upload_bytes = 0
            self._auth_on_download = 0
            self._bad_auth = 0
            self._downloads: deque[dict[str, Any]] = deque(maxlen=_MAX_DOWNLOAD_LOG)

    def request(self, kind: str) -> None:
        with self._lock:
            self._requests[kind] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def add_download_bytes(self, n: int) -> None:
        with self._lock:
            self._download_bytes += n

    def add_upload_bytes(self, n: int) -> None:
        with self._lock:
            self._upload_bytes += n

    def auth_on_download(self) -> None:
        with self._lock:
            self._auth_on_download += 1

    def bad_auth(self) -> None:
        with self._lock:
            self._bad_auth += 1

    def download_range(self, file_id: int, start: int, end: int) -> None:
        with self._lock:
            self._downloads.append({"file_id": str(file_id), "start": start, "end": end})

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(
                {
                    "requests": self._requests,
                    "download_bytes": self._download_bytes,
                    "upload_bytes": self._upload_bytes,
                    "faults": self._faults,
                    "auth_on_download": self._auth_on_download,
                    "bad_auth": self._bad_auth,
                    "downloads": list(self._downloads),
                }
            )


class FaultSchedule:
    """Counts events per fault kind and says when the Nth one is due."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ticks: dict[str, int] = {}

    def due(self, kind: str, every: int) -> bool:
        """Count one event of ``kind``; True when it is a multiple of ``every`` (never when 0)."""
        if every <= 0:
            return False
        with self._lock:
            tick = self._ticks.get(kind, 0) + 1
            self._ticks[kind] = tick
        return tick % every == 0

    def restart(self, kind: str) -> None:
        with self._lock:
            self._ticks.pop(kind, None)
