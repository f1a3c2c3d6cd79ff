"""A hostile HTTP server for tests: a proxy in front of the emulator that misbehaves on demand.

Every request goes to the emulator and its answer comes back through ``HostileProxy.answer``, a hook a test
sets: it may keep the answer, change its status, headers or body (an HTML page, a wrong Content-Length, a
gzip bomb) or pace it (headers or body trickled a byte at a time). Download URLs in the emulator's answers
are rewritten to point at the proxy, so downloads pass through it too. Each answer closes its connection.

The emulator stays faithful to the platform; what no platform does on purpose (a hostile network, a broken
proxy or CDN) is played here, at the socket, where the client cannot tell it from the real thing.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Answer", "HostileProxy", "Request"]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def is_download(self) -> bool:
        return not self.path.startswith("/v1/") and not self.path.startswith("/_emulator/")

    @property
    def op(self) -> str:
        """``list``, ``retrieve``, ``upload``, ... for API calls; ``download`` for the rest."""
        if self.is_download:
            return "download"
        return self.path.split("?", 1)[0].rsplit("/", 1)[-1]


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    header_delay: float = 0.0  # seconds between bytes of the status line and headers
    body_delay: float = 0.0  # seconds between pieces of the body
    body_piece: int = 1  # bytes per piece when the body is paced
    hold: float = 0.0  # seconds to stay silent after the body (before closing)
    extra: dict = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()] + [(name, value)]


Hook = Callable[[Request, Answer], Answer | None]


class HostileProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.answer: Hook | None = None  # the test's hook; None passes answers through
        self.requests: list[Request] = []
        self._closing = threading.Event()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with contextlib.suppress(OSError):
                    proxy._serve(self.rfile, self.connection)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def _sleep(self, seconds: float) -> None:
        if self._closing.wait(seconds):
            raise OSError("proxy closing")

    def _serve(self, rfile, conn: socket.socket) -> None:
        line = rfile.readline(65537).decode("latin-1")
        if not line.strip():
            return
        method, target, _ = line.split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            raw = rfile.readline(65537).decode("latin-1")
            if raw in ("\r\n", "\n", ""):
                break
            name, _, value = raw.partition(":")
            headers[name.strip()] = value.strip()
        length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
        body = rfile.read(length) if length else b""
        request = Request(method, target, headers, body)
        self.requests.append(request)
        answer = self._forward(request)
        hook = self.answer
        if hook is not None:
            answer = hook(request, answer) or answer
        self._write(conn, answer)

    def _forward(self, request: Request) -> Answer:
        parts = urlsplit(self.upstream)
        upstream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            sent = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(request.method, request.path, body=request.body or None, headers=sent)
            resp = upstream.getresponse()
            body = resp.read()
            headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("connection", "content-length", "transfer-encoding", "keep-alive")]
        finally:
            upstream.close()
        body = body.replace(self.upstream.encode(), self.base_url.encode())
        answer = Answer(resp.status, headers, body)
        answer.set_header("Content-Length", str(len(body)))
        return answer

    def _write(self, conn: socket.socket, answer: Answer) -> None:
        reason = http.client.responses.get(answer.status, "Unknown")
        head = f"HTTP/1.1 {answer.status} {reason}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in answer.headers) + "Connection: close\r\n\r\n"
        data = head.encode("latin-1")
        if answer.header_delay:
            for i in range(len(data)):
                conn.sendall(data[i : i + 1])
                self._sleep(answer.header_delay)
        else:
            conn.sendall(data)
        if answer.body_delay:
            for i in range(0, len(answer.body), answer.body_piece):
                conn.sendall(answer.body[i : i + answer.body_piece])
                self._sleep(answer.body_delay)
        else:
            conn.sendall(answer.body)
        if answer.hold:
            self._sleep(answer.hold)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        time.sleep(0.05)  # let the client read what was sent before the socket closes
