"""Run the WebDAV door (``mmfs serve webdav``): the same layers a mount wires (``mmfs.runtime.assembly``), served over
HTTP by WsgiDAV on cheroot instead of FUSE.

Who may connect is decided before anything listens: on a loopback address anyone on this machine may (as
anyone who can reach a FUSE mount may); any other address needs both a credential (a generated token, user
``mmfs``) and TLS, or the server refuses to start, so a password never crosses a network in clear text.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import signal
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmfs.runtime.assembly import make_client, open_account
from mmfs.runtime.mount_point import MountError
from mmfs.settings.config import MountConfig
from mmfs.threads import start_thread

__all__ = ["DavServer", "ServeOptions", "is_loopback", "load_or_make_token", "serve_webdav"]

log = logging.getLogger("mmfs.serve")

TOKEN_USER = "mmfs"
# WsgiDAV reads and writes bodies in pieces of this size: 1 MiB moves a large file in few Python calls,
# as the FUSE door's 128 KiB-1 MiB kernel requests do, without holding much per request.
_BODY_CHUNK = 1 << 20
# Enough threads for a desktop client's parallel requests (Finder and Explorer open several at once).
_THREADS = 16


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_or_make_token(path: Path) -> tuple[str, bool]:
    """The token in ``path``, or a new one written there owner-only; refused if others may read the file.
    Returns the token and whether it was made now."""
    try:
        st = path.stat()
    except FileNotFoundError:
        token = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        return token, True
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MountError(f"{path} can be read by others; a credential must be owner-only (chmod 600 {path})")
    token = path.read_text().strip()
    if not token:
        raise MountError(f"{path} is empty; delete it and a new token is made there")
    return token, False


def check_exposure(options: ServeOptions) -> None:
    """Refuse, in one line naming the fix, to serve beyond this machine without a credential and TLS."""
    if is_loopback(options.host):
        if bool(options.tls_cert) != bool(options.tls_key):
            raise MountError("TLS needs both --tls-cert and --tls-key")
        return
    missing = []
    if options.token_file is None:
        missing.append("--token-file FILE (a token is made there if the file does not exist)")
    if options.tls_cert is None or options.tls_key is None:
        missing.append("--tls-cert and --tls-key")
    if missing:
        raise MountError(f"serving on {options.host} (not loopback) needs " + " and ".join(missing)
                         + "; or serve on 127.0.0.1")


def _domain_controller(token: str) -> type:
    from wsgidav.dc.base_dc import BaseDomainController

    class TokenDomainController(BaseDomainController):
        """Basic authentication against one generated token (compared in constant time)."""

        def __str__(self) -> str:
            return "TokenDomainController()"

        def get_domain_realm(self, path_info: str, environ: dict) -> str:
            return "mmfs"

        def require_authentication(self, realm: str, environ: dict) -> bool:
            return True

        def basic_auth_user(self, realm: str, user_name: str, password: str, environ: dict) -> bool:
            ok = hmac.compare_digest(user_name.encode(), TOKEN_USER.encode())
            return hmac.compare_digest(password.encode(), token.encode()) and ok

        def supports_http_digest_auth(self) -> bool:
            return False  # digest needs the plain password on both sides, and TLS does its job better

    return TokenDomainController


class DavServer:
    """A WsgiDAV application on a cheroot server over one assembled ``FileSystem``."""

    def __init__(self, config: MountConfig, options: ServeOptions, *, token: str | None = None) -> None:
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp

        from mmfs.doors.webdav import MmfsDAVProvider

        check_exposure(options)
        self._client = make_client(config)
        # A refused key fails here, before anything listens.
        self.fs, self.store, self.stats = open_account(config, self._client)
        # WsgiDAV warns at every start that loopback is open without a password: that is the design here.
        logging.getLogger("wsgidav").setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR)
        auth: dict[str, object]
        if token is not None:
            auth = {"domain_controller": _domain_controller(token), "accept_basic": True, "accept_digest": False,
                    "default_to_digest": False}
        else:
            auth = {"domain_controller": None, "accept_basic": False, "accept_digest": False}
        app = WsgiDAVApp({
            "provider_mapping": {"/": MmfsDAVProvider(self.fs, read_only=config.read_only)},
            "http_authenticator": auth,
            "simple_dc": {"user_mapping": {"*": True}},  # used only without a token: loopback, anonymous
            "lock_storage": True,  # in memory: davfs2, Finder and Office lock before they write
            "property_manager": True,  # dead properties in memory: Finder and Explorer set some
            "block_size": _BODY_CHUNK,
            # WsgiDAV's request lines go to the log only at -v (mmfs at debug), like urllib3's.
            "verbose": 3 if log.isEnabledFor(logging.DEBUG) else 1,
            "logging": {"enable": log.isEnabledFor(logging.DEBUG)},
            "dir_browser": {"enable": True, "response_trailer": "mmfs", "show_user": False},
        })
        self._server = wsgi.Server((options.host, options.port), app, numthreads=_THREADS,
                                   server_name="mmfs")
        if options.tls_cert and options.tls_key:
            from cheroot.ssl.builtin import BuiltinSSLAdapter

            self._server.ssl_adapter = BuiltinSSLAdapter(str(options.tls_cert), str(options.tls_key))
        self.scheme = "https" if options.tls_cert else "http"

    def start(self) -> str:
        """Listen (in this thread's caller's stead, on a thread of its own) and return the URL served."""
        try:
            self._server.prepare()  # binds now: a port in use fails here, in the caller's thread
        except OSError as exc:
            host, port = self._server.bind_addr[:2]
            raise MountError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                             "(choose another with --addr)") from None
        start_thread(self._server.serve, name="mmfs-webdav")
        start_thread(self.fs.recover, name="mmfs-recover")
        host, port = self._server.bind_addr[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}/"

    def stop(self) -> None:
        self._server.stop()
        self.fs.destroy()
        self._client.close()


def serve_webdav(config: MountConfig, options: ServeOptions,
                 announce: Callable[[str], None] = print) -> None:
    """Serve until SIGINT or SIGTERM; ``announce`` is told the URL, and the token file when one was made."""
    token = None
    if options.token_file is not None:
        token, made = load_or_make_token(options.token_file)
        if made:
            announce(f"mmfs: a token for user {TOKEN_USER} was written to {options.token_file}")
    server = DavServer(config, options, token=token)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    url = server.start()
    announce(f"mmfs: serving WebDAV on {url}" + (f" (user {TOKEN_USER})" if token else ""))
    try:
        stop.wait()
    finally:
        server.stop()

