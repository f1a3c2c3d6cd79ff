"""The "media open" files and probes: what a video player or a PDF viewer reads before showing anything.

Both files are built so that opening them means seeking: the MP4 is written by ffmpeg with its ``moov``
index at the end (ffmpeg's default without ``+faststart``), so ``ffprobe`` reads the head, jumps to the
tail and walks the index; the PDF keeps its cross-reference table at the end and one small page object
before each page's 1 MiB image, so ``pdfinfo`` reads the trailer, the xref, and then a page object every
megabyte or so. Each file is made once under the work folder and reused.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProbeResult", "ensure_mp4", "ensure_pdf", "ffprobe", "pdfinfo"]

_PAGE_W, _PAGE_H = 512, 683  # an RGB image of 512 x 683 x 3 bytes: ~1 MiB a page


def ensure_mp4(path: Path, seconds: int) -> Path:
    """An MP4 of ``seconds`` of test video and noise audio, ``moov`` at the end (made by ffmpeg)."""
    if path.exists() and path.stat().st_size > 0:
        return path
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("not available: ffmpeg not installed")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=480x270:rate=30:duration={seconds}",
         "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:r=44100",
         # mpeg4 at top quality: fast to encode, ~350 KB a second, so the file is large for its length.
         "-c:v", "mpeg4", "-q:v", "1", "-g", "30", "-c:a", "aac", "-b:a", "128k", str(tmp)],
        check=True, capture_output=True, timeout=900,
    )
    os.replace(tmp, path)
    return path


def _pdf_objects(pages: int) -> list[bytes]:
    """The PDF's objects in file order (object ``n`` is item ``n - 1``): catalog, page tree, info, then
    for each page its page object, its content stream and its image."""
    rng = random.Random(7)
    image_len = _PAGE_W * _PAGE_H * 3
    kids = " ".join(f"{4 + 3 * i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Count {pages} /Kids [{kids}] >>".encode(),
        b"<< /Title (mmfs benchmark) /Producer (bench/media.py) >>",
    ]
    content = f"q {_PAGE_W} 0 0 {_PAGE_H} 0 0 cm /Im0 Do Q".encode()
    for i in range(pages):
        stream, image = 5 + 3 * i, 6 + 3 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_PAGE_W} {_PAGE_H}] /Contents {stream} 0 R "
            f"/Resources << /XObject << /Im0 {image} 0 R >> >> >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        pixels = rng.randbytes(image_len)  # random, so nothing on the way can compress it
        objects.append(
            f"<< /Type /XObject /Subtype /Image /Width {_PAGE_W} /Height {_PAGE_H} /ColorSpace /DeviceRGB "
            f"/BitsPerComponent 8 /Length {image_len} >>\nstream\n".encode() + pixels + b"\nendstream")
    return objects


def ensure_pdf(path: Path, pages: int) -> Path:
    """A PDF of ``pages`` pages of ~1 MiB each, classic xref table and trailer at the end."""
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as out:
        out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(_pdf_objects(pages), 1):
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
        xref = out.tell()
        out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1))
        out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
        out.write(b"trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                  % (len(offsets) + 1, xref))
    os.replace(tmp, path)
    return path


@dataclass
class ProbeResult:
    seconds: float
    ok: bool
    note: str = ""


def _run(argv: list[str], expect: str, timeout: float) -> ProbeResult:
    """Run a probe; right when its output has a line matching ``expect``."""
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False,
                          env=dict(os.environ, LC_ALL="C"))
    seconds = time.perf_counter() - started
    text = proc.stdout.decode(errors="replace")
    if proc.returncode != 0 or not re.search(expect, text, re.MULTILINE):
        return ProbeResult(seconds, False, proc.stderr.decode(errors="replace").strip()[:200] or text[:200])
    return ProbeResult(seconds, True)


def ffprobe(path: Path, seconds: int, timeout: float = 300.0) -> ProbeResult:
    """``ffprobe`` of the MP4's format and streams; right when it reports the duration it was made with."""
    return _run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name",
                 "-of", "default=nw=1", str(path)], rf"^duration={seconds}\.0", timeout)


def pdfinfo(path: Path, pages: int, timeout: float = 300.0) -> ProbeResult:
    """``pdfinfo`` of the PDF; right when it counts the pages it was made with."""
    return _run(["pdfinfo", str(path)], rf"^Pages:\s+{pages}$", timeout)
