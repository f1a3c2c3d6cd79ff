"""The ``mmfs`` command: ``mount``, ``unmount``, ``emulator`` and the commands that talk to a running mount
(``status``, ``refresh``, ``pin``, ``unpin``, ``cache``); also run by mount(8) in its helper form.

Options are resolved here (flags > environment > profile > defaults) into a ``MountConfig``; their grammar
is ``mmfs.commands.parser``'s. The API key comes from ``--api-key-file``, ``MINIMAX_API_KEY`` or the profile,
never from argv (argv is public in ``ps``). ``--daemon`` is ``mmfs.runtime.daemon``'s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from mmfs.commands.parser import build_parser
from mmfs.errors import AuthError, MmfsError, TransportError
from mmfs.settings.config import MountConfig

__all__ = ["build_parser", "main"]


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_JOURNAL_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """For stderr read by journald: no timestamp (the journal has its own), the level as a ``<N>`` prefix,
    which journald turns into the entry's priority (sd-daemon(3))."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", "\n    ")
        return f"<{_JOURNAL_PRIORITY.get(record.levelno, 6)}>{text}"


def _levels(args: argparse.Namespace) -> tuple[int, int]:
    """(mmfs's level, everything else's): --log-level wins, then -q, then -v/-vv; the default is INFO for
    mmfs and WARNING for the libraries."""
    verbose = getattr(args, "verbose", 0) or 0
    chosen = getattr(args, "log_level", None)
    if chosen:
        level = getattr(logging, chosen.upper())
        return level, max(level, logging.WARNING) if verbose < 2 else level
    if getattr(args, "quiet", None):
        return logging.WARNING, logging.WARNING
    if verbose > 1:
        return logging.DEBUG, logging.DEBUG
    return (logging.DEBUG, logging.INFO) if verbose else (logging.INFO, logging.WARNING)


def _setup_logging(args: argparse.Namespace, log_file: Path | None = None) -> None:
    from mmfs.platform import stderr_is_journal
    from mmfs.redact import RedactingFilter, open_private_log

    handler: logging.Handler
    log_file = log_file if log_file is not None else getattr(args, "log_file", None)
    if log_file:
        # Owner-only from the first byte: the log may name files, and is no one else's business.
        handler = logging.StreamHandler(os.fdopen(open_private_log(log_file), "a", encoding="utf-8",
                                                     # a platform filename may hold a lone surrogate
                                                     errors="backslashreplace"))
    else:
        handler = logging.StreamHandler()
    if getattr(args, "log_format", None) == "json":
        handler.setFormatter(_JsonFormatter())
    elif not log_file and stderr_is_journal():
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # On the handler, not a logger: it then sees every record that reaches it, urllib3's and mfusepy's too.
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    ours, theirs = _levels(args)
    root.setLevel(theirs)
    logging.getLogger("mmfs").setLevel(ours)
    # urllib3 says "Retrying (Retry(total=1, ...))" at WARNING for every connection retry; mmfs's own retry
    # lines say it once, in words. Its lines are for debugging only.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if theirs <= logging.DEBUG else logging.ERROR)


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
            with open(key_file) as f:
                _refuse_shared_key_file(key_file, os.fstat(f.fileno()))
                key = f.read().strip()
        except OSError as exc:
            raise SystemExit(f"mmfs: cannot read the API key file {key_file}: {exc.strerror}") from None
        if not key:
            raise SystemExit(f"mmfs: the API key file {key_file} is empty (put the key in it, alone on its line)")
    if not key:
        key = getattr(args, "profile_api_key", "") or ""
    if not key and getattr(args, "api_key_keyring", False) and args.profile:
        from mmfs.settings.profiles import ProfileError, keyring_key

        try:
            key = keyring_key(args.profile)
        except ProfileError as exc:
            raise SystemExit(f"mmfs: {exc}") from None
    if not key:
        raise SystemExit("mmfs: no API key: set MINIMAX_API_KEY or pass --api-key-file FILE")
    return key


def _refuse_shared_key_file(path: Path, st: os.stat_result) -> None:
    """One rule for every secret in a file: a key file others may read is refused, as a config file holding
    an ``api_key`` is (a pipe or a /dev/fd of a password manager has no such mode and passes)."""
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode) and mode & 0o077:
        raise SystemExit(f"mmfs: the API key file {path} is readable by others (mode {mode:04o}); "
                         f"run: chmod 600 {path}")


def _op_params(specs: list[str]) -> dict[str, dict[str, str]]:
    """``--op-param`` values -> ``{op: {key: value}}``, as the options table turns them into the config."""
    from mmfs.settings.options import by_name

    option = by_name("op_param")
    assert option is not None
    for spec in specs:
        try:
            option.parse(spec)
        except ValueError as exc:  # the value is not echoed: a gateway's parameter may be a token
            raise SystemExit(f"mmfs: --op-param {exc}") from None
    return option.config_fields(specs)["op_params"]


def _resolved(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every option merged: flags (and -o) > environment > profile > defaults."""
    from mmfs.settings.profiles import (
        OPTIONS,
        ProfileError,
        load_profile,
        parse_mount_options,
        resolve,
        url_has_password,
    )

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
    # A URL with a password in any secret option given on the command line, which every user can read (ps).
    out.argv_passwords = [option.flag for option in OPTIONS.values() if option.secret and option.kind != "list"
                          and url_has_password(str(flags.get(option.name) or ""))]
    out.resolved = True
    return out


def _warn_of_argv_secrets(args: argparse.Namespace) -> None:
    from mmfs.settings.options import by_name

    for flag in getattr(args, "argv_passwords", ()):
        option = by_name(flag.removeprefix("--"))
        print(f"mmfs: warning: the {flag} URL holds a password, and a command line is readable by every user "
              f"(ps); put the URL in {option.env_var if option else 'the environment'} or a profile instead",
              file=sys.stderr)


def _config(args: argparse.Namespace) -> MountConfig:
    from mmfs.settings.options import config_fields

    args = _resolved(args)
    fields = config_fields(vars(args))
    fields.pop("api_key", None)  # read by its own rule, below
    config = MountConfig(
        # The WebDAV door serves no folder: there the mount point is only a label in messages.
        mountpoint=args.mountpoint.absolute() if getattr(args, "mountpoint", None) else Path("webdav"),
        api_key=_read_key(args),
        **fields,
    )
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
    from mmfs.runtime.mount import mount

    args = _resolved(args)
    _warn_of_argv_secrets(args)
    config = _config(args)
    problem = allow_other_problem(os.getuid()) if config.allow_other else None
    if problem:
        print(f"mmfs: {problem}", file=sys.stderr)
        return 1
    return _serve_until_done(args, config, lambda: mount(config))


def _serve_until_done(args: argparse.Namespace, config: MountConfig, serve: Callable[[], None]) -> int:
    """Log as asked, then run a mount or a door until it ends; a refused key or an unreachable host is one
    line on the terminal."""
    from mmfs.runtime.mount import tune_this_process

    tune_this_process()
    try:
        _setup_logging(args)
    except OSError as exc:
        raise MmfsError(f"cannot write the log {args.log_file}: {exc.strerror} "
                        "(choose another with --log-file)") from None
    try:
        serve()
    except AuthError as exc:
        print(f"mmfs: the platform refused the API key ({exc}); check MINIMAX_API_KEY and the base URL "
              f"(a key works only on its own region's host)", file=sys.stderr)
        return 2
    except TransportError as exc:
        print(f"mmfs: {network_problem(config.base_url, exc)}", file=sys.stderr)
        return 1
    return 0


def network_problem(base_url: str, exc: BaseException) -> str:
    """One line for a host that cannot be reached: which host, what happened, and what usually fixes it."""
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    host = url.hostname or "?"
    where = f"{host}:{url.port}" if url.port else host
    text = " ".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None).lower()
    if "name or service not known" in text or "failed to resolve" in text or "nodename nor servname" in text \
            or "temporary failure in name resolution" in text:
        what, fix = "the name does not resolve", "check the host in --base-url (or MINIMAX_BASE_URL) and your DNS"
    elif "connection refused" in text:
        what, fix = "connection refused", "check the host and port in --base-url (or MINIMAX_BASE_URL)"
    elif "timed out" in text or "timeout" in text or "deadline" in text:
        what, fix = "no answer in time", "check the network, a proxy (HTTPS_PROXY) or a firewall"
    elif "network is unreachable" in text or "no route to host" in text:
        what, fix = "the network is unreachable", "check the network connection"
    elif "proxy" in text:
        what, fix = "the proxy failed", "check HTTPS_PROXY / HTTP_PROXY (or unset them)"
    elif "ssl" in text or "certificate" in text or "tls" in text:
        what, fix = "the TLS handshake failed", "a host with its own CA needs --ca-bundle PEM"
    else:
        what, fix = "the connection failed", "check the network, --base-url, a proxy (HTTPS_PROXY) or --ca-bundle"
    return f"cannot reach {where} ({what}): {fix}"
def _run_serve(args: argparse.Namespace) -> int:
    from mmfs.runtime.serve import ServeOptions, serve_webdav

    args = _resolved(args)
    if args.daemon:
        raise MmfsError("mmfs serve runs in the foreground; run it under systemd or nohup to keep it running")
    _warn_of_argv_secrets(args)
    config = _config(args)
    host, port = args.addr
    options = ServeOptions(host=host, port=port, token_file=args.token_file, tls_cert=args.tls_cert,
                           tls_key=args.tls_key)
    return _serve_until_done(args, config, lambda: serve_webdav(
        config, options, announce=lambda line: print(line, file=sys.stderr, flush=True)))


def _run_daemon(args: argparse.Namespace, argv: list[str]) -> int:
    """Start the same mount detached, wait until it is live (or failed), and return."""
    from mmfs.runtime.daemon import daemon_log_path, start_daemon

    args = _resolved(args)
    _warn_of_argv_secrets(args)
    config = _config(args)  # fail fast on a missing key or bad argument, in the user's terminal
    child_argv = [a for a in argv if a != "--daemon"]
    # The default log's folder is mmfs's own to make; a --log-file's folder is the user's, left as it is.
    return start_daemon(config, child_argv, args.log_file or daemon_log_path(config),
                        own_folder=args.log_file is None)


# Known by name before anything looks at the folder argument: a stat of a stopped or hung mount point never
# returns, and `mmfs status|mount|unmount` on one must answer (the parser is still asked in case one is missing).
_COMMANDS = {"mount", "unmount", "umount", "emulator", "status", "refresh", "pin", "unpin", "cache", "config",
             "completion", "retry", "serve"}


def _subcommands() -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _helper_form(argv: list[str]) -> list[str]:
    """``mmfs SOURCE MOUNTPOINT -o OPTS``, as mount(8) runs it for ``mount -t fuse.mmfs SOURCE MOUNTPOINT`` (via
    mount.fuse3) -> ``mmfs mount --daemon [--profile SOURCE] MOUNTPOINT -o OPTS``. SOURCE is a profile name;
    ``mmfs`` or ``none`` means no profile. mount(8) waits for the helper, so the mount goes to the background."""
    if len(argv) < 2 or argv[0] in _COMMANDS or argv[0].startswith("-") or not os.path.isdir(argv[1]):
        return argv
    if argv[0] in _subcommands():  # a subcommand added since (its folder argument is no mount point)
        return argv
    source, mountpoint, rest = argv[0], argv[1], argv[2:]
    profile = [] if source in ("mmfs", "none", "") else ["--profile", source]
    return ["mount", mountpoint, *profile, "--daemon", *rest]


def main(argv: list[str] | None = None) -> int:
    from mmfs.redact import RedactingStream

    if not isinstance(sys.stderr, RedactingStream):  # whatever reaches the terminal is redacted as the log is
        sys.stderr = RedactingStream(sys.stderr)
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
    from mmfs.runtime.mount import check_libfuse, unmount

    if args.command == "completion":
        from mmfs.commands.completion import run_completion

        return run_completion(args)
    if args.command == "config":
        from mmfs.commands.config_command import run_config

        return run_config(args)
    if args.command in ("unmount", "umount"):
        from mmfs.commands.running import kept_locally

        mountpoint = args.mountpoint.absolute()
        kept = kept_locally(mountpoint)  # asked before: an unmounted mount has no one left to ask
        unmount(mountpoint, lazy=args.lazy)
        if kept:
            print(kept, file=sys.stderr)
        return 0
    if args.command == "serve":
        return _run_serve(args)
    check_libfuse()  # before the key: a missing libfuse is the first thing to fix
    if args.command in ("status", "refresh", "pin", "unpin", "cache", "retry"):
        from mmfs.commands.running import run_command

        return run_command(args)
    if args.daemon:
        return _run_daemon(args, argv)
    return _run_mount(args)


if __name__ == "__main__":
    sys.exit(main())
