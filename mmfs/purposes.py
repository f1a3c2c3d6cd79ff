"""The platform's purposes in one table: what each endpoint takes, which files, how large, how long kept.

Every fact that depends on a purpose's name lives here and nowhere else: the mount's folders and their
order, which folders take writes and deletes, the extensions and sizes checked before an upload, and the
emulator's per-endpoint enums, upload checks and quirks. The rows follow the API reference (see the API
spec), and where the docs disagree or say nothing the row says ``UNCERTAIN``: mmfs then offers the
operation and lets the platform's answer decide, and the emulator can answer either way (its switches).

Pure data: this module imports nothing but the standard library. The emulator imports nothing from mmfs
except this module. That is deliberate: these are the platform's facts, not mmfs's logic, and an emulator
with its own copy of them drifts from the client it tests (a new extension accepted by one and refused by
the other would go unnoticed by every test).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

__all__ = [
    "DELETE_PURPOSES",
    "HTTP400_PURPOSES",
    "KEY_CHECK_PURPOSE",
    "LIST_PURPOSES",
    "LIST_UNCERTAIN_PURPOSES",
    "MAX_FILE_BYTES",
    "MB",
    "PURPOSES",
    "TABLE",
    "UPLOAD_PURPOSES",
    "ZERO_BYTES_PURPOSES",
    "Documented",
    "Purpose",
]

# The docs say "MB" without saying which; decimal megabytes are the smaller reading, so a file that passes
# a check made with them passes the platform whichever it means.
MB = 1_000_000
# The legacy per-file ceiling, for every purpose (it may no longer be enforced; nothing larger is offered).
MAX_FILE_BYTES = 512 * MB


class Documented(Enum):
    """What the API reference says about one operation on one purpose."""

    YES = "yes"
    NO = "no"
    UNCERTAIN = "uncertain"  # the docs disagree or are silent: offered, and the platform's answer decides


_YES, _NO, _UNCERTAIN = Documented.YES, Documented.NO, Documented.UNCERTAIN


@dataclass(frozen=True)
class Purpose:
    """One purpose's row."""

    name: str
    holds: str  # what the folder holds, in the docs' words
    upload: Documented
    list: Documented
    delete: Documented
    # Extension (lower case, no dot) -> the largest file the platform takes with it, in bytes. Empty for a
    # purpose nobody uploads to.
    formats: Mapping[str, int] = field(default_factory=dict)
    # The documented length of an audio upload, (shortest, longest) in seconds, either end None when open.
    # Checked by neither mmfs nor the emulator: the platform's answer to a wrong length is undocumented, and
    # decoding audio before an upload is not a file system's job.
    seconds: tuple[float | None, float | None] | None = None
    # The platform deletes these files by itself after this many days (no delete call exists for them).
    kept_days: int | None = None
    # The platform writes these files (outputs of generation jobs); nobody uploads them.
    generated: bool = False
    # Listed with ``bytes`` 0 whatever their true size (generated videos): the download tells the size.
    listed_as_zero_bytes: bool = False
    # A refused upload is HTTP 400 (with status 2013), nothing stored; other purposes answer HTTP 200 + 2013.
    refused_as_http400: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", MappingProxyType(dict(self.formats)))


def _formats(extensions: str, limit: int) -> dict[str, int]:
    return dict.fromkeys(extensions.split(), limit)


_ROWS = (
    Purpose("voice_clone", "audio to clone a voice from", _YES, _YES, _YES,
            _formats("mp3 m4a wav", 20 * MB), seconds=(10, 300)),
    Purpose("prompt_audio", "example audio for cloning", _YES, _YES, _YES,
            _formats("mp3 m4a wav", 20 * MB), seconds=(None, 8)),
    Purpose("t2a_async_input", "text for asynchronous speech synthesis", _YES, _YES, _YES,
            _formats("txt zip", MAX_FILE_BYTES)),
    # The list page's enum names t2a_async_input where its text says t2a_async: both are kept.
    Purpose("t2a_async", "asynchronous speech output (a tar of audio, subtitles and json)", _NO, _UNCERTAIN, _YES,
            generated=True),
    Purpose("video_generation", "generated videos (output.mp4, output_aigc.mp4)", _NO, _UNCERTAIN, _YES,
            generated=True, listed_as_zero_bytes=True),
    Purpose("video_understanding", "video for chat", _YES, _NO, _NO,
            _formats("mp4 avi mov mkv", MAX_FILE_BYTES), kept_days=7),
    # Reference media for video generation: the docs add heic/heif images and take wav/mp3 audio only; the
    # newest docs list it.
    Purpose("video_generation_input", "images, video and audio for video generation", _YES, _YES, _NO,
            {**_formats("jpg jpeg png webp heic heif", 30 * MB), **_formats("mp4 mov", 50 * MB),
             **_formats("wav mp3", 15 * MB)},
            kept_days=7, refused_as_http400=True),
    Purpose("retrieval", "documents (legacy)", _UNCERTAIN, _UNCERTAIN, _UNCERTAIN,
            _formats("pdf docx txt jsonl", MAX_FILE_BYTES)),
)

# name -> row, in the order the mount's root folder shows them.
TABLE: Mapping[str, Purpose] = MappingProxyType({row.name: row for row in _ROWS})

PURPOSES: tuple[str, ...] = tuple(TABLE)
# Offered for uploads: documented, or uncertain (retrieval), where the platform's answer decides.
UPLOAD_PURPOSES = frozenset(p.name for p in _ROWS if p.upload is not _NO)
# Documented as listable; the uncertain ones are asked anyway, and their folder hidden if refused.
LIST_PURPOSES = frozenset(p.name for p in _ROWS if p.list is _YES)
LIST_UNCERTAIN_PURPOSES = frozenset(p.name for p in _ROWS if p.list is _UNCERTAIN)
# Offered for deletes; the others expire on their own.
DELETE_PURPOSES = frozenset(p.name for p in _ROWS if p.delete is not _NO)
HTTP400_PURPOSES = frozenset(p.name for p in _ROWS if p.refused_as_http400)
ZERO_BYTES_PURPOSES = frozenset(p.name for p in _ROWS if p.listed_as_zero_bytes)
# The purpose whose listing serves as the cheap key check: documented as listable, so every account may list it.
KEY_CHECK_PURPOSE = "voice_clone"
