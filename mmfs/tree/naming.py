"""Platform filenames -> names a POSIX directory can hold. Pure functions, no I/O.

A filename mmfs uploaded is shown as exactly the name it was written under: ``platform_names`` encodes a
mount name for the platform and decodes it back (invalid UTF-8 bytes, quotes, control characters and all).
The rules below are for every other filename, the ones other clients gave.

The platform's ``filename`` is free text: it may hold ``/``, NUL and control characters, be empty, be
``.`` or ``..``, run past 255 bytes, or repeat within a purpose (every upload gets a new id, names never
collide there). A directory needs unique names of at most 255 bytes with no ``/`` or NUL, so:

- ``/`` becomes FULLWIDTH SOLIDUS (U+FF0F) and C0 control characters (NUL included) and DEL become their
  Unicode control pictures (U+2400 + code): the name still reads the same, and nothing is silently dropped.
  (rclone's encoder makes the same choice, so users of both see the same names.)
- What no file name should hold becomes U+FFFD (the replacement character): lone surrogates (a JSON
  ``"\\ud800"``, or an invalid UTF-8 byte of the raw body, which the client decodes as surrogateescape), which
  no UTF-8 name can carry, and the bidirectional controls (RTL override and its kin), which would make
  ``gnp.exe`` display as ``exe.png``. Two names that differ only there are told apart by their ids (below).
- ``.`` and ``..`` become their fullwidth twins; an empty or missing name becomes ``unnamed-<file_id>``.
- Names over 255 UTF-8 bytes are shortened in the stem, keeping the extension.
- Same-named files are all shown: the oldest (``created_at``, then ``file_id``) keeps the plain name, each
  other one gets ``~<file_id>`` before its extension. The assignment depends only on the set of files, so
  it is stable across refreshes and remounts while that set does not change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from mmfs.tree.platform_names import from_platform

__all__ = ["NAME_MAX", "assign_names", "safe_name", "split_ext", "with_suffix"]

# Linux's NAME_MAX: the kernel refuses longer names before FUSE ever sees them.
NAME_MAX = 255
# An "extension" longer than this is more likely part of the name (a sentence with a dot in it).
_MAX_EXT_BYTES = 16

_SPECIAL = {".": "\uff0e", "..": "\uff0e\uff0e"}
_REPLACEMENT = "\ufffd"
# Unicode's bidirectional formatting characters (ALM, LRM, RLM, embeddings, overrides, isolates).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class Named(Protocol):
    """What naming needs of a file record."""

    @property
    def file_id(self) -> str: ...
    @property
    def filename(self) -> str | None: ...
    @property
    def created_at(self) -> int | None: ...


T = TypeVar("T", bound=Named)


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "/":
        return "\uff0f"
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    if 0xD800 <= code <= 0xDFFF or ch in _BIDI_CONTROLS:
        return _REPLACEMENT
    return ch


def _size(text: str) -> int:
    """Bytes of ``text`` in a directory entry: an escaped invalid byte (U+DC80..U+DCFF) is one byte."""
    return len(text.encode("utf-8", "surrogateescape"))


def split_ext(name: str) -> tuple[str, str]:
    """``("movie", ".mp4")``; a leading dot is not an extension, nor is one longer than 16 bytes."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return name, ""
    ext = name[dot:]
    if _size(ext) > _MAX_EXT_BYTES or " " in ext:
        return name, ""
    return name[:dot], ext


def _truncate_utf8(text: str, max_bytes: int) -> str:
    if _size(text) <= max_bytes:
        return text
    kept, used = [], 0
    for ch in text:  # whole characters only: never a broken one
        used += _size(ch)
        if used > max_bytes:
            break
        kept.append(ch)
    return "".join(kept)


def _fit(stem: str, ext: str) -> str:
    ext_bytes = _size(ext)
    if ext_bytes >= NAME_MAX:
        return _truncate_utf8(stem + ext, NAME_MAX)
    return _truncate_utf8(stem, NAME_MAX - ext_bytes) + ext


def safe_name(filename: str | None, file_id: str) -> str:
    """The name one file would have alone in its folder."""
    if not filename:
        return f"unnamed-{file_id}"
    written = from_platform(filename)
    if written is not None:
        return written
    if filename in _SPECIAL:
        return _SPECIAL[filename]
    escaped = "".join(_escape_char(ch) for ch in filename)
    stem, ext = split_ext(escaped)
    return _fit(stem, ext)


def with_suffix(name: str, file_id: str) -> str:
    """``name`` told apart by its id: ``clip~361721749176519.mp4``, still within NAME_MAX."""
    stem, ext = split_ext(name)
    suffix = f"~{file_id}"
    ext_bytes = _size(ext)
    room = NAME_MAX - ext_bytes - len(suffix)
    if room < 0:  # a pathological extension: keep the id, which is what makes the name unique
        return _truncate_utf8(stem + ext, NAME_MAX - len(suffix)) + suffix
    return _truncate_utf8(stem, room) + suffix + ext


def _age_key(item: Named) -> tuple[int, int, str]:
    created = item.created_at if item.created_at is not None else 2**63
    try:
        numeric = int(item.file_id)
    except ValueError:
        numeric = 2**63
    return (created, numeric, item.file_id)


def assign_names(items: Iterable[T], reserved: Iterable[str] = ()) -> dict[str, T]:
    """Give every item a unique safe name; oldest first wins the plain name.

    ``reserved`` names are never handed out (the root's ``.by-id`` for instance).
    """
    taken: set[str] = set(reserved)
    result: dict[str, T] = {}
    ordered = sorted({item.file_id: item for item in items}.values(), key=_age_key)
    losers: list[tuple[str, T]] = []
    for item in ordered:
        name = safe_name(item.filename, item.file_id)
        if name in taken:
            losers.append((name, item))
        else:
            taken.add(name)
            result[name] = item
    for name, item in losers:
        candidate = with_suffix(name, item.file_id)
        counter = 1
        while candidate in taken:  # only when a real filename already looks like our suffix
            candidate = with_suffix(name, f"{item.file_id}-{counter}")
            counter += 1
        taken.add(candidate)
        result[candidate] = item
    return result
