"""Named profiles in ``config.toml`` and the precedence that merges them: flags > environment > profile >
defaults.

The file lives in the user config folder (``~/.config/mmfs/config.toml`` on Linux; ``MMFS_CONFIG`` names
another). Each top-level table is a profile, its keys the long mount options with ``_`` for ``-``::

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

import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import platformdirs

from mmfs.config import parse_base_url, parse_id, parse_seconds, parse_size

__all__ = ["OPTIONS", "Option", "ProfileError", "config_path", "env_name", "load_profile", "octal_mask",
           "parse_mount_options", "profile_names", "resolve", "url_has_password"]


class ProfileError(ValueError):
    """The config file or a profile in it cannot be used; the message says why and what to do."""


def _path(value: Any) -> Path:
    return Path(os.path.expanduser(str(value)))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", ""):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


def _size(value: Any) -> int:
    return value if isinstance(value, int) else parse_size(str(value))


def octal_mask(value: Any) -> int:
    """``"027"`` -> 0o027; a umask is at most 0777, and Python's own message would not say "octal"."""
    try:
        mask = value if isinstance(value, int) else int(str(value), 8)
    except ValueError:
        mask = -1
    if not 0 <= mask <= 0o777:
        raise ValueError(f"not an octal mask from 000 to 777 (e.g. 022): {value!r}")
    return mask


def _whole(value: Any) -> int:
    return parse_id(value)


def _seconds(value: Any) -> float:
    return parse_seconds(value)


def _positive_seconds(value: Any) -> float:
    return parse_seconds(value, zero=False)


def _log_path(value: Any) -> Path:
    path = _path(value)
    if not path.absolute().parent.is_dir():
        raise ValueError(f"the folder {path.absolute().parent} of the log file does not exist (create it first)")
    return path


def _level(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError(f"not a log level: {value!r} (one of {', '.join(LOG_LEVELS)})")
    return text


def _log_format(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LOG_FORMATS:
        raise ValueError(f"not a log format: {value!r} (one of {', '.join(LOG_FORMATS)})")
    return text


def _metrics_addr(value: Any) -> str:
    from mmfs.metrics import parse_metrics_addr

    host, port = parse_metrics_addr(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _duration(value: Any) -> float:
    """``90``, ``90s``, ``30m``, ``12h``, ``7d`` -> seconds (more than 0)."""
    text = str(value).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    factor = units.get(text[-1:])
    number = text[:-1] if factor else text
    seconds = parse_seconds(number, zero=False) * (factor or 1)
    return seconds


def _bwlimit(value: Any) -> str:
    from mmfs.bwlimit import parse_bwlimit

    parse_bwlimit(str(value))
    return str(value)


def _max_streams(value: Any) -> int:
    from mmfs.config import parse_max_streams

    return parse_max_streams(value)


def _chunk_size(value: Any) -> int:
    from mmfs.config import parse_chunk_size

    return parse_chunk_size(value)


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def _purposes(value: Any) -> str:
    # In -o (and fstab) commas separate options, so there several purposes are joined with ':'.
    return ",".join(value) if isinstance(value, list) else str(value).replace(":", ",")


def _op_params(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value).split() if v]


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[Any], Any]
    default: Any = None


# Every mount option a profile, the environment (MMFS_<NAME>) or ``-o name=value`` may set. Flags keep their
# own parsing in the CLI; these parsers read what came as text or as TOML values.
OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("base_url", parse_base_url),
    Option("api_key_file", _path),
    Option("cache_dir", _path),
    Option("state_dir", _path),
    Option("cache_size", _size, 10 << 30),
    Option("min_free_space", _size, 1 << 30),
    Option("dir_cache_time", _seconds, 30.0),
    Option("purposes", _purposes),
    Option("op_param", _op_params, ()),
    Option("ca_bundle", _path),
    Option("shared", str),
    Option("retry_deadline", _positive_seconds, 60.0),
    Option("read_only", _bool, False),
    Option("allow_non_empty", _bool, False),
    Option("uid", _whole),
    Option("gid", _whole),
    Option("umask", octal_mask),
    Option("allow_other", _bool, False),
    Option("list_by_id", _bool, False),
    Option("log_file", _log_path),
    Option("log_level", _level),
    Option("metrics_addr", _metrics_addr),
    Option("bwlimit", _bwlimit),
    Option("cache_max_age", _duration),
    Option("log_format", _log_format, "text"),
    Option("max_streams", _max_streams, 16),
    Option("chunk_size", _chunk_size, 4 << 20),
    # Take the key from the system keyring (service "mmfs", user = the profile's name); needs mmfs[keyring].
    Option("api_key_keyring", _bool, False),
)}


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
            name = name.replace("-", "_")
            if name == "ro" and not eq:
                result["read_only"] = True
                continue
            option = OPTIONS.get(name)
            if option is None and not eq and "purposes" in result:
                raise ProfileError(f"-o {item}: commas separate options; join purposes with ':' "
                                   f"(-o purposes={result['purposes'].replace(',', ':')}:{item})")
            if option is None:
                raise ProfileError(f"-o {item}: unknown option (known: ro, {', '.join(OPTIONS)})")
            if not eq and option.parse is not _bool:
                raise ProfileError(f"-o {name} needs a value: -o {name}=VALUE")
            try:
                result[name] = option.parse(value) if eq else True
            except ValueError as exc:
                raise ProfileError(f"-o {item}: {exc}") from None
    return result


def env_name(option: str) -> str:
    """``cache_size`` -> ``MMFS_CACHE_SIZE``; the host keeps the platform's own name."""
    return "MINIMAX_BASE_URL" if option == "base_url" else f"MMFS_{option.upper()}"


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
        option = key.replace("-", "_")
        if option == "api_key":
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                raise ProfileError(f"profile [{name}] holds an api_key but {path} is readable by others "
                                   f"(mode {mode:04o}); run: chmod 600 {path}  (or use api_key_file)")
            result["api_key"] = str(value)
            continue
        if option not in OPTIONS:
            raise ProfileError(f"profile [{name}] in {path}: unknown option {key!r} "
                               f"(known: api_key, {', '.join(OPTIONS)})")
        try:
            result[option] = OPTIONS[option].parse(value)
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
        if flag is not None and flag != []:
            merged[name] = flag
        elif env.get(env_name(name)):
            try:
                merged[name] = option.parse(env[env_name(name)])
            except ValueError as exc:
                raise ProfileError(f"{env_name(name)}: {exc}") from None
        elif name in profile:
            merged[name] = profile[name]
        else:
            merged[name] = option.default
    return merged
