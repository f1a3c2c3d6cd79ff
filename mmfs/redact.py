"""One filter between every log record and its handler: no URL query, signature or API key gets through.

Third-party loggers (urllib3's retry warnings, requests, diskcache, mfusepy) write whole URLs, and a signed
download URL's query *is* a credential. The filter sits on the handlers, so it sees records from every
logger that propagates to them, and rewrites the finished text - message, arguments, exception and stack -
rather than trusting each caller to have redacted its arguments.

What mmfs prints to the terminal passes the same filter (``RedactingStream`` on ``sys.stderr``): an
error's text may quote a base URL with ``user:password@`` or a library's message with a signed query.

Log files are opened owner-only from their first byte (``open_private_log``): a file created with the
usual umask would be readable by everyone for as long as it exists, and a reader that opened it then
keeps reading after a later chmod.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

__all__ = ["RedactingFilter", "RedactingStream", "add_secret", "one_line", "open_private_log", "redact"]

_MASK = "***"
# A query string: from "?" to the end of the URL or quoted word it belongs to.
_QUERY = re.compile(r"\?[^\s\"'<>`]+")
# Signing fields wherever they appear (a URL without its "?", a header echoed into a message).
_SIGNING = re.compile(
    r"(?i)\b(?:signature|expires|ossaccesskeyid|x-(?:oss|amz)-[a-z-]+|access_?key(?:_?id)?|token)=[^\s&\"'<>]*"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',]+")
# The password of a URL's user part: scheme://user:PASSWORD@host.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
# Secrets shorter than this are not masked: masking "a" would shred every message.
_MIN_SECRET = 6

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def add_secret(secret: str) -> None:
    """Mask ``secret`` (the API key) wherever it appears in a log line from now on."""
    secret = secret.strip()
    if len(secret) >= _MIN_SECRET:
        with _secrets_lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """``text`` without URL queries, signing fields, bearer tokens or registered secrets."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    if "?" in text:
        text = _QUERY.sub("?…", text)
    text = _SIGNING.sub("<redacted>", text)
    if "@" in text:
        text = _USERINFO.sub(rf"\1{_MASK}@", text)  # the field's name goes too: it is what a grep looks for
    return _BEARER.sub(lambda m: f"{m[1]} {_MASK}", text)


# C0 and C1 controls and DEL: a platform filename holding one must not forge a log line or drive a terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}


def one_line(text: str) -> str:
    """``text`` with control characters (new lines, escapes) shown as ``\\xNN``."""
    return text.translate(_CONTROLS)


class RedactingFilter(logging.Filter):
    """Rewrites each record into its redacted, fully formatted text (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string still gets logged, as logging itself would
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = one_line(redact(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingStream:
    """A text stream that redacts each piece written to it before passing it on (``sys.stderr``). Pieces,
    not lines: a progress bar's carriage-return updates must go out as they come; ``print`` writes a
    message in one piece."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding: the stream's own
        return getattr(self._stream, name)


def open_private_log(path: Path) -> int:
    """Open ``path`` for appending as 0600, creating it so; an existing file is narrowed to 0600 too.

    Returns the descriptor; the caller owns it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd
