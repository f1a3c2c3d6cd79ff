"""The origin for the peers: a small threaded HTTP server that serves a folder the way a web server does.

rclone's ``:http:`` remote and httpdirfs both read a folder from its HTML index pages and then fetch files
with ``Range``; this server gives them exactly that (index pages, HEAD, single ranges answered 206, 416 when
unsatisfiable) with the same network shaping the emulator applies to mmfs: a per-connection rate cap and a
fixed delay before each answer, paced the way the emulator paces (a body piece, then sleep until
the cap allows the next). It counts what it sends, so the harness can compute read amplification for
each peer as it does for mmfs from the emulator's counters.

Run as ``python -m bench.static_server DIR [--port 0] [--conn-rate MBPS] [--latency S]``; it prints
``static server listening on http://127.0.0.1:PORT``. Control endpoints (never listed):
``GET /_bench/counters``, ``POST /_bench/reset``, ``POST /_bench/config`` with JSON
``{"conn_rate": MBPS, "latency": S}``. Dot files are neither listed nor served.
"""

from __future__ import annotations

import argparse
import email.utils
import html
import json
import os
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

__all__ = ["StaticServer", "parse_range"]

# The emulator's piece sizes and its read-then-write loop, so both origins cost the same per byte and a
# difference between mmfs and a peer is the client's, not the server's. Paced pieces are small so the rate
# is smooth (64 KiB at 50 MB/s is 1.3 ms apart).
_PIECE = 1 << 20
_PACED_PIECE = 64 << 10


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The half-open byte range ``[start, end)`` asked for by a ``Range`` header.

    None when there is no usable single range (serve the whole body), ``"unsatisfiable"`` for a range that
    starts past the end (answer 416).
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[len("bytes=") :].strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return (max(0, size - suffix), size)
        start = int(first)
        end = size if last == "" else min(int(last) + 1, size)
    except ValueError:
        return None
    if start >= size or end <= start:
        return "unsatisfiable"
    return (start, end)


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.values = {"GET": 0, "HEAD": 0, "range_gets": 0, "index_pages": 0, "body_bytes": 0}

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.values[key] += n

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


class StaticServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, port: int = 0, conn_rate: float = 0.0, latency: float = 0.0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.root = Path(root).resolve()
        self.conn_rate = conn_rate  # MB/s (10**6 bytes), as the emulator counts it; 0 = no cap
        self.latency = latency
        self.stats = _Stats()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the peers reuse connections, as they would on a network
    server: StaticServer

    def log_message(self, format: str, *args: object) -> None:  # quiet: thousands of requests per run
        pass

    # --- control ---
    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/_bench/reset":
            self.server.stats.reset()
        elif path == "/_bench/config":
            config = json.loads(body or b"{}")
            if "conn_rate" in config:
                self.server.conn_rate = float(config["conn_rate"] or 0)
            if "latency" in config:
                self.server.latency = float(config["latency"] or 0)
        else:
            self._send_simple(HTTPStatus.NOT_FOUND, b"not found\n")
            return
        self._send_simple(HTTPStatus.OK, b"{}", "application/json")

    def do_GET(self) -> None:
        self._serve(with_body=True)

    def do_HEAD(self) -> None:
        self._serve(with_body=False)

    # --- serving ---
    def _serve(self, with_body: bool) -> None:
        raw_path = urlsplit(self.path).path
        if raw_path == "/_bench/counters":
            self._send_simple(HTTPStatus.OK, json.dumps(self.server.stats.snapshot()).encode(), "application/json")
            return
        self.server.stats.add("GET" if with_body else "HEAD")
        if self.server.latency > 0:
            time.sleep(self.server.latency)
        target = self._resolve(unquote(raw_path))
        if target is None:
            self._send_simple(HTTPStatus.NOT_FOUND, b"not found\n")
        elif target.is_dir():
            if not raw_path.endswith("/"):
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", raw_path + "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.server.stats.add("index_pages")
            self._send_simple(HTTPStatus.OK, _index_page(target, raw_path), "text/html; charset=utf-8", with_body)
        else:
            self._send_file(target, with_body)

    def _resolve(self, path: str) -> Path | None:
        parts = [p for p in path.split("/") if p]
        if any(p.startswith(".") for p in parts):
            return None
        target = self.server.root.joinpath(*parts)
        return target if target.exists() else None

    def _send_simple(self, status: HTTPStatus, body: bytes, ctype: str = "text/plain", with_body: bool = True
                     ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _send_file(self, target: Path, with_body: bool) -> None:
        st = target.stat()
        size = st.st_size
        wanted = parse_range(self.headers.get("Range"), size)
        if wanted == "unsatisfiable":
            # Like nginx: the header and a short HTML body. httpdirfs asks for the segment past the end of
            # every file whose size is a multiple of its segment size, exits when Accept-Ranges is missing,
            # and crashes on an empty body.
            body = b"<html><head><title>416 Requested Range Not Satisfiable</title></head></html>\n"
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)
            return
        start, end = (0, size) if wanted is None else wanted
        self.send_response(HTTPStatus.OK if wanted is None else HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        self.send_header("ETag", f'"{st.st_ino:x}-{size:x}-{int(st.st_mtime)}"')
        if wanted is not None:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not with_body:
            return
        if wanted is not None:
            self.server.stats.add("range_gets")
        with open(target, "rb") as f:
            self._send_body(f, start, end)

    def _send_body(self, source: BinaryIO, start: int, end: int) -> None:
        rate = self.server.conn_rate * 1e6
        piece = _PACED_PIECE if rate > 0 else _PIECE
        source.seek(start)
        began = time.monotonic()
        sent = 0
        try:
            while start + sent < end:
                data = source.read(min(piece, end - start - sent))
                if not data:
                    break
                # Counted before the write: a client that has read the last byte must find it counted.
                self.server.stats.add("body_bytes", len(data))
                try:
                    self.wfile.write(data)
                except OSError:
                    self.server.stats.add("body_bytes", -len(data))
                    raise
                sent += len(data)
                if rate > 0:
                    delay = began + sent / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the reader went away (a cancelled read-ahead): not an error


def _index_page(folder: Path, url_path: str) -> bytes:
    names = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder) if not e.name.startswith("."))
    title = html.escape(url_path)
    lines = [f"<!DOCTYPE html>\n<html><head><title>Index of {title}</title></head><body>",
             f"<h1>Index of {title}</h1>", "<pre>", '<a href="../">../</a>']
    lines += [f'<a href="{quote(name)}">{html.escape(name)}</a>' for name in names]
    lines += ["</pre></body></html>", ""]
    return "\n".join(lines).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.static_server", description=__doc__.split("\n")[0])
    parser.add_argument("root")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--conn-rate", type=float, default=0.0, help="MB/s per connection (0 = no cap)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    server = StaticServer(Path(args.root), args.port, args.conn_rate, args.latency)
    print(f"static server listening on {server.base_url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
