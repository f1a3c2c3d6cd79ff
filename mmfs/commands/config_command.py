"""``mmfs config list|check|new``: the profiles of the config file, seen, checked and made from the command
line (the file's format is ``mmfs.settings.profiles``')."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

from mmfs.settings.profiles import OPTIONS, ProfileError, config_path, load_profile, profile_names

__all__ = ["add_config_command", "run_config"]

_EPILOG = """\
examples:
  mmfs config list                                   the profiles, their hosts and where each key comes from
  mmfs config check                                  every profile: options, key file and its mode
  mmfs config check work --online                    ...and ask the host whether it takes the key
  mmfs config new work --base-url https://api.minimax.io --api-key-file ~/.config/mmfs/work.key
"""


def add_config_command(sub: Any) -> None:
    p = sub.add_parser("config", help="list, check or create profiles in the config file", epilog=_EPILOG,
                       description=f"The profiles of {config_path()} (MMFS_CONFIG names another file).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the profiles, their hosts and where each key comes from")
    check = actions.add_parser("check", help="check every profile (or one) as a mount would read it")
    check.add_argument("name", nargs="?", metavar="NAME", help="only this profile, e.g. work")
    check.add_argument("--online", action="store_true", help="also ask the host whether it takes the key")
    new = actions.add_parser("new", help="add a profile to the config file (made 0600 if new)")
    new.add_argument("name", metavar="NAME", help="the profile's name, e.g. work")
    new.add_argument("--base-url", metavar="URL", help="API host, e.g. https://api.minimaxi.com")
    new.add_argument("--api-key-file", metavar="FILE", help="file holding the key, e.g. ~/.config/mmfs/work.key")
    new.add_argument("--api-key-keyring", action="store_true",
                     help="take the key from the system keyring (store it: keyring set mmfs NAME)")
    new.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                     help="any other mount option, e.g. --set cache_size=20G --set read_only=true (repeatable)")


def run_config(args: argparse.Namespace) -> int:
    try:
        return {"list": _list, "check": _check, "new": _new}[args.config_action](args)
    except ProfileError as exc:
        print(f"mmfs: {exc}", file=sys.stderr)
        return 1


def _tables(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path} is not valid TOML: {exc}") from None


def _key_source(table: dict[str, Any]) -> str:
    if "api_key" in table:
        return "api_key in the file"
    if table.get("api_key_keyring"):
        return "system keyring"
    if "api_key_file" in table:
        return f"api_key_file {table['api_key_file']}"
    return "MINIMAX_API_KEY (none in the profile)"


def _list(args: argparse.Namespace) -> int:
    path = config_path()
    tables = {n: t for n, t in _tables(path).items() if isinstance(t, dict)}
    if not tables:
        print(f"no profiles in {path} (make one: mmfs config new NAME --api-key-file FILE)")
        return 0
    print(f"{path}:")
    width = max(len(n) for n in tables)
    for name, table in tables.items():
        host = table.get("base_url", "https://api.minimax.io (default)")
        print(f"  {name:<{width}}  {host}  key: {_key_source(table)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    path = config_path()
    names = [args.name] if args.name else profile_names(path)
    if not names:
        print(f"no profiles in {path}")
        return 0
    bad = 0
    for name in names:
        problem = _problem(name, path, online=args.online)
        print(f"  [{name}] {'ok' if problem is None else problem}")
        bad += problem is not None
    if bad:
        print(f"mmfs: {bad} of {len(names)} profile{'s' if len(names) != 1 else ''} would not mount", file=sys.stderr)
        return 1
    return 0


def _problem(name: str, path: Path, *, online: bool) -> str | None:
    """Why the profile would not mount, in one line; None when it would (as far as can be told)."""
    from mmfs.settings.config import MountConfig, parse_base_url

    try:
        profile = load_profile(name, path)
    except ProfileError as exc:
        return str(exc)
    key = profile.get("api_key", "")
    key_file = profile.get("api_key_file")
    if key_file is not None:
        try:
            with open(key_file) as f:
                st = os.fstat(f.fileno())
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISREG(st.st_mode) and mode & 0o077:
                    return (f"the API key file {key_file} is readable by others (mode {mode:04o}); "
                            f"run: chmod 600 {key_file}")
                key = f.read().strip()
        except OSError as exc:
            return f"cannot read the API key file {key_file}: {exc.strerror}"
        if not key:
            return f"the API key file {key_file} is empty"
    if not key and profile.get("api_key_keyring"):
        from mmfs.settings.profiles import keyring_key

        try:
            key = keyring_key(name)
        except ProfileError as exc:
            return str(exc)
    if not key and not os.environ.get("MINIMAX_API_KEY"):
        return "no key: give api_key_file (or api_key, or api_key_keyring) in the profile, or set MINIMAX_API_KEY"
    base_url = parse_base_url(profile.get("base_url") or "https://api.minimax.io")
    if online:
        from mmfs.api.client import ApiClient
        from mmfs.api.retry import RetryPolicy
        from mmfs.errors import AuthError, MmfsError

        config = MountConfig(mountpoint=Path("/"), api_key=key or os.environ["MINIMAX_API_KEY"], base_url=base_url)
        try:
            with ApiClient(config.base_url, config.api_key, retry=RetryPolicy(deadline=10.0)) as client:
                client.check_key()
        except AuthError as exc:
            return f"{base_url} refused the key ({exc})"
        except MmfsError as exc:
            from mmfs.commands.main import network_problem

            return network_problem(base_url, exc)
    return None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def _new(args: argparse.Namespace) -> int:
    path = config_path()
    tables = _tables(path)
    if args.name in tables:
        raise ProfileError(f"{path} already has a profile [{args.name}] (edit the file to change it)")
    if not args.name.replace("-", "").replace("_", "").isalnum():
        raise ProfileError(f"a profile name is letters, digits, - and _: not {args.name!r}")
    entries: dict[str, Any] = {}
    if args.base_url:
        entries["base_url"] = args.base_url
    if args.api_key_file:
        entries["api_key_file"] = args.api_key_file
    if args.api_key_keyring:
        entries["api_key_keyring"] = True
    for item in args.set:
        option, eq, value = item.partition("=")
        option = option.strip().replace("-", "_")
        if not eq or option not in OPTIONS:
            raise ProfileError(f"--set {item}: wants OPTION=VALUE with one of {', '.join(OPTIONS)}")
        entries[option] = value
    for option, value in entries.items():  # each checked as the mount will read it
        try:
            OPTIONS[option].parse(value)
        except ValueError as exc:
            raise ProfileError(f"{option}: {exc}") from None
    lines = [f"[{args.name}]", *(f"{k} = {_toml_value(v)}" for k, v in entries.items())]
    text = ("\n" if path.exists() and path.read_text().strip() else "") + "\n".join(lines) + "\n"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(text)
    load_profile(args.name, path)  # read back, as a mount would
    print(f"added [{args.name}] to {path}:")
    print("\n".join(f"  {line}" for line in lines))
    print(f"mount it with: mmfs mount --profile {args.name} MOUNTPOINT")
    return 0
