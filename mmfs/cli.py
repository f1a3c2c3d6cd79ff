"""The ``mmfs`` command: ``mount``, ``unmount`` and ``emulator``.

The API key comes from ``MINIMAX_API_KEY`` or ``--api-key-file``, never from argv (argv is public in
``ps``). ``--daemon`` re-runs the mount in a detached child and returns once the mount is live, or fails
with the child's own message.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import platformdirs

from mmfs.config import DEFAULT_BASE_URL, PURPOSES, MountConfig, parse_size
from mmfs.errors import AuthError, MmfsError

__all__ = ["build_parser", "main"]

log = logging.getLogger("mmfs.cli")

# How long --daemon waits for the child's mount to go live before giving up on it.
_DAEMON_START_TIMEOUT = 60.0


def _add_mount_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--base-url", help=f"API host (default: $MINIMAX_BASE_URL or {DEFAULT_BASE_URL})")
    p.add_argument("--api-key-file", type=Path, help="read the API key from this file (else $MINIMAX_API_KEY)")
    p.add_argument("--cache-dir", type=Path, help="block cache folder (default: the user cache folder)")
    p.add_argument("--state-dir", type=Path, help="remembered files (default: the user state folder)")
    p.add_argument("--cache-size", type=parse_size, default="10G", help="disk cache ceiling (default 10G)")
    p.add_argument("--dir-cache-time", type=float, default=30.0, metavar="S",
                   help="seconds a listing is trusted before it is fetched again (default 30)")
    p.add_argument("--purposes", help="comma-separated purposes to show (default: all known)")
    p.add_argument("--op-param", action="append", default=[], metavar="OP:KEY=VALUE",
                   help="extra query parameter for one operation, for API gateways (repeatable)")
    p.add_argument("--retry-deadline", type=float, default=60.0, metavar="S",
                   help="seconds an operation may spend retrying before it fails with EIO (default 60)")
    p.add_argument("--read-only", action="store_true", help="no writes or deletes at all (EROFS)")
    p.add_argument("--shared", metavar="REDIS_URL", default=os.environ.get("MMFS_SHARED"),
                   help="share listings, blocks and the API budget with other mounts through this Redis "
                        "(default: $MMFS_SHARED; see doc/FLEET.md)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--foreground", dest="daemon", action="store_false", help="stay attached (default)")
    mode.add_argument("--daemon", dest="daemon", action="store_true", help="return once the mount is live")
    p.set_defaults(daemon=False)
    p.add_argument("--log-file", type=Path, help="write the log here (default: stderr; a file for --daemon)")
    p.add_argument("-v", "--verbose", action="count", default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmfs", description="The MiniMax file platform as a FUSE filesystem")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_mount_args(sub.add_parser("mount", help="mount the platform's files on a folder"))
    un = sub.add_parser("unmount", help="unmount a mmfs mount")
    un.add_argument("mountpoint", type=Path)
    un.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")
    sub.add_parser("emulator", help="run the MiniMax API emulator (see: mmfs emulator --help)", add_help=False)
    return parser


def _setup_logging(verbose: int, log_file: Path | None) -> None:
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.getLogger("mmfs").setLevel(logging.DEBUG if verbose else logging.INFO)
    # urllib3 logs request lines with their query strings, and a signed URL's query is a secret.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _read_key(args: argparse.Namespace) -> str:
    if args.api_key_file:
        try:
            key = args.api_key_file.read_text().strip()
        except OSError as exc:
            raise SystemExit(f"mmfs: cannot read the API key file {args.api_key_file}: {exc.strerror}") from None
    else:
        key = os.environ.get("MINIMAX_API_KEY", "").strip()
    if not key:
        raise SystemExit("mmfs: no API key: set MINIMAX_API_KEY or pass --api-key-file FILE")
    return key


def _op_params(specs: list[str]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for spec in specs:
        op, sep, pair = spec.partition(":")
        key, eq, value = pair.partition("=")
        if not (sep and eq and op and key):
            raise SystemExit(f"mmfs: --op-param wants OP:KEY=VALUE, got {spec!r}")
        result.setdefault(op, {})[key] = value
    return result


def _config(args: argparse.Namespace) -> MountConfig:
    purposes = PURPOSES
    if args.purposes:
        purposes = tuple(p.strip() for p in args.purposes.split(",") if p.strip())
    config = MountConfig(
        mountpoint=args.mountpoint.absolute(),
        api_key=_read_key(args),
        base_url=(args.base_url or os.environ.get("MINIMAX_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
        op_params=_op_params(args.op_param),
        purposes=purposes,
        cache_size=args.cache_size,
        dir_cache_time=args.dir_cache_time,
        read_only=args.read_only,
        read_deadline=args.retry_deadline,
        shared=args.shared or None,
    )
    if args.cache_dir:
        config.cache_dir = args.cache_dir.absolute()
    if args.state_dir:
        config.state_dir = args.state_dir.absolute()
    return config


def _run_mount(args: argparse.Namespace) -> int:
    from mmfs.mount import mount

    config = _config(args)
    _setup_logging(args.verbose, args.log_file)
    try:
        mount(config)
    except AuthError as exc:
        print(f"mmfs: the platform refused the API key ({exc}); check MINIMAX_API_KEY and the base URL "
              f"(a key works only on its own region's host)", file=sys.stderr)
        return 2
    except MmfsError as exc:
        print(f"mmfs: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_daemon(args: argparse.Namespace, argv: list[str]) -> int:
    """Start the same mount detached, wait until it is live (or failed), and return."""
    config = _config(args)  # fail fast on a missing key or bad argument, in the user's terminal
    log_file = args.log_file or Path(platformdirs.user_log_dir("mmfs", appauthor=False)) / "mount.log"
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    child_argv = [a for a in argv if a != "--daemon"] + ["--foreground", "--log-file", str(log_file)]
    env = dict(os.environ, MINIMAX_API_KEY=config.api_key)  # the environment, never argv
    with open(log_file, "ab") as sink:
        child = subprocess.Popen([sys.executable, "-m", "mmfs", *child_argv], env=env, stdin=subprocess.DEVNULL,
                                 stdout=sink, stderr=sink, start_new_session=True)
    deadline = time.monotonic() + _DAEMON_START_TIMEOUT
    from mmfs.mount import is_live_mount

    while time.monotonic() < deadline:
        if is_live_mount(config.mountpoint):
            print(f"mmfs: mounted on {config.mountpoint} (pid {child.pid}, log {log_file})")
            return 0
        code = child.poll()
        if code is not None:
            print(f"mmfs: the mount failed (exit {code}); see {log_file}", file=sys.stderr)
            return code or 1
        time.sleep(0.05)
    child.terminate()
    print(f"mmfs: the mount did not come up within {_DAEMON_START_TIMEOUT:.0f} s; see {log_file}",
          file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        from mmfs.emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    if args.command == "unmount":
        from mmfs.mount import MountError, unmount

        try:
            unmount(args.mountpoint.absolute(), lazy=args.lazy)
        except MountError as exc:
            print(f"mmfs: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.daemon:
        return _run_daemon(args, argv)
    return _run_mount(args)


if __name__ == "__main__":
    sys.exit(main())
