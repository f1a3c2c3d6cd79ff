"""The File Management API's JSON endpoints as typed calls: list, retrieve, upload, delete, content.

One ``requests.Session`` per client, its pool sized for the callers' parallelism. The key rides on each
request as ``Authorization: Bearer`` through a per-request auth object that only signs requests to the
``base_url`` origin, and the session strips the header from any redirect that leaves that origin (requests'
default would then add ``~/.netrc`` credentials for the new host). The key is never a session default, never
in a URL, log line or message.

How answers become errors: transport failures (refused, reset, timeout, body cut) -> ``TransportError``
(retried); every answer that came is read by ``mmfs.api.answers``, the one mapping from an HTTP status and a
``base_resp`` to an error, shared with the ``Downloader``; a 2xx body that lacks what the call promises ->
``ProtocolError``. Every error built from an answer keeps its ``Trace-Id``. Retried calls go through
``retry.retrying``.

Answers are bounded in memory whatever the server sends: every request asks for ``Accept-Encoding:
identity``; a JSON answer is read undecoded up to ``API_BODY_LIMIT`` (a larger one is a ``ProtocolError``
that says so), and one that comes compressed anyway (gzip or deflate) is inflated to that limit and no
further, so a kilobyte of gzip cannot become gigabytes.

The base URL may carry a path (gateways proxy the API under ``<host>/minimaxi/v1/files/...``). A retrieve
answer without a ``download_url`` (some gateways give none) gets the file's ``retrieve_content`` URL in its
place: the ``Downloader`` reads it like any other, with the key attached by ``content_auth()`` to exactly
that endpoint and nothing else.

Uploads are not idempotent. After an *ambiguous* failure (the body went out but no answer came back: a cut
connection, a read timeout, a 5xx) the upload may have landed, so the next try first lists the purpose and
returns the file it finds: same filename and size, created no earlier than the upload began (minus a slack
for clock skew), and absent from a listing taken before the first try. A purpose the platform will not list
(2013) cannot be checked that way, so for it only unambiguous failures are retried.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import mimetypes
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import requests
import tenacity
import urllib3
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.fields import RequestField
from urllib3.filepost import encode_multipart_formdata

from mmfs.api import answers, deadline, watchdog
from mmfs.api.auth import ContentAuth, OriginAuth, url_origin
from mmfs.api.bwlimit import RateLimit, ThrottledReader
from mmfs.api.records import (
    FileRecord,
    normalize_file_id,
    parse_file_list,
    parse_file_record,
)
from mmfs.api.retry import RetryPolicy, connect_retry, retrying
from mmfs.errors import (
    AuthError,
    InvalidParamsError,
    MmfsError,
    NotFoundError,
    ProtocolError,
    TransportError,
    redact_url,
)
from mmfs.purposes import KEY_CHECK_PURPOSE
from mmfs.redact import add_secret

__all__ = ["ApiClient", "CallGate"]

log = logging.getLogger("mmfs.api")

T = TypeVar("T")

# 1 MiB: content bodies are read in large pieces (requests' default is one byte per iteration).
CHUNK_SIZE = 1 << 20
# Upload bodies are handed to the socket in 1 MiB pieces rather than urllib3's 16 KiB: fewer Python-level
# reads of the multipart encoder for the same bytes.
SEND_BLOCK_SIZE = 1 << 20
# An error body is read for its base_resp only up to this size; anything larger is not an error envelope.
ERROR_BODY_LIMIT = 64 * 1024
# The largest JSON answer read (a listing of some 200,000 files); parsed, it takes about seven times this.
API_BODY_LIMIT = 32 << 20
# How much older than our upload start a landed file's created_at may look: the platform's clock and ours
# disagree by a few seconds at most in practice; two minutes is generous without matching old files (those
# are excluded by the listing taken before the first try anyway).
LANDED_CLOCK_SLACK = 120.0
# How many files' backup_download_url are kept (one per file retrieved lately; a URL lives hours at most).
_BACKUP_URLS_KEPT = 4096
CONTENT_PATH = "/v1/files/retrieve_content"


class _ApiSession(requests.Session):
    """A session that never carries Authorization off the API origin, even through redirects."""

    def __init__(self, origin: tuple[str, str, int | None]) -> None:
        super().__init__()
        self._api_origin = origin

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        if url_origin(prepared_request.url or "") != self._api_origin:
            prepared_request.headers.pop("Authorization", None)


class _Adapter(watchdog.GuardedAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", SEND_BLOCK_SIZE)
        super().init_poolmanager(*args, **kwargs)


def _never_sent(exc: BaseException) -> bool:
    """Whether a failure happened while connecting, so the server cannot have seen the request."""
    cause = exc.__cause__
    if isinstance(cause, requests.ConnectTimeout):
        return True
    if isinstance(cause, requests.ConnectionError) and cause.args:
        inner = cause.args[0]
        if isinstance(inner, MaxRetryError):
            inner = inner.reason
        return isinstance(inner, NewConnectionError | ConnectTimeoutError)
    return False


def _describe(exc: requests.RequestException) -> str:
    """A short reason for a transport failure; the URL (whose query may carry gateway params) stays out."""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    if isinstance(inner, BaseException):
        return f"{type(exc).__name__}: {str(inner)[:200]}"
    return type(exc).__name__


class CallGate(Protocol):
    """Something every API call passes first (a fleet-wide budget), and that hears of every retried failure."""

    def before_call(self, op: str) -> None: ...
    def after_failure(self, exc: BaseException) -> None: ...


class ApiClient:
    """Calls to one platform host (or gateway) with one key. Thread-safe: calls share only the pool."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        op_params: Mapping[str, Mapping[str, str]] | None = None,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen, so one shared default is safe)
        pool_size: int = 16,
        timeout: float = 30.0,
        ca_bundle: str | os.PathLike[str] | None = None,
        gate: CallGate | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.gate = gate
        try:
            origin = url_origin(self.base_url)
        except ValueError as exc:  # "http://[::1", a port out of range
            raise ValueError(f"base_url is not a usable URL: {exc}") from None
        if not origin[1]:
            raise ValueError("base_url needs a scheme and a host")
        self._op_params = {op: dict(params) for op, params in (op_params or {}).items()}
        self._retry = retry
        self._timeout = timeout
        self._auth = OriginAuth(api_key, origin)
        self._content_auth = ContentAuth(api_key, self.base_url + CONTENT_PATH)
        add_secret(api_key)  # whatever logs it by accident (a library's debug line) shows *** instead
        self._session = _ApiSession(origin)
        # requests asks for gzip, deflate, br and zstd by default: a small bomb would inflate in memory.
        self._session.headers["Accept-Encoding"] = "identity"
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self._verify: str | bool = os.fspath(ca_bundle) if ca_bundle is not None else True
        adapter = _Adapter(pool_connections=4, pool_maxsize=pool_size, max_retries=connect_retry())
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self.upload_limit: RateLimit | None = None  # --bwlimit's upload budget
        self._backups: dict[str, str] = {}  # file_id -> backup_download_url, the newest last
        self._backups_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r})"

    # --- public calls -------------------------------------------------------------------------------
    def list_files(self, purpose: str) -> list[FileRecord]:
        """Every file of ``purpose`` (the platform does not paginate)."""
        return self._retried(
            lambda: self._call_json("list", "GET", "/v1/files/list", {"purpose": purpose}, parse=parse_file_list)
        )

    def retrieve(self, file_id: str) -> FileRecord:
        """The file's record with a fresh ``download_url``; ``NotFoundError`` for an unknown id."""
        fid = self._checked_id(file_id)

        def parse(body: dict[str, Any]) -> FileRecord:
            record = parse_file_record(body.get("file"))
            self._keep_backup_url(fid, body.get("file"))
            if record.download_url is None:
                log.debug("retrieve %s: no download_url; reading through retrieve_content", fid)
                record = dataclasses.replace(record, download_url=self.content_url(fid))
            if record.file_id != fid:
                raise ProtocolError(f"retrieve {fid}: answer is about file {record.file_id}")
            return record

        return self._retried(
            lambda: self._call_json("retrieve", "GET", "/v1/files/retrieve", {"file_id": fid}, parse=parse,
                                    file_id=fid)
        )

    def backup_url(self, file_id: str) -> str | None:
        """The ``backup_download_url`` the file's last retrieve answer carried beside its ``download_url``
        (some real answers do), to try when that one fails; None when it carried none."""
        with self._backups_lock:
            return self._backups.get(file_id)

    def _keep_backup_url(self, fid: str, obj: object) -> None:
        url = obj.get("backup_download_url") if isinstance(obj, dict) else None
        with self._backups_lock:
            self._backups.pop(fid, None)
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                self._backups[fid] = url
                while len(self._backups) > _BACKUP_URLS_KEPT:
                    self._backups.pop(next(iter(self._backups)))

    def delete(self, file_id: str, purpose: str) -> None:
        """Delete a file.

        A 2013 answer stays an ``InvalidParamsError`` (with ``status_code`` 2013) rather than becoming
        ``NotFoundError``: the platform gives the same code for an unknown id, a wrong purpose and a purpose
        that takes no deletes, so only the caller knows whether "already gone" is what it means (as after a
        retried delete whose first try landed).
        """
        fid = self._checked_id(file_id)
        payload = {"file_id": int(fid), "purpose": purpose}  # a JSON number, as the endpoint expects
        self._retried(
            lambda: self._call_json("delete", "POST", "/v1/files/delete", json_body=payload, parse=_ignore,
                                    file_id=fid)
        )

    def upload(self, path: str | os.PathLike[str], purpose: str, filename: str) -> FileRecord:
        """Upload a file from disk, streamed; the returned record is the one the platform made.

        Each try opens the file afresh and sends it as a new multipart body (``_MultipartFile``).
        See the module docstring for how a try that may have landed is recognised instead of re-sent.
        The multipart header carries ``filename`` as browsers do (WHATWG): ``"``, CR and LF go
        percent-encoded, and a server may keep them so (``%22``) or decode them; both forms are recognised.
        mmfs sends none of them: ``platform_names.to_platform`` makes the names it uploads.
        """
        try:
            filename.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidParamsError(f"a filename must be valid Unicode to be uploaded: {filename!r}") from None
        path = os.fspath(path)
        size = os.stat(path).st_size
        before = self._listing_snapshot(purpose)
        started = time.time()
        ambiguous_seen = False

        def may_retry(exc: BaseException) -> bool:
            # Without a prior listing there is no telling a landed upload from a lost one.
            return before is not None or not ambiguous_seen

        for attempt in self._retrying(may_retry):
            with attempt:
                if ambiguous_seen and before is not None:
                    landed = self._find_landed(purpose, filename, size, started, before)
                    if landed is not None:
                        log.info("upload of %r had landed as file %s; not sending it again", filename,
                                 landed.file_id)
                        return landed
                try:
                    record = self._upload_once(path, purpose, filename)
                except _AmbiguousUpload as amb:
                    ambiguous_seen = True
                    amb.error.maybe_landed = True  # type: ignore[attr-defined]  # the caller checks before re-sending
                    raise amb.error from amb.error.__cause__
                filled = {"filename": filename, "purpose": purpose, "bytes": size}
                return dataclasses.replace(
                    record, **{k: v for k, v in filled.items() if getattr(record, k) is None}
                )
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def retrieve_content(self, file_id: str) -> Iterator[bytes]:
        """The file's bytes from the API host itself, in chunks of up to 1 MiB.

        Opening (and the error check) is retried; a body that breaks later raises ``TransportError`` - the
        ranged, resumable path is ``Downloader`` on the ``download_url``. Nothing is sent until the first
        chunk is asked for.
        """
        fid = self._checked_id(file_id)
        resp, whole = self._retried(lambda: self._open_content(fid))
        try:
            if whole is not None:
                if whole:
                    yield whole
                return
            yield from resp.iter_content(CHUNK_SIZE)
        except requests.RequestException as exc:
            raise TransportError(f"retrieve_content {fid}: body broke ({_describe(exc)})") from exc
        finally:
            resp.close()

    def content_url(self, file_id: str) -> str:
        """The file's ``retrieve_content`` URL with this client's parameters: a download URL that needs the
        key (``content_auth``), for answers that carry no ``download_url``."""
        fid = self._checked_id(file_id)
        query = {**self._op_params.get("retrieve_content", {}), "file_id": fid}
        return f"{self.base_url}{CONTENT_PATH}?{urlencode(query)}"

    def content_auth(self) -> ContentAuth:
        """For the ``Downloader``: signs requests to this client's ``retrieve_content`` endpoint only."""
        return self._content_auth

    def check_key(self) -> None:
        """One cheap call to see whether the platform takes the key: ``AuthError`` when it does not.

        Any other platform answer (success, 2013, a rate limit) counts as "key accepted"; failures that say
        nothing about the key (transport, a body that is not the API's) are raised as they are.
        """
        try:
            self.list_files(KEY_CHECK_PURPOSE)
        except AuthError:
            raise
        except MmfsError as exc:
            if exc.status_code is None:
                raise
            log.debug("key check: platform answered status %s; key accepted", exc.status_code)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- retries ------------------------------------------------------------------------------------
    def _retrying(self, may_retry: Callable[[BaseException], bool] | None = None) -> tenacity.Retrying:
        return retrying(self._retry, may_retry=may_retry, before_sleep=self._before_retry)

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        _log_retry(state)
        if self.gate is not None and state.outcome is not None and state.outcome.exception() is not None:
            self.gate.after_failure(state.outcome.exception())

    def _retried(self, call: Callable[[], T]) -> T:
        # One budget for the whole call, tries and waits together (or the caller's, if it ends sooner); the
        # watchdog holds a trickling answer to it too.
        with deadline.within(self._retry.deadline), watchdog.guarded():
            return self._retrying()(call)

    # --- one HTTP exchange ---------------------------------------------------------------------------
    def _send(
        self,
        op: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        json_body: object = None,
        data: object = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        query = {**self._op_params.get(op, {}), **(params or {})}
        if self.gate is not None:
            self.gate.before_call(op)
        try:
            return self._session.request(
                method,
                self.base_url + path,
                params=query or None,
                json=json_body,
                data=data,
                headers=dict(headers or {}),
                auth=self._auth,
                stream=stream,
                timeout=deadline.timeout(self._timeout, what=op),
                verify=self._verify,
            )
        except requests.exceptions.SSLError as exc:
            # An untrusted certificate stays untrusted however often it is asked again.
            raise ProtocolError(f"{op}: TLS verification of {redact_url(self.base_url)} failed "
                                f"({_describe(exc)}); a host with its own CA needs --ca-bundle") from exc
        except requests.RequestException as exc:
            raise TransportError(f"{op}: {_describe(exc)}") from exc

    def _call_json(
        self,
        op: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        json_body: object = None,
        parse: Callable[[dict[str, Any]], T],
        file_id: str | None = None,
    ) -> T:
        """One exchange: send, check, and ``parse`` the body (its errors get the answer's Trace-Id). ``file_id``:
        the one file the call names."""
        resp = self._send(op, method, path, params, json_body=json_body, stream=True)
        with resp, _about_one_file(op, file_id):
            content = _read_bounded(op, resp)
            return _parsed(parse, self._json_answer(op, resp, content), resp.headers.get("Trace-Id"))

    def _json_answer(self, op: str, resp: requests.Response, content: bytes) -> dict[str, Any]:
        """The checked JSON body of an answer, or the error it stands for."""
        return answers.api_answer(op, resp.status_code, content, trace_id=resp.headers.get("Trace-Id"),
                                  retry_after=answers.retry_after_seconds(resp.headers.get("Retry-After")))

    def _open_content(self, fid: str) -> tuple[requests.Response, bytes | None]:
        """Open retrieve_content: the response, and its whole body if it had to be read to rule out an error.

        Errors come back as JSON, but a file may be JSON too: a small JSON answer is read whole, and is an
        error only if it carries a non-zero ``base_resp.status_code``.
        """
        resp = self._send("retrieve_content", "GET", "/v1/files/retrieve_content", {"file_id": fid},
                          stream=True)
        try:
            with _about_one_file("retrieve_content", fid):
                trace_id = resp.headers.get("Trace-Id")
                content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                length = resp.headers.get("Content-Length", "")
                small = length.isdigit() and int(length) <= ERROR_BODY_LIMIT
                if not 200 <= resp.status_code < 300:
                    raise answers.http_error(
                        "retrieve_content", resp.status_code, answers.load_json(_read_capped(resp)),
                        trace_id=trace_id, retry_after=answers.retry_after_seconds(resp.headers.get("Retry-After")))
                if content_type == "application/json" and small:
                    whole = _read_capped(resp)
                    error = answers.content_error(whole, trace_id)
                    if error is not None:
                        raise error
                    return resp, whole
                return resp, None
        except BaseException:
            resp.close()
            raise

    # --- upload pieces -------------------------------------------------------------------------------
    def _upload_once(self, path: str, purpose: str, filename: str) -> FileRecord:
        # Sending the body takes as long as the network needs; its answer, headers and body, must then come
        # whole within the request timeout or the retry deadline, whichever is shorter, however it trickles.
        # An answer cut by that bound is ambiguous: the upload may have landed.
        bound = min(self._timeout, self._retry.deadline)
        try:
            with watchdog.guarded(answer=bound):
                return self._upload_try(path, purpose, filename)
        except deadline.DeadlineError as exc:
            raise _AmbiguousUpload(TransportError(f"upload: no whole answer within {bound:g} s")) from exc

    def _upload_try(self, path: str, purpose: str, filename: str) -> FileRecord:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        with open(path, "rb", buffering=0) as raw:
            source = ThrottledReader(raw, self.upload_limit) if self.upload_limit is not None else raw
            body = _MultipartFile([("purpose", purpose)], "file", source, filename, content_type)
            try:
                resp = self._send("upload", "POST", "/v1/files/upload", data=body,
                                  headers={"Content-Type": body.content_type}, stream=True)
            except TransportError as exc:
                if _never_sent(exc):
                    raise
                raise _AmbiguousUpload(exc) from exc
        with resp:
            try:
                try:
                    content = _read_bounded("upload", resp)
                except TransportError as exc:  # the body went out; its answer broke: it may have landed
                    raise _AmbiguousUpload(exc) from exc
                body = self._json_answer("upload", resp, content)
            except MmfsError as exc:
                if resp.status_code >= 500:  # a gateway's 502 may hide a stored upload
                    raise _AmbiguousUpload(exc) from exc
                raise
            return _parsed(lambda b: parse_file_record(b.get("file")), body, resp.headers.get("Trace-Id"))

    def find_landed(self, purpose: str, filename: str, size: int, started: float,
                    not_ids: frozenset[str] = frozenset()) -> FileRecord | None:
        """The file an earlier upload of ``filename`` stored, if it landed: same name and size, created no
        earlier than ``started`` (minus the clock slack), and none of ``not_ids``. Raises what the listing
        raised (``InvalidParamsError`` for a purpose the platform will not list)."""
        return self._find_landed(purpose, filename, size, started, not_ids)

    def _listing_snapshot(self, purpose: str) -> frozenset[str] | None:
        """The ids in ``purpose`` before uploading, or None when the purpose cannot be listed."""
        try:
            return frozenset(record.file_id for record in self.list_files(purpose))
        except AuthError:
            raise
        except MmfsError as exc:
            log.info("purpose %r cannot be listed (%s): an upload that may have landed is not re-sent",
                     purpose, exc)
            return None

    def _find_landed(
        self, purpose: str, filename: str, size: int, started: float, before: frozenset[str]
    ) -> FileRecord | None:
        candidates = [
            record
            for record in self.list_files(purpose)
            if record.file_id not in before
            and record.filename in (filename, _wire_name(filename))
            and record.bytes in (None, size)
            and (record.created_at is None or record.created_at >= started - LANDED_CLOCK_SLACK)
        ]
        if not candidates:
            return None
        # Two candidates mean someone else uploaded the same name meanwhile; the newest is most likely ours.
        return max(candidates, key=lambda r: (r.created_at or 0, int(r.file_id)))

    @staticmethod
    def _checked_id(file_id: str) -> str:
        fid = normalize_file_id(file_id)
        if fid is None:
            raise NotFoundError(f"not a file id: {str(file_id)[:40]!r}")
        return fid


class _MultipartFile:
    """A ``multipart/form-data`` body of some fields and one file, streamed from disk.

    urllib3 encodes the fields and the file part's header (the WHATWG filename encoding browsers and
    requests-toolbelt use); only the file's bytes are added here, read in 1 MiB pieces into one reused
    buffer and handed to the socket as they are. A per-16-KiB encoder in Python cost more CPU than the
    upload's own send. ``len()`` gives requests the Content-Length; every iteration starts from the file's
    beginning, so a body sent again is whole. The file's descriptor position is the upload's progress.
    """

    PIECE = 1 << 20

    def __init__(self, fields: list[tuple[str, str]], name: str, source: Any, filename: str,
                 content_type: str) -> None:
        part = RequestField(name=name, data=b"", filename=filename)
        part.make_multipart(content_type=content_type)
        encoded, self.content_type = encode_multipart_formdata([*fields, part])
        boundary = self.content_type.partition("boundary=")[2]
        tail = f"\r\n--{boundary}--\r\n".encode()
        if not boundary or not encoded.endswith(tail):  # urllib3 changed how a body ends
            raise ProtocolError("cannot frame the upload's multipart body")
        self._head, self._tail = encoded[: -len(tail)], tail
        self._source = source
        self._size = os.fstat(source.fileno()).st_size

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes | memoryview]:
        yield self._head
        self._source.seek(0)
        buffer = memoryview(bytearray(min(self.PIECE, max(1, self._size))))
        left = self._size
        while left > 0:
            n = self._source.readinto(buffer[: min(left, len(buffer))])
            if not n:
                raise OSError(f"the file shrank by {left} bytes while it was being uploaded")
            left -= n
            yield buffer[:n]  # sent before the next piece is read into the same buffer
        yield self._tail


class _AmbiguousUpload(Exception):
    """Carries an upload failure after which the file may have been stored (internal to ``upload``)."""

    def __init__(self, error: MmfsError) -> None:
        super().__init__(str(error))
        self.error = error


def _wire_name(filename: str) -> str:
    """``filename`` as the multipart header carries it (urllib3's WHATWG encoding), hence as stored."""
    return filename.translate({10: "%0A", 13: "%0D", 34: "%22"})


def _ignore(body: dict[str, Any]) -> None:
    return None


def _parsed(parse: Callable[[dict[str, Any]], T], body: dict[str, Any], trace_id: str | None) -> T:
    try:
        return parse(body)
    except MmfsError as exc:
        if exc.trace_id is None:  # records are parsed without the answer at hand; the error still needs it
            exc.trace_id = trace_id
        raise


# What reading a raw body may raise: urllib3 wraps most socket trouble, http.client the rest.
_BODY_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError, TimeoutError)


def _read_bounded(op: str, resp: requests.Response, limit: int = API_BODY_LIMIT) -> bytes:
    """The answer's body, at most ``limit`` bytes once decoded (see the module docstring)."""
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise ProtocolError(f"{op}: answer in an encoding mmfs did not ask for ({encoding[:40]})")
    length = resp.headers.get("Content-Length", "")
    too_large = ProtocolError(f"{op}: answer larger than {limit >> 20} MiB; mmfs reads no more than that")
    if length.isdigit() and int(length) > limit:
        raise too_large
    inflate = None if encoding in ("", "identity") else zlib.decompressobj(wbits=47)  # gzip or zlib header
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := resp.raw.read(1 << 20, decode_content=False):
            if inflate is not None:
                # At most what is left of the limit (plus one byte, to see it crossed) per piece.
                chunk = inflate.decompress(chunk, limit - size + 1)
                if inflate.unconsumed_tail:
                    raise too_large
            size += len(chunk)
            if size > limit:
                raise too_large
            parts.append(chunk)
    except _BODY_ERRORS as exc:
        raise TransportError(f"{op}: answer broke ({type(exc).__name__})") from exc
    except zlib.error as exc:
        raise ProtocolError(f"{op}: answer's {encoding} encoding is damaged") from exc
    return b"".join(parts)


def _read_capped(resp: requests.Response, limit: int = ERROR_BODY_LIMIT) -> bytes:
    """Up to ``limit`` bytes of a streamed body (enough for any error envelope)."""
    parts: list[bytes] = []
    got = 0
    try:
        for chunk in resp.iter_content(limit):
            parts.append(chunk)
            got += len(chunk)
            if got >= limit:
                break
    except requests.RequestException as exc:
        raise TransportError(f"reading an answer: {_describe(exc)}") from exc
    return b"".join(parts)[:limit]


@contextmanager
def _about_one_file(op: str, file_id: str | None) -> Iterator[None]:
    """An error of a call naming one file, as ``answers.about_one_file`` reads it: an unknown id or a "file
    not found" becomes ``NotFoundError`` at once (not retried, not EIO)."""
    try:
        yield
    except MmfsError as exc:
        mapped = answers.about_one_file(exc, op, file_id)
        if mapped is exc:
            raise
        raise mapped from exc


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    log.debug("try %d failed (%s); retrying in %.2fs", state.attempt_number, exc, state.upcoming_sleep)
