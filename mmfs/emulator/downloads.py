"""The object store side: signed download URLs answered like OSS, and the CDN hop that redirects to them.

Downloads need no key (the URL is the credential); a request that carries one anyway is counted in
``auth_on_download``, because a client must never send the API key to a download host. Bodies stream from
disk in pieces, whatever the file's size.
"""

from __future__ import annotations

import mimetypes
import secrets
import time
from email.utils import formatdate
from urllib.parse import parse_qsl, unquote, urlsplit

from .http_base import BaseHandler
from .ranges import content_disposition, oss_error_xml, plan_range

__all__ = ["DownloadHandler"]


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
        target = f"{self.emulator.base_url}/_dl/{split.path[len('/_cdn/'):]}?{split.query}"
        self.discard_body()
        self.send_body(302, b"", "text/plain", {"Location": target})

    def handle_download(self) -> None:
        """``/_dl/<file_id>/<quoted filename>?Expires=…&OSSAccessKeyId=…&Signature=…`` (GET or HEAD)."""
        emu = self.emulator
        head = self.command == "HEAD"
        emu.stats.request("head" if head else "download")
        self._note_download_auth()
        switches = emu.switches
        self.sleep_latency(switches)

        split = urlsplit(self.path)
        id_part, _, name_part = split.path[len("/_dl/"):].partition("/")
        if not id_part.isdigit():
            self._send_oss_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        file_id = int(id_part)
        refusal = emu.signer.check(file_id, unquote(name_part), dict(parse_qsl(split.query)))
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
