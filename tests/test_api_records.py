"""Record parsing and base_resp checking: any JSON shape gives a record or a clear MmfsError."""

from __future__ import annotations

import errno
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmfs.api.records import (
    FileRecord,
    check_base_resp,
    normalize_file_id,
    parse_file_list,
    parse_file_record,
)
from mmfs.errors import (
    AuthError,
    ContentRefusedError,
    InvalidParamsError,
    MmfsError,
    ProtocolError,
    QuotaError,
    RateLimitError,
    ServerError,
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["file_id", "bytes", "created_at", "filename", "purpose", "download_url", "files", "base_resp", "x"]
)
# Objects that look like FileObjects, with every field of any type: the interesting shapes.
file_objects = st.dictionaries(field_names, json_values, max_size=7)


def _check_record(record: FileRecord) -> None:
    assert record.file_id.isascii() and record.file_id.isdigit()
    assert record.file_id == "0" or not record.file_id.startswith("0")
    for number in (record.bytes, record.created_at):
        assert number is None or (type(number) is int and number >= 0)
    for text in (record.filename, record.purpose, record.download_url):
        assert text is None or isinstance(text, str)
    assert record.download_url != ""


@given(file_objects | json_values)
def test_any_json_gives_a_record_or_a_protocol_error(obj: object) -> None:
    try:
        record = parse_file_record(obj)
    except ProtocolError:
        return
    _check_record(record)


@given(st.dictionaries(st.sampled_from(["files", "base_resp", "x"]), json_values | st.lists(file_objects)))
def test_any_list_body_gives_records_or_a_protocol_error(body: dict) -> None:
    try:
        records = parse_file_list(body)
    except ProtocolError:
        assert not isinstance(body.get("files"), list | type(None))
        return
    for record in records:
        _check_record(record)


@given(json_values | st.dictionaries(st.just("base_resp"), json_values | st.dictionaries(
    st.sampled_from(["status_code", "status_msg"]), json_values)))
def test_check_base_resp_raises_only_mmfs_errors(body: object) -> None:
    try:
        check_base_resp(body, "trace-1")
    except MmfsError as exc:
        assert exc.trace_id == "trace-1"


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_file_id_is_the_same_whether_number_string_or_integral_float(n: int) -> None:
    as_number = parse_file_record({"file_id": n}).file_id
    assert as_number == str(n)
    assert parse_file_record({"file_id": str(n)}).file_id == as_number
    if n < 2**53:  # floats are exact only up to here
        assert parse_file_record({"file_id": float(n)}).file_id == as_number


@pytest.mark.parametrize(
    "bad",
    [True, False, -1, "-5", "12a", "", " ", "1.5", 1.5, math.nan, math.inf, None, [], {}, "١٢٣", "9" * 65],
)
def test_unusable_file_ids_are_refused(bad: object) -> None:
    assert normalize_file_id(bad) is None
    with pytest.raises(ProtocolError):
        parse_file_record({"file_id": bad, "filename": "a.mp3"})


def test_leading_zeros_and_spaces_are_normalised() -> None:
    assert normalize_file_id("007") == "7"
    assert normalize_file_id(" 42 ") == "42"
    assert normalize_file_id(0) == "0"


def test_a_full_record() -> None:
    record = parse_file_record(
        {
            "file_id": 361721749176519,
            "bytes": 5896337,
            "created_at": 1700469398,
            "filename": "voice.mp3",
            "purpose": "voice_clone",
            "download_url": "https://cdn.example/x?Expires=1",
        }
    )
    assert record == FileRecord("361721749176519", 5896337, 1700469398, "voice.mp3", "voice_clone",
                                "https://cdn.example/x?Expires=1")


def test_wrongly_typed_fields_become_none() -> None:
    record = parse_file_record(
        {"file_id": "12", "bytes": -3, "created_at": "soon", "filename": 5, "purpose": None,
         "download_url": ""}
    )
    assert record == FileRecord("12", None, None, None, None, None)


def test_numeric_strings_are_accepted_for_sizes_and_times() -> None:
    record = parse_file_record({"file_id": 1, "bytes": "100", "created_at": "1700000000"})
    assert (record.bytes, record.created_at) == (100, 1700000000)


def test_bytes_zero_is_kept_as_zero() -> None:
    assert parse_file_record({"file_id": 1, "bytes": 0}).bytes == 0


def test_one_bad_entry_does_not_hide_the_rest() -> None:
    body = {"files": [{"file_id": 1}, {"file_id": "x"}, "junk", None, {"file_id": "2", "filename": "b"}]}
    assert [r.file_id for r in parse_file_list(body)] == ["1", "2"]


@pytest.mark.parametrize("body", [{"files": None}, {}, {"files": [], "base_resp": {"status_code": 0}}])
def test_empty_lists(body: dict) -> None:
    assert parse_file_list(body) == []


@pytest.mark.parametrize("body", [[], "files", None, {"files": {"file_id": 1}}, {"files": "x"}])
def test_broken_list_bodies(body: object) -> None:
    with pytest.raises(ProtocolError):
        parse_file_list(body)


# Every code of the spec's table, with the class and errno mmfs must give it.
SPEC_CODES = [
    (1000, ServerError, errno.EIO, True),
    (1001, ServerError, errno.EIO, True),
    (1002, RateLimitError, errno.EIO, True),
    (1004, AuthError, errno.EACCES, False),
    (1008, QuotaError, errno.EDQUOT, False),
    (1013, ServerError, errno.EIO, True),
    (1024, ServerError, errno.EIO, True),
    (1026, ContentRefusedError, errno.EACCES, False),
    (1027, ContentRefusedError, errno.EACCES, False),
    (1033, ServerError, errno.EIO, True),
    (1039, RateLimitError, errno.EIO, True),
    (1041, RateLimitError, errno.EIO, True),
    (2013, InvalidParamsError, errno.EINVAL, False),
    (2049, AuthError, errno.EACCES, False),
    (2056, QuotaError, errno.EDQUOT, False),
]


@pytest.mark.parametrize(("code", "cls", "err", "retryable"), SPEC_CODES)
@pytest.mark.parametrize("as_text", [False, True])
def test_every_spec_code_maps_to_its_error(
    code: int, cls: type, err: int, retryable: bool, as_text: bool
) -> None:
    body = {"base_resp": {"status_code": str(code) if as_text else code, "status_msg": "the platform says"}}
    with pytest.raises(cls) as info:
        check_base_resp(body, "abc-123")
    exc = info.value
    assert exc.errno == err and exc.errno_code == err
    assert exc.retryable is retryable
    assert exc.status_code == code
    assert exc.trace_id == "abc-123"
    assert "the platform says" in str(exc) and "abc-123" in str(exc)


def test_unknown_code_is_a_plain_non_retryable_error() -> None:
    with pytest.raises(MmfsError) as info:
        check_base_resp({"base_resp": {"status_code": 4242}}, None)
    assert type(info.value) is MmfsError and not info.value.retryable and info.value.errno == errno.EIO


@pytest.mark.parametrize(
    "body",
    [
        {"files": []},
        {"base_resp": None},
        {"base_resp": {}},
        {"base_resp": {"status_code": 0, "status_msg": "success"}},
        {"base_resp": {"status_code": "0"}},
        {"base_resp": {"status_code": None}},
    ],
)
def test_success_bodies_pass(body: dict) -> None:
    check_base_resp(body, None)


@pytest.mark.parametrize(
    "body", [None, [], "text", 3, {"base_resp": "oops"}, {"base_resp": {"status_code": "abc"}},
             {"base_resp": {"status_code": 1.5}}]
)
def test_malformed_bodies_are_protocol_errors(body: object) -> None:
    with pytest.raises(ProtocolError):
        check_base_resp(body, None)


def test_negative_codes_are_errors_not_success() -> None:
    with pytest.raises(MmfsError) as info:
        check_base_resp({"base_resp": {"status_code": -1}}, None)
    assert info.value.status_code == -1
