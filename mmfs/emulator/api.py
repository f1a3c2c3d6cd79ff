"""The five File Management endpoints, answered as the platform answers them.

Order of checks for every call: latency, then the key (HTTP 200 + 1004), then the scheduled faults
(HTTP 502, HTTP 429, HTTP 200 + 1002, then HTTP 200 + ``fail_status``), then a gateway's ``model=``
parameter, then the operation. Refusals are HTTP 200 with status 2013 unless a switch (or, for
``video_generation_input``, the docs) says HTTP 400.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from . import rules
from .config import EmulatorConfig
from .hostile import encode_hostile_json, hostile_name
from .http_base import BaseHandler
from .ranges import oss_error_xml, plan_range
from .store import StoredFile
from .upload import BrokenUpload, MalformedUpload, ReceivedForm, decode_whatwg_filename, receive_form

__all__ = ["API_ROUTES", "ApiHandler", "file_object"]

API_ROUTES = {
    ("POST", "/v1/files/upload"): "upload",
    ("GET", "/v1/files/list"): "list",
    ("GET", "/v1/files/retrieve"): "retrieve",
    ("GET", "/v1/files/retrieve_content"): "retrieve_content",
    ("POST", "/v1/files/delete"): "delete",
}

INVALID_PARAMS = 2013
_MAX_JSON_BODY = 1024 * 1024  # a delete body is a few dozen bytes
_UPLOAD_STATUS_MESSAGES = {
    1008: "insufficient balance",
    1026: "input new_sensitive",
    1027: "output new_sensitive",
    2056: "usage limit exceeded",
}
# Messages for the status codes fail_status injects (the platform's own wording where known).
_FAULT_STATUS_MESSAGES = {
    2045: "rate growth limit exceeded",
    1028: "quota exhausted",
    1030: "quota exhausted",
    2061: "your current token plan not support model",
    1042: "illegal characters in parameters",
    1043: "audio and text similarity check failed",
    1044: "voice clone failed",
    2037: "invalid voice duration",
    2039: "voice id already exists",
    2042: "no access to this voice id",
    2048: "prompt audio too long",
    20132: "invalid sample or voice id",
}
_BAD_GATEWAY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def file_object(record: StoredFile, switches: EmulatorConfig, download_url: str | None = None, *,
                shaped: bool = True) -> dict[str, Any]:
    """A FileObject as the API shows it under the current switches.

    ``shaped`` applies drop_fields and null_fields (off for the admin's own answers, which must name the id).
    """
    zero = switches.zero_bytes_video and record.purpose in rules.ZERO_BYTES_PURPOSES
    obj: dict[str, Any] = {
        "file_id": str(record.file_id) if switches.file_id_type == "string" else record.file_id,
        "bytes": 0 if zero else record.bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
    }
    if download_url is not None:
        obj["download_url"] = download_url
    if shaped and obj["bytes"]:
        obj["bytes"] = {"large": obj["bytes"] * 2, "small": obj["bytes"] // 2}.get(switches.listed_size, obj["bytes"])
    if shaped:
        for name in filter(None, switches.null_fields.split(",")):
            obj[name] = None
        for name in filter(None, switches.drop_fields.split(",")):
            obj.pop(name, None)
    return obj


def _ok() -> dict[str, Any]:
    return {"status_code": 0, "status_msg": "success"}


def _parse_file_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class ApiHandler(BaseHandler):
    def handle_api(self, op: str, params: dict[str, str]) -> None:
        emu = self.emulator
        emu.stats.request(op)
        switches = emu.switches
        self.sleep_latency(switches)
        if not self._authorized():
            emu.stats.bad_auth()
            self.discard_body()
            self.send_status(switches.bad_key_status, "authorized error, invalid api key")
            return
        if emu.faults.due("http_502", switches.http502_every):
            emu.stats.fault("http_502")
            self.discard_body()
            self.send_body(502, _BAD_GATEWAY, "text/html")
            return
        if emu.faults.due("http_429", switches.http429_every):
            emu.stats.fault("http_429")
            self.discard_body()
            body = {"base_resp": {"status_code": 1002, "status_msg": "rate limit exceeded"}}
            self.send_json(body, 429, {"Retry-After": str(switches.retry_after)})
            return
        if emu.faults.due("api_1002", switches.fail_api_every):
            emu.stats.fault("api_1002")
            self.discard_body()
            self.send_status(1002, "rate limit exceeded(RPM)")
            return
        if switches.fail_status and emu.faults.due("api_status", switches.fail_status_every):
            emu.stats.fault("api_status")
            self.discard_body()
            self.send_status(switches.fail_status, _FAULT_STATUS_MESSAGES.get(switches.fail_status, "error"))
            return
        if switches.gateway_model and params.get("model") != f"minimax-files-{op}":
            self.discard_body()
            self.send_status(INVALID_PARAMS, f"invalid params, model must be minimax-files-{op}")
            return
        getattr(self, f"_op_{op}")(params, switches)

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.emulator.api_key.encode())

    def _allowed(self, endpoint: str, switches: EmulatorConfig) -> frozenset[str]:
        return rules.allowed_purposes(
            endpoint, lenient=switches.lenient_purposes, list_generated=switches.list_generated
        )

    # --- list ---------------------------------------------------------------------------------------
    def _op_list(self, params: dict[str, str], switches: EmulatorConfig) -> None:
        purpose = params.get("purpose")
        if not purpose:
            if switches.require_purpose:
                self.send_status(INVALID_PARAMS, "invalid params, purpose is required")
                return
            records = self._unpurposed_listing(switches)
        elif purpose not in self._allowed("list", switches):
            self.send_status(INVALID_PARAMS, f"invalid params, purpose {purpose} is not supported")
            return
        else:
            records = [r for r in self.emulator.store.all() if r.purpose == purpose]
        files = [file_object(r, switches) for r in records]
        if switches.hostile_names:
            ranks = {r.file_id: i for i, r in enumerate(sorted(self.emulator.store.all(), key=lambda r: r.file_id))}
            for record, obj in zip(records, files, strict=True):
                if "filename" in obj:
                    obj["filename"] = hostile_name(ranks[record.file_id])
            body = encode_hostile_json({"files": files, "base_resp": _ok()})
            self.send_body(200, body, "application/json; charset=utf-8")
            return
        self.send_json({"files": files, "base_resp": _ok()})

    def _unpurposed_listing(self, switches: EmulatorConfig) -> list[StoredFile]:
        """What a list without purpose answers: the platform accepts it, but what it returns is unknown."""
        if switches.unpurposed_list == "empty":
            return []
        records = self.emulator.store.all()
        if switches.unpurposed_list == "listable":
            listable = self._allowed("list", switches)
            records = [r for r in records if r.purpose in listable]
        return records

    # --- retrieve / retrieve_content -----------------------------------------------------------------
    def _record_from_query(self, params: dict[str, str]) -> StoredFile | None:
        """The file named by ``?file_id=``; answers 2013 itself and returns None when there is none."""
        file_id = _parse_file_id(params.get("file_id"))
        record = self.emulator.store.get(file_id) if file_id is not None else None
        if record is None:
            self._send_unknown_id()
        return record

    def _send_unknown_id(self) -> None:
        """An unknown file id, in the form the ``unknown_id`` switch picks (the platform's is undocumented)."""
        form = self.emulator.switches.unknown_id
        if form == "404":
            self.send_body(404, b"404 page not found\n", "text/plain; charset=utf-8")
        elif form == "1000":
            self.send_status(1000, "unknown error, file not found")
        else:
            self.send_status(INVALID_PARAMS, "invalid params, file not found")

    def _op_retrieve(self, params: dict[str, str], switches: EmulatorConfig) -> None:
        record = self._record_from_query(params)
        if record is None:
            return
        url = self.emulator.download_url(record, switches)
        obj = file_object(record, switches, url)
        if switches.backup_download_url:
            obj["backup_download_url"] = url
            if switches.backup_download_url == "primary_broken" and "download_url" in obj:
                # A withdrawn CDN link: a path nothing serves, which answers 404.
                obj["download_url"] = f"{self.emulator.base_url}/_withdrawn/{record.file_id}"
        self.send_json({"file": obj, "base_resp": _ok()})

    def _op_retrieve_content(self, params: dict[str, str], switches: EmulatorConfig) -> None:
        record = self._record_from_query(params)
        if record is None:
            return
        try:
            source = self.emulator.store.blob_path(record.file_id).open("rb")
        except FileNotFoundError:  # deleted between the lookup and the open
            self._send_unknown_id()
            return
        with source:
            if switches.content_redirect:
                location = self.emulator.download_url(record, switches)
                self.send_body(302, b"", "text/plain", {"Location": location})
                return
            size = source.seek(0, 2)
            plan = plan_range(self.headers.get("Range"), size, ignore=not switches.content_range)
            if plan.status == 416:
                body = oss_error_xml("InvalidRange", "The requested range cannot be satisfied.", "0")
                self.send_body(416, body, "application/xml", {"Content-Range": f"bytes */{size}"})
                return
            self.send_response(plan.status)
            # The docs declare JSON over what is in fact the file's bytes.
            content_type = "application/json" if switches.content_json else "application/octet-stream"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(plan.end - plan.start))
            if switches.content_range:
                self.send_header("Accept-Ranges", "bytes")
            if plan.status == 206:
                self.send_header("Content-Range", f"bytes {plan.start}-{plan.end - 1}/{size}")
            self.end_headers()
            if self.command != "HEAD":
                self.write_file_range(source, plan.start, plan.end - plan.start, switches.conn_rate,
                                      count_download=False)

    # --- delete -------------------------------------------------------------------------------------
    def _op_delete(self, params: dict[str, str], switches: EmulatorConfig) -> None:
        length, chunked = self.body_length()
        if chunked or (length or 0) > _MAX_JSON_BODY:
            self.discard_body()
            self.send_status(INVALID_PARAMS, "invalid params, body too large")
            return
        raw = b"".join(self.iter_request_body())
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            self.send_status(INVALID_PARAMS, "invalid params, body must be a JSON object")
            return
        file_id = _parse_file_id(body.get("file_id"))
        purpose = body.get("purpose")
        if file_id is None:
            self.send_status(INVALID_PARAMS, "invalid params, file_id is required")
            return
        if purpose is not None and not isinstance(purpose, str):
            self.send_status(INVALID_PARAMS, "invalid params, purpose must be a string")
            return
        if not purpose and switches.require_purpose:
            self.send_status(INVALID_PARAMS, "invalid params, purpose is required")
            return
        if self.emulator.take_count("fail_deletes", "delete_fail"):
            self.send_status(1000, "unknown error", 500)
            return
        record = self.emulator.store.get(file_id)
        if purpose and purpose not in self._allowed("delete", switches):
            self.send_status(INVALID_PARAMS, f"invalid params, purpose {purpose} is not supported")
            return
        if record is None:
            self._send_unknown_id()
            return
        # Without a purpose the file's own must still be one that delete accepts.
        if (purpose or record.purpose) != record.purpose or record.purpose not in self._allowed(
            "delete", switches
        ):
            self.send_status(INVALID_PARAMS, "invalid params, purpose does not match the file")
            return
        if self.emulator.store.delete(file_id) is None:  # a concurrent delete won
            self.send_status(INVALID_PARAMS, "invalid params, file not found")
            return
        shown = str(file_id) if switches.file_id_type == "string" else file_id
        self.send_json({"file_id": shown, "base_resp": _ok()})

    # --- upload -------------------------------------------------------------------------------------
    def _op_upload(self, params: dict[str, str], switches: EmulatorConfig) -> None:
        emu = self.emulator
        failing = emu.take_upload_failure()
        if failing == "error":
            self.discard_body()
            self.send_status(1000, "unknown error", 500)
            return
        if switches.upload_status and failing is None:
            self.discard_body()
            self.send_status(switches.upload_status, _UPLOAD_STATUS_MESSAGES.get(switches.upload_status, "error"))
            return
        temp = emu.store.new_temp_path()
        try:
            try:
                form = receive_form(
                    self.iter_request_body(), self.headers.get("Content-Type", ""), temp,
                    rules.MAX_FILE_BYTES,
                )
            except BrokenUpload:
                self.close_connection = True  # the client is gone mid-body; nobody to answer
                return
            except MalformedUpload as exc:
                self._refuse_upload(str(exc), switches, failing)
                return
            emu.stats.add_upload_bytes(form.file_size)
            reason = self._upload_refusal(form, switches)
            if reason is not None:
                self._refuse_upload(reason, switches, failing, form.fields.get("purpose", ""))
                return
            filename = form.filename or ""
            if switches.whatwg_filenames:
                filename = decode_whatwg_filename(filename)
            if emu.take_count("short_uploads", "upload_short"):
                os.truncate(temp, form.file_size // 2)  # a body cut on the way, kept as if whole
            record = emu.store.add(temp, form.fields["purpose"], filename)
        finally:
            temp.unlink(missing_ok=True)
        if failing == "ambiguous":
            self.abort_connection()  # stored, but the client never hears so
            return
        self.send_json({"file": file_object(record, switches), "base_resp": _ok()})

    def _refuse_upload(self, reason: str, switches: EmulatorConfig, failing: str | None,
                       purpose: str = "") -> None:
        if failing == "ambiguous":
            self.abort_connection()
            return
        body = {"base_resp": {"status_code": INVALID_PARAMS, "status_msg": reason}}
        http400 = switches.upload_error_http400 or purpose in rules.HTTP400_PURPOSES
        self.send_json(body, 400 if http400 else 200)

    def _upload_refusal(self, form: ReceivedForm, switches: EmulatorConfig) -> str | None:
        if not form.complete:
            return "invalid params, incomplete multipart body"
        purpose = form.fields.get("purpose", "").strip()
        if not purpose:
            return "invalid params, purpose is required"
        form.fields["purpose"] = purpose
        if purpose not in self._allowed("upload", switches):
            return f"invalid params, purpose {purpose} is not supported for upload"
        if form.filename is None:
            return "invalid params, file is required"
        return rules.check_upload(purpose, form.filename, form.file_size, check_format=switches.check_uploads)
