"""The ``mmfs`` command line: every subcommand and option, with its help text and examples.

Only the grammar: what the options mean is resolved in ``mmfs.commands.main`` (flags > environment > profile >
defaults) and acted on there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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


def _add_mount_args(p: argparse.ArgumentParser, *, mountpoint: bool = True, command: str = "mount") -> None:
    """The options ``command`` takes, in the table's order (mmfs.options), under their headings."""
    from mmfs.settings.options import FLAG, OPTIONS

    if mountpoint:
        p.add_argument("mountpoint", type=Path, help="an existing, empty folder, e.g. ~/minimax")
    groups: dict[str | None, Any] = {None: p}
    for option in OPTIONS:
        if FLAG not in option.sources or command not in option.commands:
            continue
        if option.group not in groups:
            groups[option.group] = p.add_argument_group(option.group)
        _add_option(groups[option.group], option)
    p.set_defaults(daemon=False)


def _add_option(group: Any, option: Any) -> None:
    """One option's flag(s). An option that may also come from elsewhere defaults to None, so that "not on
    the command line" is told apart from a value and the environment or the profile can give it."""
    from mmfs.settings.options import ALL_SOURCES, FLAG

    only_here = option.sources == ALL_SOURCES & {FLAG}
    default = option.default_value if only_here else None
    names, dest, help_text = option.flag_names, option.name, option.help
    if option.off_flag is not None:  # --daemon / --foreground: one setting, two flags
        both = group.add_mutually_exclusive_group()
        off, off_help = option.off_flag
        both.add_argument(off, dest=dest, action="store_false", help=off_help)
        both.add_argument(*names, dest=dest, action="store_true", help=help_text)
    elif option.kind == "switch":
        group.add_argument(*names, dest=dest, action="store_true", default=default, help=help_text)
    elif option.kind == "count":
        group.add_argument(*names, dest=dest, action="count", default=option.default_value, help=help_text)
    elif option.kind == "list":
        group.add_argument(*names, dest=dest, action="append", default=[], metavar=option.metavar,
                           type=_checked(option.parse), help=help_text)
    elif option.choices:  # argparse's own check, so completion offers the choices
        group.add_argument(*names, dest=dest, choices=option.choices, metavar=option.metavar, default=default,
                           help=help_text)
    else:
        group.add_argument(*names, dest=dest, type=_checked(option.parse), metavar=option.metavar, default=default,
                           help=help_text)


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError: its message becomes the one-line error."""

    def check(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = getattr(parse, "__name__", "value")
    return check


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
    _add_mount_args(dav, mountpoint=False, command="serve webdav")


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
    from mmfs.commands.running import add_commands
    from mmfs.settings.profiles import config_path

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
    from mmfs.commands.config_command import add_config_command

    add_config_command(sub)
    from mmfs.commands.completion import add_completion_command

    add_completion_command(sub)
    _add_serve(sub)
    sub.add_parser("emulator", help="run the MiniMax API emulator (see: mmfs emulator --help)", add_help=False)
    return parser
