"""What the platform accepts on upload, checked before a byte is sent. Pure functions.

Refusing early is the point: ``cp movie.exe /voice_clone/`` fails at ``open`` with EINVAL, and a recording
past the limit fails at the ``write`` that crosses it (EFBIG), not after uploading 600 MiB. The platform's
own checks remain the last word; these only apply what its documentation states, as the purpose table
(``mmfs.purposes``) holds it.
"""

from __future__ import annotations

from collections.abc import Mapping

from mmfs.errors import FileTooLargeError, ReadOnlyError, UnsupportedFormatError
from mmfs.purposes import MAX_FILE_BYTES, TABLE

__all__ = ["MAX_FILE_BYTES", "accepted_extensions", "check_create", "check_size", "size_limit"]


def _formats(purpose: str) -> Mapping[str, int]:
    """The purpose's extension -> size limit (empty for a purpose that takes no uploads, or an unknown one)."""
    row = TABLE.get(purpose)
    return row.formats if row is not None else {}


def _extension(filename: str) -> str:
    dot = filename.rfind(".")
    return filename[dot + 1 :].lower() if dot > 0 else ""


def check_create(purpose: str, filename: str) -> None:
    """Raise if the platform would refuse a file of this name in this purpose, whatever its content."""
    rules = _formats(purpose)
    if not rules:
        raise ReadOnlyError(f"the platform takes no uploads for {purpose}")
    extension = _extension(filename)
    if extension not in rules:
        accepted = ", ".join(f".{e}" for e in sorted(rules))
        has = f"a .{extension} file" if extension else "a name with no extension"
        raise UnsupportedFormatError(f"the platform takes only {accepted} files in {purpose}; {filename!r} is {has}")


def accepted_extensions(purpose: str) -> list[str]:
    """The extensions ``purpose`` takes uploads of, sorted (none for a purpose that takes no uploads)."""
    return sorted(_formats(purpose))


def size_limit(purpose: str, filename: str) -> int:
    """The largest upload the platform takes for this name in this purpose (MAX_FILE_BYTES if unknown)."""
    return _formats(purpose).get(_extension(filename), MAX_FILE_BYTES)


def check_size(purpose: str, filename: str, size: int) -> None:
    limit = size_limit(purpose, filename)
    if size > limit:
        raise FileTooLargeError(f"{purpose} takes files of at most {limit} bytes; {filename!r} would be {size}")
