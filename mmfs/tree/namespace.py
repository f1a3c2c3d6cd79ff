"""File records -> the directory tree: ``/<purpose>/<name>`` and ``/.by-id/<file_id>``.

One ``list`` call per purpose per refresh (``dir_cache_time``) answers every ``stat`` and ``readdir`` in
that purpose: nothing here costs a request per file. A listing that cannot be refreshed (network down)
keeps serving the last one it had; only a purpose never listed fails, with the error that stopped it.
A refresh runs in the background: a caller waits for it at most ``refresh_wait`` seconds, then gets the
last listing while the refresh goes on (a stalled platform must not hold ``ls`` for a retry deadline).

Which folders the root shows:
- a purpose the platform lists;
- a purpose the platform refuses to list (status 2013) but that takes uploads, or where mmfs remembers
  files: its folder shows the remembered ones (``video_understanding``, generated outputs);
- any other refused purpose is hidden, not an error.

Remembered files (``KnownFiles``) fill the gaps listings leave: a listable purpose shows its listing, plus
files mmfs uploaded in the last few minutes that a fresh listing omits only if ``retrieve`` still finds them
(a fresh upload may lag behind the listing; a file deleted elsewhere must not outlive the listing that
omits it); an unlistable purpose shows what mmfs remembers until a ``retrieve`` says a file is gone. An id
that leaves a listing, or is found gone, is reported through ``on_gone`` so its cached blocks go too.

Ids whose deletion is under way (an old version new bytes replaced) are *hidden*: never shown, whatever a
listing says, so the name shows the new file at once.

Concurrency: ``_lock`` guards ``_listings`` and ``_refreshing``; each purpose has at most one refresh in
flight, so concurrent readers of an expired folder cause one ``list`` call, and folders refresh
independently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from mmfs.api.answers import is_bare_refusal
from mmfs.api.client import ApiClient
from mmfs.api.records import FileRecord
from mmfs.errors import AuthError, InvalidParamsError, MmfsError, NotFoundError
from mmfs.threads import thread_pool
from mmfs.tree.known import KnownFiles
from mmfs.tree.naming import assign_names

__all__ = ["BY_ID", "DirNode", "FileNode", "Namespace"]

log = logging.getLogger("mmfs.namespace")

BY_ID = ".by-id"
# How long a file mmfs uploaded is shown even if the purpose's listing does not include it yet.
_UPLOAD_GRACE = 300.0
# How long a stat or readdir waits for an expired listing's refresh before it is answered from the last one.
REFRESH_WAIT = 3.0


@dataclass(frozen=True)
class DirNode:
    path: str
    purpose: str | None = None  # None for the root and /.by-id


@dataclass(frozen=True)
class FileNode:
    path: str
    record: FileRecord


@dataclass
class _Listing:
    fetched_at: float
    listable: bool
    records: list[FileRecord]
    names: dict[str, FileRecord] = field(default_factory=dict)


class Namespace:
    def __init__(
        self,
        client: ApiClient,
        known: KnownFiles,
        *,
        purposes: Iterable[str],
        upload_purposes: Iterable[str] = (),
        dir_cache_time: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        refresh_wait: float = REFRESH_WAIT,
        lister: Callable[[str], tuple[list[FileRecord], float]] | None = None,
    ) -> None:
        self._client = client
        # A purpose's records and their age; a fleet's shared listing, or the platform's answer right now.
        self._list = lister or (lambda purpose: (self._client.list_files(purpose), 0.0))
        self._known = known
        self.purposes = tuple(purposes)
        self._upload_purposes = frozenset(upload_purposes)
        self._ttl = dir_cache_time
        self._clock = clock
        self._lock = threading.Lock()
        self._said: set[tuple[str, str]] = set()  # refusals of a listing already logged
        self._listings: dict[str, _Listing] = {}
        self._refresh_locks = {p: threading.Lock() for p in self.purposes}
        self._refresh_wait = refresh_wait
        self._refreshing: dict[str, tuple[Future[_Listing], float]] = {}  # purpose -> (refresh, its start)
        self._pool = thread_pool(max(1, len(self.purposes)), "mmfs-list")
        # Refreshes have their own threads: _all_listings' workers wait on them.
        self._refresh_pool = thread_pool(max(1, len(self.purposes)), "mmfs-refresh")
        self._hidden: set[str] = set()
        # Told of every id found gone (left a listing, or retrieve says it is not there): set by the core.
        self.on_gone: Callable[[str], None] = lambda file_id: None

    # -- listings -----------------------------------------------------------------------------------

    def _listing(self, purpose: str) -> _Listing:
        with self._lock:
            listing = self._listings.get(purpose)
        if listing is not None and self._clock() - listing.fetched_at < self._ttl:
            return listing
        with self._lock:
            refresh, started = self._refreshing.get(purpose, (None, 0.0))
            if refresh is None or refresh.done():
                refresh, started = self._refresh_pool.submit(self._refresh, purpose, listing), time.monotonic()
                self._refreshing[purpose] = (refresh, started)
        if listing is None:  # nothing to serve meanwhile: wait (the client's own deadline bounds it)
            return refresh.result()
        try:
            # Measured from the refresh's start: the lookup, getattr and readdir of one `ls` share the wait.
            return refresh.result(timeout=max(0.0, started + self._refresh_wait - time.monotonic()))
        except FutureTimeout:
            log.info("listing %s is slow to refresh; serving the one from %.0f s ago meanwhile",
                     purpose, self._clock() - listing.fetched_at)
            return listing

    def _refresh(self, purpose: str, previous: _Listing | None) -> _Listing:
        try:
            records, age = self._list(purpose)
            listing = _Listing(self._clock() - age, True, [r for r in records if r.purpose in (None, purpose)])
        except InvalidParamsError as exc:
            listing = _Listing(self._clock(), False, [])
            self._refused(purpose, exc)
        except AuthError:
            raise
        except MmfsError as exc:
            if previous is None:
                raise
            log.warning("listing %s failed (%s); serving the listing from %.0f s ago",
                        purpose, exc, self._clock() - previous.fetched_at)
            previous.fetched_at = self._clock()  # do not hammer a failing platform on every stat
            return previous
        if listing.listable:
            self._check_omitted(purpose, listing, previous)
        listing.names = self._name(purpose, listing)
        with self._lock:
            self._listings[purpose] = listing
        return listing

    def _check_omitted(self, purpose: str, listing: _Listing, previous: _Listing | None) -> None:
        """A fresh listing omits a file: one that left it is gone; a remembered upload it omits is asked for
        by id, and forgotten if the platform no longer has it."""
        listed = {r.file_id for r in listing.records}
        recent = {r.file_id: r for r in self._known.in_purpose(purpose)
                  if r.file_id not in listed and time.time() - self._known.seen_at(r.file_id) < _UPLOAD_GRACE}
        left = {r.file_id for r in previous.records} - listed if previous is not None and previous.listable else set()
        gone = left - set(recent)
        for record in recent.values():
            try:
                self._client.retrieve(record.file_id)
            except (NotFoundError, InvalidParamsError):
                gone.add(record.file_id)
            except MmfsError:
                pass  # cannot tell now: shown until a listing and a retrieve agree
        for file_id in gone:
            self._known.forget(file_id)
            with self._lock:
                self._hidden.discard(file_id)
            self.on_gone(file_id)

    def _refused(self, purpose: str, exc: InvalidParamsError) -> None:
        """A 2013 on a list hides the folder (the purpose is not listable); one whose words name another
        cause (a gateway's "model must be ...") is said, once per purpose and message, with those words."""
        if "purpose" in exc.message.lower() or is_bare_refusal(exc.message):
            return
        if (purpose, exc.message) not in self._said:
            self._said.add((purpose, exc.message))
            log.error("listing %s refused by the platform (or a gateway in front of it): %s; the folder is "
                      "hidden (a gateway's own parameters go in --op-param)", purpose, exc.message)

    def refresh(self, purposes: Iterable[str] | None = None) -> list[str]:
        """Fetch these purposes' listings now (all when None), whatever their age; the purposes done. One
        whose listing failed, and whose last listing is kept, is not among them."""
        done = []
        for purpose in purposes or self.purposes:
            if purpose not in self._refresh_locks:
                raise NotFoundError(f"no folder {purpose}")
            with self._refresh_locks[purpose]:
                with self._lock:
                    previous = self._listings.get(purpose)
                if self._refresh(purpose, previous) is not previous:
                    done.append(purpose)
        return done

    def _name(self, purpose: str, listing: _Listing) -> dict[str, FileRecord]:
        with self._lock:
            hidden = set(self._hidden)
        records = {r.file_id: r for r in listing.records if r.file_id not in hidden}
        now = time.time()
        for record in self._known.in_purpose(purpose):
            if record.file_id in records or record.file_id in hidden:
                continue
            if not listing.listable or now - self._known.seen_at(record.file_id) < _UPLOAD_GRACE:
                records[record.file_id] = record
        return assign_names(records.values())

    def _all_listings(self) -> dict[str, _Listing]:
        """Every purpose's listing, fetched in parallel: a cold ``ls /`` costs one round trip, not eight."""
        futures = {p: self._pool.submit(self._listing, p) for p in self.purposes}
        result = {}
        for purpose, future in futures.items():
            try:
                result[purpose] = future.result()
            except AuthError:
                raise
            except MmfsError as exc:
                log.warning("cannot list %s: %s", purpose, exc)
        return result

    def _visible(self, purpose: str, listing: _Listing | None) -> bool:
        if listing is None:
            return False
        return listing.listable or purpose in self._upload_purposes or bool(listing.names)

    # -- the tree -----------------------------------------------------------------------------------

    def root_names(self) -> list[str]:
        listings = self._all_listings()
        return [p for p in self.purposes if self._visible(p, listings.get(p))] + [BY_ID]

    def names(self, purpose: str) -> dict[str, FileRecord]:
        """The folder ``/<purpose>``: name -> record."""
        if purpose not in self._refresh_locks:
            raise NotFoundError(f"no folder {purpose}")
        listing = self._listing(purpose)
        if not self._visible(purpose, listing):
            raise NotFoundError(f"the platform does not list {purpose}")
        return listing.names

    def by_id_names(self) -> list[str]:
        """``/.by-id``: every file mmfs knows of, listed or remembered (listing it costs no request)."""
        with self._lock:
            ids = {r.file_id for listing in self._listings.values() for r in listing.names.values()}
        ids.update(r.file_id for r in self._known.all())
        return sorted(ids, key=lambda i: (len(i), i))

    def lookup(self, path: str) -> DirNode | FileNode:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return DirNode("/")
        head = parts[0]
        if head == BY_ID:
            if len(parts) == 1:
                return DirNode(path)
            if len(parts) == 2:
                return FileNode(path, self.record_by_id(parts[1]))
            raise NotFoundError(path)
        if len(parts) == 1:
            self.names(head)  # raises NotFoundError for a hidden or unknown purpose
            return DirNode(path, head)
        if len(parts) == 2:
            record = self.names(head).get(parts[1])
            if record is None:
                raise NotFoundError(path)
            return FileNode(path, record)
        raise NotFoundError(path)

    def record_by_id(self, file_id: str) -> FileRecord:
        """A file by id: listed, remembered, or asked of the platform (and then remembered)."""
        if not file_id.isdigit():
            raise NotFoundError(f"not a file id: {file_id}")
        with self._lock:
            for listing in self._listings.values():
                for record in listing.records:
                    if record.file_id == file_id:
                        return record
        known = self._known.get(file_id)
        if known is not None:
            return known
        record = self._client.retrieve(file_id)  # NotFoundError for an id the platform does not have
        self.remember(record)
        return record

    # -- changes made through the mount -------------------------------------------------------------

    def remember(self, record: FileRecord) -> None:
        """A file seen by id or uploaded: show it in its purpose folder from now on."""
        self._known.remember(record)
        purpose = record.purpose
        if purpose is None:
            return
        with self._lock:
            listing = self._listings.get(purpose)
            if listing is None:
                return
            if record.file_id not in {r.file_id for r in listing.records}:
                listing.records = [*listing.records, record]
        self._rename(purpose)

    def ids_named(self, purpose: str, filename: str) -> frozenset[str]:
        """Ids this mount knows under ``filename`` in ``purpose`` (listed, remembered or hidden), without a
        request: what an upload about to be sent must never be taken for."""
        with self._lock:
            listing = self._listings.get(purpose)
            ids = {r.file_id for r in listing.records if r.filename == filename} if listing else set()
            ids |= self._hidden
        ids |= {r.file_id for r in self._known.in_purpose(purpose) if r.filename == filename}
        return frozenset(ids)

    def hide(self, file_id: str) -> None:
        """An id being deleted (new bytes replaced it): out of the tree now, whatever listings say."""
        with self._lock:
            self._hidden.add(file_id)
            purposes = [p for p, listing in self._listings.items() if file_id in {r.file_id for r in listing.records}]
        known = self._known.get(file_id)
        if known is not None and known.purpose:
            purposes.append(known.purpose)
        for purpose in set(purposes):
            self._rename(purpose)

    def forget(self, file_id: str, purpose: str | None) -> None:
        """A file deleted (or found gone): drop it everywhere."""
        with self._lock:
            self._hidden.discard(file_id)
        self._known.forget(file_id)
        if purpose is None:
            return
        with self._lock:
            listing = self._listings.get(purpose)
            if listing is not None:
                listing.records = [r for r in listing.records if r.file_id != file_id]
        self._rename(purpose)

    def _rename(self, purpose: str) -> None:
        with self._lock:
            listing = self._listings.get(purpose)
        if listing is not None:
            names = self._name(purpose, listing)
            with self._lock:
                listing.names = names

    def local_record(self, file_id: str) -> FileRecord | None:
        """The file's record from a listing or mmfs's memory, never asking the platform."""
        with self._lock:
            for listing in self._listings.values():
                for record in listing.records:
                    if record.file_id == file_id:
                        return record
        return self._known.get(file_id)

    def presence(self, file_id: str, purpose: str | None) -> bool | None:
        """Whether the platform still has the file, from what this mount already holds (no request): True if
        a listing or mmfs's memory has it, False if ``purpose``'s listing (a listable one) lacks it, None when
        nothing says (never listed, or a purpose the platform does not list)."""
        with self._lock:
            listing = self._listings.get(purpose) if purpose else None
            if any(r.file_id == file_id for lst in self._listings.values() for r in lst.records):
                return True
        if self._known.get(file_id) is not None:
            return True
        if listing is None or not listing.listable:
            return None
        return False

    def known_size(self, file_id: str) -> int | None:
        return self._known.size(file_id)

    def set_known_size(self, file_id: str, size: int) -> None:
        self._known.set_size(file_id, size)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._refresh_pool.shutdown(wait=False, cancel_futures=True)
