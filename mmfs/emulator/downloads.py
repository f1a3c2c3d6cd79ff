"""The object store side: signed download URLs answered like OSS, and the CDN hop that redirects to them.

Downloads need no key (the URL is the credential); a request that carries one anyway is counted in
``auth_on_download``, because a client must never send the API key to a download host. Bodies stream from
disk in pieces, whatever the file's size.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
import time
from email.utils import formatdate
from urllib.parse import parse_qsl, unquote, urlsplit

from .http_base import BaseHandler
from .ranges import content_disposition, oss_error_xml, plan_range
from .signing import SLASH

__all__ = ["DownloadHandler"]

# /_dl/<file_id>/<name> or, the mainland form, /_dl/<file_id>%2F<name>
_SIGNED_PATH = re.compile(r"/_dl/(\d+)(/|%2[fF])(.*)", re.DOTALL)
# /_pub/<token>/<file_id>/<name>: the unsigned global form
_PUBLIC_PATH = re.compile(r"/_pub/([0-9a-fA-F]*)/(\d+)/(.*)", re.DOTALL)


class DownloadHandler(BaseHandler):
    def _send_oss_error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None
                        ) -> None:
        self.discard_body()
        body = oss_error_xml(code, message, secrets.token_hex(12).upper())
        self.send_body(status, body, "application/xml", headers)

    def _note_download_auth(self) -> None:
        if "Authorization" in self.headers:
            self.emulator.stats.auth_on_download()

    def handle_cdn(self) -> None:
        """``/_cdn/...``: the platform's CDN form, a 302 to the signed object URL."""
        self._note_download_auth()
        self.sleep_latency(self.emulator.switches)
        split = urlsplit(self.path)
        rest = split.path[len("/_cdn"):]
        if not rest.startswith(("/_dl/", "/_pub/")):
            rest = "/_dl" + rest
        target = f"{self.emulator.base_url}{rest}" + (f"?{split.query}" if split.query else "")
        self.discard_body()
        self.send_body(302, b"", "text/plain", {"Location": target})

    def handle_download(self) -> None:
        """``/_dl/<file_id>/<quoted filename>?Expires=…&OSSAccessKeyId=…&Signature=…`` (GET or HEAD), the
        same with ``%2F`` for the second ``/``, or ``/_pub/<token>/<file_id>/<quoted filename>``."""
        emu = self.emulator
        head = self.command == "HEAD"
        emu.stats.request("head" if head else "download")
        self._note_download_auth()
        switches = emu.switches
        self.sleep_latency(switches)

        split = urlsplit(self.path)
        signed = _SIGNED_PATH.fullmatch(split.path)
        public = _PUBLIC_PATH.fullmatch(split.path)
        if signed is not None:
            file_id = int(signed[1])
            separator = "/" if signed[2] == "/" else SLASH
            refusal = emu.signer.check(file_id, unquote(signed[3]), dict(parse_qsl(split.query)), separator)
        elif public is not None:
            file_id = int(public[2])
            refusal = emu.signer.check_token(public[1], file_id, unquote(public[3]))
        else:
            self._send_oss_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        if refusal is not None:
            self._send_oss_error(403, *refusal)
            return
        record = emu.store.get(file_id)
        if record is None:
            self._send_oss_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        if not head and emu.faults.due("download_500", switches.fail_download_every):
            emu.stats.fault("download_500")
            self._send_oss_error(500, "InternalError", "We encountered an internal error. Please try again.")
            return
        try:
            source = emu.store.blob_path(file_id).open("rb")
        except FileNotFoundError:  # deleted since the lookup
            self._send_oss_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        with source:
            total = source.seek(0, 2)
            plan = plan_range(self.headers.get("Range"), total, ignore=switches.ignore_range)
            if plan.status == 416:
                self._send_oss_error(
                    416, "InvalidRange", "The requested range cannot be satisfied.",
                    {"Content-Range": f"bytes */{total}"},
                )
                return
            self.send_response(plan.status)
            content_type = mimetypes.guess_type(record.filename)[0] or "application/octet-stream"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(plan.end - plan.start))
            self.send_header("Accept-Ranges", "bytes")
            if plan.status == 206:
                self.send_header("Content-Range", f"bytes {plan.start}-{plan.end - 1}/{total}")
            self.send_header("Content-Disposition", content_disposition(record.filename))
            self.send_header("Last-Modified", formatdate(record.created_at, usegmt=True))
            self.send_header("x-oss-request-id", secrets.token_hex(12).upper())
            self.end_headers()
            if head:
                return
            emu.stats.download_range(file_id, plan.start, plan.end)
            length = plan.end - plan.start
            dropping = emu.faults.due("drop", switches.drop_every)
            if dropping:
                emu.stats.fault("drop")
                length //= 2
            trickle = switches.trickle_bytes
            if trickle:
                emu.stats.fault("trickle")
                length = min(length, trickle)
            self.write_file_range(source, plan.start, length, switches.conn_rate, count_download=True)
            if trickle:
                self.wfile.flush()
                hold_until = time.monotonic() + switches.trickle_hold if switches.trickle_hold else float("inf")
                self.hold_while(lambda: emu.switches.trickle_bytes == trickle and time.monotonic() < hold_until)
            if dropping or trickle:
                self.abort_connection()
