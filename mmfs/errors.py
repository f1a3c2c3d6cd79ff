"""One exception tree for all of mmfs, rooted in OSError.

Every class carries the errno that the FUSE adapter hands to the kernel, so the mapping from
"what went wrong" to "what the reader sees" lives here and nowhere else; which class an HTTP answer stands
for (its status, its ``base_resp.status_code``) is decided in ``mmfs.api.answers``. ``retryable`` says
whether a retry policy may try the same call again; it is a property of the failure, not of the caller.

Messages never contain the API key or a signed download URL's query string: callers pass
``redact_url(url)`` when a URL belongs in a message.
"""

from __future__ import annotations

import errno
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
    "redact_url",
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
