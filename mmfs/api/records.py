"""The platform's JSON answers as typed records, tolerant of every shape the API has been seen to send.

The File Management API promises little about its bodies: ``file_id`` arrives as a JSON number on the
``/v1/files/*`` endpoints and as a string elsewhere, ``bytes`` is 0 for generated videos, and any field may be
missing or null. This module turns whatever arrived into a ``FileRecord`` whose fields are either right or
``None``, and raises ``ProtocolError`` only when there is nothing usable to name the file by.

Errors reach mmfs as HTTP 200 with a non-zero ``base_resp.status_code``; ``check_base_resp`` (from
``mmfs.api.answers``, where every answer is mapped to its error) raises the exception they stand for.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from mmfs.api.answers import check_base_resp
from mmfs.errors import ProtocolError

__all__ = ["FileRecord", "check_base_resp", "normalize_file_id", "parse_file_list", "parse_file_record"]

log = logging.getLogger("mmfs.api")

# Ids are int64 on the platform (19 digits); the cap only keeps absurd input away from int(), whose
# string conversion refuses more than a few thousand digits.
_MAX_DIGITS = 64
_DIGITS = re.compile(rf"[0-9]{{1,{_MAX_DIGITS}}}")


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file as the platform describes it. Every field but ``file_id`` may be unknown (``None``)."""

    file_id: str
    bytes: int | None
    created_at: int | None
    filename: str | None
    purpose: str | None
    download_url: str | None = None


def _as_natural(value: object) -> int | None:
    """A non-negative integer from an int, an integral float or a decimal string; None for anything else."""
    if isinstance(value, bool):  # bool is an int subclass, and True is never an id or a size
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _DIGITS.fullmatch(text):
            return None
        number = int(text)
    else:
        return None
    return number if number >= 0 else None


def normalize_file_id(value: object) -> str | None:
    """The canonical decimal string for a file id in any form the platform sends, or None if unusable.

    Leading zeros are dropped so that the same file seen once as a number and once as a string gets one id.
    """
    number = _as_natural(value)
    if number is None or number >= 10**_MAX_DIGITS:
        return None
    return str(number)


def _as_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# The largest size a file system can state (off_t is 64-bit signed): a larger one is clamped, never wrapped.
MAX_SIZE = (1 << 63) - 1
# The last second of year 9999: a later created_at is no time (st_mtime in ns must fit in 64 bits as well).
MAX_TIME = 253402300799


def _as_size(value: object) -> int | None:
    number = _as_natural(value)
    return None if number is None else min(number, MAX_SIZE)


def _as_time(value: object) -> int | None:
    number = _as_natural(value)
    return number if number is not None and number <= MAX_TIME else None


def parse_file_record(obj: object) -> FileRecord:
    """A ``FileRecord`` from one FileObject; ``ProtocolError`` if it is not an object or has no usable id."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"file object is {type(obj).__name__}, not a JSON object")
    file_id = normalize_file_id(obj.get("file_id"))
    if file_id is None:
        raise ProtocolError(f"file object without a usable file_id ({obj.get('file_id')!r:.40})")
    url = _as_text(obj.get("download_url"))
    return FileRecord(
        file_id=file_id,
        bytes=_as_size(obj.get("bytes")),
        # Negative timestamps cannot come from a platform started in this century, nor ones past year 9999;
        # treat them as unknown.
        created_at=_as_time(obj.get("created_at")),
        filename=_as_text(obj.get("filename")),
        purpose=_as_text(obj.get("purpose")),
        download_url=url or None,
    )


def parse_file_list(body: object) -> list[FileRecord]:
    """The records of a list answer, skipping (and logging) entries without a usable id.

    One bad entry must never hide the rest of a folder, so entries are judged one by one. A body whose
    ``files`` is missing or null lists nothing; one whose ``files`` is not an array is broken.
    """
    if not isinstance(body, dict):
        raise ProtocolError(f"list answer is {type(body).__name__}, not a JSON object")
    files = body.get("files")
    if files is None:
        return []
    if not isinstance(files, list):
        raise ProtocolError(f"list answer's files is {type(files).__name__}, not an array")
    records = []
    for entry in files:
        try:
            records.append(parse_file_record(entry))
        except ProtocolError as exc:
            log.debug("skipping list entry: %s", exc)
    return records
