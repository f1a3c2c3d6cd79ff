"""What the platform accepts: purposes per endpoint and the checks an upload must pass.

The facts come from the purpose table (``mmfs.purposes``), the one module of mmfs the emulator imports: it is
the platform's documentation as data, shared so that the emulator and the client it tests cannot disagree
about a purpose. What is here is the emulator's own: which enum an endpoint answers with under the current
switches, and the words of a refusal. Durations (voice_clone 10 s-5 min, prompt_audio < 8 s) are in the
table but not checked: the platform's answer to a wrong duration is not documented, and decoding audio is
not the emulator's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmfs.purposes import (
    DELETE_PURPOSES,
    HTTP400_PURPOSES,
    LIST_PURPOSES,
    LIST_UNCERTAIN_PURPOSES,
    MAX_FILE_BYTES,
    MB,
    PURPOSES,
    TABLE,
    UPLOAD_PURPOSES,
    ZERO_BYTES_PURPOSES,
)

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
    "ZERO_BYTES_PURPOSES",
    "UploadRule",
    "allowed_purposes",
    "check_upload",
]

KNOWN_PURPOSES = PURPOSES
# Listable only while the switch list_generated is on (the docs leave them uncertain).
GENERATED_LISTABLE = LIST_UNCERTAIN_PURPOSES


@dataclass(frozen=True)
class UploadRule:
    """Extensions accepted for one purpose, each with its own size limit in bytes."""

    limits: dict[str, int]

    def limit_for(self, extension: str) -> int | None:
        return self.limits.get(extension)


UPLOAD_RULES: dict[str, UploadRule] = {name: UploadRule(dict(row.formats)) for name, row in TABLE.items()
                                        if row.formats}


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
