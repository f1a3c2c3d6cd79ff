"""Routing of every request, and the admin endpoints under ``/_emulator/``.

Paths: the five API endpoints (``api``; under ``path_prefix`` when that switch is set, as a gateway proxies
them), ``/_dl/``, ``/_pub/`` and ``/_cdn/`` (``downloads``), ``/_emulator/`` for a test or tool in another
process (loopback only, no key). Anything else, including OpenAI-style paths such as ``/v1/files`` or
``DELETE /v1/files/ID``, answers 404 as the platform does. Unknown query parameters (a gateway's ``model=…``)
are ignored unless ``gateway_model`` asks for them.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

from .api import API_ROUTES, ApiHandler, file_object
from .downloads import DownloadHandler
from .upload import BrokenUpload

__all__ = ["EmulatorHandler"]

_MAX_CONFIG_BODY = 1024 * 1024


class EmulatorHandler(ApiHandler, DownloadHandler):
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        if not path.startswith("/_emulator/") and self.emulator.switches.stall:
            self.emulator.stats.fault("stall")
            self.hold_while(lambda: self.emulator.switches.stall)
        if path.startswith(("/_dl/", "/_pub/")) and self.command in ("GET", "HEAD"):
            self.handle_download()
        elif path.startswith("/_cdn/") and self.command in ("GET", "HEAD"):
            self.handle_cdn()
        elif path.startswith("/_emulator/"):
            self._handle_admin(path, dict(parse_qsl(split.query, keep_blank_values=True)))
        elif (op := API_ROUTES.get((self.command, self._api_path(path)))) is not None:
            self.handle_api(op, dict(parse_qsl(split.query, keep_blank_values=True)))
        else:
            self.send_not_found()

    def _api_path(self, path: str) -> str:
        """``path`` without the gateway's prefix; a path outside the prefix matches no route."""
        prefix = self.emulator.switches.path_prefix
        if not prefix:
            return path
        return path[len(prefix):] if path.startswith(prefix + "/") else ""

    # --- admin ----------------------------------------------------------------------------------------
    def _handle_admin(self, path: str, params: dict[str, str]) -> None:
        if not self.client_address[0].startswith("127.") and self.client_address[0] != "::1":
            self.discard_body()
            self.send_json({"error": "admin endpoints answer on loopback only"}, 403)
            return
        emu = self.emulator
        route = (self.command, path)
        if route == ("GET", "/_emulator/counters"):
            self.send_json(emu.counters())
        elif route == ("POST", "/_emulator/counters/reset"):
            self.discard_body()
            emu.reset_counters()
            self.send_json({"ok": True})
        elif route == ("GET", "/_emulator/config"):
            self.send_json(emu.switches.switches())
        elif route == ("POST", "/_emulator/config"):
            self._admin_config()
        elif route == ("POST", "/_emulator/seed"):
            self._admin_seed(params)
        else:
            self.send_not_found()

    def _admin_config(self) -> None:
        length, chunked = self.body_length()
        if chunked or (length or 0) > _MAX_CONFIG_BODY:
            self.discard_body()
            self.send_json({"error": "body too large"}, 400)
            return
        try:
            values = json.loads(b"".join(self.iter_request_body()) or b"{}")
            if not isinstance(values, dict):
                raise ValueError("body must be a JSON object of switches")
            self.emulator.configure(**values)
        except (ValueError, TypeError) as exc:
            self.send_json({"error": str(exc)}, 400)
            return
        self.send_json(self.emulator.switches.switches())

    def _admin_seed(self, params: dict[str, str]) -> None:
        purpose, filename = params.get("purpose"), params.get("filename")
        if not purpose or filename is None:
            self.discard_body()
            self.send_json({"error": "purpose and filename are required"}, 400)
            return
        created_at = int(params["created_at"]) if params.get("created_at", "").isdigit() else None
        store = self.emulator.store
        temp = store.new_temp_path()
        try:
            with temp.open("wb") as out:
                for piece in self.iter_request_body():
                    out.write(piece)
            record = store.add(temp, purpose, filename, created_at)
        except BrokenUpload:
            self.close_connection = True
            return
        finally:
            temp.unlink(missing_ok=True)
        self.send_json(file_object(record, self.emulator.switches, shaped=False))
