"""A small, realistic tree of files for ``--demo``, made at run time and the same on every run.

One or more files per purpose, with the platform's awkward cases: two files with the same name in one
purpose, a name containing ``/``, and generated videos whose listed size is 0 though their download is not.
The platform names every generated video ``output.mp4`` or ``output_aigc.mp4``, so ``video_generation`` holds
several of each. Everything is deterministic (fixed tones, text, seeded pseudo-random bytes, fixed
timestamps), so tests can compare bytes with ``demo_files()``.

The videos are real, playable MP4s: short test patterns made with ``ffmpeg`` when it is installed (with
bit-exact flags, so the same machine makes the same bytes), else the small clip shipped beside this module.
Each is followed by a ``free`` box of seeded bytes (players skip it), which makes every copy distinct and
lets one reach several blocks.
"""

from __future__ import annotations

import functools
import io
import json
import math
import random
import shutil
import struct
import subprocess
import tarfile
import tempfile
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path
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


_SHIPPED_CLIP = Path(__file__).with_name("sample.mp4")
# lavfi sources for the clips: (video pattern, tone in Hz or 0 for none)
_CLIP_SOURCES = {
    "dawn": ("testsrc2=size=320x180:rate=12:duration=2", 440),
    "bars": ("smptebars=size=320x180:rate=12:duration=2", 330),
    "grid": ("rgbtestsrc=size=320x180:rate=12:duration=2", 0),
}


@functools.cache
def _clip(name: str) -> bytes:
    """A short H.264 MP4 (``moov`` first, so it plays while downloading); the shipped clip without ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return _SHIPPED_CLIP.read_bytes()
    video, tone = _CLIP_SOURCES[name]
    with tempfile.TemporaryDirectory(prefix="mmfs-demo-") as folder:
        out = Path(folder) / "clip.mp4"
        argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", video]
        if tone:
            argv += ["-f", "lavfi", "-i", f"sine=frequency={tone}:duration=2:sample_rate=16000",
                     "-c:a", "aac", "-b:a", "32k", "-flags:a", "+bitexact"]
        argv += ["-c:v", "libx264", "-preset", "veryfast", "-threads", "1", "-pix_fmt", "yuv420p",
                 "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
                 "-movflags", "+faststart", "-shortest", str(out)]
        done = subprocess.run(argv, capture_output=True, check=False)
        if done.returncode != 0 or not out.exists():  # an ffmpeg without libx264 or lavfi
            return _SHIPPED_CLIP.read_bytes()
        return out.read_bytes()


def _mp4(size: int, seed: int, clip: str = "dawn") -> bytes:
    """A playable clip followed by a ``free`` box of seeded bytes, ``size`` bytes in all (more if the clip
    alone is larger)."""
    video = _clip(clip)
    padding = max(size - len(video) - 8, 0)
    return video + struct.pack(">I", 8 + padding) + b"free" + random.Random(seed).randbytes(padding)


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
        ("video_understanding", "harbour_clip.mp4", _mp4(256 * 1024, seed=11, clip="grid")),
        # Generated videos all come back under these two names.
        ("video_generation", "output.mp4", _mp4(96 * 1024, seed=21, clip="bars")),
        ("video_generation", "output.mp4", _mp4(128 * 1024, seed=22, clip="grid")),
        ("video_generation", "output.mp4", _mp4(5 * 1024 * 1024 + 12345, seed=23, clip="dawn")),
        ("video_generation", "output_aigc.mp4", _mp4(80 * 1024, seed=24, clip="bars")),
        ("video_generation", "output_aigc.mp4", _mp4(112 * 1024, seed=25, clip="dawn")),
    ]
    return tuple(
        DemoFile(purpose, filename, data, _EPOCH + 3600 * index)
        for index, (purpose, filename, data) in enumerate(specs)
    )


def seed_demo(emulator: Emulator) -> None:
    for demo in demo_files():
        emulator.seed(demo.purpose, demo.filename, demo.data, created_at=demo.created_at)
