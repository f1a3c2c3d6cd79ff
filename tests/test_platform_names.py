"""The name encoding, over arbitrary byte names: every name a kernel can hand over is uploaded as a
filename that survives the real multipart trip (the client's own encoder, the emulator's parser, with
the escapes a server may keep or decode) and the listing's JSON, and is shown back as exactly that name;
two names never share a filename; filenames no mount made are shown by the old display rules."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmfs.api.client import _MultipartFile
from mmfs.emulator.upload import decode_whatwg_filename, receive_form
from mmfs.tree.naming import NAME_MAX, assign_names, safe_name
from mmfs.tree.platform_names import QUOTE, from_platform, to_platform

_SCRATCH = Path(tempfile.mkdtemp(prefix="names-")) / "part"
_BODY = _SCRATCH.with_name("body")
_BODY.write_bytes(b"x")

# The bytes that make names hard, weighted up: controls, quotes, backslashes, percent escapes, the encoding's
# own look-alikes and quote character, bidi controls, and bytes that are not UTF-8.
_HARD = [b"\x01", b"\t", b"\n", b"\r", b"\x1f", b"\x7f", b'"', b"\\", b"%", b"%22", b"%0A", b"%0d", b"22", b"A",
         b".", b" ", QUOTE.encode(), "\uff02".encode(), "\uff3c".encode(), "\uff05".encode(), "\u2409".encode(),
         "\u2421".encode(), "\u2400".encode(), "\u202e".encode(), "\u200f".encode(), b"\xe9", b"\xff", b"\xc3",
         b"\xa9", b"\xed\xa0\x80", "é".encode(), "\U0001f600".encode(), b"C:\\"]

_piece = st.one_of(st.sampled_from(_HARD), st.binary(min_size=1, max_size=4))
byte_names = (st.lists(_piece, min_size=1, max_size=40).map(b"".join)
              .map(lambda b: b.replace(b"/", b"_").replace(b"\x00", b"_")[:NAME_MAX])
              .filter(lambda b: b not in (b".", b"..")))


def kernel_name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")  # as mfusepy decodes a path


def after_the_platform(filename: str, decode_escapes: bool) -> str:
    """``filename`` uploaded by the client's encoder, parsed by the emulator, listed as JSON, read back."""
    with open(_BODY, "rb", buffering=0) as source:
        encoder = _MultipartFile([("purpose", "retrieval")], "file", source, filename, "text/plain")
        body = b"".join(bytes(piece) for piece in encoder)
    form = receive_form(iter([body]), encoder.content_type, _SCRATCH, 10)
    stored = form.filename or ""
    if decode_escapes:
        stored = decode_whatwg_filename(stored)
    listing = json.dumps({"filename": stored}, ensure_ascii=False).encode("utf-8")
    return json.loads(listing.decode("utf-8", "surrogateescape"))["filename"]


@pytest.mark.parametrize("decode_escapes", [False, True])
@settings(deadline=None)  # a loaded machine must not fail a property on time
@given(raw=byte_names)
@example(raw=b"r\xe9sum\xe9.txt")
@example(raw=b'x"y.txt')
@example(raw=b"x%22y.txt")
@example(raw=b"C:\\dir\\c.txt")
def test_a_name_comes_back_from_the_platform_as_exactly_itself(decode_escapes, raw):
    name = kernel_name(raw)
    filename = to_platform(name)
    filename.encode("utf-8")  # the multipart encoder can carry it
    listed = after_the_platform(filename, decode_escapes)
    assert listed == filename  # nothing on the way changed it
    shown = safe_name(listed, "1")
    assert shown == name
    assert shown.encode("utf-8", "surrogateescape") == raw  # the kernel gets the very bytes back


@settings(deadline=None)
@given(st.lists(byte_names, min_size=2, max_size=8, unique=True))
def test_different_names_never_share_a_platform_filename(raws):
    filenames = [to_platform(kernel_name(raw)) for raw in raws]
    assert len(set(filenames)) == len(filenames)
    shown = assign_names(_Rec(str(i), f, 0) for i, f in enumerate(filenames))
    assert {r.filename for r in shown.values()} == set(filenames)
    assert {name.encode("utf-8", "surrogateescape") for name in shown} == set(raws)  # no ~id needed


# Filenames another client may have given: any text JSON can carry.
foreign = st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from(
    [QUOTE, "\uff02", "\uff05", "\u2409", "%", "2", "A", "E", "9", "\t", '"', "\\", "/"])), min_size=1, max_size=300)


@settings(deadline=None)
@given(foreign)
def test_any_platform_filename_decodes_to_at_most_one_valid_name(filename):
    name = from_platform(filename)
    if name is None:
        return  # shown by the display rules, tested in test_naming.py
    assert to_platform(name) == filename  # only the exact encoding of a name decodes
    raw = name.encode("utf-8", "surrogateescape")
    assert 0 < len(raw) <= NAME_MAX and b"/" not in raw and b"\x00" not in raw and raw not in (b".", b"..")


@pytest.mark.parametrize("filename", ["notes.txt", "résumé.pdf", "clip 01.mp4", "a/b.txt", "..", "tab\there.txt",
                                      "\u202egnp.exe", "\ud800.txt", 'say "hi".txt', "x%22y.txt", "50%.txt"])
def test_names_other_clients_gave_show_as_before(filename):
    before = {"a/b.txt": "a\uff0fb.txt", "..": "\uff0e\uff0e", "tab\there.txt": "tab\u2409here.txt",
              "\u202egnp.exe": "\ufffdgnp.exe", "\ud800.txt": "\ufffd.txt"}
    assert safe_name(filename, "1") == before.get(filename, filename)


def test_look_alikes_and_the_quote_are_quoted_in_a_name():
    assert to_platform('x"y.txt') == "x\uff02y.txt"
    assert to_platform("x\uff02y.txt") == f"x{QUOTE}\uff02y.txt"
    assert to_platform("r\udce9sum\udce9.txt") == f"r{QUOTE}E9sum{QUOTE}E9.txt"
    assert to_platform(f"{QUOTE}E9.txt") == f"{QUOTE}{QUOTE}E9.txt"
    assert to_platform("x%22y.txt") == "x\uff0522y.txt"
    assert to_platform("50%.txt") == "50%.txt"
    assert to_platform("plain name.txt") == "plain name.txt"


class _Rec:
    def __init__(self, file_id: str, filename: str, created_at: int) -> None:
        self.file_id, self.filename, self.created_at = file_id, filename, created_at
