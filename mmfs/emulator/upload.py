"""Receiving a multipart upload without holding it in memory.

The request body is read in pieces (by Content-Length, or chunked transfer coding) and fed to
python-multipart's streaming parser; the ``file`` part goes straight into a temp file, the small text fields
are kept in memory. The caller decides what to do with the temp file once the whole body has arrived.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

__all__ = ["BrokenUpload", "MalformedUpload", "ReceivedForm", "decode_whatwg_filename", "iter_body",
           "receive_form"]

_PIECE = 1024 * 1024  # read size: large enough that parsing overhead stays small at hundreds of MB/s
_MAX_FIELD = 64 * 1024  # text fields are short (a purpose name); refuse to hoard a huge one


class BrokenUpload(Exception):
    """The body ended before it should: the client is gone, there is nobody to answer."""


class MalformedUpload(Exception):
    """The body arrived whole but is not a usable multipart form: answer with invalid params."""


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None  # None when no part carried a filename
    file_size: int = 0
    complete: bool = False  # the closing boundary was seen


def iter_body(rfile: BinaryIO, content_length: int | None, chunked: bool) -> Iterator[bytes]:
    """Yield the request body in pieces; raise BrokenUpload if it ends before it should."""
    if chunked:
        while True:
            size_line = rfile.readline(1024)
            if not size_line:
                raise BrokenUpload("connection closed inside a chunked body")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise BrokenUpload("bad chunk size") from exc
            if size == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            remaining = size
            while remaining:
                piece = rfile.read(min(remaining, _PIECE))
                if not piece:
                    raise BrokenUpload("connection closed inside a chunk")
                remaining -= len(piece)
                yield piece
            rfile.readline(1024)  # the CRLF after each chunk
        return
    remaining = content_length or 0
    while remaining:
        piece = rfile.read(min(remaining, _PIECE))
        if not piece:
            raise BrokenUpload("connection closed before the body was complete")
        remaining -= len(piece)
        yield piece


def decode_whatwg_filename(name: str) -> str:
    """Undo the escapes browsers (and urllib3) apply to a multipart filename: ``"`` CR LF as %22 %0D %0A.

    Only these three: any other ``%XX`` was in the name itself.
    """
    return name.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")


def _decode_header(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def receive_form(body: Iterator[bytes], content_type: str, file_path: Path, max_file_bytes: int
                 ) -> ReceivedForm:
    """Parse a multipart body; the part named ``file`` is written to ``file_path``.

    Bytes past ``max_file_bytes`` are counted but not written, so an oversized upload cannot fill the disk;
    the caller refuses it by its size.
    """
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        for _ in body:
            pass  # drain, so the connection can carry the refusal
        raise MalformedUpload("content type must be multipart/form-data with a boundary")

    form = ReceivedForm()
    headers: dict[str, str] = {}
    header_field = bytearray()
    header_value = bytearray()
    current: dict[str, object] = {}  # name, is_file, buffer
    out = file_path.open("wb")

    def on_part_begin() -> None:
        headers.clear()
        current.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).decode("latin-1").lower()] = bytes(header_value).decode("latin-1")
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get("content-disposition", ""))
        name = _decode_header(disposition.get(b"name", b""))
        raw_filename = disposition.get(b"filename")
        is_file = name == "file" and form.filename is None
        if is_file:
            form.filename = _decode_header(raw_filename) if raw_filename is not None else ""
        current.update(name=name, is_file=is_file, buffer=bytearray())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if current.get("is_file"):
            room = max_file_bytes + 1 - form.file_size
            if room > 0:
                out.write(data[start:min(end, start + room)])
            form.file_size += end - start
        else:
            buffer = current.get("buffer")
            if isinstance(buffer, bytearray) and len(buffer) < _MAX_FIELD:
                buffer.extend(data[start:end])

    def on_part_end() -> None:
        buffer = current.get("buffer")
        if not current.get("is_file") and isinstance(buffer, bytearray):
            form.fields.setdefault(str(current.get("name")), _decode_header(bytes(buffer)))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        for piece in body:
            parser.write(piece)
        parser.finalize()
    except BrokenUpload:
        raise
    except Exception as exc:  # python-multipart raises several error types for malformed input
        for _ in body:
            pass
        raise MalformedUpload("malformed multipart body") from exc
    finally:
        out.close()
    form.complete = parser.state == MultipartState.END
    return form
