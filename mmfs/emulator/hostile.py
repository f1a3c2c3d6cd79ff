"""Hostile filenames for the ``hostile_names`` switch: every form of name a client must survive.

The platform stores whatever filename an upload carried, and a listing hands it back as JSON, so a client
may meet names no file system can hold. With the switch on, list answers rename each file after its rank
(by file id) in this table, and are encoded so that a lone surrogate goes out as the JSON escape
``\\ud800`` and the invalid-UTF-8 entry as a raw ``0xFF`` byte in the body.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["HOSTILE_NAMES", "encode_hostile_json", "hostile_name"]

HOSTILE_NAMES: tuple[str, ...] = (
    "\ud800 lone surrogate.txt",  # a JSON escape no UTF-8 string can hold
    "bad \udcff byte.txt",  # sent as the raw byte 0xFF: the body is not valid UTF-8
    "\u202egnp.exe",  # RTL override: displays as "exe.png"
    "nul\x00name.txt",
    "..",
    "a/b.txt",
    "",
    "x" * 300 + ".txt",
    "same.txt",
    "same.txt",
    "\udbff lone surrogate.txt",  # differs from the first only in its lone surrogate
)

# Lone surrogates that surrogateescape cannot turn into a byte: these go out as JSON escapes.
_ESCAPED = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def hostile_name(rank: int) -> str:
    return HOSTILE_NAMES[rank % len(HOSTILE_NAMES)]


def encode_hostile_json(obj: Any) -> bytes:
    """``obj`` as JSON bytes that keep its lone surrogates: U+DC80..U+DCFF as the raw bytes 0x80..0xFF they
    stand for (surrogateescape), every other one as a ``\\uXXXX`` escape."""
    text = json.dumps(obj, ensure_ascii=False)
    text = _ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode("utf-8", "surrogateescape")
