"""HTTP Range arithmetic and the object store's answers, as OSS gives them.

Ranges here are half-open ``[start, end)``; only the HTTP headers are inclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import escape

__all__ = ["RangePlan", "content_disposition", "oss_error_xml", "plan_range"]

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class RangePlan:
    status: int  # 200 whole body, 206 partial, 416 unsatisfiable
    start: int
    end: int  # exclusive


def plan_range(header: str | None, total: int, *, ignore: bool = False) -> RangePlan:
    """What to send for a ``Range`` header over a body of ``total`` bytes.

    A header that does not parse, or asks for several ranges, is ignored (RFC 9110 allows that): the whole
    body with 200, as OSS does.
    """
    whole = RangePlan(200, 0, total)
    if ignore or not header:
        return whole
    match = _RANGE.match(header)
    if match is None:
        return whole
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return whole
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or total == 0:
            return RangePlan(416, 0, 0)
        return RangePlan(206, max(0, total - n), total)
    start = int(first)
    if last and int(last) < start:
        return whole
    if start >= total:
        return RangePlan(416, 0, 0)
    end = min(total, int(last) + 1) if last else total
    return RangePlan(206, start, end)


def oss_error_xml(code: str, message: str, request_id: str) -> bytes:
    """An error body shaped like OSS's (what a client meets on an expired or tampered URL)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error>\n"
        f"  <Code>{escape(code)}</Code>\n"
        f"  <Message>{escape(message)}</Message>\n"
        f"  <RequestId>{escape(request_id)}</RequestId>\n"
        "  <HostId>minimax-files-emulator.oss-cn-hangzhou.aliyuncs.com</HostId>\n"
        "</Error>\n"
    ).encode()


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in RFC 5987 form.

    HTTP headers must be latin-1; names may hold anything, so the plain form keeps only safe ASCII.
    """
    base = filename.rsplit("/", 1)[-1]
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in base) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"
