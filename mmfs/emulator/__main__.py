"""``python -m mmfs.emulator``: run the emulator until SIGTERM or Ctrl-C.

Prints ``emulator listening on http://HOST:PORT`` (``https://`` with ``--tls``) as its first line (then the
certificate to trust with ``--tls``, and the key it accepts when MINIMAX_API_KEY is unset), so a parent
process can read the port it picked with ``--port 0``. Every switch
is a flag; ``mmfs emulator`` delegates here through ``build_parser`` and ``main``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from .config import SWITCH_HELP, SWITCH_NAMES, EmulatorConfig
from .server import Emulator

__all__ = ["build_parser", "main"]

_DEFAULTS = EmulatorConfig(data_dir=Path("."))


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535 (0: any free port), not {port}")
    return port


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line naming the option, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"emulator: {message} (see: {self.prog} --help)\n")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The emulator's arguments, added to ``parser`` (e.g. a subcommand's) or to a new one."""
    if parser is None:
        parser = _OneLineParser(
            prog="python -m mmfs.emulator",
            description="Serve the MiniMax File Management API on loopback, with its quirks and faults.",
        )
    parser.add_argument("--port", type=_port, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder that keeps the files across restarts (default: a temporary folder)")
    parser.add_argument("--demo", action="store_true", help="seed a demo tree when the folder holds no files")
    parser.add_argument("--tls", action="store_true",
                        help="serve https with a self-signed certificate made at start (its path is printed)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log one line per request to stderr")
    switches = parser.add_argument_group("switches (all can be changed later: POST /_emulator/config)")
    for name in SWITCH_NAMES:
        default = getattr(_DEFAULTS, name)
        flag = "--" + name.replace("_", "-")
        # argparse %-formats help strings: a literal % (as in "%22") must be doubled.
        help_text = f"{SWITCH_HELP[name]} (default: {default})".replace("%", "%%")
        if isinstance(default, bool):
            switches.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default,
                                  help=help_text)
        else:
            switches.add_argument(flag, dest=name, type=type(default), default=default, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None, args: argparse.Namespace | None = None) -> int:
    """Run until a signal; ``args`` lets a caller that parsed with ``build_parser`` pass its result."""
    if args is None:
        args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s")
    temp_dir = None
    data_dir = args.data
    if data_dir is None:
        temp_dir = tempfile.mkdtemp(prefix="mmfs-emulator-")
        data_dir = Path(temp_dir)
    try:
        config = EmulatorConfig(
            data_dir=data_dir, port=args.port, host=args.host, demo=args.demo, tls=args.tls,
            **{name: getattr(args, name) for name in SWITCH_NAMES},
        )
    except ValueError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        emulator = Emulator(config).start()
    except OSError as exc:
        why = f"port {args.port} is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(f"emulator: cannot listen on {args.host}:{args.port}: {why} "
              "(choose another with --port, or --port 0 for any free one)", file=sys.stderr)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        return 2
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(f"emulator listening on {emulator.base_url}", flush=True)
        if emulator.ca_path is not None:
            print(f"certificate to trust: {emulator.ca_path}", flush=True)
        if not os.environ.get("MINIMAX_API_KEY"):
            print(f"api key (MINIMAX_API_KEY unset): {emulator.api_key}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
