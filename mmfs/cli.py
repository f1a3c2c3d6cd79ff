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
from typing import NoReturn

from mmfs.config import DEFAULT_BASE_URL, PURPOSES, MountConfig, parse_purposes, parse_size
from mmfs.errors import AuthError, MmfsError
from mmfs.private_dir import make_private_dir

__all__ = ["build_parser", "main"]

log = logging.getLogger("mmfs.cli")

# How long --daemon waits for the child's mount to go live before giving up on it.
_DAEMON_START_TIMEOUT = 60.0


_MOUNT_DESCRIPTION = """\
Mount the files of the MiniMax API platform on MOUNTPOINT: one folder per purpose, each file under its
name, any file by id under .by-id/. Reads fetch only the 4 MiB blocks they touch into a disk cache;
files written into an upload purpose are uploaded when they are closed.

Every option can also come from the environment (MMFS_<OPTION>, e.g. MMFS_CACHE_SIZE=20G; the host is
MINIMAX_BASE_URL) or from a profile in the config file (--profile). A flag beats the environment, which
beats the profile, which beats the default. The API key comes from --api-key-file, MINIMAX_API_KEY, or
the profile (api_key_file, or api_key in a config file only you can read) - never from the command line.
"""

_MOUNT_EPILOG = """\
examples:
  mmfs mount ~/minimax                          foreground; Ctrl-C unmounts
  mmfs mount ~/minimax --daemon                 return once the mount answers
  mmfs mount --profile work ~/minimax           the options of [work] in the config file
  mmfs mount ~/minimax --read-only --purposes voice_clone,retrieval
  mmfs mount ~/minimax -o cache_size=20G,allow_other,uid=1000
  mmfs mount ~/minimax --base-url https://api.minimaxi.com   a key from mainland China

config file: {config}
  [work]
  base_url = "https://api.minimax.io"
  api_key_file = "~/.config/mmfs/work.key"
  cache_size = "20G"
  purposes = ["voice_clone", "retrieval"]

the same from /etc/fstab (see README, "Everyday use"):
  work  /home/me/minimax  fuse.mmfs  noauto,user,cache_size=20G  0 0
"""


_TOP_EPILOG = """\
examples:
  mmfs mount --profile work ~/minimax --daemon    mount in the background (see: mmfs mount --help)
  mmfs status                                     what every mount of yours is doing
  mmfs refresh ~/minimax                          see changes made elsewhere now
  mmfs pin ~/minimax/voice_clone                  keep files on disk, readable offline
  mmfs unmount ~/minimax
"""


_UNMOUNT_EPILOG = """\
examples:
  mmfs unmount ~/minimax
  mmfs unmount -z ~/minimax      even while a program still has files open there
"""


def _add_mount_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("mountpoint", type=Path, help="an existing, empty folder, e.g. ~/minimax")
    p.add_argument("--profile", metavar="NAME",
                   help="take options from [NAME] in the config file, e.g. --profile work")
    p.add_argument("-o", dest="mount_options", action="append", default=[], metavar="OPT[,OPT...]",
                   help="options as mount(8) takes them, e.g. -o ro,allow_other,uid=1000,cache_size=20G "
                        "(any long option, with _ for -; generic ones like dev, suid, noauto are ignored)")
    conn = p.add_argument_group("the platform")
    conn.add_argument("--base-url", metavar="URL",
                      help=f"API host, e.g. https://api.minimaxi.com "
                           f"(default: $MINIMAX_BASE_URL or {DEFAULT_BASE_URL})")
    conn.add_argument("--api-key-file", type=Path, metavar="FILE",
                      help="read the API key from FILE, e.g. ~/.config/mmfs/key (else $MINIMAX_API_KEY)")
    conn.add_argument("--purposes", metavar="P,P",
                      help="comma-separated purposes to show, e.g. voice_clone,retrieval (default: all known)")
    conn.add_argument("--op-param", action="append", default=[], metavar="OP:KEY=VALUE",
                      help="extra query parameter for one operation, for API gateways, e.g. "
                           "retrieve:model=minimax-files-retrieve (repeatable)")
    conn.add_argument("--shared", metavar="REDIS_URL",
                      help="share listings, blocks and the API budget with other mounts through this Redis, "
                           "e.g. redis://cache.lan:6379/0?budget=300; a URL with a password belongs in "
                           "MMFS_SHARED or a profile, not the command line (default: none; see doc/FLEET.md)")
    conn.add_argument("--ca-bundle", type=Path, metavar="PEM",
                      help="verify the API and download hosts against this CA bundle instead of the system's, "
                           "e.g. a gateway's own CA (verification is never turned off)")
    conn.add_argument("--retry-deadline", type=float, metavar="S",
                      help="seconds an operation may spend retrying before it fails with EIO, e.g. 120 (default 60)")
    cache = p.add_argument_group("caching")
    cache.add_argument("--cache-dir", type=Path, metavar="DIR",
                       help="block cache folder, e.g. /var/cache/mmfs (default: the user cache folder)")
    cache.add_argument("--cache-size", type=_size, metavar="SIZE",
                       help="disk cache ceiling, e.g. 512M or 20G (default 10G)")
    cache.add_argument("--min-free-space", type=_size, metavar="SIZE",
                       help="free space kept on the cache's disk for files being written, e.g. 5G (default 1G)")
    cache.add_argument("--dir-cache-time", type=float, metavar="S",
                       help="seconds a listing is trusted before it is fetched again, e.g. 5 (default 30)")
    cache.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="remembered files, the control socket and --daemon's log, e.g. ~/.local/state/mmfs "
                            "(default: the user state folder)")
    access = p.add_argument_group("access")
    access.add_argument("--read-only", action="store_true", default=None,
                        help="no writes or deletes at all (EROFS)")
    access.add_argument("--allow-non-empty", action="store_true", default=None,
                        help="mount over a folder that holds files (they are hidden while mounted)")
    access.add_argument("--uid", type=int, metavar="UID", help="owner shown for every file, e.g. 1000 (default: you)")
    access.add_argument("--gid", type=int, metavar="GID", help="group shown for every file, e.g. 1000 (default: yours)")
    access.add_argument("--umask", type=_umask, metavar="OCTAL",
                        help="mode bits to hide, e.g. 027 shows files as 0640 (default: none hidden)")
    access.add_argument("--allow-other", action="store_true", default=None,
                        help="let other users into the mount (off by default; needs user_allow_other in "
                             "/etc/fuse.conf unless you are root)")
    access.add_argument("--list-by-id", action="store_true", default=None,
                        help="make .by-id/ list the ids mmfs knows (default: it lists nothing, so du, find "
                             "and cp -r do not count every file twice; any id is still reachable)")
    run = p.add_argument_group("running")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--foreground", dest="daemon", action="store_false", help="stay attached (default)")
    mode.add_argument("--daemon", dest="daemon", action="store_true",
                      help="return once the mount answers; the log goes under the state folder")
    p.set_defaults(daemon=False)
    run.add_argument("--log-file", type=Path, metavar="FILE",
                     help="write the log to FILE, e.g. ~/mmfs.log (default: stderr; STATE_DIR/log/ for --daemon)")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more log: -v debug for mmfs, -vv for all")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """One line per usage error, naming the option, instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"mmfs: {message} (see: {self.prog} --help)\n")


def _umask(text: str) -> int:
    from mmfs.profiles import octal_mask

    try:
        return octal_mask(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from mmfs import __version__
    from mmfs.commands import add_commands
    from mmfs.profiles import config_path

    parser = _Parser(prog="mmfs", description="The MiniMax file platform as a FUSE filesystem",
                                     epilog=_TOP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mmfs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_mount_args(sub.add_parser(
        "mount", help="mount the platform's files on a folder", usage="mmfs mount [options] MOUNTPOINT",
        description=_MOUNT_DESCRIPTION, epilog=_MOUNT_EPILOG.format(config=config_path()),
        formatter_class=argparse.RawDescriptionHelpFormatter))
    un = sub.add_parser("unmount", help="unmount a mmfs mount", epilog=_UNMOUNT_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    un.add_argument("mountpoint", type=Path, help="the mount, e.g. ~/minimax")
    un.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")
    add_commands(sub)
    sub.add_parser("emulator", help="run the MiniMax API emulator (see: mmfs emulator --help)", add_help=False)
    return parser


def _setup_logging(verbose: int, log_file: Path | None) -> None:
    from mmfs.redact import RedactingFilter, open_private_log

    handler: logging.Handler
    if log_file:
        # Owner-only from the first byte: the log may name files, and is no one else's business.
        handler = logging.StreamHandler(os.fdopen(open_private_log(log_file), "a", encoding="utf-8",
                                                     # a platform filename may hold a lone surrogate
                                                     errors="backslashreplace"))
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # On the handler, not a logger: it then sees every record that reaches it, urllib3's and mfusepy's too.
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.getLogger("mmfs").setLevel(logging.DEBUG if verbose else logging.INFO)
    # urllib3's request lines are noise at INFO; their queries are redacted whatever the level.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _read_key(args: argparse.Namespace) -> str:
    # A key file given as a flag beats the environment's key, which beats the profile's file or key.
    key_file = args.api_key_file if getattr(args, "key_file_is_flag", True) else None
    key = ""
    if key_file is None:
        key = os.environ.get("MINIMAX_API_KEY", "").strip()
        if not key:
            key_file = args.api_key_file
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise SystemExit(f"mmfs: cannot read the API key file {key_file}: {exc.strerror}") from None
    if not key:
        key = getattr(args, "profile_api_key", "") or ""
    if not key and getattr(args, "api_key_keyring", False) and args.profile:
        from mmfs.profiles import ProfileError, keyring_key

        try:
            key = keyring_key(args.profile)
        except ProfileError as exc:
            raise SystemExit(f"mmfs: {exc}") from None
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


def _resolved(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every option merged: flags (and -o) > environment > profile > defaults."""
    from mmfs.profiles import ProfileError, load_profile, parse_mount_options, resolve, url_has_password

    if getattr(args, "resolved", False):
        return args
    try:
        flags = parse_mount_options(args.mount_options)
        flags.update({k: v for k, v in vars(args).items() if v is not None and v != []})
        profile = load_profile(args.profile) if args.profile else {}
        merged = resolve(flags, os.environ, profile)
    except ProfileError as exc:
        raise SystemExit(f"mmfs: {exc}") from None
    out = argparse.Namespace(**{**vars(args), **merged})
    out.key_file_is_flag = args.api_key_file is not None or "api_key_file" in flags
    out.profile_api_key = profile.get("api_key", "")
    out.shared_password_in_argv = url_has_password(str(flags.get("shared") or ""))
    out.resolved = True
    return out


def _warn_of_argv_secrets(args: argparse.Namespace) -> None:
    if getattr(args, "shared_password_in_argv", False):
        print("mmfs: warning: the --shared URL holds a password, and a command line is readable by every user "
              "(ps); put the URL in MMFS_SHARED or a profile instead", file=sys.stderr)


def _config(args: argparse.Namespace) -> MountConfig:
    args = _resolved(args)
    purposes = PURPOSES
    if args.purposes:
        purposes = parse_purposes(args.purposes)
    config = MountConfig(
        mountpoint=args.mountpoint.absolute(),
        api_key=_read_key(args),
        base_url=(args.base_url or os.environ.get("MINIMAX_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
        op_params=_op_params(args.op_param),
        purposes=purposes,
        cache_size=args.cache_size,
        min_free_space=args.min_free_space,
        dir_cache_time=args.dir_cache_time,
        read_only=args.read_only,
        read_deadline=args.retry_deadline,
        ca_bundle=args.ca_bundle.absolute() if args.ca_bundle else None,
        allow_non_empty=args.allow_non_empty,
        shared=args.shared or None,
    )
    if args.cache_dir:
        config.cache_dir = args.cache_dir.absolute()
    if args.state_dir:
        config.state_dir = args.state_dir.absolute()
    if args.uid is not None:
        config.uid = args.uid
    if args.gid is not None:
        config.gid = args.gid
    config.umask = args.umask
    config.allow_other = bool(args.allow_other)
    config.list_by_id = bool(args.list_by_id)
    config.validate()
    return config


def allow_other_problem(uid: int, fuse_conf: Path = Path("/etc/fuse.conf")) -> str | None:
    """Why --allow-other would fail for this user, in words, before fusermount3 says it less clearly."""
    if uid == 0:
        return None
    try:
        lines = fuse_conf.read_text().splitlines()
    except OSError:
        lines = []
    if any(line.strip() == "user_allow_other" for line in lines):
        return None
    return f"--allow-other needs the line user_allow_other in {fuse_conf} (uncomment it as root) or a mount by root"


def _run_mount(args: argparse.Namespace) -> int:
    from mmfs.mount import mount, tune_this_process

    args = _resolved(args)
    _warn_of_argv_secrets(args)
    config = _config(args)
    problem = allow_other_problem(os.getuid()) if config.allow_other else None
    if problem:
        print(f"mmfs: {problem}", file=sys.stderr)
        return 1
    tune_this_process()
    try:
        _setup_logging(args.verbose, args.log_file)
    except OSError as exc:
        raise MmfsError(f"cannot write the log {args.log_file}: {exc.strerror} "
                        "(choose another with --log-file)") from None
    try:
        mount(config)
    except AuthError as exc:
        print(f"mmfs: the platform refused the API key ({exc}); check MINIMAX_API_KEY and the base URL "
              f"(a key works only on its own region's host)", file=sys.stderr)
        return 2
    return 0


def _run_daemon(args: argparse.Namespace, argv: list[str]) -> int:
    """Start the same mount detached, wait until it is live (or failed), and return."""
    from mmfs.mount import check_mount_point, is_live_mount
    from mmfs.redact import open_private_log

    args = _resolved(args)
    _warn_of_argv_secrets(args)
    config = _config(args)  # fail fast on a missing key or bad argument, in the user's terminal
    # A mount already live there would read as this one's success: refuse it here, as the child would.
    check_mount_point(config.mountpoint, allow_non_empty=config.allow_non_empty)
    log_file = args.log_file or daemon_log_path(config)
    make_private_dir(log_file.parent)
    child_argv = [a for a in argv if a != "--daemon"] + ["--foreground", "--log-file", str(log_file)]
    env = dict(os.environ, MINIMAX_API_KEY=config.api_key)  # the environment, never argv
    try:
        with open(open_private_log(log_file), "ab") as sink:
            start = sink.tell()
            child = subprocess.Popen([sys.executable, "-m", "mmfs", *child_argv], env=env,
                                     stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, start_new_session=True)
    except OSError as exc:
        raise MmfsError(f"cannot write the log {log_file}: {exc.strerror} (choose another with --log-file)") from None
    deadline = time.monotonic() + _DAEMON_START_TIMEOUT
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            print(f"{_child_reason(log_file, start)} (exit {code}; log {log_file})", file=sys.stderr)
            return code or 1
        if is_live_mount(config.mountpoint):
            print(f"mmfs: mounted on {config.mountpoint} (pid {child.pid}, log {log_file})")
            return 0
        time.sleep(0.05)
    child.terminate()
    print(f"mmfs: the mount did not come up within {_DAEMON_START_TIMEOUT:.0f} s; see {log_file}",
          file=sys.stderr)
    return 1


def _child_reason(log_file: Path, start: int) -> str:
    """The failed child's own one-line message, from what it wrote to the log since it started."""
    try:
        with open(log_file, "rb") as log:
            log.seek(start)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    reasons = [line for line in lines if line.startswith("mmfs: ")]
    return reasons[-1] if reasons else "mmfs: the mount failed"


def daemon_log_path(config: MountConfig) -> Path:
    """``--daemon``'s log: under the state folder, one file per mount point."""
    where = Path(config.mountpoint)
    if where.is_relative_to(Path.home()):
        where = where.relative_to(Path.home())  # ~/minimax -> mount-minimax.log
    slug = "".join(c if c.isalnum() else "-" for c in str(where).strip("/")) or "root"
    return config.state_dir / "log" / f"mount-{slug}.log"


_COMMANDS = {"mount", "unmount", "emulator", "status", "refresh", "pin", "unpin", "cache"}


def _helper_form(argv: list[str]) -> list[str]:
    """``mmfs SOURCE MOUNTPOINT -o OPTS``, as mount(8) runs it for ``mount -t fuse.mmfs SOURCE MOUNTPOINT`` (via
    mount.fuse3) -> ``mmfs mount --daemon [--profile SOURCE] MOUNTPOINT -o OPTS``. SOURCE is a profile name;
    ``mmfs`` or ``none`` means no profile. mount(8) waits for the helper, so the mount goes to the background."""
    if len(argv) < 2 or argv[0] in _COMMANDS or argv[0].startswith("-") or not os.path.isdir(argv[1]):
        return argv
    source, mountpoint, rest = argv[0], argv[1], argv[2:]
    profile = [] if source in ("mmfs", "none", "") else ["--profile", source]
    return ["mount", mountpoint, *profile, "--daemon", *rest]


def main(argv: list[str] | None = None) -> int:
    argv = _helper_form(list(sys.argv[1:] if argv is None else argv))
    if argv[:1] == ["emulator"]:
        from mmfs.emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    try:
        return _run(args, argv)
    except MmfsError as exc:  # every refusal, one line: what is wrong and which option or fix
        print(f"mmfs: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from mmfs.mount import check_libfuse, unmount

    if args.command == "unmount":
        unmount(args.mountpoint.absolute(), lazy=args.lazy)
        return 0
    check_libfuse()  # before the key: a missing libfuse is the first thing to fix
    if args.command in ("status", "refresh", "pin", "unpin", "cache"):
        from mmfs.commands import run_command

        return run_command(args)
    if args.daemon:
        return _run_daemon(args, argv)
    return _run_mount(args)


if __name__ == "__main__":
    sys.exit(main())
