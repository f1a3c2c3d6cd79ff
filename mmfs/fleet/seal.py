"""Every value mmfs puts in Redis is sealed, and every value it takes out is opened and checked record by record.

Anyone who can write to the shared Redis (a neighbour on the network, a compromised tenant of a managed
Redis, an operator's typo) must not be able to make a mount serve other bytes, show or hide files, or put
anything into a mount's own disk cache or state. So each block, piece, listing, known-file record, size and
event carries a MAC: keyed BLAKE2b under a key derived (HKDF-SHA256) from the account's API key, which every
mount of the account has and Redis never sees. The MAC covers the Redis key (or hash field, or stream) the
value was written under, so a genuine value moved to another key (block 0 filed as block 1, a listing of
one purpose copied to another) does not open either.

A value that does not open, or opens but holds a record that is not well formed (types, a name, a purpose
that matches the folder it was found in), is dropped and counted; the caller goes on as if Redis had
nothing, exactly as when Redis is down.

What a MAC cannot stop: a replay of an older genuine value under its own key (a listing older than the
refresh interval, an event already applied once). Listings expire and carry their age; events only say
what really happened in the account, and file ids are never reused, so a replay can at most show a file
that existed until a read of it finds it gone. Budget keys are not sealed: forging them can only slow
calls, and every wait is bounded by the operation's deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
from typing import Any

from mmfs.api.records import FileRecord
from mmfs.settings.config import PURPOSES

__all__ = ["Seal", "derive_key", "record_from_json", "record_to_json"]

_MAGIC = b"MMS2"
_MAC = 16
_HEADER = struct.Struct(f"<4sQ{_MAC}s")
_PERSON = b"mmfs-shared-v2"
_FILE_ID = re.compile(r"[0-9]{1,64}")
_MAX_NAME = 4096
_MAX_NUMBER = 2**63 - 1
_FIELDS = ("file_id", "bytes", "created_at", "filename", "purpose")


def derive_key(api_key: str, account: str) -> bytes:
    """HKDF-SHA256 (RFC 5869, one output block) of the API key: the same on every mount of the account,
    unknown to Redis, and useless for anything but these MACs (the key itself is not recoverable)."""
    prk = hmac.new(b"mmfs shared tier", api_key.encode(), hashlib.sha256).digest()
    return hmac.new(prk, b"mmfs shared records v2\0" + account.encode() + b"\x01", hashlib.sha256).digest()


class Seal:
    """``seal(name, data)`` -> the value to store under ``name``; ``open(name, value)`` -> the data, or None."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, name: str, data: bytes | bytearray | memoryview) -> bytes:
        mac = hashlib.blake2b(key=self._key, digest_size=_MAC, person=_PERSON)
        encoded = name.encode("utf-8", "surrogateescape")
        mac.update(struct.pack("<I", len(encoded)))
        mac.update(encoded)
        mac.update(data)
        return mac.digest()

    def seal(self, name: str, data: bytes | bytearray | memoryview) -> bytes:
        return b"".join((_HEADER.pack(_MAGIC, len(data), self._mac(name, data)), data))  # one copy of data

    def open(self, name: str, value: object) -> memoryview | None:
        """The data sealed under ``name``, as a view (no copy of a block); None for anything else."""
        if not isinstance(value, (bytes, bytearray)) or len(value) < _HEADER.size:
            return None
        magic, length, mac = _HEADER.unpack_from(value)
        data = memoryview(value)[_HEADER.size :]
        if magic != _MAGIC or length != len(data):
            return None
        if not hmac.compare_digest(self._mac(name, data), mac):
            return None
        return data

    def seal_json(self, name: str, obj: object) -> bytes:
        return self.seal(name, json.dumps(obj, separators=(",", ":")).encode())

    def open_json(self, name: str, value: object) -> Any:
        """The JSON sealed under ``name``, or None (not sealed by us, or not JSON)."""
        data = self.open(name, value)
        if data is None:
            return None
        try:
            return json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError):
            return None


def record_to_json(record: FileRecord) -> dict[str, Any]:
    """What is shared of a record: never its download URL (a secret, and short-lived)."""
    return {"file_id": record.file_id, "bytes": record.bytes, "created_at": record.created_at,
            "filename": record.filename, "purpose": record.purpose}


def _natural(value: object) -> tuple[bool, int | None]:
    if value is None:
        return True, None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_NUMBER:
        return False, None
    return True, value


def record_from_json(obj: object, purpose: str | None = None) -> FileRecord | None:
    """A record as mmfs shares it, or None when any field is not what mmfs writes: ``file_id`` a decimal
    string, sizes and times non-negative int64 or null, a name a string without NUL, a purpose one of the
    platform's (and ``purpose`` when given: a listing's records all belong to its folder)."""
    if not isinstance(obj, dict) or set(obj) - set(_FIELDS):
        return None
    file_id = obj.get("file_id")
    if not isinstance(file_id, str) or not _FILE_ID.fullmatch(file_id) or (len(file_id) > 1 and file_id[0] == "0"):
        return None
    ok_bytes, size = _natural(obj.get("bytes"))
    ok_time, created = _natural(obj.get("created_at"))
    if not (ok_bytes and ok_time):
        return None
    name = obj.get("filename")
    if name is not None and (not isinstance(name, str) or "\0" in name or len(name) > _MAX_NAME):
        return None
    own = obj.get("purpose")
    if own is not None and own not in PURPOSES:
        return None
    if purpose is not None and own not in (None, purpose):
        return None
    return FileRecord(file_id, size, created, name, own)
