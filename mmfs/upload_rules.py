"""What the platform accepts on upload, checked before a byte is sent. Pure functions.

Refusing early is the point: ``cp movie.exe /voice_clone/`` fails at ``open`` with EINVAL, and a recording
past the limit fails at the ``write`` that crosses it (EFBIG), not after uploading 600 MiB. The platform's
own checks remain the last word; these only mirror what its documentation states (see the API spec).
"""

from __future__ import annotations

from mmfs.errors import FileTooLargeError, ReadOnlyError, UnsupportedFormatError

__all__ = ["DELETE_PURPOSES", "MAX_FILE_BYTES", "accepted_extensions", "check_create", "check_size", "size_limit"]

# The documentation says "MB" without saying which; decimal megabytes are the smaller reading, so a file
# that passes here passes the platform whichever it means.
_MB = 1_000_000
# The legacy per-file ceiling, for every purpose.
MAX_FILE_BYTES = 512 * _MB

_AUDIO = ("mp3", "m4a", "wav")

# purpose -> {extension: limit in bytes}
_RULES: dict[str, dict[str, int]] = {
    "voice_clone": dict.fromkeys(_AUDIO, 20 * _MB),
    "prompt_audio": dict.fromkeys(_AUDIO, 20 * _MB),
    "t2a_async_input": dict.fromkeys(("txt", "zip"), MAX_FILE_BYTES),
    "video_understanding": dict.fromkeys(("mp4", "avi", "mov", "mkv"), MAX_FILE_BYTES),
    # Reference media for video generation: the docs add heic/heif images and take wav/mp3 audio only.
    "video_generation_input": {
        **dict.fromkeys(("jpg", "jpeg", "png", "webp", "heic", "heif"), 30 * _MB),
        **dict.fromkeys(("mp4", "mov"), 50 * _MB),
        **dict.fromkeys(("wav", "mp3"), 15 * _MB),
    },
    "retrieval": dict.fromkeys(("pdf", "docx", "txt", "jsonl"), MAX_FILE_BYTES),
}

# The platform documents delete for these purposes only; the others expire on their own (7 days).
DELETE_PURPOSES = frozenset({"voice_clone", "prompt_audio", "t2a_async_input", "t2a_async", "video_generation",
                             "retrieval"})


def _extension(filename: str) -> str:
    dot = filename.rfind(".")
    return filename[dot + 1 :].lower() if dot > 0 else ""


def check_create(purpose: str, filename: str) -> None:
    """Raise if the platform would refuse a file of this name in this purpose, whatever its content."""
    rules = _RULES.get(purpose)
    if rules is None:
        raise ReadOnlyError(f"the platform takes no uploads for {purpose}")
    extension = _extension(filename)
    if extension not in rules:
        accepted = ", ".join(f".{e}" for e in sorted(rules))
        has = f"a .{extension} file" if extension else "a name with no extension"
        raise UnsupportedFormatError(f"the platform takes only {accepted} files in {purpose}; {filename!r} is {has}")


def accepted_extensions(purpose: str) -> list[str]:
    """The extensions ``purpose`` takes uploads of, sorted (none for a purpose that takes no uploads)."""
    return sorted(_RULES.get(purpose, {}))


def size_limit(purpose: str, filename: str) -> int:
    """The largest upload the platform takes for this name in this purpose (MAX_FILE_BYTES if unknown)."""
    return _RULES.get(purpose, {}).get(_extension(filename), MAX_FILE_BYTES)


def check_size(purpose: str, filename: str, size: int) -> None:
    limit = size_limit(purpose, filename)
    if size > limit:
        raise FileTooLargeError(f"{purpose} takes files of at most {limit} bytes; {filename!r} would be {size}")
