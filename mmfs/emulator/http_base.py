"""What every request handler of the emulator shares: answers, Trace-Id, quiet logging, body handling.

Each connection is served by its own thread (ThreadingHTTPServer); a handler instance lives for one
connection and keeps it alive across requests (HTTP/1.1) unless an answer had to leave a body unread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import ssl
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, BinaryIO

from .upload import BrokenUpload, iter_body

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .config import EmulatorConfig
    from .server import Emulator

__all__ = ["BaseHandler", "log"]

log = logging.getLogger("mmfs.emulator")

# Seconds a client has to finish the TLS handshake of the https form.
_HANDSHAKE_TIMEOUT = 30.0
# An unread body up to this size is read and dropped before answering, so a client still sending an upload
# gets the answer (e.g. 1004 or 429) rather than a reset; above the platform's 512 MB limit, close instead.
_DRAIN_LIMIT = 600 * 1024 * 1024
_PIECE = 1024 * 1024  # unpaced body writes: few syscalls, still bounded memory
_PACED_PIECE = 64 * 1024  # paced body writes: small enough that the rate is smooth
_HOLD_POLL = 0.02  # how often a held (stalled) answer looks whether it may go on


def _without_query(value: Any) -> Any:
    # A request line holds a signed URL's query (its Signature); it never goes to the log.
    if isinstance(value, str) and "?" in value:
        return value.split("?", 1)[0] + "?…"
    return value


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "minimax-files-emulator"
    # An idle keep-alive connection is dropped after this long, so stray clients cannot pin threads forever.
    timeout = 300
    # Headers and body go out in separate writes; with Nagle on, the body waits for the client's delayed ACK
    # and every small answer takes ~40 ms on loopback.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version  # without the Python version the base class appends

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator  # type: ignore[attr-defined,no-any-return]

    # --- connection bookkeeping -------------------------------------------------------------------------
    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(_HANDSHAKE_TIMEOUT)
            self.request.do_handshake()  # a failure ends here, before the connection counts as open
        super().setup()
        self.emulator._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the peer went away; nothing left to flush
        finally:
            self.emulator._track(self.connection, False)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, BrokenUpload):
            self.close_connection = True  # a client that leaves mid-answer is normal, not an error
        except Exception:
            log.exception("emulator: request failed")
            self.close_connection = True

    # --- logging: debug only, never a query string ------------------------------------------------------
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # A request line that never parsed (a TLS handshake sent to the plain server) leaves no path or
        # command set: the refusal is still logged, without an AttributeError.
        command = getattr(self, "command", None) or "-"
        log.debug("%s %s -> %s", command, _without_query(getattr(self, "path", "-")), code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("emulator: " + format, *(_without_query(a) for a in args))

    # --- answers ----------------------------------------------------------------------------------------
    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self.send_header("Trace-Id", secrets.token_hex(16))

    def send_body(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_body(status, body, "application/json; charset=utf-8", headers)

    def send_status(self, code: int, message: str, status: int = 200) -> None:
        """The platform's way of failing: usually HTTP 200 with a non-zero ``base_resp.status_code``."""
        self.send_json({"base_resp": {"status_code": code, "status_msg": message}}, status)

    def send_not_found(self) -> None:
        self.discard_body()
        self.send_body(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def abort_connection(self) -> None:
        """Close the connection without a further byte, as a crashed or timed-out peer would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- request bodies ---------------------------------------------------------------------------------
    def body_length(self) -> tuple[int | None, bool]:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        return (None if chunked else max(length, 0)), chunked

    def iter_request_body(self) -> Iterator[bytes]:
        length, chunked = self.body_length()
        return iter_body(self.rfile, length, chunked)  # type: ignore[arg-type]

    def discard_body(self) -> None:
        """Drop an unread body so the connection can carry the next request, or mark it for closing."""
        length, chunked = self.body_length()
        if not chunked and not length:
            return
        if (length or 0) > _DRAIN_LIMIT:
            self.close_connection = True
            return
        drained = 0
        for piece in iter_body(self.rfile, length, chunked):  # type: ignore[arg-type]
            drained += len(piece)
            if drained > _DRAIN_LIMIT:
                self.close_connection = True
                return

    # --- bodies from disk -------------------------------------------------------------------------------
    def write_file_range(self, source: BinaryIO, start: int, length: int, rate_mb_s: float, *,
                         count_download: bool) -> int:
        """Stream ``length`` bytes from ``start``, paced to ``rate_mb_s`` MB/s unless 0; return bytes sent.

        With ``count_download`` each piece counts in ``download_bytes``: before it is sent, so a client that
        has read the body never sees a counter still behind, and taken back if the socket refuses it, so an
        interrupted download counts (to within one piece) what went out.
        """
        source.seek(start)
        rate = rate_mb_s * 1_000_000
        piece = _PACED_PIECE if rate else _PIECE
        sent = 0
        began = time.monotonic()
        while sent < length:
            data = source.read(min(piece, length - sent))
            if not data:
                break
            if count_download:
                self.emulator.stats.add_download_bytes(len(data))
            try:
                self.wfile.write(data)
            except OSError:
                if count_download:
                    self.emulator.stats.add_download_bytes(-len(data))
                raise
            sent += len(data)
            if rate:
                delay = began + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        return sent

    def hold_while(self, condition: Callable[[], bool]) -> None:
        """Answer nothing while ``condition`` holds (a stopped server), or until the emulator stops."""
        while condition() and self.emulator.running:
            time.sleep(_HOLD_POLL)

    def sleep_latency(self, switches: EmulatorConfig) -> None:
        if switches.latency > 0:
            time.sleep(switches.latency)
