"""The one mapping from HTTP answers to errors, without a server: every status code the API reference lists,
the HTTP statuses seen (401, 403, 404, 429, 5xx), a gateway's HTML error page, an empty body, the calls that
name one file, and download URLs' answers."""

from __future__ import annotations

import errno
import json
from email.utils import formatdate

import pytest

from mmfs.api import answers
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

# The API reference's error-code table: code -> (class, errno, retried).
SPEC_CODES = {
    1000: (ServerError, errno.EIO, True),  # unknown error: retry a few times, then EIO
    1001: (ServerError, errno.EIO, True),  # timeout
    1002: (RateLimitError, errno.EIO, True),  # rate limit: back off
    1004: (AuthError, errno.EACCES, False),  # authentication failed
    1008: (QuotaError, errno.EDQUOT, False),  # insufficient balance
    1013: (ServerError, errno.EIO, True),
    1024: (ServerError, errno.EIO, True),
    1033: (ServerError, errno.EIO, True),
    1026: (ContentRefusedError, errno.EACCES, False),  # content flagged as sensitive
    1027: (ContentRefusedError, errno.EACCES, False),
    1039: (RateLimitError, errno.EIO, True),  # token rate limit
    1041: (RateLimitError, errno.EIO, True),  # connection limit
    2013: (InvalidParamsError, errno.EINVAL, False),
    2049: (AuthError, errno.EACCES, False),  # invalid API key
    2045: (RateLimitError, errno.EIO, True),  # rate growth limit
    2056: (QuotaError, errno.EDQUOT, False),  # usage limit exceeded
    1028: (QuotaError, errno.EDQUOT, False),  # quota exhausted
    1030: (QuotaError, errno.EDQUOT, False),
    2061: (QuotaError, errno.EDQUOT, False),  # not on the plan
    # Seen handled in clients, meanings vary: EIO with the message, not retried.
    1042: (MmfsError, errno.EIO, False),
    1043: (MmfsError, errno.EIO, False),
    1044: (MmfsError, errno.EIO, False),
    2037: (MmfsError, errno.EIO, False),
    2039: (MmfsError, errno.EIO, False),
    2042: (MmfsError, errno.EIO, False),
    2048: (MmfsError, errno.EIO, False),
    20132: (MmfsError, errno.EIO, False),
    4242: (MmfsError, errno.EIO, False),  # a code nobody documents
}

GATEWAY_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
               b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


def _envelope(code: object, message: str = "words", **extra: object) -> bytes:
    return json.dumps({"base_resp": {"status_code": code, "status_msg": message}, **extra}).encode()


def _raised(call, *args, **kw) -> MmfsError:
    with pytest.raises(MmfsError) as info:
        call(*args, **kw)
    return info.value


# --- status codes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", sorted(SPEC_CODES))
def test_every_documented_status_code(code: int) -> None:
    cls, code_errno, retried = SPEC_CODES[code]
    error = answers.status_error(code, "the platform's words", trace_id="t-1")
    assert type(error) is cls
    assert (error.errno, error.retryable) == (code_errno, retried)
    assert (error.status_code, error.trace_id, error.message) == (code, "t-1", "the platform's words")


def test_a_code_without_words_is_named() -> None:
    assert answers.status_error(1000, "").message == "platform error 1000"


@pytest.mark.parametrize("http_status", [200, 400, 500])
@pytest.mark.parametrize("code", sorted(SPEC_CODES))
def test_a_status_code_in_the_body_decides_whatever_the_http_status(code: int, http_status: int) -> None:
    # An upload refusal comes as HTTP 400 + 2013 (video_generation_input) or HTTP 200 + 2013: both read the same.
    error = _raised(answers.api_answer, "upload", http_status, _envelope(code), trace_id="t-2")
    assert type(error) is SPEC_CODES[code][0]
    assert (error.status_code, error.trace_id) == (code, "t-2")


@pytest.mark.parametrize("raw, expected", [
    ("1004", AuthError), (1004.0, AuthError), (" 2013 ", InvalidParamsError), (-1, MmfsError), ("- 5", MmfsError),
])
def test_status_codes_in_other_json_types(raw: object, expected: type[MmfsError]) -> None:
    assert type(_raised(answers.check_base_resp, json.loads(_envelope(raw)), None)) is expected


@pytest.mark.parametrize("body", [
    {"files": []},  # gateways drop the envelope
    {"base_resp": None},
    {"base_resp": {"status_code": None}},
    {"base_resp": {"status_code": 0, "status_msg": "success"}},
    {"base_resp": {"status_code": "0"}},
    {"base_resp": {}},
])
def test_success_envelopes(body: dict) -> None:
    assert answers.envelope_error(body) is None
    assert answers.api_answer("list", 200, json.dumps(body).encode()) == body


@pytest.mark.parametrize("body", [
    [], "text", 5, {"base_resp": "ok"}, {"base_resp": {"status_code": "x"}}, {"base_resp": {"status_code": True}},
    {"base_resp": {"status_code": 1.5}}, {"base_resp": {"status_code": "9" * 65}},
])
def test_envelopes_that_cannot_be_read_are_protocol_errors(body: object) -> None:
    assert type(answers.envelope_error(body, "t-3")) is ProtocolError


def test_a_json_answer_with_a_byte_order_mark_and_a_bad_byte_is_read() -> None:
    content = b"\xef\xbb\xbf" + b'{"files": [{"file_id": 1, "filename": "a\xff.wav"}], "base_resp": {"status_code": 0}}'
    body = answers.api_answer("list", 200, content)
    assert body["files"][0]["filename"] == "a\udcff.wav"


# --- HTTP statuses without a platform verdict ------------------------------------------------------------
@pytest.mark.parametrize("status, op, cls, code_errno", [
    (400, "upload", InvalidParamsError, errno.EINVAL),
    (401, "list", AuthError, errno.EACCES),
    (403, "list", AuthError, errno.EACCES),
    (404, "retrieve", NotFoundError, errno.ENOENT),
    (404, "retrieve_content", NotFoundError, errno.ENOENT),
    (404, "delete", NotFoundError, errno.ENOENT),
    (404, "list", ProtocolError, errno.EIO),  # a wrong base URL, not a missing file
    (404, "upload", ProtocolError, errno.EIO),
    (413, "upload", FileTooLargeError, errno.EFBIG),
    (418, "list", ProtocolError, errno.EIO),
    (429, "list", RateLimitError, errno.EIO),
    (500, "list", ServerError, errno.EIO),
    (502, "upload", ServerError, errno.EIO),
    (503, "retrieve", ServerError, errno.EIO),
    (504, "delete", ServerError, errno.EIO),
])
@pytest.mark.parametrize("content", [b"", GATEWAY_502, b"404 page not found\n", b'{"error": "nope"}'])
def test_http_statuses(status: int, op: str, cls: type[MmfsError], code_errno: int, content: bytes) -> None:
    error = _raised(answers.api_answer, op, status, content, trace_id="t-4")
    assert type(error) is cls and error.errno == code_errno
    assert error.message == f"{op}: HTTP {status}" and error.trace_id == "t-4" and error.status_code is None


def test_a_gateway_html_page_with_200_is_not_an_answer() -> None:
    error = _raised(answers.api_answer, "list", 200, GATEWAY_502, trace_id="t-5")
    assert type(error) is ProtocolError and "not JSON" in error.message and error.trace_id == "t-5"


def test_an_empty_body_with_200_is_not_an_answer() -> None:
    assert type(_raised(answers.api_answer, "retrieve", 200, b"")) is ProtocolError


def test_429_is_a_rate_limit_whatever_its_body_says() -> None:
    error = _raised(answers.api_answer, "list", 429, _envelope(1000, "busy"), retry_after=7.0)
    assert type(error) is RateLimitError and error.retry_after == 7.0
    assert (error.status_code, error.message) == (1000, "busy")


def test_retry_after_rides_on_retryable_errors_only() -> None:
    assert _raised(answers.api_answer, "list", 503, b"", retry_after=3.0).retry_after == 3.0
    assert not hasattr(_raised(answers.api_answer, "list", 401, b"", retry_after=3.0), "retry_after")


# --- calls that name one file ----------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["retrieve", "retrieve_content"])
@pytest.mark.parametrize("message", ["invalid params, file not found", "invalid params", "", "Invalid parameters.",
                                     "file does not exist"])
def test_a_2013_about_one_file_that_names_no_other_cause_is_an_unknown_id(op: str, message: str) -> None:
    error = answers.about_one_file(answers.status_error(2013, message, trace_id="t-6"), op, "123")
    assert type(error) is NotFoundError and error.errno == errno.ENOENT
    assert error.message.startswith("file 123: ") and (error.status_code, error.trace_id) == (2013, "t-6")


def test_a_gateway_refusal_is_a_refusal_with_its_words() -> None:
    refusal = answers.status_error(2013, "invalid params, model must be minimax-files-retrieve")
    error = answers.about_one_file(refusal, "retrieve", "123")
    assert type(error) is InvalidParamsError and error.errno == errno.EINVAL
    assert "model must be minimax-files-retrieve" in error.message and "refused" in error.message


def test_delete_keeps_a_2013_for_its_caller() -> None:
    refusal = answers.status_error(2013, "invalid params, file not found")
    assert answers.about_one_file(refusal, "delete", "123") is refusal


@pytest.mark.parametrize("op", ["retrieve", "retrieve_content", "delete"])
def test_any_code_saying_not_found_is_gone_at_once(op: str) -> None:
    error = answers.about_one_file(answers.status_error(1000, "unknown error, file not found"), op, "123")
    assert type(error) is NotFoundError and not error.retryable and error.status_code == 1000


@pytest.mark.parametrize("error", [
    answers.status_error(1000, "unknown error"),  # retried, then EIO
    answers.status_error(1004, "token not match group"),
    answers.status_error(1002, "rate limit"),
    ProtocolError("retrieve: answer is not JSON (HTTP 200)"),  # no platform verdict: words do not count
])
def test_other_answers_about_one_file_stay_as_they_are(error: MmfsError) -> None:
    assert answers.about_one_file(error, "retrieve", "123") is error


def test_calls_that_name_no_file_are_left_alone() -> None:
    for error in (answers.status_error(2013, "invalid params"), answers.status_error(1000, "file not found")):
        assert answers.about_one_file(error, "list") is error
        assert answers.about_one_file(error, "upload") is error


# --- retrieve_content's body ------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [
    b"",
    b"RIFF....WAVEfmt ",
    b'{"a": 1}',  # a JSON file is a file
    b'{"base_resp": {"status_code": 0}, "file": 1}',
    b'{"base_resp": {"status_code": "not a number"}}',
    b'{"base_resp": null}',
    b"[1, 2]",
    GATEWAY_502,
])
def test_retrieve_content_bodies_that_are_the_file(content: bytes) -> None:
    assert answers.content_error(content) is None


def test_retrieve_content_bodies_that_are_errors() -> None:
    error = answers.content_error(_envelope(1004, "invalid api key"), "t-7")
    assert type(error) is AuthError and error.trace_id == "t-7"
    unknown = answers.about_one_file(answers.content_error(_envelope(2013, "invalid params")), "retrieve_content")
    assert type(unknown) is NotFoundError and unknown.message.startswith("retrieve_content: ")


# --- download URLs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("status, cls, code_errno, retried", [
    (403, UrlExpiredError, errno.EACCES, False),
    (404, NotFoundError, errno.ENOENT, False),
    (416, RangeNotSatisfiableError, errno.EINVAL, False),
    (429, RateLimitError, errno.EIO, True),
    (500, ServerError, errno.EIO, True),
    (502, ServerError, errno.EIO, True),
    (400, ProtocolError, errno.EIO, False),
    (401, ProtocolError, errno.EIO, False),  # a signed URL carries no key to refuse
])
def test_download_statuses(status: int, cls: type[MmfsError], code_errno: int, retried: bool) -> None:
    error = answers.download_error(status, "https://cdn.example/f.mp4?<redacted>", oss_code="AccessDenied",
                                   trace_id="oss-1")
    assert type(error) is cls and (error.errno, error.retryable, error.trace_id) == (code_errno, retried, "oss-1")
    assert f"https://cdn.example/f.mp4?<redacted>: HTTP {status} AccessDenied" in error.message


def test_download_retry_after() -> None:
    assert answers.download_error(429, "u", retry_after=2.5).retry_after == 2.5
    assert answers.download_error(503, "u", retry_after=4.0).retry_after == 4.0
    assert answers.download_error(429, "u").retry_after is None
    assert not hasattr(answers.download_error(403, "u", retry_after=4.0), "retry_after")


@pytest.mark.parametrize("value, seconds", [
    (None, None), ("", None), ("5", 5.0), ("0", 0.0), ("2.5", 2.5), ("-3", 0.0), ("nan", None), ("soon", None),
    (formatdate(1_000_030, usegmt=True), 30.0), (formatdate(999_000, usegmt=True), 0.0),
])
def test_retry_after_header(value: str | None, seconds: float | None) -> None:
    assert answers.retry_after_seconds(value, now=1_000_000) == seconds
