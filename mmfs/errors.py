"""One exception tree for all of mmfs, rooted in OSError.

Every class carries the errno that the FUSE adapter hands to the kernel, so the mapping from
"what went wrong" to "what the reader sees" lives here and nowhere else. ``retryable`` says whether a
retry policy may try the same call again; it is a property of the failure, not of the caller.

Messages never contain the API key or a signed download URL's query string: callers pass
``redact_url(url)`` when a URL belongs in a message.
"""

from __future__ import annotations

import errno
import re
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "AuthError",
    "ContentRefusedError",
    "FileTooLargeError",
    "InvalidParamsError",
    "MmfsError",
    "NotFoundError",
    "ProtocolError",
    "QuotaError",
    "RangeNotSatisfiableError",
    "RateLimitError",
    "ReadOnlyError",
    "ServerError",
    "TransportError",
    "UnsupportedFormatError",
    "UrlExpiredError",
    "error_for_status",
    "is_bare_refusal",
    "redact_url",
    "says_not_found",
]


class MmfsError(OSError):
    """Base of every error mmfs raises on purpose."""

    errno_code: ClassVar[int] = errno.EIO
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status_code: int | None = None, trace_id: str | None = None) -> None:
        super().__init__(self.errno_code, message)
        self.message = message
        self.status_code = status_code
        self.trace_id = trace_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"status {self.status_code}")
        if self.trace_id:
            parts.append(f"Trace-Id {self.trace_id}")
        return "; ".join(parts)

    def __reduce__(self):  # OSError's pickling would drop our keyword arguments
        return (_rebuild, (type(self), self.message, self.status_code, self.trace_id))


def _rebuild(cls: type[MmfsError], message: str, status_code: int | None, trace_id: str | None) -> MmfsError:
    return cls(message, status_code=status_code, trace_id=trace_id)


class AuthError(MmfsError):
    """The platform refused the key (1004, 2049): fatal at mount time, EACCES afterwards."""

    errno_code = errno.EACCES


class RateLimitError(MmfsError):
    """1002 / 1039 / 1041 / 2045 / HTTP 429: back off and try again. EIO once the retries are spent."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(MmfsError):
    """1000, 1001, 1013, 1024, 1033 and HTTP 5xx: the platform's own trouble, worth a retry."""

    retryable = True


class TransportError(MmfsError):
    """Connection refused or reset, a timeout, a body cut short: the network's trouble."""

    retryable = True


class ProtocolError(MmfsError):
    """An answer that is not what the API promises (not JSON, no file_id, a wrong Content-Range)."""


class NotFoundError(MmfsError):
    errno_code = errno.ENOENT


class InvalidParamsError(MmfsError):
    """2013: a purpose, file_id or format the platform does not accept."""

    errno_code = errno.EINVAL


class UnsupportedFormatError(InvalidParamsError):
    """An upload whose format the purpose does not take (known before uploading, or refused after)."""


class QuotaError(MmfsError):
    """1008 insufficient balance, 2056 usage limit, 1028/1030 quota exhausted, 2061 not on the plan."""

    errno_code = errno.EDQUOT


class ContentRefusedError(MmfsError):
    """1026 / 1027: content flagged as sensitive."""

    errno_code = errno.EACCES


class FileTooLargeError(MmfsError):
    errno_code = errno.EFBIG


class ReadOnlyError(MmfsError):
    """A write where none is possible: a purpose that takes no uploads, or a --read-only mount."""

    errno_code = errno.EACCES


class UrlExpiredError(MmfsError):
    """A download URL answered 403: it expired (or was never valid). Fetch a fresh one and go on."""

    errno_code = errno.EACCES


class RangeNotSatisfiableError(MmfsError):
    """HTTP 416: the range starts at or past the end of the object."""

    errno_code = errno.EINVAL


# 2045 is the rate *growth* limit: the same cure as a plain rate limit, backing off.
_RATE_LIMIT_CODES = frozenset({1002, 1039, 1041, 2045})
_SERVER_CODES = frozenset({1000, 1001, 1013, 1024, 1033})
_AUTH_CODES = frozenset({1004, 2049})
# 1028/1030 read as "quota exhausted" by the platform's own CLI; 2061: the feature is not on the plan.
_QUOTA_CODES = frozenset({1008, 1028, 1030, 2056, 2061})
# Seen handled in the platform's clients with meanings that vary by endpoint: EIO with the platform's own
# message, never retried (a retry cannot change the verdict). Listed so the choice is deliberate.
_REPORTED_CODES = frozenset({1042, 1043, 1044, 2037, 2039, 2042, 2048, 20132})
_CONTENT_CODES = frozenset({1026, 1027})


def error_for_status(code: int, message: str, *, trace_id: str | None = None) -> MmfsError:
    """Map a non-zero ``base_resp.status_code`` to its exception (not raised, returned)."""
    cls: type[MmfsError]
    if code in _AUTH_CODES:
        cls = AuthError
    elif code in _RATE_LIMIT_CODES:
        cls = RateLimitError
    elif code in _SERVER_CODES:
        cls = ServerError
    elif code in _QUOTA_CODES:
        cls = QuotaError
    elif code in _CONTENT_CODES:
        cls = ContentRefusedError
    elif code == 2013:
        cls = InvalidParamsError
    elif code in _REPORTED_CODES:
        cls = MmfsError
    else:
        # An unknown code is the platform's doing, not ours; EIO without retries is the honest answer.
        cls = MmfsError
    return cls(message or f"platform error {code}", status_code=code, trace_id=trace_id)


def redact_url(url: str) -> str:
    """A URL fit for logs and messages: signed URLs carry their credential in the query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    query = "<redacted>" if parts.query else ""
    netloc = parts.netloc
    if "@" in netloc:  # a gateway URL's user:password is a credential too
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}" if ":" in userinfo else netloc
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# What an answer about one file says when the file is not there: the platform's own words vary (2013
# "invalid params, file not found", 1000 "unknown error, file not found", a 404 page).
_NOT_FOUND_WORDS = re.compile(r"not\s*found|not\s*exist|no such|unknown file|deleted", re.IGNORECASE)
# A 2013 that says nothing more than that: on a call naming one file, the id is what was wrong.
_BARE_INVALID = re.compile(r"\s*(invalid\s*param(eter)?s?|bad request|params? error)?\s*[.!]?\s*", re.IGNORECASE)


def says_not_found(message: str) -> bool:
    """Whether a platform message says the thing asked about does not exist."""
    return bool(_NOT_FOUND_WORDS.search(message or ""))


def is_bare_refusal(message: str) -> bool:
    """Whether a 2013's message names no cause (then, on a call naming one file, the id is the cause)."""
    return bool(_BARE_INVALID.fullmatch(message or ""))
