"""``mmfs status``, ``refresh``, ``pin``, ``unpin`` and ``cache``: the commands that talk to a running mount.

Each finds the mount's control channel through the mount itself (its root's ``user.mmfs.control``
attribute), so they work whatever ``--state-dir`` the mount was given; ``mmfs status`` with no mount point
asks every mmfs mount in the kernel's mount table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mmfs.platform import MMFS_FSTYPE, mount_table
from mmfs.redact import one_line
from mmfs.runtime.control import ANSWER_WAIT, ControlError, answer_within, ask, mount_socket, request, socket_attr

__all__ = ["add_commands", "run_command"]

COMMANDS = ("status", "refresh", "pin", "unpin", "cache")

_EPILOG_STATUS = """\
examples:
  mmfs status ~/minimax              what the mount is doing, for people
  mmfs status ~/minimax --json       the same for scripts
  mmfs status --prometheus           every mmfs mount, in Prometheus' text format
  mmfs status ~/minimax --watch      live: transfers, rates, and each upload that took a while
"""
_EPILOG_REFRESH = """\
examples:
  mmfs refresh ~/minimax             every purpose's listing, fetched now
  mmfs refresh ~/minimax voice_clone one purpose
"""
_EPILOG_PIN = """\
examples:
  mmfs pin ~/minimax/voice_clone/narrator.wav   fetch it whole and keep it, even offline
  mmfs pin ~/minimax/retrieval                  every file in a folder
  mmfs unpin ~/minimax/retrieval                let the cache evict them again
"""
_EPILOG_CACHE = """\
examples:
  mmfs cache info ~/minimax          cached and pinned blocks, and the limit
  mmfs cache clear ~/minimax         empty the cache (pinned files stay)
  mmfs cache info                    the cache folder's accounts, with no mount running
"""


def add_commands(sub: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    st = sub.add_parser("status", help="what a mount is doing: cache, transfers, failed uploads, errors",
                        description="Show what a running mount is doing.", epilog=_EPILOG_STATUS,
                        formatter_class=raw)
    st.add_argument("mountpoint", type=Path, nargs="?", help="the mount (default: every mmfs mount)")
    fmt = st.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON, one object per mount, for scripts")
    fmt.add_argument("--prometheus", action="store_true", help="print counters in Prometheus' text format")
    fmt.add_argument("-w", "--watch", action="store_true",
                     help="redraw every --interval seconds with live transfers and rates, and a line for each "
                          "upload that took a while, until Ctrl-C")
    st.add_argument("--interval", type=_interval, default=1.0, metavar="S",
                    help="seconds between redraws with --watch, e.g. 0.5 (default 1)")

    rf = sub.add_parser("refresh", help="fetch listings now instead of waiting for --dir-cache-time",
                        description="Fetch the platform's listings now and drop the kernel's cached entries.",
                        epilog=_EPILOG_REFRESH, formatter_class=raw)
    rf.add_argument("mountpoint", type=Path, help="the mount, e.g. ~/minimax")
    rf.add_argument("purpose", nargs="?", help="only this purpose folder, e.g. voice_clone (default: all)")

    for name, what in (("pin", "fetch files whole into the cache and keep them there (readable offline)"),
                       ("unpin", "let pinned files be evicted again")):
        p = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".", epilog=_EPILOG_PIN,
                           formatter_class=raw)
        p.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="files or folders inside a mount")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    rt = sub.add_parser("retry", help="try again now to upload local files (waiting to land, or refused)",
                        description="Try again now to upload the mount's local files: those waiting to land and "
                        "those the platform refused (after topping up a balance, say). Prints each file's state.")
    rt.add_argument("path", type=Path, nargs="?", metavar="PATH",
                    help="a file or folder inside a mount (default: every local file of every mount)")

    ca = sub.add_parser("cache", help="see or empty a mount's block cache", epilog=_EPILOG_CACHE,
                        description="See or empty a mount's block cache.", formatter_class=raw)
    ca.add_argument("action", choices=("info", "clear"), help="info: what is cached; clear: empty it")
    ca.add_argument("mountpoint", type=Path, nargs="?",
                    help="the mount, e.g. ~/minimax (default: the cache folder itself, no mount needed)")
    ca.add_argument("--cache-dir", type=Path, metavar="DIR",
                    help="without a mount: this cache folder, e.g. ~/.cache/mmfs (default: the user cache folder)")
    ca.add_argument("--json", action="store_true", help="print JSON")


# -- finding the mount ------------------------------------------------------------------------------


def _mount_root(path: Path) -> Path:
    """The mmfs mount holding ``path`` (itself or a parent)."""
    path = Path(os.path.abspath(path))
    for candidate in (path, *path.parents):
        try:
            answer_within(ANSWER_WAIT, candidate, lambda c=candidate: socket_attr(c))
            return candidate
        except OSError:
            continue
    raise ControlError(f"{path} is not inside a running mmfs mount")


# A refresh lists the platform first: the mount's own deadline bounds that, this bounds the wait for it.
REFRESH_WAIT = 120.0


def _mmfs_mounts() -> list[Path]:
    return [Path(entry.target) for entry in mount_table() if entry.fstype == MMFS_FSTYPE]


# -- status -----------------------------------------------------------------------------------------


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _transfers(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "none"
    return "; ".join(f"{r['what']} {_size(r['done'])}/{_size(r['size'])} ({r['seconds']:.1f} s)" for r in rows)


def _fleet_lines(fleet: dict[str, Any]) -> list[str]:
    if not fleet.get("shared"):
        return []
    line = f"  shared tier: {fleet['state']} ({fleet['url']})"
    if fleet["state"] == "alone":
        line += f", alone for {fleet['alone_for_s']:.0f} s: {fleet['reason']}"
    lines = [line]
    events = fleet.get("events") or {}
    if events.get("pending"):
        lines.append(f"    {events['pending']} changes made here waiting to be told to the fleet")
    rejected = sum((fleet.get(part) or {}).get("bad", 0) for part in ("blocks", "listings", "events"))
    if rejected:
        lines.append(f"    {rejected} records from Redis rejected (not sealed by this account, or malformed)")
    budget = fleet.get("budget") or {}
    if budget.get("waiting") or budget.get("refused"):
        lines.append(f"    API budget: {budget.get('waiting', 0)} calls waiting now, last wait "
                     f"{budget.get('last_wait_s', 0):.1f} s, {budget.get('refused', 0)} refused at their deadline")
    return lines


def _local_line(f: dict[str, Any]) -> str:
    line = f"    {f['state']:<9} {f['path']} ({_size(f['size'])})"
    if f.get("reason"):
        line += f": {f['reason']}"
    if f.get("next_try_s") is not None:
        line += f" (next try in {f['next_try_s']:.0f} s)"
    return line


def _local_lines(files: list[dict[str, Any]]) -> list[str]:
    """Files the mount holds that have not landed: what each is waiting for."""
    held = sum(int(f.get("size") or 0) for f in files)
    return [f"  local files (not on the platform yet): {len(files)} ({_size(held)} held on this machine)",
            *map(_local_line, files)]


def kept_locally(mountpoint: Path) -> str | None:
    """What an unmount of ``mountpoint`` keeps on this machine, in words: the files not on the platform yet
    and where their bytes are, or None when nothing is held (or the mount does not answer)."""
    try:
        status = ask(mountpoint, "status", timeout=ANSWER_WAIT)
    except (ControlError, OSError):
        return None
    files = status.get("local_files") or []
    if not files:
        return None
    size = sum(int(f.get("size") or 0) for f in files)
    folder = (status.get("scratch_files") or {}).get("folder") or "the cache folder"
    lines = [f"mmfs: kept on this machine, not on the platform yet: {len(files)} file"
             f"{'' if len(files) == 1 else 's'} ({_size(size)}) in {folder}; the next mount of this account "
             "lands them (or shows why not: mmfs status)", *map(_local_line, files)]
    return "\n".join(lines)


def render_status(s: dict[str, Any]) -> str:
    cache = s["cache"]
    ratio = "-" if s["hit_ratio"] is None else f"{100 * s['hit_ratio']:.1f}%"
    failed = s["failed_uploads"]["files"]
    lines = [
        f"mmfs on {s['mountpoint']}  (pid {s['pid']}, up {s['uptime_seconds']:.0f} s, {s['base_url']})",
        f"  cache:      {cache['files']} files, {_size(cache['bytes'])} of {_size(cache['limit'])} "
        f"(free margin {_size(cache['free_margin'])}, disk free {_size(cache['disk_free'])}) in {cache['folder']}",
        f"  pinned:     {cache['pinned_files']} files, {_size(cache['pinned_bytes'])}",
        *[f"    {p['path']}: {p['state']}" for p in cache.get("pins_not_complete", [])],
        f"  hit ratio:  {ratio} of {s['reads']} reads served without waiting for the network "
        f"({_size(s['downloaded_bytes'])} downloaded; disk cache {s['block_hits']} hits, {s['block_misses']} misses)",
        f"  downloads:  {_transfers(s['downloads_in_flight'])}",
        f"  uploads:    {_transfers(s['uploads_in_flight'])}  ({s['uploads_done']} done, "
        f"{s['uploads_failed']} failed, {_size(s['uploaded_bytes'])})",
        f"  failed uploads waiting: {len(failed)}" + (f" in {s['failed_uploads']['folder']}" if failed else ""),
        *[f"    {f['path']} ({_size(f['size'])})" for f in failed],
        f"  scratch files: {s['scratch_files']['count']} ({_size(s['scratch_files']['bytes'])})",
        *_local_lines(s.get("local_files") or []),
        f"  last error: {s['last_error'] or 'none'}",
        *_fleet_lines(s.get("fleet") or {}),
    ]
    # File names come from the platform and from other users: no escape sequence reaches the terminal.
    return "\n".join(one_line(line) for line in lines)


_METRICS = (
    ("mmfs_cache_files", "gauge", "Files with blocks in the disk cache", lambda s: s["cache"]["files"]),
    ("mmfs_cache_bytes", "gauge", "Bytes in the disk cache", lambda s: s["cache"]["bytes"]),
    ("mmfs_cache_limit_bytes", "gauge", "The disk cache's ceiling", lambda s: s["cache"]["limit"]),
    ("mmfs_pinned_bytes", "gauge", "Bytes of pinned files", lambda s: s["cache"]["pinned_bytes"]),
    ("mmfs_block_hits_total", "counter", "Blocks read from the disk cache", lambda s: s["block_hits"]),
    ("mmfs_block_misses_total", "counter", "Blocks downloaded", lambda s: s["block_misses"]),
    ("mmfs_reads_total", "counter", "Reads of stored files served", lambda s: s["reads"]),
    ("mmfs_reads_from_network_total", "counter", "Reads that waited for a download",
     lambda s: s["reads_from_network"]),
    ("mmfs_downloaded_bytes_total", "counter", "Bytes downloaded", lambda s: s["downloaded_bytes"]),
    ("mmfs_uploaded_bytes_total", "counter", "Bytes uploaded", lambda s: s["uploaded_bytes"]),
    ("mmfs_uploads_total", "counter", "Uploads that landed", lambda s: s["uploads_done"]),
    ("mmfs_upload_failures_total", "counter", "Uploads refused or failed", lambda s: s["uploads_failed"]),
    ("mmfs_downloads_in_flight", "gauge", "Block downloads running", lambda s: len(s["downloads_in_flight"])),
    ("mmfs_uploads_in_flight", "gauge", "Uploads running", lambda s: len(s["uploads_in_flight"])),
    ("mmfs_failed_uploads_waiting", "gauge", "Failed uploads kept on disk",
     lambda s: len(s["failed_uploads"]["files"])),
    ("mmfs_scratch_files", "gauge", "Spool files held", lambda s: s["scratch_files"]["count"]),
    # Only for mounts with --shared: 1 while joined, 0 while going on alone.
    ("mmfs_shared_tier_up", "gauge", "Whether the shared tier (Redis) is in use",
     lambda s: int(s["fleet"]["state"] == "joined") if s.get("fleet", {}).get("shared") else None),
)


def _label(value: str) -> str:
    """A label value as the text format escapes it: backslash, double quote and new line, nothing else."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_prometheus(statuses: list[dict[str, Any]]) -> str:
    out = []
    for name, kind, text, value in _METRICS:
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for s in statuses:
            shown = value(s)
            if shown is not None:
                out.append(f'{name}{{mountpoint={_label(s["mountpoint"])}}} {shown}')
    return "\n".join(out) + "\n"


def _has_control(mountpoint: Path) -> bool:
    """Whether the mount has a control socket we may use (``ControlError`` if it does not answer)."""
    try:
        found = answer_within(ANSWER_WAIT, mountpoint, lambda: socket_attr(mountpoint))
    except ControlError:  # an OSError too: it must not read as "no channel"
        raise
    except OSError:
        return False
    return os.access(os.fsdecode(found), os.W_OK)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"from 0.05 to 3600 seconds, got {text!r}")
    return value


def _statuses(args: argparse.Namespace, *, quiet: bool = False) -> list[dict[str, Any]]:
    mounts = [args.mountpoint] if args.mountpoint else _mmfs_mounts()
    statuses = []
    for mountpoint in mounts:
        if not args.mountpoint and not _has_control(Path(mountpoint)):
            continue
        try:
            statuses.append(ask(Path(mountpoint), "status"))
        except ControlError as exc:
            if args.mountpoint:
                raise
            if not quiet:
                print(f"mmfs: {mountpoint}: {exc}", file=sys.stderr)
    return statuses


# An upload that took at least this long gets a line of its own under --watch: a big cp looks stuck at its
# end while close() uploads, and this is where its user learns what happened.
SLOW_UPLOAD_SECONDS = 3.0


def _watch(args: argparse.Namespace) -> int:
    """``mmfs status --watch``: on a terminal, the status redrawn in place with rates; into a pipe, one line
    per mount per interval (no escape sequences). Either way, one line per upload that took a while."""
    tty = sys.stdout.isatty()
    previous: dict[str, dict[str, Any]] = {}
    uploads: dict[tuple[str, str], dict[str, Any]] = {}  # (mount, what) -> the last row seen
    finished: list[str] = []
    last = time.monotonic()
    try:
        while True:
            statuses = _statuses(args, quiet=True)
            now = time.monotonic()
            elapsed = max(now - last, 1e-3)
            last = now
            frames = []
            for s in statuses:
                mount = s["mountpoint"]
                before = previous.get(mount)
                down = (s["downloaded_bytes"] - before["downloaded_bytes"]) / elapsed if before else 0.0
                up = (s["uploaded_bytes"] - before["uploaded_bytes"]) / elapsed if before else 0.0
                current = {(mount, r["what"]): r for r in s["uploads_in_flight"]}
                for key, row in list(uploads.items()):
                    if key[0] == mount and key not in current:
                        del uploads[key]
                        if row["seconds"] >= SLOW_UPLOAD_SECONDS:
                            failed = before is not None and s["uploads_failed"] > before["uploads_failed"]
                            verdict = "failed (see: mmfs status)" if failed else "done"
                            line = f"upload of {row['what']} ({_size(row['size'])}) {verdict} after " \
                                   f"{row['seconds']:.0f} s or more"
                            finished.append(line)
                            if not tty:
                                print(one_line(line), flush=True)
                uploads.update(current)
                previous[mount] = s
                rates = f"  rates:      down {_size(down)}/s, up {_size(up)}/s"
                if tty:
                    frames.append(render_status(s) + "\n" + one_line(rates))
                else:
                    print(one_line(f"{time.strftime('%H:%M:%S')} {mount}: down {_size(down)}/s, up {_size(up)}/s, "
                                   f"downloads {_transfers(s['downloads_in_flight'])}, "
                                   f"uploads {_transfers(s['uploads_in_flight'])}"), flush=True)
            if tty:
                shown = "\n\n".join(frames) or "mmfs: no mmfs mounts"
                tail = "\n".join(one_line(f) for f in finished[-5:])
                sys.stdout.write("\033[H\033[J" + shown + ("\n\n" + tail if tail else "") + "\n")
                sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `mmfs status --watch | head`: the reader is done, and so is the watch
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0


def _status(args: argparse.Namespace) -> int:
    if getattr(args, "watch", False):
        return _watch(args)
    mounts = [args.mountpoint] if args.mountpoint else _mmfs_mounts()
    statuses = []
    for mountpoint in mounts:
        try:
            if not args.mountpoint and not _has_control(Path(mountpoint)):
                continue  # another user's mount, or one from an mmfs without a control channel
            # One bound for the whole question: a stopped mount is reported, and the others still answer.
            statuses.append(answer_within(ANSWER_WAIT, mountpoint,
                                          lambda mp=Path(mountpoint): ask(mp, "status", timeout=ANSWER_WAIT)))
        except ControlError as exc:
            if args.mountpoint:
                raise
            print(f"mmfs: {mountpoint}: {exc}", file=sys.stderr)
    for s in statuses:
        s.pop("ok", None)
    if args.json:
        print(json.dumps(statuses[0] if args.mountpoint else statuses, indent=2))
    elif args.prometheus:
        sys.stdout.write(render_prometheus(statuses))
    elif not statuses:
        print("mmfs: no mmfs mounts")
    else:
        print("\n\n".join(render_status(s) for s in statuses))
    return 0


# -- refresh, pin, cache ----------------------------------------------------------------------------


def _refresh(args: argparse.Namespace) -> int:
    answer = ask(args.mountpoint, "refresh", timeout=REFRESH_WAIT, purpose=args.purpose)
    if answer["purposes"]:
        print(f"refreshed {', '.join(answer['purposes'])}: {answer['files']} files listed, "
              f"{answer['invalidated']} kernel entries dropped")
    failed = answer.get("failed", [])
    if failed:
        print(f"mmfs: could not list {', '.join(failed)}: the last listing is kept (why: mmfs status "
              f"{args.mountpoint})", file=sys.stderr)
        return 1
    return 0


def _files_under(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            for folder, _, names in os.walk(path):
                files += [Path(folder) / n for n in sorted(names)]
        else:
            files.append(path)
    return files


def _unpin(args: argparse.Namespace) -> int:
    """Pins are dropped by the path they were made by, inside the mount: nothing is listed or stat'ed, so a
    pin of a file deleted elsewhere, or any pin while the platform is unreachable, can be dropped."""
    unpinned: list[str] = []
    size = 0
    not_pinned = 0  # paths given under which nothing was pinned (unpinning them is no error: a no-op)
    for path in args.paths:
        root = _mount_root(path)
        inside = "/" + str(Path(os.path.abspath(path)).relative_to(root))
        answer = ask(root, "unpin", path=inside)
        unpinned += answer.get("unpinned", [])
        size += int(answer.get("size") or 0)
        not_pinned += not answer.get("unpinned")
    n = len(unpinned)
    note = "" if not not_pinned else f"; {not_pinned} {'was' if not_pinned == 1 else 'were'} not pinned"
    print(f"unpinned {n} file{'s' if n != 1 else ''} ({_size(size)}){note}")
    return 0


def _pin(args: argparse.Namespace) -> int:
    from tqdm import tqdm  # only the pin command draws a bar; the mount process never does

    if args.command == "unpin":
        return _unpin(args)
    for path in args.paths:  # before walking a folder: a pin of ~ by mistake must not stat every file first
        if not os.path.lexists(path):
            raise ControlError(f"{path}: no such file or folder")
        _mount_root(path)
    files = _files_under(args.paths)
    if not files:
        raise ControlError("nothing to pin: no files there")
    total = sum(f.stat().st_size for f in files)
    done_files = 0
    # A bar only for a person watching: a log or a pipe gets no carriage-return frames, only the summary.
    quiet = args.quiet or not sys.stderr.isatty()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=quiet,
              desc=f"{args.command} {len(files)} file{'s' if len(files) != 1 else ''}") as bar:
        for path in files:
            root = _mount_root(path)
            inside = "/" + str(path.absolute().relative_to(root))
            seen = 0
            for message in request(mount_socket(root), "pin", timeout=None, path=inside):
                if "done" in message and "ok" not in message:
                    bar.update(message["done"] - seen)
                    seen = message["done"]
            bar.update(path.stat().st_size - seen)
            done_files += 1
    print(f"pinned {done_files} file{'s' if done_files != 1 else ''} ({_size(total)})")
    return 0


def _offline_cache(args: argparse.Namespace) -> int:
    """The cache folder itself, one account (host and key) per sub-folder, with no mount running."""
    import diskcache
    import platformdirs

    from mmfs.blocks.pinned import PinningStore
    from mmfs.blocks.sparse import SparseStore

    root = args.cache_dir or Path(platformdirs.user_cache_dir("mmfs", appauthor=False))
    accounts = sorted(p for p in root.glob("*") if (p / "blocks").is_dir()) if root.is_dir() else []
    result = []
    for account in accounts:
        # Reopen with the ceiling the mount stored (diskcache persists settings given to its constructor).
        with diskcache.Cache(str(account / "blocks")) as settings:
            limit = int(settings.size_limit)
        store = PinningStore(SparseStore(account / "blocks", limit), account / "pinned")
        try:
            freed = store.clear() if args.action == "clear" else 0
            result.append({"folder": str(account), **store.counts(), "pinned": store.pinned_ids(),
                           "pins": store.report(), "freed": freed})
        finally:
            store.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if not result:
        print(f"no cache in {root}")
    for entry in result:
        print(f"cache folder: {entry['folder']}")
        if args.action == "clear":
            print(f"  cleared {_size(entry['freed'])}; {_size(entry['pinned_bytes'])} pinned kept")
        else:
            print(f"  cached:  {entry['cached_blocks']} blocks, {_size(entry['cached_bytes'])}")
            print(f"  pinned:  {entry['pinned_blocks']} blocks, {_size(entry['pinned_bytes'])}")
            for pin in entry["pins"]:
                held = "complete" if pin["complete"] else (
                    f"incomplete: {pin['blocks_held']} of {pin['blocks']} blocks" if pin["complete"] is False
                    else "size unknown")
                print(f"    {pin['path']}  (file_id {pin['file_id']}; {held})")
    return 0


def _pins_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Each pin with its state; a mount from before pins were checked answers with ids and paths only."""
    if "pins" in answer:
        return answer["pins"]
    return [{"file_id": fid, "path": path, "state": "pinned"}
            for fid, path in sorted(answer["pinned"].items(), key=lambda kv: kv[1])]


def _cache(args: argparse.Namespace) -> int:
    if args.mountpoint is None:
        return _offline_cache(args)
    if args.action == "info":
        answer = answer_within(ANSWER_WAIT, args.mountpoint,
                               lambda: ask(args.mountpoint, "cache_info", timeout=ANSWER_WAIT))
    else:
        answer = ask(args.mountpoint, "cache_clear")
    answer.pop("ok", None)
    if args.json:
        print(json.dumps(answer, indent=2))
    elif args.action == "info":
        print(f"cache folder: {answer['folder']}")
        print(f"cached:  {answer['cached_blocks']} blocks, {_size(answer['cached_bytes'])} "
              f"of {_size(answer['limit'])}")
        print(f"pinned:  {answer['pinned_blocks']} blocks, {_size(answer['pinned_bytes'])}")
        for pin in _pins_of(answer):
            print(f"  {pin['path']}  (file_id {pin['file_id']}; {pin['state']})")
    else:
        print(f"cleared {_size(answer['freed'])}; {_size(answer['pinned_bytes'])} pinned kept")
    return 0


def _retry(args: argparse.Namespace) -> int:
    if args.path is None:
        targets = [(m, None) for m in _mmfs_mounts() if _has_control(m)]
    else:
        root = _mount_root(args.path)
        relative = str(Path(os.path.abspath(args.path)).relative_to(root))
        targets = [(root, "/" if relative == "." else "/" + relative)]
    waiting = 0
    for mountpoint, inside in targets:
        for f in ask(mountpoint, "retry", path=inside)["files"]:
            print(one_line(_local_line(f).strip()))
            waiting += f["state"] not in ("landed",)
    return 1 if waiting else 0


def run_command(args: argparse.Namespace) -> int:
    run = {"status": _status, "refresh": _refresh, "pin": _pin, "unpin": _pin, "cache": _cache,
           "retry": _retry}[args.command]
    try:
        return run(args)
    except ControlError as exc:
        print(f"mmfs: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file gone while a folder is walked, a mount that died meanwhile: one line
        print(f"mmfs: {exc.filename or args.command}: {exc.strerror or exc}", file=sys.stderr)
        return 1
