"""The control channel: a Unix socket under the state folder through which ``mmfs status``, ``refresh``,
``pin``, ``unpin`` and ``cache`` talk to a running mount. The server (``ControlServer``) runs in the mount; the
client (``ask``, ``request``) in the commands and in ``mmfs.Mount``.

Only the mounting user may use it: the socket sits in a 0700 folder, is itself 0600, and every connection's
peer uid must be ours. One request per connection, one JSON line; the answer is JSON lines: any number of
``{"progress": ...}`` lines, then one ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.

A client finds a mount's socket through the mount itself: its root's attribute ``platform.CONTROL_XATTR``
names it, whatever ``--state-dir`` the mount was given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmfs.errors import MmfsError
from mmfs.platform import CONTROL_XATTR, get_xattr, peer_uid
from mmfs.private_dir import make_private_dir
from mmfs.redact import one_line, redact
from mmfs.threads import start_thread

__all__ = ["ANSWER_WAIT", "ControlError", "ControlServer", "Handler", "answer_within", "ask", "control_dir",
           "mount_socket", "request", "socket_attr", "socket_path"]

log = logging.getLogger("mmfs.control")

# How long a command waits on a mount that does not answer at all (stopped with SIGSTOP, hung): every look at
# a mount (its attribute, its control socket) is bounded, so one such mount cannot hang a command.
ANSWER_WAIT = 2.0

# A handler gets the request and a function that sends a progress line; it returns the final answer.
Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], dict[str, Any]]


class ControlError(MmfsError):
    """No mount answers on the socket, or the mount refused the request."""


def control_dir(state_dir: Path) -> Path:
    return state_dir / "control"


def socket_path(state_dir: Path, mountpoint: Path) -> Path:
    """One socket per mount point; the name is short because a socket path may hold only ~107 bytes."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(mountpoint))).hexdigest()[:12]
    return control_dir(state_dir) / f"{digest}.sock"


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self._handlers = handlers
        make_private_dir(path.parent)
        path.unlink(missing_ok=True)  # a socket left by a killed mount on this mount point
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        os.chmod(path, 0o600)
        self._sock.listen(8)
        self._closed = False

    def start(self) -> ControlServer:
        start_thread(self._serve, name="mmfs-control")
        return self

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            start_thread(self._handle, conn, name="mmfs-control-req")

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            uid = peer_uid(conn)
            if uid != os.getuid():
                log.warning("control: refused a connection from uid %d", uid)
                return
            stream = conn.makefile("rwb")

            def send(message: dict[str, Any]) -> None:
                stream.write(json.dumps(message).encode() + b"\n")
                stream.flush()

            try:
                req = json.loads(stream.readline() or b"{}")
                handler = self._handlers.get(str(req.get("cmd")))
                if handler is None:
                    send({"ok": False, "error": f"unknown command {req.get('cmd')!r}"})
                    return
                send({"ok": True, **handler(req, lambda p: send({"progress": p}))})
            except (BrokenPipeError, ConnectionResetError):
                pass
            # Answers are redacted as the log is: an error's text may quote a signed URL.
            except OSError as exc:  # MmfsError included: its message is meant for the user
                send({"ok": False, "error": one_line(redact(str(exc)))})
            except Exception as exc:
                log.exception("control request failed")
                send({"ok": False, "error": one_line(redact(f"internal error: {exc}"))})

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        self.path.unlink(missing_ok=True)


def request(path: Path, cmd: str, /, *, timeout: float | None = 30.0, **args: Any) -> Iterator[dict[str, Any]]:
    """Send one request; yield each progress payload, and finally the answer (``ok`` true), or raise."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise ControlError(f"no mmfs mount answers on {path} (is it mounted, with the same --state-dir?)") from None
    with sock, sock.makefile("rwb") as stream:
        try:
            stream.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            stream.flush()
            for line in stream:
                message = json.loads(line)
                if "progress" in message:
                    yield message["progress"]
                    continue
                if not message.get("ok"):
                    raise ControlError(message.get("error", "the mount refused the request"))
                yield message
                return
        except TimeoutError:
            # A stopped or hung mount accepts the connection (the kernel does) and never answers.
            raise ControlError(f"the mount did not answer within {timeout} s (is it stopped or hung?)") from None
    raise ControlError("the mount closed the control connection without an answer")


def answer_within(seconds: float, what: object, call: Callable[[], Any]) -> Any:
    """``call()``'s result, or ``ControlError`` when it takes longer than ``seconds`` (its thread is left
    to finish or to die with the process: a look at a stopped FUSE mount cannot be interrupted)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = start_thread(run, name="mmfs-ask")
    thread.join(seconds)
    if thread.is_alive():
        raise ControlError(f"{what}: no answer within {seconds:g} s (is the mount stopped or hung?)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def socket_attr(path: Path) -> bytes:
    """The socket a mount root's attribute names (``OSError`` if ``path`` is no mmfs mount root); unbounded:
    callers wrap it in ``answer_within``."""
    return get_xattr(path, CONTROL_XATTR)


def mount_socket(mountpoint: Path) -> Path:
    """The control socket of the mount on ``mountpoint``, asked of the mount within ``ANSWER_WAIT``."""
    try:
        return Path(os.fsdecode(answer_within(ANSWER_WAIT, mountpoint, lambda: socket_attr(mountpoint))))
    except OSError as exc:
        raise ControlError(f"{mountpoint} is not a running mmfs mount ({exc.strerror})") from None


def ask(mountpoint: Path, cmd: str, /, *, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
    """One request to the mount on ``mountpoint``; its final answer (progress lines are dropped)."""
    return list(request(mount_socket(mountpoint), cmd, timeout=timeout, **args))[-1]
