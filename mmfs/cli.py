"""The ``mmfs`` command: ``mount``, ``unmount``, ``emulator`` and the commands that talk to a running mount
(``status``, ``refresh``, ``pin``, ``unpin``, ``cache``); also run by mount(8) in its helper form.

Options are resolved here (flags > environment > profile > defaults) into a ``MountConfig``; their grammar
is ``mmfs.cli_parser``'s. The API key comes from ``--api-key-file``, ``MINIMAX_API_KEY`` or the profile,
never from argv (argv is public in ``ps``). ``--daemon`` is ``mmfs.daemon``'s.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mmfs.cli_parser import build_parser
from mmfs.config import DEFAULT_BASE_URL, PURPOSES, MountConfig, parse_purposes
from mmfs.errors import AuthError, MmfsError

__all__ = ["build_parser", "main"]


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
        # The WebDAV door serves no folder: there the mount point is only a label in messages.
        mountpoint=args.mountpoint.absolute() if getattr(args, "mountpoint", None) else Path("webdav"),
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


def _run_serve(args: argparse.Namespace) -> int:
    from mmfs.mount import tune_this_process
    from mmfs.serve import ServeOptions, serve_webdav

    args = _resolved(args)
    if args.daemon:
        raise MmfsError("mmfs serve runs in the foreground; run it under systemd or nohup to keep it running")
    _warn_of_argv_secrets(args)
    config = _config(args)
    host, port = args.addr
    options = ServeOptions(host=host, port=port, token_file=args.token_file, tls_cert=args.tls_cert,
                           tls_key=args.tls_key)
    tune_this_process()
    try:
        _setup_logging(args.verbose, args.log_file)
    except OSError as exc:
        raise MmfsError(f"cannot write the log {args.log_file}: {exc.strerror} "
                        "(choose another with --log-file)") from None
    try:
        serve_webdav(config, options, announce=lambda line: print(line, file=sys.stderr, flush=True))
    except AuthError as exc:
        print(f"mmfs: the platform refused the API key ({exc}); check MINIMAX_API_KEY and the base URL "
              f"(a key works only on its own region's host)", file=sys.stderr)
        return 2
    return 0


def _run_daemon(args: argparse.Namespace, argv: list[str]) -> int:
    """Start the same mount detached, wait until it is live (or failed), and return."""
    from mmfs.daemon import daemon_log_path, start_daemon

    args = _resolved(args)
    _warn_of_argv_secrets(args)
    config = _config(args)  # fail fast on a missing key or bad argument, in the user's terminal
    child_argv = [a for a in argv if a != "--daemon"]
    return start_daemon(config, child_argv, args.log_file or daemon_log_path(config))


_COMMANDS = {"mount", "unmount", "emulator", "status", "refresh", "pin", "unpin", "cache", "serve"}


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
    if args.command == "serve":
        return _run_serve(args)
    check_libfuse()  # before the key: a missing libfuse is the first thing to fix
    if args.command in ("status", "refresh", "pin", "unpin", "cache"):
        from mmfs.commands import run_command

        return run_command(args)
    if args.daemon:
        return _run_daemon(args, argv)
    return _run_mount(args)


if __name__ == "__main__":
    sys.exit(main())
