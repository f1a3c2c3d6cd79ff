"""Mount names <-> platform filenames: one reversible encoding, modelled on rclone's ``lib/encoder``.

A mount name is what a Linux program hands the kernel: any bytes but ``/`` and NUL, at most 255 of them.
mfusepy gives them to Python as UTF-8 with ``surrogateescape`` (an invalid byte ``0xE9`` is U+DCE9) and
encodes our names back the same way, so a name is a ``str`` whose UTF-8 ``surrogateescape`` bytes are the
kernel's bytes.

A platform filename travels in a multipart header on upload and comes back as JSON text, and on that trip
some characters do not survive (measured with ``requests-toolbelt``'s ``MultipartEncoder`` against the
emulator, whose parser is python-multipart's):

- bytes that are not UTF-8 cannot be sent at all (the encoder raises ``UnicodeEncodeError``);
- ``"``, CR and LF go out percent-encoded (``%22``, ``%0D``, ``%0A``: urllib3 follows WHATWG), and a
  server may keep the escape or decode it, so ``x"y.txt`` and a literal ``x%22y.txt`` may become one name;
- ``\\`` is an escape character inside a quoted header value (``a\\\\b`` arrives as ``a\\b``) and a
  name that looks like a Windows path (``C:\\x\\y.txt``) is cut to its last part (``y.txt``);
- control characters survive the emulator but not every HTTP stack, and mmfs shows them (and bidi
  controls) from other clients as look-alikes; a name must read back as exactly what was written.

So those characters go to the platform as look-alikes, and a literal look-alike in a name is quoted with
``‛`` (U+201B) so the two never meet:

=========================================  =========================================
mount name                                 platform filename
=========================================  =========================================
control character U+0001..U+001F, DEL      its Unicode control picture (``␉``, ``␊``, ``␡``)
``"`` and ``\\``                            ``＂`` (U+FF02) and ``＼`` (U+FF3C)
``%`` before two hex digits                ``％`` (U+FF05): ``50%.txt`` stays as it is
a byte that is not UTF-8, a bidi control   ``‛`` and the byte in two upper-case hex digits, per byte
a literal ``‛``, ``＂``, ``＼``, picture    ``‛`` before it
=========================================  =========================================

Everything else (letters of any script, emoji, spaces, ``'``, ``;``, ``%`` elsewhere) goes as it is, so
most names are the same on both sides. ``from_platform`` accepts a filename only if it is exactly what
``to_platform`` makes of some mount name; any other filename (one another client gave) is not ours to
decode, and ``naming.safe_name`` shows it by its display rules.
"""

from __future__ import annotations

import re

__all__ = ["QUOTE", "from_platform", "to_platform"]

QUOTE = "\u201b"  # SINGLE HIGH-REVERSED-9 QUOTATION MARK, rclone's quote character
_NAME_MAX = 255

_PICTURES = 0x2400  # SYMBOL FOR NULL; U+2400 + c is the picture of control character c
_DEL_PICTURE = "\u2421"
_FULLWIDTH = 0xFEE0  # "!" + 0xFEE0 is its fullwidth twin
_PERCENT_FULL = chr(ord("%") + _FULLWIDTH)
# Unicode's bidirectional formatting characters: shown from other clients as U+FFFD (naming.py), and
# invisible besides, so they go as their bytes rather than as a look-alike.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_LOOK_ALIKE = {chr(c): chr(_PICTURES + c) for c in range(1, 0x20)}
_LOOK_ALIKE |= {"\x7f": _DEL_PICTURE, '"': chr(ord('"') + _FULLWIDTH), "\\": chr(ord("\\") + _FULLWIDTH)}
_ORIGINAL = {v: k for k, v in _LOOK_ALIKE.items()}
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_BYTE = re.compile(r"[0-9A-F]{2}")


def _escape_position(text: str, i: int) -> bool:
    """A ``%`` (or ``％``) at ``i`` reads as a percent escape: two hex digits follow."""
    return _HEX2.match(text, i + 1) is not None


def _quoted_bytes(data: bytes) -> str:
    return "".join(f"{QUOTE}{b:02X}" for b in data)


def to_platform(name: str) -> str:
    """The filename a mount name is uploaded as: valid Unicode that survives the upload and the listing.

    Raises ``ValueError`` for what no kernel hands over (empty, ``/``, NUL, a surrogate other than an
    escaped byte).
    """
    if not name or "/" in name or "\x00" in name:
        raise ValueError(f"not a file name: {name!r}")
    out = []
    for i, ch in enumerate(name):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid byte, as surrogateescape carries it
            out.append(_quoted_bytes(bytes([code - 0xDC00])))
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"not a file name a kernel gives: {name!r}")
        elif ch in _BIDI:
            out.append(_quoted_bytes(ch.encode("utf-8")))
        elif ch in _LOOK_ALIKE:
            out.append(_LOOK_ALIKE[ch])
        elif ch == "%" and _escape_position(name, i):
            out.append(_PERCENT_FULL)
        elif ch == QUOTE or ch in _ORIGINAL or (ch == _PERCENT_FULL and _escape_position(name, i)):
            out.append(QUOTE + ch)
        else:
            out.append(ch)
    return "".join(out)


def _decode(filename: str) -> bytes | None:
    out = bytearray()
    i, end = 0, len(filename)
    while i < end:
        ch = filename[i]
        if ch == QUOTE:
            nxt = filename[i + 1 : i + 2]
            if nxt in (QUOTE, _PERCENT_FULL) or nxt in _ORIGINAL:
                out += nxt.encode("utf-8")
                i += 2
                continue
            if _BYTE.fullmatch(filename[i + 1 : i + 3]):
                out.append(int(filename[i + 1 : i + 3], 16))
                i += 3
                continue
            return None  # a quote we never write
        if ch in _ORIGINAL:
            ch = _ORIGINAL[ch]
        elif ch == _PERCENT_FULL and _escape_position(filename, i):
            ch = "%"
        try:
            out += ch.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a listing: not a name we made
            return None
        i += 1
    return bytes(out)


def from_platform(filename: str) -> str | None:
    """The mount name ``filename`` was uploaded as, or None when no mount name encodes to it (a name
    another client gave, shown by ``naming.safe_name``'s rules instead)."""
    raw = _decode(filename)
    if raw is None or not raw or raw in (b".", b"..") or b"/" in raw or b"\x00" in raw or len(raw) > _NAME_MAX:
        return None
    name = raw.decode("utf-8", "surrogateescape")
    return name if to_platform(name) == filename else None
