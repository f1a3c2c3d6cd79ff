"""Named profiles in ``config.toml`` and the precedence that merges them: flags > environment > profile >
defaults.

The file lives in the user config folder (``~/.config/mmfs/config.toml`` on Linux; ``MMFS_CONFIG`` names
another). Each top-level table is a profile, its keys the long mount options with ``_`` for ``-`` (the names
and checks are the options table's, ``mmfs.settings.options``)::

    [work]
    base_url = "https://api.minimax.io"
    api_key_file = "~/.config/mmfs/work.key"
    cache_size = "20G"
    purposes = ["voice_clone", "retrieval"]
    read_only = true

An ``api_key`` may sit in the file itself only when nobody else can read the file (mode 0600): a key in
a world-readable file is refused, with the reason, rather than used. So is any other secret: a URL (the
Redis of ``shared``, a gateway's ``base_url``) with a password, as ``user:PW@`` or as ``?password=PW``.
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import platformdirs

from mmfs.settings.options import (
    ENV,
    LOG_FORMATS,
    LOG_LEVELS,
    MOUNT_OPTION,
    PROFILE,
    Option,
    by_name,
    octal_mask,
    values_of,
)
from mmfs.settings.options import OPTIONS as _TABLE

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "MOUNT_OPTIONS", "OPTIONS", "Option", "ProfileError", "config_path",
           "env_name", "load_profile", "octal_mask", "parse_mount_options", "profile_names", "resolve",
           "url_has_password"]


class ProfileError(ValueError):
    """The config file or a profile in it cannot be used; the message says why and what to do."""


# The options a profile, the environment or -o may set, from the one table (mmfs.options). The key is
# not among them: its sources rank by their own rule (mmfs.commands.main) and a file holding it must be private.
OPTIONS: dict[str, Option] = {o.name: o for o in _TABLE
                              if o.sources & {PROFILE, ENV, MOUNT_OPTION} and o.name != "api_key"}
# The names -o takes (and so fstab): every option with that form, under its name and its older spellings.
MOUNT_OPTIONS: dict[str, Option] = {name: o for o in OPTIONS.values() if MOUNT_OPTION in o.sources
                                    for name in (o.name, *o.aliases)}


# mount(8)'s generic options, which mount.fuse3 passes on and a FUSE filesystem has no use for.
_GENERIC = {"rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto", "noauto", "user", "nouser",
            "users", "defaults", "async", "sync", "atime", "noatime", "relatime", "strictatime", "nodiratime",
            "_netdev", "nofail", "default_permissions"}


def parse_mount_options(groups: list[str]) -> dict[str, Any]:
    """``-o ro,allow_other,uid=1000,cache_size=20G`` -> options; generic mount(8) options are ignored."""
    result: dict[str, Any] = {}
    for group in groups:
        for item in (i.strip() for i in group.split(",")):
            if not item or item in _GENERIC or item.startswith(("x-", "comment=")):
                continue
            name, eq, value = item.partition("=")
            name = name.strip().replace("-", "_")
            option = MOUNT_OPTIONS.get(name)
            # A value is shown only once the option is known not to hold a secret.
            said = f"{name}{eq}{value}" if option is not None and not option.secret else f"{name}{eq and '=...'}"
            if option is None and not eq and "purposes" in result:
                raise ProfileError(f"-o {said}: commas separate options; join purposes with ':' "
                                   f"(-o purposes={result['purposes'].replace(',', ':')}:{item})")
            if option is None:
                known = ", ".join(dict.fromkeys(["ro", *(o.name for o in MOUNT_OPTIONS.values())]))
                raise ProfileError(f"-o {said}: unknown option ({_did_you_mean(name, MOUNT_OPTIONS)}known: {known})")
            if not eq and option.kind != "switch":
                raise ProfileError(f"-o {name} needs a value: -o {name}=VALUE")
            try:
                result[option.name] = values_of(option, value) if eq else True
            except ValueError as exc:
                raise ProfileError(f"-o {said}: {exc}") from None
    return result


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name.replace("-", "_"), list(known), n=1)
    return f"did you mean {close[0]}? " if close else ""


def env_name(option: str) -> str:
    """``cache_size`` -> ``MMFS_CACHE_SIZE``; the host keeps the platform's own name."""
    found = by_name(option)
    return (found.env_var if found else None) or f"MMFS_{option.upper()}"


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("MMFS_CONFIG"):
        return Path(env["MMFS_CONFIG"])
    return Path(platformdirs.user_config_dir("mmfs", appauthor=False)) / "config.toml"


def _load(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ProfileError(f"no config file at {path} (create it with a [NAME] table per profile)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"cannot read {path}: {exc.strerror}") from None


def profile_names(path: Path | None = None) -> list[str]:
    path = path or config_path()
    return [name for name, table in _load(path).items() if isinstance(table, dict)]


def keyring_key(profile: str) -> str:
    """The key stored with ``keyring set mmfs PROFILE`` (the ``keyring`` command comes with the library)."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        raise ProfileError(f"profile [{profile}] asks for the system keyring, which needs: "
                           f"pip install 'mmfs[keyring]'") from None
    try:
        key = keyring.get_password("mmfs", profile)
    except KeyringError as exc:
        raise ProfileError(f"the system keyring could not be read ({exc})") from None
    if not key:
        raise ProfileError(f"no key for profile [{profile}] in the system keyring (store one: keyring set mmfs "
                           f"{profile})")
    return key


def load_profile(name: str, path: Path | None = None) -> dict[str, Any]:
    """The profile's options, parsed, plus ``api_key`` when the file holds one and is private."""
    path = path or config_path()
    tables = _load(path)
    table = tables.get(name)
    if not isinstance(table, dict):
        known = ", ".join(n for n, t in tables.items() if isinstance(t, dict)) or "none"
        raise ProfileError(f"no profile [{name}] in {path} (profiles there: {known})")
    result: dict[str, Any] = {}
    for key, value in table.items():
        found = by_name(key)
        if found is not None and found.name == "api_key":
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                raise ProfileError(f"profile [{name}] holds an api_key but {path} is readable by others "
                                   f"(mode {mode:04o}); run: chmod 600 {path}  (or use api_key_file)")
            result["api_key"] = str(value)
            continue
        if found is None or PROFILE not in found.sources:
            known = ["api_key", *(o for o in OPTIONS if PROFILE in OPTIONS[o].sources)]
            raise ProfileError(f"profile [{name}] in {path}: unknown option {key!r} "
                               f"({_did_you_mean(key, known)}known: {', '.join(known)})")
        option = found.name
        try:
            result[option] = values_of(found, value)
        except ValueError as exc:
            raise ProfileError(f"profile [{name}] in {path}: {key}: {exc}") from None
        if isinstance(value, str) and url_has_password(value):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:  # a Redis or gateway password is as much a secret as the key
                raise ProfileError(f"profile [{name}] holds a password in {key} but {path} is readable by "
                                   f"others (mode {mode:04o}); run: chmod 600 {path}  (or use {env_name(option)})")
    return result


# Query fields that carry a credential in the URLs mmfs takes (redis-py reads ?password=).
_SECRET_FIELDS = frozenset({"password", "passwd", "pass", "auth", "token", "secret"})


def url_has_password(url: str) -> bool:
    """Whether ``url`` carries a password: ``user:PW@host``, ``:PW@host`` or a query's ``password=PW``."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return True
        fields = parse_qsl(parts.query, keep_blank_values=False)
    except ValueError:
        return False  # not a URL: the mount's own check says so
    return any(name.lower() in _SECRET_FIELDS and value for name, value in fields)


def resolve(flags: Mapping[str, Any], env: Mapping[str, str], profile: Mapping[str, Any]) -> dict[str, Any]:
    """One value per option: a flag given wins, then ``MMFS_<NAME>``, then the profile, then the default.

    ``flags`` holds None (or an empty list) for options not given on the command line.
    """
    merged: dict[str, Any] = {}
    for name, option in OPTIONS.items():
        flag = flags.get(name)
        variable = option.env_var
        if flag is not None and flag != []:
            merged[name] = flag
        elif variable and env.get(variable):
            try:
                merged[name] = values_of(option, env[variable])
            except ValueError as exc:
                raise ProfileError(f"{variable}: {exc}") from None
        elif name in profile:
            merged[name] = profile[name]
        else:
            merged[name] = option.default_value
    return merged
