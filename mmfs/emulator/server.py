"""``Emulator``: a real threaded HTTP server on loopback that behaves like the MiniMax file platform.

It owns the file store, the URL signer, the counters, the fault schedule and the switches, and serves them
through ``EmulatorHandler`` in background threads. Use it from Python (``Emulator(cfg).start()``, or as a
context manager) or from another process through the CLI and the ``/_emulator/`` admin endpoints.

Concurrency: the switches are an immutable snapshot replaced whole under ``_switch_lock``, so a request
reads one consistent set (``self.switches``) without locking; ``_conn_lock`` guards the set of open
connections that ``stop`` shuts down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from .api import file_object
from .config import EmulatorConfig, coerce_switches, resolve_api_key
from .counters import Counters, FaultSchedule
from .handler import EmulatorHandler
from .http_base import log as _log
from .signing import SLASH, UrlSigner
from .store import FileStore, StoredFile
from .tls import make_self_signed

__all__ = ["Emulator"]

# Which fault's count restarts when its "every N" switch changes.
_FAULT_OF_SWITCH = {
    "fail_download_every": "download_500",
    "fail_api_every": "api_1002",
    "http429_every": "http_429",
    "http502_every": "http_502",
    "drop_every": "drop",
    "fail_status_every": "api_status",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many parallel readers connect at once; the default 5 drops some

    def __init__(self, address: tuple[str, int], emulator: Emulator,
                 tls: ssl.SSLContext | None = None) -> None:
        self.emulator = emulator
        self.tls = tls
        super().__init__(address, EmulatorHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.tls is not None:
            # The handshake happens in the connection's own thread (EmulatorHandler.setup), so one slow or
            # plain-HTTP client cannot hold up accepting the others.
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed TLS handshake or a peer gone before its first byte is a client's business, not a crash.
        if isinstance(sys.exc_info()[1], OSError):
            _log.debug("emulator: connection from %s failed", client_address, exc_info=True)
        else:
            _log.exception("emulator: connection from %s failed", client_address)


class Emulator:
    """The platform on loopback. ``start()`` returns self; ``stop()`` closes every connection."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.api_key = resolve_api_key(config.api_key)
        self.stats = Counters()
        self.faults = FaultSchedule()
        self._switches = dataclasses.replace(config)
        self._switch_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.store = FileStore(config.data_dir)
        self.signer = UrlSigner(self.store.secret)
        self.base_url = ""
        self.ca_path: Path | None = None  # the certificate a client must trust when tls is on

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> Emulator:
        if self._server is not None:
            return self
        if self.config.demo and len(self.store) == 0:
            from .demo import seed_demo  # only needed once per data dir

            seed_demo(self)
        context = None
        if self.config.tls:
            self.ca_path, key_path = make_self_signed(self.config.data_dir / "tls")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.ca_path, key_path)
        self._server = _Server((self.config.host, self.config.port), self, context)
        host, port = self._server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.base_url = f"{'https' if context else 'http'}://{shown}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._conn_lock:
            open_now = list(self._connections)
        for conn in open_now:  # keep-alive clients would otherwise hold their threads until the timeout
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[-1]) if self.base_url else 0

    def open_connections(self) -> int:
        """How many client connections are open now (each holds one server thread)."""
        with self._conn_lock:
            return len(self._connections)

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._conn_lock:
            if opened:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # --- switches -------------------------------------------------------------------------------------
    @property
    def switches(self) -> EmulatorConfig:
        """The current switches (a snapshot: do not modify it; use ``configure``)."""
        return self._switches

    def configure(self, **switches: Any) -> None:
        """Change switches at run time; unknown names or bad values raise ValueError and change nothing."""
        values = coerce_switches(switches)
        with self._switch_lock:
            self._switches = dataclasses.replace(self._switches, **values)
        for name in values:
            if name in _FAULT_OF_SWITCH:
                self.faults.restart(_FAULT_OF_SWITCH[name])

    def take_upload_failure(self) -> str | None:
        """Spend one of the ``fail_uploads`` failures: the mode to fail with, or None."""
        with self._switch_lock:
            current = self._switches
            if current.fail_uploads <= 0:
                return None
            self._switches = dataclasses.replace(current, fail_uploads=current.fail_uploads - 1)
        self.stats.fault("upload_fail")
        return current.upload_fail_mode

    def take_count(self, switch: str, fault: str) -> bool:
        """Spend one of a counted fault switch's (``short_uploads``, ``fail_deletes``): whether one was left."""
        with self._switch_lock:
            current = self._switches
            left = getattr(current, switch)
            if left <= 0:
                return False
            self._switches = dataclasses.replace(current, **{switch: left - 1})
        self.stats.fault(fault)
        return True

    # --- files ----------------------------------------------------------------------------------------
    def seed(self, purpose: str, filename: str, data: bytes | Path, *, created_at: int | None = None
             ) -> dict[str, Any]:
        """Store a file under any purpose (generated outputs cannot be uploaded); return its FileObject."""
        record = self.store.add_bytes(data, purpose, filename, created_at)
        return file_object(record, self.switches, shaped=False)

    def download_url(self, record: StoredFile, switches: EmulatorConfig) -> str:
        base = self.base_url + ("/_cdn" if switches.redirect_downloads else "")
        if switches.url_form == "unsigned":
            return self.signer.unsigned(base, "_pub", record.file_id, record.filename, switches.url_ttl)
        separator = SLASH if switches.url_form == "oss_slash" else "/"
        return self.signer.sign(base, "_dl", record.file_id, record.filename, switches.url_ttl,
                                separator=separator)

    # --- counters -------------------------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        return self.stats.snapshot()

    def reset_counters(self) -> None:
        self.stats.reset()
