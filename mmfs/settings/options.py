"""Every option of ``mmfs mount`` and ``mmfs serve webdav``, each stated once.

An option's row gives its name, how its value is read and checked, its help, where it may come from (a flag,
``-o name=value`` as mount(8) and fstab pass it, a profile key, an environment variable), the older spellings
still accepted, whether its value is a secret (never echoed), the commands that take it and the
``MountConfig`` field it lands in. Everything else is made from these rows: the argparse arguments
(``mmfs.commands.parser``), ``-o``, profile keys and their checks, the environment and the precedence
between them (``mmfs.settings.profiles``), the config built from them (``mmfs.commands.main``), ``--help``,
shell completion and mmfs(1).

The name is the profile key and the ``-o`` name; the flag is the name with ``-`` for ``_``; the environment
variable is ``MMFS_`` and the name in capitals, unless the row names another (the host and the key keep the
platform's own ``MINIMAX_`` names).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmfs.settings.config import (
    DEFAULT_BASE_URL,
    ConfigError,
    MountConfig,
    parse_base_url,
    parse_bwlimit,
    parse_chunk_size,
    parse_id,
    parse_max_streams,
    parse_purposes,
    parse_seconds,
    parse_size,
)

__all__ = ["ALL_SOURCES", "COMMANDS", "ENV", "FLAG", "LOG_FORMATS", "LOG_LEVELS", "MOUNT_OPTION", "OPTIONS", "PROFILE",
           "Option", "by_name", "config_fields", "octal_mask", "parse_bool", "values_of"]

# Where a value may come from.
FLAG, MOUNT_OPTION, PROFILE, ENV = "flag", "-o", "profile", "env"
ALL_SOURCES = frozenset({FLAG, MOUNT_OPTION, PROFILE, ENV})
_FLAG_ONLY = frozenset({FLAG})

# The commands that take mount options (``mmfs cache --cache-dir`` has its own, narrower one).
MOUNT, SERVE = "mount", "serve webdav"
COMMANDS = (MOUNT, SERVE)

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class _Unset:
    def __repr__(self) -> str:
        return "(unset)"


_UNSET: Any = _Unset()


# --- value parsers: text from argv, the environment or -o, or a TOML value; ValueError says what is wrong,
# --- in words that read after "argument --flag: ", and never quote a secret.

def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", ""):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


def octal_mask(value: Any) -> int:
    """``"027"`` -> 0o027; a umask is at most 0777, and Python's own message would not say "octal"."""
    try:
        mask = value if isinstance(value, int) else int(str(value), 8)
    except ValueError:
        mask = -1
    if not 0 <= mask <= 0o777:
        raise ValueError(f"not an octal mask from 000 to 777 (e.g. 022): {value!r}")
    return mask


def _path(value: Any) -> Path:
    return Path(os.path.expanduser(str(value)))


def _existing_file(value: Any) -> Path:
    path = _path(value)
    if not path.is_file():
        raise ValueError(f"{value}: no such file")
    return path


def _log_file(value: Any) -> Path:
    """A log file in a folder that exists: mmfs creates the file, never the folders to it."""
    path = _path(value)
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"{value}: the folder {parent} does not exist (create it first, or choose another file)")
    if path.is_dir():
        raise ValueError(f"{value} is a folder; give a file name in it, e.g. {path / 'mmfs.log'}")
    return path


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else parse_size(str(value))


def _seconds(value: Any) -> float:
    return parse_seconds(value)


def _positive_seconds(value: Any) -> float:
    return parse_seconds(value, zero=False)


def _duration(value: Any) -> float:
    """``90``, ``90s``, ``30m``, ``12h``, ``7d`` -> seconds (more than 0)."""
    text = str(value).strip().lower()
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:])
    return parse_seconds(text[:-1] if factor else text, zero=False) * (factor or 1)


def _purposes(value: Any) -> str:
    """The purposes as one comma-separated text. In -o (and fstab) commas separate options, so there several
    purposes are joined with ':'; a profile may give a list."""
    text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value).replace(":", ",")
    try:
        return ",".join(parse_purposes(text))
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix("--purposes: ")) from None


def _op_param(value: Any) -> str:
    text = str(value)
    op, sep, pair = text.partition(":")
    key, eq, _ = pair.partition("=")
    if not (sep and eq and op and key):
        # The value is not echoed: a gateway's parameter may be a token.
        raise ValueError("wants OP:KEY=VALUE, e.g. retrieve:model=minimax-files-retrieve")
    return text


def _metrics_addr(value: Any) -> str:
    from mmfs.runtime.metrics import parse_metrics_addr

    host, port = parse_metrics_addr(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bwlimit(value: Any) -> str:
    parse_bwlimit(str(value))
    return str(value)


def _one_of(choices: tuple[str, ...], what: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"not a {what}: {value!r} (one of {', '.join(choices)})")
        return text

    return parse


def _addr(value: Any) -> tuple[str, int]:
    text = str(value)
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"wants HOST:PORT with a port from 0 (any free one) to 65535, e.g. 127.0.0.1:8080; "
                         f"got {text!r}")
    return host, int(port)


def _text(value: Any) -> str:
    return str(value)


# --- from a parsed value to MountConfig fields

def _absolute(field: str) -> Callable[[Any], dict[str, Any]]:
    return lambda value: {field: Path(value).absolute()}


def _op_params(values: list[str]) -> dict[str, Any]:
    result: dict[str, dict[str, str]] = {}
    for spec in values:
        op, _, pair = spec.partition(":")
        key, _, value = pair.partition("=")
        result.setdefault(op, {})[key] = value
    return {"op_params": result}


def _limits(value: str) -> dict[str, Any]:
    upload, download = parse_bwlimit(value)
    return {"upload_limit": upload, "download_limit": download}


@dataclass(frozen=True)
class Option:
    """One option. ``kind``: ``value`` (takes one), ``switch`` (on when named), ``list`` (repeatable; a profile
    gives a TOML list, the environment and -o words separated by spaces) or ``count`` (-vv)."""

    name: str
    help: str
    parse: Callable[[Any], Any] = _text
    kind: str = "value"
    metavar: str | None = None
    group: str | None = None  # the heading it is listed under in --help
    sources: frozenset[str] = ALL_SOURCES
    # The flags, when not just --name (a short form, or a name of its own like -o).
    flags: tuple[str, ...] = ()
    env: str | None = None  # the variable, when not MMFS_<NAME>
    aliases: tuple[str, ...] = ()  # older spellings, still taken in a profile and in -o
    secret: bool = False  # the value is never echoed in a message (a key, or a URL that may hold a password)
    commands: tuple[str, ...] = COMMANDS
    # The MountConfig field it sets; None: the command reads it itself (the log, the key file, the door).
    field: str | None = None
    to_config: Callable[[Any], dict[str, Any]] | None = None  # when the field is not simply the value
    choices: tuple[str, ...] | None = None
    completes: str | None = None  # "file", "dir" or "profile": what completion offers
    default: Any = _UNSET  # when not the MountConfig field's default (or None)
    off_flag: tuple[str, str] | None = None  # a flag that turns a switch off, and its help

    @property
    def flag_names(self) -> tuple[str, ...]:
        if FLAG not in self.sources:
            return ()
        return self.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def flag(self) -> str:
        """How a message names the option: its long flag, else its profile key."""
        names = self.flag_names
        return names[-1] if names else self.name

    @property
    def env_var(self) -> str | None:
        if ENV not in self.sources:
            return None
        return self.env or f"MMFS_{self.name.upper()}"

    @property
    def default_value(self) -> Any:
        """The value when no source gives one: the row's, else the MountConfig field's (None for one made
        per user, as the cache folder or the uid)."""
        if self.default is not _UNSET:
            return self.default
        if self.kind == "list":
            return ()
        if self.kind == "count":
            return 0
        field = _CONFIG_FIELDS.get(self.field or "")
        if field is not None and field.default is not dataclasses.MISSING:
            return field.default
        return None

    def config_fields(self, value: Any) -> dict[str, Any]:
        """The MountConfig fields this option's value sets (none for None: the field keeps its default)."""
        if self.field is None or value is None:
            return {}
        if self.to_config is not None:
            return self.to_config(value)
        return {self.field: value}


_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(MountConfig)}

_PLATFORM, _CACHING, _ACCESS, _RUNNING, _DOOR = "the platform", "caching", "access", "running", "the WebDAV door"


OPTIONS: tuple[Option, ...] = (
    # The WebDAV door's own: where it listens and whom it lets in.
    Option("addr", "where to listen, e.g. 127.0.0.1:8080 (the default), [::1]:8080, or port 0 for any free one",
           _addr, metavar="HOST:PORT", group=_DOOR, sources=_FLAG_ONLY, commands=(SERVE,),
           default=("127.0.0.1", 8080)),
    Option("token_file", "require user mmfs with the token in FILE (made there, owner-only, if missing)", _path,
           metavar="FILE", group=_DOOR, sources=_FLAG_ONLY, commands=(SERVE,), completes="file"),
    Option("tls_cert", "serve HTTPS with this certificate chain", _path, metavar="PEM", group=_DOOR,
           sources=_FLAG_ONLY, commands=(SERVE,), completes="file"),
    Option("tls_key", "the certificate's private key", _path, metavar="PEM", group=_DOOR, sources=_FLAG_ONLY,
           commands=(SERVE,), completes="file"),

    # Which profile, and mount(8)'s own form: these only come from the command line.
    Option("profile", "take options from [NAME] in the config file, e.g. --profile work", metavar="NAME",
           sources=_FLAG_ONLY, completes="profile"),
    Option("mount_options", "options as mount(8) takes them, e.g. -o ro,allow_other,uid=1000,cache_size=20G "
                            "(any long option, with _ for -; generic ones like dev, suid, noauto are ignored)",
           kind="list", metavar="OPT[,OPT...]", sources=_FLAG_ONLY, flags=("-o",), secret=True),

    Option("base_url", f"API host, e.g. https://api.minimaxi.com (default: $MINIMAX_BASE_URL or {DEFAULT_BASE_URL})",
           parse_base_url, metavar="URL", group=_PLATFORM, env="MINIMAX_BASE_URL", field="base_url",
           secret=True),  # a gateway's URL may hold a password
    Option("api_key_file", "read the API key from FILE, e.g. ~/.config/mmfs/key (else $MINIMAX_API_KEY)", _path,
           metavar="FILE", group=_PLATFORM, completes="file"),
    # The key itself never comes from the command line (every user can read it with ps). Its precedence is
    # the CLI's own: a key file given as a flag beats MINIMAX_API_KEY, which beats the profile's.
    Option("api_key", "the API key itself (in a profile only if the config file is yours alone: mode 0600)",
           metavar="KEY",
           sources=frozenset({PROFILE, ENV}), env="MINIMAX_API_KEY", secret=True, field="api_key"),
    # Take the key from the system keyring (service "mmfs", user = the profile's name); needs mmfs[keyring].
    Option("api_key_keyring", "take the key from the system keyring (store it: keyring set mmfs PROFILE)",
           parse_bool, kind="switch", sources=frozenset({MOUNT_OPTION, PROFILE, ENV}), default=False),
    Option("purposes", "comma-separated purposes to show, e.g. voice_clone,retrieval (default: all known)",
           _purposes, metavar="P,P", group=_PLATFORM, field="purposes", default=None,
           to_config=lambda value: {"purposes": parse_purposes(value)}),
    Option("op_param", "extra query parameter for one operation, for API gateways, e.g. "
                       "retrieve:model=minimax-files-retrieve (repeatable)",
           _op_param, kind="list", metavar="OP:KEY=VALUE", group=_PLATFORM, aliases=("op_params",), secret=True,
           field="op_params", to_config=_op_params),
    Option("shared", "share listings, blocks and the API budget with other mounts through this Redis, "
                     "e.g. redis://cache.lan:6379/0?budget=300 (also rediss://, redis+cluster://h1:p,h2:p "
                     "and redis+sentinel://h:26379/mymaster); a URL with a password belongs in "
                     "MMFS_SHARED or a profile, not the command line (default: none; see doc/FLEET.md)",
           metavar="REDIS_URL", group=_PLATFORM, secret=True, field="shared",
           to_config=lambda value: {"shared": value or None}),
    Option("ca_bundle", "verify the API and download hosts against this CA bundle instead of the system's, "
                        "e.g. a gateway's own CA (verification is never turned off)",
           _existing_file, metavar="PEM", group=_PLATFORM, field="ca_bundle", to_config=_absolute("ca_bundle"),
           completes="file"),
    # The name says what it bounds: every operation's retries, reads and writes alike (it was once the
    # config's read_deadline, still taken as a profile key and in -o).
    Option("retry_deadline", "seconds an operation may spend retrying before it fails with EIO, e.g. 120 "
                             "(default 60)",
           _positive_seconds, metavar="S", group=_PLATFORM, aliases=("read_deadline",), field="retry_deadline"),
    Option("bwlimit", "bytes per second to and from the platform, e.g. 10M for both ways, or UP:DOWN as in 2M:20M "
                      "(off: no limit; the default)",
           _bwlimit, metavar="RATE", group=_PLATFORM, field="upload_limit", to_config=_limits),
    Option("max_streams", "most block downloads at once, e.g. 32 for a far or per-connection-capped host: mmfs "
                          "starts at 8 and adds streams while they make reads faster (default 16)",
           parse_max_streams, metavar="N", group=_PLATFORM, field="prefetch_workers"),
    Option("chunk_size", "bytes per download request and cache block, e.g. 8M for a far host, 1M for small "
                         "random reads (default 4M)",
           parse_chunk_size, metavar="SIZE", group=_PLATFORM, field="block_size"),

    Option("cache_dir", "block cache folder, e.g. /var/cache/mmfs (default: the user cache folder)", _path,
           metavar="DIR", group=_CACHING, field="cache_dir", to_config=_absolute("cache_dir"), completes="dir"),
    Option("cache_size", "disk cache ceiling, e.g. 512M or 20G (default 10G)", _size, metavar="SIZE",
           group=_CACHING, field="cache_size"),
    Option("min_free_space", "free space kept on the cache's disk for files being written, e.g. 5G (default 1G)",
           _size, metavar="SIZE", group=_CACHING, field="min_free_space"),
    Option("cache_max_age", "drop cached blocks fetched longer ago than this, e.g. 12h, 30m, 7d or 3600 (seconds); "
                            "pinned files stay (default: kept until the cache needs the room)",
           _duration, metavar="AGE", group=_CACHING, field="cache_max_age"),
    Option("dir_cache_time", "seconds a listing is trusted before it is fetched again, e.g. 5 (default 30)",
           _seconds, metavar="S", group=_CACHING, field="dir_cache_time"),
    Option("state_dir", "remembered files, the control socket and --daemon's log, e.g. ~/.local/state/mmfs "
                        "(default: the user state folder)",
           _path, metavar="DIR", group=_CACHING, field="state_dir", to_config=_absolute("state_dir"),
           completes="dir"),

    Option("read_only", "no writes or deletes at all (EROFS)", parse_bool, kind="switch", group=_ACCESS,
           aliases=("ro",), field="read_only"),
    Option("allow_non_empty", "mount over a folder that holds files (they are hidden while mounted)", parse_bool,
           kind="switch", group=_ACCESS, field="allow_non_empty"),
    Option("uid", "owner shown for every file, e.g. 1000 (default: you)", parse_id, metavar="UID", group=_ACCESS,
           field="uid"),
    Option("gid", "group shown for every file, e.g. 1000 (default: yours)", parse_id, metavar="GID", group=_ACCESS,
           field="gid"),
    Option("umask", "mode bits to hide, e.g. 027 shows files as 0640 (default: none hidden)", octal_mask,
           metavar="OCTAL", group=_ACCESS, field="umask"),
    Option("allow_other", "let other users into the mount (off by default; needs user_allow_other in "
                          "/etc/fuse.conf unless you are root)",
           parse_bool, kind="switch", group=_ACCESS, field="allow_other"),
    Option("list_by_id", "make .by-id/ list the ids mmfs knows (default: it lists nothing, so du, find and cp -r "
                         "do not count every file twice; any id is still reachable)",
           parse_bool, kind="switch", group=_ACCESS, field="list_by_id"),

    Option("daemon", "return once the mount answers; the log goes under the state folder", parse_bool,
           kind="switch", group=_RUNNING, sources=_FLAG_ONLY, default=False,
           off_flag=("--foreground", "stay attached (default)")),
    Option("metrics_addr", "serve the counters of mmfs status in Prometheus' text format at "
                           "http://HOST:PORT/metrics, e.g. 9100 (loopback) or 0.0.0.0:9100 (default: off)",
           _metrics_addr, metavar="[HOST:]PORT", group=_RUNNING, field="metrics_addr"),
    Option("log_file", "write the log to FILE, e.g. ~/mmfs.log (default: stderr; STATE_DIR/log/ for --daemon)",
           _log_file, metavar="FILE", group=_RUNNING, completes="file"),
    Option("verbose", "more log: -v debug for mmfs, -vv for all", kind="count", group=_RUNNING,
           sources=_FLAG_ONLY, flags=("-v", "--verbose")),
    Option("quiet", "log only warnings and errors (the same as --log-level warning)", parse_bool, kind="switch",
           group=_RUNNING, sources=_FLAG_ONLY, flags=("-q", "--quiet")),
    Option("log_level", "the least a log line must be to be written, e.g. warning: debug, info (default), warning "
                        "or error",
           _one_of(LOG_LEVELS, "log level"), metavar="LEVEL", group=_RUNNING, choices=LOG_LEVELS),
    Option("log_format", "text (default; under systemd, plain lines with the level for the journal) or json, "
                         "one object per line, e.g. --log-format json",
           _one_of(LOG_FORMATS, "log format"), metavar="FORMAT", group=_RUNNING, choices=LOG_FORMATS,
           default="text"),

)

_BY_NAME = {o.name: o for o in OPTIONS} | {alias: o for o in OPTIONS for alias in o.aliases}


def by_name(name: str) -> Option | None:
    """The option a profile key or -o name means (``-`` read as ``_``; an older spelling as today's)."""
    return _BY_NAME.get(name.strip().replace("-", "_"))


def values_of(option: Option, raw: Any) -> Any:
    """``raw`` (text, or a TOML value) parsed as ``option`` takes it; a list option's words or items each."""
    if option.kind == "list":
        items = raw if isinstance(raw, list | tuple) else str(raw).split()
        return [option.parse(item) for item in items]
    return option.parse(raw)


def config_fields(values: dict[str, Any], options: Iterable[Option] = OPTIONS) -> dict[str, Any]:
    """The MountConfig fields set by resolved option values (name -> value); unset ones are left out."""
    fields: dict[str, Any] = {}
    for option in options:
        fields.update(option.config_fields(values.get(option.name)))
    return fields
