"""What the platform accepts: purposes per endpoint and the checks an upload must pass.

The tables follow the platform's documentation (see the API spec): each endpoint documents its own enum of
purposes and they differ. Durations (voice_clone 10 s-5 min, prompt_audio < 8 s) are documented but not
checked here: the platform's answer to a wrong duration is not documented, and decoding audio is not the
emulator's job.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DELETE_PURPOSES",
    "GENERATED_LISTABLE",
    "HTTP400_PURPOSES",
    "KNOWN_PURPOSES",
    "LIST_PURPOSES",
    "MAX_FILE_BYTES",
    "MB",
    "UPLOAD_PURPOSES",
    "UPLOAD_RULES",
    "UploadRule",
    "allowed_purposes",
    "check_upload",
]

# The docs say "MB" without saying which; decimal megabytes are the smaller reading, so a client that
# passes the emulator's checks also passes the platform's whichever it means.
MB = 1_000_000

# The legacy per-file limit, applied to every purpose.
MAX_FILE_BYTES = 512 * MB

KNOWN_PURPOSES = (
    "voice_clone",
    "prompt_audio",
    "t2a_async_input",
    "t2a_async",
    "video_generation",
    "video_understanding",
    "video_generation_input",
    "retrieval",
)
UPLOAD_PURPOSES = frozenset(
    {"voice_clone", "prompt_audio", "t2a_async_input", "video_understanding", "video_generation_input",
     "retrieval"}
)
# video_understanding uploads are never listable; video_generation_input is, per the newest docs.
LIST_PURPOSES = frozenset({"voice_clone", "prompt_audio", "t2a_async_input", "video_generation_input"})
# Listable only while the switch list_generated is on (the spec marks them uncertain).
GENERATED_LISTABLE = frozenset({"t2a_async", "video_generation", "retrieval"})
DELETE_PURPOSES = frozenset(
    {"voice_clone", "prompt_audio", "t2a_async_input", "t2a_async", "video_generation", "retrieval"}
)


# Purposes whose refused upload the docs say is HTTP 400 (nothing stored), whatever upload_error_http400 says.
HTTP400_PURPOSES = frozenset({"video_generation_input"})


@dataclass(frozen=True)
class UploadRule:
    """Extensions accepted for one purpose, each with its own size limit in bytes."""

    limits: dict[str, int]

    def limit_for(self, extension: str) -> int | None:
        return self.limits.get(extension)


def _same_limit(extensions: str, limit: int) -> UploadRule:
    return UploadRule({ext: limit for ext in extensions.split()})


UPLOAD_RULES: dict[str, UploadRule] = {
    "voice_clone": _same_limit("mp3 m4a wav", 20 * MB),
    "prompt_audio": _same_limit("mp3 m4a wav", 20 * MB),
    "t2a_async_input": _same_limit("txt zip", MAX_FILE_BYTES),
    "video_understanding": _same_limit("mp4 avi mov mkv", MAX_FILE_BYTES),
    "video_generation_input": UploadRule(
        {
            **_same_limit("jpg jpeg png webp heic heif", 30 * MB).limits,
            **_same_limit("mp4 mov", 50 * MB).limits,
            **_same_limit("wav mp3", 15 * MB).limits,
        }
    ),
    "retrieval": _same_limit("pdf docx txt jsonl", MAX_FILE_BYTES),
}


def allowed_purposes(endpoint: str, *, lenient: bool, list_generated: bool) -> frozenset[str]:
    """The purposes ``endpoint`` (upload, list or delete) accepts under the current switches."""
    if lenient:
        return frozenset(KNOWN_PURPOSES)
    if endpoint == "upload":
        return UPLOAD_PURPOSES
    if endpoint == "list":
        return LIST_PURPOSES | GENERATED_LISTABLE if list_generated else LIST_PURPOSES
    if endpoint == "delete":
        return DELETE_PURPOSES
    raise ValueError(f"no purpose table for {endpoint}")


def check_upload(purpose: str, filename: str, size: int, *, check_format: bool) -> str | None:
    """Why the platform would refuse this upload, or None when it would take it.

    The purpose itself is checked by the caller; this looks at the file only.
    """
    if size == 0:
        return "invalid params, file is empty"
    if size > MAX_FILE_BYTES:
        return f"invalid params, file exceeds {MAX_FILE_BYTES // MB} MB"
    rule = UPLOAD_RULES.get(purpose)
    if not check_format or rule is None:
        return None
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    limit = rule.limit_for(extension)
    if limit is None:
        accepted = ", ".join(sorted(rule.limits))
        return f"invalid params, unsupported file format for {purpose} (accepted: {accepted})"
    if size > limit:
        return f"invalid params, file too large for {purpose} .{extension} (limit {limit // MB} MB)"
    return None
