"""A small, realistic tree of files for ``--demo``, made at run time and the same on every run.

One or more files per purpose, with the platform's awkward cases: two files with the same name in one
purpose, a name containing ``/``, and a generated video whose listed size is 0 though its download is not.
Everything is deterministic (fixed tones, text, seeded pseudo-random bytes, fixed timestamps), so tests can
compare bytes with ``demo_files()``.
"""

from __future__ import annotations

import functools
import io
import json
import math
import random
import struct
import tarfile
import wave
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import Emulator

__all__ = ["DemoFile", "demo_files", "seed_demo"]

_EPOCH = 1_735_689_600  # 2025-01-01 00:00:00 UTC; created_at values count up from here
_RATE = 16_000  # Hz: speech quality, keeps the WAVs a few hundred KB


@dataclass(frozen=True)
class DemoFile:
    purpose: str
    filename: str
    data: bytes
    created_at: int


def _wav(seconds: float, tones: tuple[float, ...]) -> bytes:
    """16-bit mono PCM: a chord of ``tones`` (Hz) that fades in and out so it does not click."""
    count = int(seconds * _RATE)
    fade = _RATE // 20
    samples = array("h")
    for i in range(count):
        t = i / _RATE
        value = sum(math.sin(2 * math.pi * f * t) for f in tones) / len(tones)
        envelope = min(1.0, i / fade, (count - i) / fade)
        samples.append(int(value * envelope * 12_000))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(_RATE)
        w.writeframes(samples.tobytes())
    return out.getvalue()


_PROSE = """\
The lighthouse keeper wrote the same line in the log every evening: lamp lit, sea calm, no ships.
On the night of the storm he wrote nothing at all, and in the morning the log was found open on the
table, the pen beside it, the lamp still burning though the oil had long run out.

Nobody on the island could explain the lamp. The keeper himself, when he came back from the mainland a
week later, said only that some lights keep themselves, if they are kept long enough.
"""

_NOTES = """\
notes for chapter two
- the keeper's daughter arrives by the supply boat
- keep the storm offstage; show only the morning after
- read the opening aloud at a slower pace
"""


def _pdf(text: str) -> bytes:
    """A one-page PDF 1.4 with a correct xref table, built by hand."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(out)


def _jsonl() -> bytes:
    rows = [
        {"question": "How long is a download link valid?", "answer": "About nine hours."},
        {"question": "Can a file be renamed?", "answer": "No; upload it again under the new name."},
        {"question": "Which formats does voice cloning take?", "answer": "mp3, m4a and wav."},
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _mp4(size: int, seed: int) -> bytes:
    """An ``ftyp`` box then one ``mdat`` box of seeded pseudo-random bytes: looks like MP4 to a sniffer."""
    ftyp_payload = b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41"
    ftyp = struct.pack(">I", 8 + len(ftyp_payload)) + b"ftyp" + ftyp_payload
    body_len = size - len(ftyp) - 8
    mdat = struct.pack(">I", 8 + body_len) + b"mdat" + random.Random(seed).randbytes(body_len)
    return ftyp + mdat


def _mp3(frames: int) -> bytes:
    """An ID3v2 tag then silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz: 417 bytes each)."""
    id3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    frame = b"\xff\xfb\x90\x64" + bytes(413)
    return id3 + frame * frames


def _speech_tar() -> bytes:
    """What asynchronous speech synthesis hands back: audio, subtitles and a JSON summary in a tar."""
    members = {
        "speech.mp3": _mp3(300),
        "speech.srt": b"1\n00:00:00,000 --> 00:00:03,200\nThe lighthouse keeper wrote the same line.\n",
        "speech.json": json.dumps({"audio_length_ms": 7836, "audio_format": "mp3", "words": 42}).encode(),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _EPOCH
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def demo_files() -> list[DemoFile]:
    """The demo tree, in the order it is seeded."""
    return list(_build_demo_files())


@functools.cache  # building the WAVs takes a noticeable fraction of a second; the result never changes
def _build_demo_files() -> tuple[DemoFile, ...]:
    specs = [
        ("voice_clone", "narrator_sample.wav", _wav(12.0, (220.0, 330.0))),
        ("voice_clone", "greeting.wav", _wav(3.0, (440.0,))),
        ("voice_clone", "greeting.wav", _wav(3.5, (523.25, 659.25))),
        ("prompt_audio", "prompt_hello.wav", _wav(5.0, (392.0,))),
        ("t2a_async_input", "chapter1.txt", _PROSE.encode()),
        ("t2a_async_input", "drafts/notes.txt", _NOTES.encode()),
        ("t2a_async", "speech_output.tar", _speech_tar()),
        ("retrieval", "handbook.pdf", _pdf("mmfs demo handbook")),
        ("retrieval", "faq.jsonl", _jsonl()),
        ("video_generation", "lighthouse_at_dawn.mp4", _mp4(3 * 1024 * 1024, seed=7)),
        ("video_understanding", "harbour_clip.mp4", _mp4(256 * 1024, seed=11)),
    ]
    return tuple(
        DemoFile(purpose, filename, data, _EPOCH + 3600 * index)
        for index, (purpose, filename, data) in enumerate(specs)
    )


def seed_demo(emulator: Emulator) -> None:
    for demo in demo_files():
        emulator.seed(demo.purpose, demo.filename, demo.data, created_at=demo.created_at)
