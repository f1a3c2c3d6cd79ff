"""The ``mmfs`` command line: every subcommand and option, with its help text and examples.

Only the grammar: what the options mean is resolved in ``mmfs.cli`` (flags > environment > profile >
defaults) and acted on there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from mmfs.config import (
    DEFAULT_BASE_URL,
    parse_base_url,
    parse_id,
    parse_purposes,
    parse_seconds,
    parse_size,
)

__all__ = ["build_parser"]


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
  mmfs status ~/minimax --watch                   live transfers and rates
  mmfs config check --online                      every profile, as a mount would read it
  mmfs completion bash > ~/.local/share/bash-completion/completions/mmfs
  mmfs unmount ~/minimax                          (or: mmfs umount)
"""


_UNMOUNT_EPILOG = """\
examples:
  mmfs unmount ~/minimax
  mmfs unmount -z ~/minimax      even while a program still has files open there
"""


def _add_mount_args(p: argparse.ArgumentParser, *, mountpoint: bool = True) -> None:
    if mountpoint:
        p.add_argument("mountpoint", type=Path, help="an existing, empty folder, e.g. ~/minimax")
    p.add_argument("--profile", metavar="NAME",
                   help="take options from [NAME] in the config file, e.g. --profile work")
    p.add_argument("-o", dest="mount_options", action="append", default=[], metavar="OPT[,OPT...]",
                   help="options as mount(8) takes them, e.g. -o ro,allow_other,uid=1000,cache_size=20G "
                        "(any long option, with _ for -; generic ones like dev, suid, noauto are ignored)")
    conn = p.add_argument_group("the platform")
    conn.add_argument("--base-url", metavar="URL", type=_checked(parse_base_url),
                      help=f"API host, e.g. https://api.minimaxi.com "
                           f"(default: $MINIMAX_BASE_URL or {DEFAULT_BASE_URL})")
    conn.add_argument("--api-key-file", type=Path, metavar="FILE",
                      help="read the API key from FILE, e.g. ~/.config/mmfs/key (else $MINIMAX_API_KEY)")
    conn.add_argument("--purposes", metavar="P,P", type=_purposes,
                      help="comma-separated purposes to show, e.g. voice_clone,retrieval (default: all known)")
    conn.add_argument("--op-param", action="append", default=[], metavar="OP:KEY=VALUE", type=_op_param,
                      help="extra query parameter for one operation, for API gateways, e.g. "
                           "retrieve:model=minimax-files-retrieve (repeatable)")
    conn.add_argument("--shared", metavar="REDIS_URL",
                      help="share listings, blocks and the API budget with other mounts through this Redis, "
                           "e.g. redis://cache.lan:6379/0?budget=300 (also rediss://, redis+cluster://h1:p,h2:p "
                           "and redis+sentinel://h:26379/mymaster); a URL with a password belongs in "
                           "MMFS_SHARED or a profile, not the command line (default: none; see doc/FLEET.md)")
    conn.add_argument("--ca-bundle", type=_existing_file, metavar="PEM",
                      help="verify the API and download hosts against this CA bundle instead of the system's, "
                           "e.g. a gateway's own CA (verification is never turned off)")
    conn.add_argument("--retry-deadline", type=_checked(lambda t: parse_seconds(t, zero=False)), metavar="S",
                      help="seconds an operation may spend retrying before it fails with EIO, e.g. 120 (default 60)")
    conn.add_argument("--bwlimit", type=_checked(_bwlimit), metavar="RATE",
                      help="bytes per second to and from the platform, e.g. 10M for both ways, or UP:DOWN as in "
                           "2M:20M (off: no limit; the default)")
    conn.add_argument("--max-streams", type=_checked(_max_streams), metavar="N",
                      help="most block downloads at once, e.g. 32 for a far or per-connection-capped host: mmfs "
                           "starts at 8 and adds streams while they make reads faster (default 16)")
    conn.add_argument("--chunk-size", type=_checked(_chunk_size), metavar="SIZE",
                      help="bytes per download request and cache block, e.g. 8M for a far host, 1M for small "
                           "random reads (default 4M)")
    cache = p.add_argument_group("caching")
    cache.add_argument("--cache-dir", type=Path, metavar="DIR",
                       help="block cache folder, e.g. /var/cache/mmfs (default: the user cache folder)")
    cache.add_argument("--cache-size", type=_size, metavar="SIZE",
                       help="disk cache ceiling, e.g. 512M or 20G (default 10G)")
    cache.add_argument("--min-free-space", type=_size, metavar="SIZE",
                       help="free space kept on the cache's disk for files being written, e.g. 5G (default 1G)")
    cache.add_argument("--cache-max-age", type=_checked(_duration), metavar="AGE",
                       help="drop cached blocks fetched longer ago than this, e.g. 12h, 30m, 7d or 3600 (seconds); "
                            "pinned files stay (default: kept until the cache needs the room)")
    cache.add_argument("--dir-cache-time", type=_checked(parse_seconds), metavar="S",
                       help="seconds a listing is trusted before it is fetched again, e.g. 5 (default 30)")
    cache.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="remembered files, the control socket and --daemon's log, e.g. ~/.local/state/mmfs "
                            "(default: the user state folder)")
    access = p.add_argument_group("access")
    access.add_argument("--read-only", action="store_true", default=None,
                        help="no writes or deletes at all (EROFS)")
    access.add_argument("--allow-non-empty", action="store_true", default=None,
                        help="mount over a folder that holds files (they are hidden while mounted)")
    access.add_argument("--uid", type=_checked(parse_id), metavar="UID",
                        help="owner shown for every file, e.g. 1000 (default: you)")
    access.add_argument("--gid", type=_checked(parse_id), metavar="GID",
                        help="group shown for every file, e.g. 1000 (default: yours)")
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
    run.add_argument("--metrics-addr", type=_checked(_metrics_addr), metavar="[HOST:]PORT",
                     help="serve the counters of mmfs status in Prometheus' text format at "
                          "http://HOST:PORT/metrics, e.g. 9100 (loopback) or 0.0.0.0:9100 (default: off)")
    run.add_argument("--log-file", type=_log_file, metavar="FILE",
                     help="write the log to FILE, e.g. ~/mmfs.log (default: stderr; STATE_DIR/log/ for --daemon)")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more log: -v debug for mmfs, -vv for all")
    run.add_argument("-q", "--quiet", action="store_true", default=None,
                     help="log only warnings and errors (the same as --log-level warning)")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), metavar="LEVEL",
                     help="the least a log line must be to be written, e.g. warning: debug, info (default), warning "
                          "or error")
    run.add_argument("--log-format", choices=("text", "json"), metavar="FORMAT",
                     help="text (default; under systemd, plain lines with the level for the journal) or json, "
                          "one object per line, e.g. --log-format json")


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError: its message becomes the one-line error."""

    def check(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = getattr(parse, "__name__", "value")
    return check


def _purposes(text: str) -> str:
    from mmfs.errors import MmfsError

    try:
        parse_purposes(text)
    except MmfsError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--purposes: ")) from None
    return text


def _op_param(text: str) -> str:
    op, sep, pair = text.partition(":")
    key, eq, _ = pair.partition("=")
    if not (sep and eq and op and key):
        # The value is not echoed: a gateway's parameter may be a token.
        raise argparse.ArgumentTypeError("wants OP:KEY=VALUE, e.g. retrieve:model=minimax-files-retrieve")
    return text


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def _log_file(text: str) -> Path:
    """A log file in a folder that exists: mmfs creates the file, never the folders to it."""
    path = Path(text).expanduser()
    parent = path.absolute().parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {parent} does not exist (create it first, or "
                                         f"choose another file)")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name in it, e.g. {path / 'mmfs.log'}")
    return path


def _metrics_addr(text: str) -> str:
    from mmfs.profiles import OPTIONS

    return str(OPTIONS["metrics_addr"].parse(text))


def _bwlimit(text: str) -> str:
    from mmfs.profiles import OPTIONS

    return str(OPTIONS["bwlimit"].parse(text))


def _max_streams(text: str) -> int:
    from mmfs.profiles import OPTIONS

    return int(OPTIONS["max_streams"].parse(text))


def _chunk_size(text: str) -> int:
    from mmfs.profiles import OPTIONS

    return int(OPTIONS["chunk_size"].parse(text))


def _duration(text: str) -> float:
    from mmfs.profiles import OPTIONS

    return float(OPTIONS["cache_max_age"].parse(text))


_SERVE_DESCRIPTION = """\
Serve the platform's files over WebDAV, for machines without FUSE (containers, macOS, Windows): the same
folders, reads, writes, renames and deletes as `mmfs mount`, through Finder, Explorer, GNOME Files, davfs2
or rclone. Takes every option of `mmfs mount` and its profiles.

On a loopback address (the default) anyone on this machine may connect, as anyone may enter a FUSE mount.
Any other address needs --token-file (user mmfs, the token as password) and --tls-cert/--tls-key.
"""

_SERVE_EPILOG = """\
examples:
  mmfs serve webdav --profile work                       http://127.0.0.1:8080/
  mmfs serve webdav --addr 127.0.0.1:9000
  mmfs serve webdav --addr 0.0.0.0:8443 --token-file ~/.config/mmfs/dav.token \\
                    --tls-cert cert.pem --tls-key key.pem   from other machines: token and TLS
  mount -t davfs http://127.0.0.1:8080/ /mnt/minimax     davfs2 (set buf_size 64 on Linux 6.16+)
  rclone copy :webdav,url=http://127.0.0.1:8080/:voice_clone ./voices
"""


def _add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve the platform's files over WebDAV (see: mmfs serve webdav --help)")
    doors = serve.add_subparsers(dest="door", required=True)
    dav = doors.add_parser("webdav", help="serve over WebDAV", usage="mmfs serve webdav [options]",
                           description=_SERVE_DESCRIPTION, epilog=_SERVE_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    door = dav.add_argument_group("the WebDAV door")
    door.add_argument("--addr", type=_addr, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                      help="where to listen, e.g. 127.0.0.1:8080 (the default), [::1]:8080, or port 0 for any free one")
    door.add_argument("--token-file", type=Path, metavar="FILE",
                      help="require user mmfs with the token in FILE (made there, owner-only, if missing)")
    door.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate chain")
    door.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    _add_mount_args(dav, mountpoint=False)


def _addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"wants HOST:PORT with a port from 0 (any free one) to 65535, "
                                         f"e.g. 127.0.0.1:8080; got {text!r}")
    return host, int(port)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _umask(text: str) -> int:
    from mmfs.profiles import octal_mask

    try:
        return octal_mask(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """One line per usage error, naming the option, instead of a usage block; no abbreviations (``--api-key``
    must never be taken for ``--api-key-file``); and never the value of an unknown argument (it may be a key)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            message = _unrecognized(message.removeprefix("unrecognized arguments: "))
        self.exit(2, f"mmfs: {message} (see: {self.prog} --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        for arg in sys.argv[1:] if args is None else args:
            if str(arg).split("=", 1)[0] in ("--api-key", "--key", "--token"):
                self.exit(2, "mmfs: the key is never given on the command line (every user can read it with ps): "
                             "use --api-key-file FILE, MINIMAX_API_KEY, or a profile\n")
        return super().parse_known_args(args, namespace)


def _unrecognized(args: str) -> str:
    """argparse's "unrecognized arguments: ..." with only the option names: a value may be a secret."""
    words = args.split()
    options = [w.split("=", 1)[0] for w in words if w.startswith("-")]
    others = len(words) - len(options)
    shown = ", ".join(options)
    if others:
        shown += (", and " if shown else "") + f"{others} argument{'s' if others != 1 else ''} (not shown)"
    return f"unknown option or argument: {shown}"


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
    un = sub.add_parser("unmount", aliases=["umount"], help="unmount a mmfs mount", epilog=_UNMOUNT_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    un.add_argument("mountpoint", type=Path, help="the mount, e.g. ~/minimax")
    un.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")
    add_commands(sub)
    from mmfs.config_command import add_config_command

    add_config_command(sub)
    from mmfs.completion import add_completion_command

    add_completion_command(sub)
    _add_serve(sub)
    sub.add_parser("emulator", help="run the MiniMax API emulator (see: mmfs emulator --help)", add_help=False)
    return parser
