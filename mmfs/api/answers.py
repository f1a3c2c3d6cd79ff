"""How an HTTP answer becomes a record's body or an error: the one mapping, as pure functions.

Nothing here sends or reads a request: each function takes what an answer said (its HTTP status, its body
as bytes or parsed JSON, its ``Trace-Id`` and ``Retry-After``) and returns the body or the ``MmfsError`` it
stands for, whose class carries the errno the kernel sees. ``ApiClient`` (the JSON endpoints) and
``Downloader`` (download URLs, and ``retrieve_content`` read as one) read every answer through them, so an
answer means the same whichever door it came in by, and the rules are tested without a server.

The rules, from the API reference:

* a non-zero ``base_resp.status_code`` is the platform's verdict, whatever the HTTP status (an upload refusal
  comes as HTTP 400 or as HTTP 200, and both read the same): ``status_error`` maps the code;
* otherwise, for the API: 429 -> ``RateLimitError``, 5xx -> ``ServerError``, 401/403 -> ``AuthError``, 400 ->
  ``InvalidParamsError``, 413 -> ``FileTooLargeError``, 404 -> ``NotFoundError`` on a call naming one file,
  ``ProtocolError`` elsewhere (a wrong base URL); a 2xx that is not a JSON object -> ``ProtocolError``;
* for a download URL: 403 -> ``UrlExpiredError``, 404 -> ``NotFoundError``, 416 ->
  ``RangeNotSatisfiableError``, 429 -> ``RateLimitError``, 5xx -> ``ServerError``, else ``ProtocolError``;
* on a call naming one file: a 2013 that says the file is not found, or nothing more than "invalid params",
  means the id is unknown (``NotFoundError``); a 2013 naming another cause (a gateway's "model must be ...")
  is a refusal shown with its words; any other code whose words say "not found" (1000 "unknown error, file
  not found") is ``NotFoundError`` at once, not retried. Delete keeps a 2013 as it is: the same code means an
  unknown id, a wrong purpose and a purpose that takes no deletes, and only its caller knows which it expects;
* a ``retrieve_content`` body is the file whatever its type; it is an error only when it is a JSON object with
  a ``base_resp`` whose ``status_code`` is a non-zero number (a JSON file is still a file);
* a retryable error keeps the answer's ``Retry-After``; every error keeps its ``Trace-Id``.
"""

from __future__ import annotations

import json
import math
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

from mmfs.errors import (
    AuthError,
    ContentRefusedError,
    FileTooLargeError,
    InvalidParamsError,
    MmfsError,
    NotFoundError,
    ProtocolError,
    QuotaError,
    RangeNotSatisfiableError,
    RateLimitError,
    ServerError,
    UrlExpiredError,
)

__all__ = [
    "FILE_CALLS",
    "INVALID_PARAMS",
    "NOT_JSON",
    "about_one_file",
    "api_answer",
    "check_base_resp",
    "content_error",
    "download_error",
    "envelope_error",
    "http_error",
    "is_bare_refusal",
    "load_json",
    "retry_after_seconds",
    "says_not_found",
    "status_error",
]

# Platform status for "invalid parameters": a purpose, file id or format it does not take.
INVALID_PARAMS = 2013
# 2045 is the rate *growth* limit: the same cure as a plain rate limit, backing off.
_RATE_LIMIT_CODES = frozenset({1002, 1039, 1041, 2045})
_SERVER_CODES = frozenset({1000, 1001, 1013, 1024, 1033})
_AUTH_CODES = frozenset({1004, 2049})
# 1028/1030 read as "quota exhausted" by the platform's own CLI; 2061: the feature is not on the plan.
_QUOTA_CODES = frozenset({1008, 1028, 1030, 2056, 2061})
_CONTENT_CODES = frozenset({1026, 1027})
# Seen handled in the platform's clients with meanings that vary by endpoint: EIO with the platform's own
# message, never retried (a retry cannot change the verdict). Listed so the choice is deliberate.
_REPORTED_CODES = frozenset({1042, 1043, 1044, 2037, 2039, 2042, 2048, 20132})

# The calls that name one file.
FILE_CALLS = frozenset({"retrieve", "retrieve_content", "delete"})

# Returned by ``load_json`` for a body that is not JSON (an HTML page, an empty body).
NOT_JSON: Any = object()

# What an answer about one file says when the file is not there: the platform's own words vary (2013
# "invalid params, file not found", 1000 "unknown error, file not found", a 404 page).
_NOT_FOUND_WORDS = re.compile(r"not\s*found|not\s*exist|no such|unknown file|deleted", re.IGNORECASE)
# A 2013 that says nothing more than that (or nothing: ``status_error`` names a wordless code itself): on a
# call naming one file, the id is what was wrong.
_BARE_INVALID = re.compile(r"\s*(invalid\s*param(eter)?s?|bad request|params? error|platform error 2013)?\s*[.!]?\s*",
                           re.IGNORECASE)
# A status code as text: "2013", " -1 ", "- 5" (the digits are ASCII; 64 of them at most, so int() is cheap).
_CODE_TEXT = re.compile(r"\s*(-?)\s*([0-9]{1,64})\s*")


def says_not_found(message: str) -> bool:
    """Whether a platform message says the thing asked about does not exist."""
    return bool(_NOT_FOUND_WORDS.search(message or ""))


def is_bare_refusal(message: str) -> bool:
    """Whether a 2013's message names no cause (then, on a call naming one file, the id is the cause)."""
    return bool(_BARE_INVALID.fullmatch(message or ""))


def status_error(code: int, message: str, *, trace_id: str | None = None) -> MmfsError:
    """The error a non-zero ``base_resp.status_code`` stands for (returned, not raised)."""
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
    elif code == INVALID_PARAMS:
        cls = InvalidParamsError
    elif code in _REPORTED_CODES:
        cls = MmfsError
    else:
        # An unknown code is the platform's doing, not ours; EIO without retries is the honest answer.
        cls = MmfsError
    return cls(message or f"platform error {code}", status_code=code, trace_id=trace_id)


def load_json(content: bytes) -> object:
    """A body parsed as JSON, or ``NOT_JSON``. A UTF-8 byte order mark is skipped."""
    try:
        # surrogateescape: one invalid UTF-8 byte in one filename must not make the whole listing unreadable;
        # the bad byte reaches naming as a lone surrogate, which names it visibly.
        return json.loads(content.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape"))
    except ValueError:
        return NOT_JSON


def _status_code(value: object) -> int | None:
    """A ``status_code`` as a whole number: an int, an integral float, or a decimal string of at most 64
    digits, any of them negative; None for anything else (``True`` is no code)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        match = _CODE_TEXT.fullmatch(value)
        return int(match[1] + match[2]) if match else None
    return None


def envelope_error(body: object, trace_id: str | None = None) -> MmfsError | None:
    """The error a JSON answer's ``base_resp`` carries, or None for success.

    A body without ``base_resp`` (or with a null one, or a null status) is success: the success bodies are
    what matters, and gateways have been seen to drop the envelope. A body that is not a JSON object, or a
    ``base_resp`` whose status cannot be read as a number, is a ``ProtocolError``.
    """
    if not isinstance(body, dict):
        shown = "not JSON" if body is NOT_JSON else type(body).__name__
        return ProtocolError(f"answer is {shown}, not a JSON object", trace_id=trace_id)
    base = body.get("base_resp")
    if base is None:
        return None
    if not isinstance(base, dict):
        return ProtocolError(f"base_resp is {type(base).__name__}, not a JSON object", trace_id=trace_id)
    raw_code = base.get("status_code", 0)
    if raw_code is None:
        return None
    code = _status_code(raw_code)
    if code is None:
        return ProtocolError(f"base_resp.status_code is not a number ({raw_code!r:.40})", trace_id=trace_id)
    if code == 0:
        return None
    message = base.get("status_msg")
    return status_error(code, message if isinstance(message, str) else "", trace_id=trace_id)


def check_base_resp(body: object, trace_id: str | None) -> None:
    """Raise ``envelope_error``'s error, if there is one."""
    error = envelope_error(body, trace_id)
    if error is not None:
        raise error


def http_error(op: str, status: int, body: object, *, trace_id: str | None = None,
               retry_after: float | None = None) -> MmfsError:
    """The error a non-2xx answer to API call ``op`` stands for; ``body`` as ``load_json`` gave it."""
    error: MmfsError | None = None
    if isinstance(body, dict):
        verdict = envelope_error(body, trace_id)
        if verdict is not None and verdict.status_code is not None:  # a platform verdict, not a bad envelope
            error = verdict
    if error is None:
        cls: type[MmfsError]
        if status == 429:
            cls = RateLimitError
        elif status >= 500:
            cls = ServerError
        elif status in (401, 403):
            cls = AuthError
        elif status == 400:
            cls = InvalidParamsError
        elif status == 413:
            cls = FileTooLargeError
        elif status == 404 and op in FILE_CALLS:
            cls = NotFoundError
        else:
            cls = ProtocolError
        error = cls(f"{op}: HTTP {status}", trace_id=trace_id)
    if status == 429 and not isinstance(error, RateLimitError):
        error = RateLimitError(error.message, status_code=error.status_code, trace_id=trace_id)
    return _with_retry_after(error, retry_after)


def api_answer(op: str, status: int, content: bytes, *, trace_id: str | None = None,
               retry_after: float | None = None) -> dict[str, Any]:
    """The checked JSON object of an answer to API call ``op``; raises the error it stands for."""
    body = load_json(content)
    if not 200 <= status < 300:
        raise http_error(op, status, body, trace_id=trace_id, retry_after=retry_after)
    if body is NOT_JSON:
        raise ProtocolError(f"{op}: answer is not JSON (HTTP {status})", trace_id=trace_id)
    check_base_resp(body, trace_id)
    return body  # check_base_resp refuses anything but an object


def content_error(content: bytes, trace_id: str | None = None) -> MmfsError | None:
    """The error a 2xx ``retrieve_content`` body carries, or None when the body is the file's bytes."""
    body = load_json(content)
    if not isinstance(body, dict) or not isinstance(body.get("base_resp"), dict):
        return None
    code = _status_code(body["base_resp"].get("status_code"))
    if not code:
        return None
    message = body["base_resp"].get("status_msg")
    return status_error(code, message if isinstance(message, str) else "", trace_id=trace_id)


def about_one_file(error: MmfsError, op: str, file_id: str | None = None) -> MmfsError:
    """``error`` as the answer to ``op``, a call naming one file (``file_id`` when known): see the module
    docstring for when an unknown id or a "not found" becomes ``NotFoundError``."""
    if op not in FILE_CALLS or isinstance(error, NotFoundError):
        return error
    message = error.message
    code, trace_id = error.status_code, error.trace_id
    if isinstance(error, InvalidParamsError) and code == INVALID_PARAMS:
        if op == "delete":
            return error
        subject = f"file {file_id}" if file_id else op
        if says_not_found(message) or is_bare_refusal(message):
            return NotFoundError(f"{subject}: {message}", status_code=code, trace_id=trace_id)
        return InvalidParamsError(f"{subject}: the platform (or a gateway in front of it) refused the request: "
                                  f"{message}", status_code=code, trace_id=trace_id)
    if not isinstance(error, InvalidParamsError) and code is not None and says_not_found(message):
        return NotFoundError(f"{op}: {message}", status_code=code, trace_id=trace_id)
    return error


def download_error(status: int, where: str, *, oss_code: str = "", trace_id: str | None = None,
                   retry_after: float | None = None) -> MmfsError:
    """The error a download URL's non-2xx answer stands for. ``where`` is the URL as it may be shown
    (redacted); ``oss_code`` the ``<Code>`` of an object store's XML error body."""
    detail = f"{where}: HTTP {status}" + (f" {oss_code}" if oss_code else "")
    error: MmfsError
    if status == 403:
        error = UrlExpiredError(f"download URL refused (expired?) {detail}", trace_id=trace_id)
    elif status == 416:
        error = RangeNotSatisfiableError(f"range not satisfiable {detail}", trace_id=trace_id)
    elif status == 404:
        error = NotFoundError(f"download object gone {detail}", trace_id=trace_id)
    elif status == 429:
        error = RateLimitError(f"download throttled {detail}", trace_id=trace_id)
    elif status >= 500:
        error = ServerError(f"download failed {detail}", trace_id=trace_id)
    else:
        error = ProtocolError(f"download answered {detail}", trace_id=trace_id)
    return _with_retry_after(error, retry_after)


def _with_retry_after(error: MmfsError, retry_after: float | None) -> MmfsError:
    if retry_after is not None and error.retryable:
        # RateLimitError declares retry_after; a 503's ServerError carries it the same way.
        error.retry_after = retry_after  # type: ignore[attr-defined]
    return error


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``: a number of seconds or an HTTP date; None when it
    says nothing usable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(seconds, 0.0) if seconds == seconds else None  # NaN is no answer
