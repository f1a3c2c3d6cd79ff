"""Byte ranges from pre-signed download URLs, exact whatever the object store does with Range.

A ``download_url`` is its own credential (OSS style ``?Expires=&OSSAccessKeyId=&Signature=``, or a CDN URL
that answers 302), often on a third-party host: the ``Downloader`` has its own session that never sends an
Authorization header, not even one ``~/.netrc`` would add, and not across redirects.

``iter_range(url, start, end)`` yields exactly the bytes ``[start, end)`` (clipped at the end of the object,
as a file read is), and ``iter_into(url, start, buffer)`` receives the same bytes straight into the caller's
buffer (no fresh memory per read: a block cache's buffers are used again and again):

* it asks with ``Range: bytes=start-(end-1)`` and insists on 206 with that ``Content-Range`` (or one that
  stops early exactly at the object's end); any other range is a ``ProtocolError``;
* a server that ignores Range answers 200 with the whole body: the prefix is read and dropped, the bytes
  wanted are yielded, and the connection is closed rather than reading the rest;
* a body that breaks mid-stream (reset, chunked-encoding error, fewer bytes than Content-Length) is resumed
  by asking again for ``[received, end)``. Inside a ``deadline.within`` (a read from the kernel) the whole
  range - connects, body reads, resumes, waits - ends by that deadline: each socket read waits at most the
  time left, so neither a stall nor a trickle can hold the caller past it. Outside one (a background
  stream), each resumption starts a fresh retry budget, because it follows progress;
* the object's size as the download states it (``Content-Range`` total, or a whole answer's length, or a
  416's ``bytes */N``) goes to ``on_total``: a listing may be wrong about it;
* an answer that cannot be the file is a ``BadAnswerError`` before any of its body is yielded: an HTML or
  XML page (a captive portal, a proxy's or CDN's error page served with 200 or 206) for a file not named as
  one, a whole-object answer (200) whose length is not ``size``, the size known (a size an earlier
  download stated, else the file's record), or a ranged answer (206) whose total contradicts a size an
  earlier download stated (``stated``: the bytes under one file id never change). Its caller fetches a
  fresh URL and tries again; such bytes are never yielded, so never cached. A 206's total may contradict
  the record: listings can be wrong, and the object store's ``Content-Range`` is what the bytes are;
* 403 -> ``UrlExpiredError`` at once (the caller fetches a fresh URL via ``retrieve`` and calls again),
  416 -> ``RangeNotSatisfiableError``, 404 -> ``NotFoundError``, 429 -> ``RateLimitError`` and 5xx ->
  ``ServerError`` (both retried), connection failures -> ``TransportError`` (retried). The statuses are
  mapped by ``answers.download_error``, the one module where answers become errors.

Downloads ask for ``Accept-Encoding: identity``: a compressed answer would put Content-Range in a different
byte space from the file's. URLs reach logs and messages only through ``redact_url``.

One exception to "no key": a gateway that gives no ``download_url`` is read through the API's own
``retrieve_content`` endpoint, which needs the key. ``ContentAuth`` signs requests to that one endpoint (same
origin, same path) and strips the header from everything else; redirects never carry it. Its answers may
be a JSON error envelope with HTTP 200 (and a ``Content-Type: application/json`` even on success, as the
docs declare), so a small JSON answer from it is read whole and is an error only when its
``base_resp.status_code`` says so (``answers.content_error``, read as the client reads the same endpoint).
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import socket
import time
from calendar import timegm
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import requests
import tenacity
import urllib3
from requests.auth import AuthBase

from mmfs.api import answers, deadline, watchdog
from mmfs.api.auth import ContentAuth
from mmfs.api.retry import RetryPolicy, connect_retry, retrying
from mmfs.errors import (
    MmfsError,
    ProtocolError,
    RangeNotSatisfiableError,
    TransportError,
    redact_url,
)

__all__ = ["BadAnswerError", "ContentAuth", "Downloader", "url_expires_at"]

log = logging.getLogger("mmfs.api")

# "bytes 0-99/1000" or "bytes 0-99/*"; 416 answers carry "bytes */1000".
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"\s*bytes\s+\*/(\d+)\s*", re.IGNORECASE)
# Bytes read and dropped per step when a server ignores Range and the prefix must be skipped.
SKIP_STEP = 1 << 20
# An XML error body is read (for the log) only up to this size.
ERROR_BODY_LIMIT = 4096
# A JSON answer from retrieve_content up to this size is read whole to rule out an error envelope.
CONTENT_ERROR_LIMIT = 64 * 1024
# What error pages are served as; no file the platform takes is one, unless it is named so (see _error_page).
_PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/xml", "application/xml"})
_PAGE_SUFFIXES = (".html", ".htm", ".xhtml", ".xml", ".svg")


class BadAnswerError(ProtocolError):
    """A download answer that is not the file's bytes (an error page, a body of the wrong size): another URL
    may do better, the same one will not."""


class _NoAuth(AuthBase):
    """Strips Authorization; being the session's auth, it also keeps requests from consulting ~/.netrc."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


class _DownloadSession(requests.Session):
    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        # requests would keep the header on a same-host redirect and add ~/.netrc credentials on another;
        # a download needs neither.
        prepared_request.headers.pop("Authorization", None)


def url_expires_at(url: str) -> float | None:
    """When a signed URL stops working, as Unix time, or None when it does not say.

    Reads OSS's ``Expires`` (absolute), and the relative forms of OSS v4 (``x-oss-date`` +
    ``x-oss-expires``) and S3 (``X-Amz-Date`` + ``X-Amz-Expires``).
    """
    try:
        query = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query)}
    except ValueError:
        return None
    absolute = _number(query.get("expires"))
    if absolute is not None:
        return absolute
    for prefix in ("x-oss-", "x-amz-"):
        start = _signing_time(query.get(prefix + "date"))
        lifetime = _number(query.get(prefix + "expires"))
        if start is not None and lifetime is not None:
            return start + lifetime
    return None


def _number(text: str | None) -> float | None:
    if text is None or not text.strip().isdigit():
        return None
    return float(text)


def _signing_time(text: str | None) -> float | None:
    """``20240101T000000Z`` (the form both OSS v4 and S3 use) as Unix time."""
    if text is None:
        return None
    try:
        return float(timegm(time.strptime(text, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


# What reading a body may raise: urllib3 wraps most socket trouble, but not every path does.
_BODY_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError, TimeoutError)


class _Body:
    """An answer's body, read undecoded into the caller's memory, one socket read at a time.

    Not ``iter_content``: it decodes, and urllib3's decoding read keeps a short read in its buffer when the
    connection then breaks, losing up to a chunk of bytes that did arrive. Not urllib3's ``readinto``
    either: it reads into fresh bytes and copies them. A body of known length that is not chunked (every
    206, most 200s) is received by ``http.client``'s buffered socket reader straight into the caller's
    buffer (``readinto1``: what the reader already holds, else one ``recv_into``); any other body is read
    by urllib3's ``read1`` and copied.

    Each read is one socket read: a read of ``n`` bytes that loops over socket reads, each with the full
    timeout, lets a trickle outlast any bound, and the caller would not see it to judge. With a deadline,
    each read is given only the time left. A body that breaks raises one of ``_BODY_ERRORS``; one that
    ends short of its Content-Length is broken too.
    """

    def __init__(self, resp: requests.Response, timeout: float, until: float | None,
                 whole: bytes | None = None) -> None:
        self._resp = resp
        self._timeout = timeout
        self._until = until
        self._whole = memoryview(whole) if whole is not None else None
        self._plain = _plain_body(resp) if whole is None else None
        self._sock = _socket_of(resp) if until is not None else None

    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes of the body into ``view``; 0 once it has ended."""
        if not view:
            return 0
        if self._whole is not None:
            n = min(len(view), len(self._whole))
            view[:n], self._whole = self._whole[:n], self._whole[n:]
            return n
        if self._until is not None:
            left = self._until - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline reached while reading the body")
            if self._sock is not None:
                self._sock.settimeout(min(self._timeout, left))
        plain = self._plain
        if plain is None:
            data = self._resp.raw.read1(len(view), decode_content=False)
            view[:len(data)] = data
            return len(data)
        remaining = plain.length
        if not remaining:
            return 0
        try:
            n = plain.fp.readinto1(view[:remaining])
        except (OSError, ValueError) as exc:  # a reset, a timeout, a socket shut by the watchdog
            raise ConnectionError(f"body broke: {type(exc).__name__}") from exc
        if not n:
            raise http.client.IncompleteRead(b"", remaining)
        plain.length = remaining - n
        if not plain.length:
            # The whole body is in: hand the connection back to the pool, as urllib3 does after its reads.
            plain.close()
            self._resp.raw.release_conn()
        return n


def _plain_body(resp: requests.Response) -> http.client.HTTPResponse | None:
    """The ``http.client`` answer under ``resp``, when its body can be received straight into memory: of
    known length, not chunked, undecoded, and nothing of it read through urllib3 yet."""
    original = getattr(resp.raw, "_original_response", None)
    if not isinstance(original, http.client.HTTPResponse) or getattr(resp.raw, "_fp", None) is not original:
        return None
    if original.chunked or not original.length or not isinstance(original.fp, io.BufferedReader):
        return None
    if resp.raw.tell() or resp.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    return original


def _socket_of(resp: requests.Response) -> socket.socket | None:
    connection = getattr(resp.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


# Where the bytes at a position of the file go: a writable view (at least one byte long) for the bytes from
# that position on. A block's download gives views into the block; a stream gives one scratch buffer.
Target = Callable[[int], memoryview]


@dataclass
class _OpenRange:
    """One answer being read: its first wanted bytes are in hand (``first`` of them, from ``pos``), the
    rest comes from ``body``."""

    resp: requests.Response
    body: _Body
    first: int
    pos: int
    stop: int
    whole: bool  # HTTP 200: the server ignored Range and sends the object from byte 0
    length_known: bool
    url: str
    at_eof: bool = False

    def take(self, target: Target) -> Iterator[int]:
        """How many wanted bytes each read placed, up to ``stop``; ends early (quietly) when the body breaks.

        A ranged answer is read exactly to its end, which hands the connection back to the pool.
        """
        n, pos = self.first, self.pos
        try:
            while True:
                pos += n
                yield n
                if pos >= self.stop:
                    return
                n = self.body.readinto(target(pos)[:self.stop - pos])
                if not n:
                    # A whole-object answer of unknown length that ended: that was the object's end.
                    self.at_eof = self.whole and not self.length_known
                    return
        except _BODY_ERRORS as exc:
            log.debug("body of %s broke: %s", redact_url(self.url), type(exc).__name__)


class Downloader:
    """Ranged reads of signed URLs. Thread-safe: concurrent calls share only the connection pool."""

    def __init__(
        self,
        *,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen, so one shared default is safe)
        pool_size: int = 16,
        chunk_size: int = 1 << 20,
        timeout: float = 30.0,
        content_auth: ContentAuth | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self._retry = retry
        self._chunk_size = chunk_size
        self._timeout = timeout
        self._content_auth = content_auth
        self._session = _DownloadSession()
        self._whole_hosts: set[str] = set()  # hosts seen answering a Range request with the whole body
        self._range_hosts: set[str] = set()  # hosts seen answering one with 206
        self._session.auth = content_auth or _NoAuth()
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self._verify: str | bool = ca_bundle if ca_bundle is not None else True
        # A few hosts at most: the URL's own, and the one a CDN redirects to.
        adapter = watchdog.GuardedAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=connect_retry())
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def ignores_range(self, url: str) -> bool:
        """Whether ``url``'s host answered a Range request with the whole object (HTTP 200) before."""
        return urlsplit(url).netloc in self._whole_hosts

    def all_honour_range(self) -> bool:
        """Whether some host has answered a Range request, and none ignored one."""
        return bool(self._range_hosts) and not self._whole_hosts

    def knows_range(self, url: str) -> bool:
        """Whether ``url``'s host has answered a Range request yet, one way or the other."""
        host = urlsplit(url).netloc
        return host in self._range_hosts or host in self._whole_hosts

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- ranges -------------------------------------------------------------------------------------
    def iter_range(self, url: str, start: int, end: int, *, until: float | None = None,
                   on_total: Callable[[int], None] | None = None, size: int | None = None,
                   stated: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` of the object at ``url`` (fewer if the object ends first).

        Nothing is requested until the first chunk is asked for; closing the generator early releases the
        connection at once. ``until`` (``time.monotonic()`` time, default: the deadline in force when the
        generator starts) ends the whole range with ``DeadlineError``. ``on_total`` hears the object's size
        from each answer that states it; ``size``, when known, is what a whole-object answer must carry, and
        ``stated`` (a size an earlier download stated) what any answer's total must be.
        """
        if start < 0 or end < start:
            raise ValueError(f"bad range [{start}, {end})")
        scratch = memoryview(bytearray(max(1, min(self._chunk_size, end - start))))
        for n in self._receive(url, start, end, lambda _pos: scratch, until, on_total, (size, stated)):
            yield bytes(scratch[:n])

    def iter_into(self, url: str, start: int, into: bytearray | memoryview, *, until: float | None = None,
                  on_total: Callable[[int], None] | None = None, size: int | None = None,
                  stated: int | None = None) -> Iterator[int]:
        """Receive the bytes ``[start, start + len(into))`` of the object at ``url`` straight into ``into``,
        in order, yielding how many more each socket read placed (fewer in all if the object ends first).
        The same guarantees as ``iter_range``, with no memory of its own per byte: ``into`` is the caller's
        (a block buffer used again and again). Once the whole range is in, every byte of ``into`` is the
        range's: a whole-object answer's prefix passes through it on its way to being dropped, and is
        overwritten."""
        if start < 0:
            raise ValueError(f"bad range [{start}, {start + len(memoryview(into))})")
        view = memoryview(into)
        view = view.cast("B") if view.format != "B" else view
        yield from self._receive(url, start, start + len(view), lambda pos: view[pos - start:], until, on_total,
                                 (size, stated))

    def _receive(self, url: str, start: int, end: int, target: Target, until: float | None,
                 on_total: Callable[[int], None] | None, sizes: tuple[int | None, int | None]) -> Iterator[int]:
        """The bytes ``[start, end)`` placed where ``target`` says, as counts; see ``iter_range``."""
        ends = deadline.earliest(until, deadline.current())
        pos = start
        while pos < end:
            # Opening and reading the first bytes are one retried step: a try that places nothing failed.
            opened = self._retrying(ends)(self._open, url, pos, end, target, ends, on_total, sizes)
            try:
                end = opened.stop  # the object may end before the range did
                for n in opened.take(target):
                    pos += n
                    yield n
                if pos >= end or opened.at_eof:
                    return
                if ends is not None and time.monotonic() >= ends:
                    raise deadline.DeadlineError(
                        f"download of {redact_url(url)}: deadline reached at byte {pos} of [{start}, {end})")
                log.info("download of %s broke at byte %d; asking for the rest", redact_url(url), pos)
            finally:
                opened.resp.close()

    def _open(self, url: str, pos: int, end: int, target: Target, until: float | None = None,
              on_total: Callable[[int], None] | None = None,
              sizes: tuple[int | None, int | None] = (None, None)) -> _OpenRange:
        """Ask for ``[pos, end)`` and read its first wanted bytes into ``target`` (skipping a whole-object
        prefix)."""
        # Headers trickled a byte at a time end at the deadline too; without one (a background stream), the
        # headers and the first piece must come within the request timeout or the retry deadline.
        bound = until if until is not None else time.monotonic() + min(self._timeout, self._retry.deadline)
        with watchdog.guarded(bound):
            return self._open_guarded(url, pos, end, target, until, on_total, sizes)

    def _open_guarded(self, url: str, pos: int, end: int, target: Target, until: float | None,
                      on_total: Callable[[int], None] | None, sizes: tuple[int | None, int | None]) -> _OpenRange:
        timeout = deadline.timeout(self._timeout, until, f"download of {redact_url(url)}")
        resp = self._get(url, {"Range": f"bytes={pos}-{end - 1}"}, timeout)
        try:
            whole = self._content_error_check(url, resp)
            _refuse_wrong_answer(url, resp, *sizes)
            body_pos, stop, length_known = self._check_range_answer(url, resp, pos, end, on_total)
            body = _Body(resp, timeout, until, whole)
            first = 0
            try:
                if body_pos < pos:  # a whole-object answer: read the prefix and drop it
                    self._skip(body, pos - body_pos, target(pos))
                first = body.readinto(target(pos)[:stop - pos])
            except _BODY_ERRORS as exc:
                raise TransportError(f"download of {redact_url(url)} broke: {type(exc).__name__}") from exc
            if not first:
                if resp.status_code == 200 and not length_known:
                    # A whole-object answer of unknown length that ended cleanly: the object is shorter.
                    raise RangeNotSatisfiableError(f"download of {redact_url(url)}: byte {pos} is past the end")
                raise TransportError(f"download of {redact_url(url)} ended before byte {pos}")
            return _OpenRange(resp, body, first, pos, stop, whole=resp.status_code == 200,
                              length_known=length_known, url=url)
        except BaseException:
            resp.close()
            raise

    @staticmethod
    def _skip(body: _Body, count: int, room: memoryview) -> None:
        """Read and drop ``count`` bytes of ``body``, into ``room`` (the caller's, overwritten with the wanted
        bytes next) when it is large enough to take big steps, else into a scratch buffer."""
        if len(room) < min(count, SKIP_STEP):
            room = memoryview(bytearray(min(count, SKIP_STEP)))
        while count:
            n = body.readinto(room[:count])
            if not n:
                return  # the body ended inside the prefix: the first read says so
            count -= n

    def _check_range_answer(self, url: str, resp: requests.Response, pos: int, end: int,
                            on_total: Callable[[int], None] | None = None) -> tuple[int, int, bool]:
        """For an answer to ``bytes=pos-(end-1)``: (offset of the body's first byte, where the wanted bytes
        stop - ``end`` clipped to the object's size -, whether the body's length is known)."""
        status = resp.status_code
        total_seen = _stated_total(resp)
        if total_seen is not None and on_total is not None:
            on_total(total_seen)
        if status in (200, 206) and resp.headers.get("Content-Encoding", "identity").lower() != "identity":
            # Asked for identity; a compressed body's offsets are not the file's.
            raise ProtocolError(f"download of {redact_url(url)}: compressed answer to a range request")
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if match is None:
                raise ProtocolError(f"download of {redact_url(url)}: 206 without a usable Content-Range")
            first, last, total = int(match[1]), int(match[2]), match[3]
            clipped_at_eof = total != "*" and last + 1 == int(total) and last + 1 < end
            if first != pos or (last + 1 != end and not clipped_at_eof):
                raise ProtocolError(
                    f"download of {redact_url(url)}: asked for bytes {pos}-{end - 1}, got {first}-{last}"
                )
            self._range_hosts.add(urlsplit(url).netloc)
            return pos, last + 1, True
        if status == 200:
            # The whole object, from byte 0: Range was ignored.
            if urlsplit(url).netloc not in self._whole_hosts:
                log.warning("download host %s ignores Range: files from it are read as whole streams",
                            urlsplit(url).netloc)
                self._whole_hosts.add(urlsplit(url).netloc)
            length = resp.headers.get("Content-Length", "")
            if not length.isdigit():
                return 0, end, False
            total = int(length)
            if pos >= total:
                raise RangeNotSatisfiableError(
                    f"download of {redact_url(url)}: byte {pos} is past the end ({total})"
                )
            return 0, min(end, total), True
        raise self._status_error(url, resp)

    # --- sizes --------------------------------------------------------------------------------------
    def probe_size(self, url: str) -> int:
        """The object's size: HEAD's Content-Length, else the total of a ``bytes=0-0`` answer.

        OSS signs the method into the URL, so a GET-signed URL may refuse HEAD (403): that falls back too.
        """
        with deadline.within(self._retry.deadline), watchdog.guarded():  # tries and waits together
            return self._retrying()(self._probe_size, url)

    def _probe_size(self, url: str) -> int:
        try:
            # An API endpoint may take no HEAD; its JSON error envelope must be seen, which HEAD hides.
            if not self._is_content(url):
                with self._request("HEAD", url, {}) as resp:
                    length = resp.headers.get("Content-Length", "")
                    if resp.status_code == 200 and length.isdigit() and not resp.headers.get("Content-Encoding"):
                        return int(length)
        except MmfsError as exc:
            if exc.retryable:
                raise
        with self._get(url, {"Range": "bytes=0-0"}) as resp:
            self._content_error_check(url, resp)
            if resp.status_code == 206:
                match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if match is None or match[3] == "*":
                    raise ProtocolError(f"size of {redact_url(url)}: 206 without a total in Content-Range")
                return int(match[3])
            if resp.status_code == 200:
                length = resp.headers.get("Content-Length", "")
                if length.isdigit():
                    return int(length)  # closing without reading drops the body
                raise ProtocolError(f"size of {redact_url(url)}: 200 without Content-Length")
            if resp.status_code == 416:  # only an empty object cannot satisfy bytes=0-0
                match = _UNSATISFIED_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if match is not None:
                    return int(match[1])
            raise self._status_error(url, resp)

    # --- the API's retrieve_content as a download URL --------------------------------------------------
    def _is_content(self, url: str) -> bool:
        return self._content_auth is not None and self._content_auth.covers(url)

    def _content_error_check(self, url: str, resp: requests.Response) -> bytes | None:
        """For a retrieve_content answer: raise the error a JSON envelope carries; else the body if it had
        to be read whole to know (None when nothing was read)."""
        if not self._is_content(url) or resp.status_code not in (200, 206):
            return None
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        length = resp.headers.get("Content-Length", "")
        if content_type != "application/json" or not length.isdigit() or int(length) > CONTENT_ERROR_LIMIT:
            return None
        try:
            whole = resp.raw.read(CONTENT_ERROR_LIMIT + 1, decode_content=False) or b""
        except _BODY_ERRORS as exc:
            raise TransportError(f"retrieve_content answer broke: {type(exc).__name__}") from exc
        error = answers.content_error(whole, resp.headers.get("Trace-Id"))
        if error is not None:  # read as the client reads its own retrieve_content answers
            file_id = dict(parse_qsl(urlsplit(url).query)).get("file_id")
            raise answers.about_one_file(error, "retrieve_content", file_id)
        return whole

    # --- HTTP ---------------------------------------------------------------------------------------
    def _retrying(self, until: float | None = None) -> tenacity.Retrying:
        return retrying(self._retry, before_sleep=_log_retry, until=until)

    def _get(self, url: str, headers: dict[str, str], timeout: float | None = None) -> requests.Response:
        return self._request("GET", url, headers, timeout)

    def _request(self, method: str, url: str, headers: dict[str, str], timeout: float | None = None
                 ) -> requests.Response:
        headers = {"Accept-Encoding": "identity", **headers}
        if timeout is None:
            timeout = deadline.timeout(self._timeout, what=f"{method} {redact_url(url)}")
        try:
            return self._session.request(
                method, url, headers=headers, stream=True, timeout=timeout, allow_redirects=True,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            raise TransportError(f"{method} {redact_url(url)}: {type(exc).__name__}") from exc

    def _status_error(self, url: str, resp: requests.Response) -> MmfsError:
        return answers.download_error(
            resp.status_code, redact_url(url), oss_code=_oss_code(resp),
            trace_id=resp.headers.get("x-oss-request-id") or resp.headers.get("Trace-Id"),
            retry_after=answers.retry_after_seconds(resp.headers.get("Retry-After")),
        )


def _error_page(url: str, resp: requests.Response) -> bool:
    """Whether a 200/206 answer is a page rather than a file: typed as HTML or XML, for a file whose name (the
    URL's last segment) does not say it is one."""
    content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type not in _PAGE_TYPES:
        return False
    name = urlsplit(url).path.rsplit("/", 1)[-1].lower()
    return not name.endswith(_PAGE_SUFFIXES)


def _refuse_wrong_answer(url: str, resp: requests.Response, size: int | None, stated: int | None) -> None:
    """``BadAnswerError`` for an answer whose bytes cannot be the file's (see the module docstring)."""
    if resp.status_code not in (200, 206):
        return
    if _error_page(url, resp):
        raise BadAnswerError(f"download of {redact_url(url)} answered an error page "
                             f"({resp.headers.get('Content-Type')}, HTTP {resp.status_code}), not the file")
    total = _stated_total(resp)
    expected = stated if resp.status_code == 206 or stated is not None else size
    if expected is not None and total is not None and total != expected:
        raise BadAnswerError(f"download of {redact_url(url)} says the file has {total} bytes, not {expected}")


def _stated_total(resp: requests.Response) -> int | None:
    """The object's size as an answer states it: a 206's or 416's Content-Range total, a 200's length."""
    if resp.status_code in (206, 416):
        text = resp.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.fullmatch(text) or _UNSATISFIED_RANGE.fullmatch(text)
        total = match[match.lastindex] if match else None  # the last group is the total in both forms
        return int(total) if total and total.isdigit() else None
    if resp.status_code == 200 and not resp.headers.get("Content-Encoding"):
        length = resp.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None
    return None


def _oss_code(resp: requests.Response) -> str:
    """The ``<Code>`` of an OSS XML error body, if any (read capped; the response is closed by the caller)."""
    try:
        head = resp.raw.read(ERROR_BODY_LIMIT, decode_content=False) or b""
    except Exception:  # an unreadable error body only loses the detail
        return ""
    match = re.search(rb"<Code>([A-Za-z0-9_.-]{1,64})</Code>", head)
    return match[1].decode() if match else ""


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    log.info("download try %d failed (%s); retrying in %.2fs", state.attempt_number, exc, state.upcoming_sleep)
