"""One owner per file being written or held locally: ``PendingFile`` alone decides when the file uploads,
what the block cache is seeded with, and what happens when the platform says no. The rest of mmfs asks it.

Every entry of a purpose folder is either *landed* (a platform file) or *local* (bytes this mount holds in a
spool, ``mmfs.core.spool``, with a state and a reason). A local file is visible, readable, writable, renamable
and deletable; its spool and manifest are its journal, so it survives an unmount or a crash
(``mmfs.core.recovery``). It leaves only when it landed exactly once under its name, or is deleted.

The platform has upload and delete and nothing else, so a write is: spool the bytes, and when the last
writer closes the file, upload the spool as one new file. An overwrite uploads the new bytes first; the old
ids are deleted only after that (their deletes are part of the landing, journalled until done).

States (``WriteState``):

- ``SCRATCH``: a tool's temporary name (``mmfs.core.scratch_names``) or a file in a local-only folder: local,
  never uploaded under that name.
- ``SPOOLING``: a name its purpose takes; bytes (maybe none yet) being written, not uploaded.
- ``UPLOADING``: one try is on its way (at a close, a rename, or in the background). The file's lock is
  free meanwhile: readers read the spool; writers, renames and deletes wait for the answer.
- ``RETRYING``: a try failed for a reason that passes (network, 5xx, rate limit, a timeout, an answer
  that never came, a landing cut short): local, tried again in the background (``mmfs.core.write_back``) with
  backoff until it lands. Before each new try the listing is checked for the file an earlier try may have
  stored, so it lands exactly once.
- ``REFUSED``: the platform refused it for good (format, size, quota, balance, content): local, with the
  platform's reason, until it is changed, renamed or retried (``mmfs retry``).
- ``LANDED``: the platform holds exactly these bytes as ``record``; the spool is sealed.
- ``FAILED``: the program's own write failed (a full disk, a write past the size limit, old bytes that
  could not be copied in): every later write and close repeats it, and bytes worth keeping are in
  ``failed-uploads/``.

Moves: SCRATCH <-> SPOOLING by rename; SPOOLING -> UPLOADING at the last writer's close when bytes were
written since the last upload and the file is not empty (the platform refuses empty files), or at a rename
to a real name with no writer left; UPLOADING -> LANDED, RETRYING or REFUSED; RETRYING -> UPLOADING in the
background; RETRYING, REFUSED, LANDED -> SPOOLING at the next change (after a landing, a new spool copied
from the sealed one, replacing the id that just landed); anything -> FAILED when a write is refused.

``close()`` reports what the first try learned (the errno of the failure), but nothing depends on anyone
reading it: the file stays, and ``mmfs status`` and the ``user.mmfs.state`` attribute say where it is.

Concurrency: ``lock`` (re-entrant) guards every field and the spool; it is not held while an upload is
on the network (``_idle`` is notified when it ends).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mmfs.api.records import FileRecord
from mmfs.core import failed_uploads
from mmfs.core.scratch_names import is_scratch
from mmfs.core.spool import COMPLETE, LOCAL, WRITING, Sealed, SpaceKeeper, Spool
from mmfs.errors import (
    ContentRefusedError,
    FileTooLargeError,
    InvalidParamsError,
    MmfsError,
    QuotaError,
    ReadOnlyError,
)
from mmfs.upload_rules import check_size, size_limit

__all__ = ["CannotCheck", "CopyInError", "Landing", "PendingFile", "ShortLanding", "SpoolError", "WriteState",
           "is_refusal"]

log = logging.getLogger("mmfs.writes")


class WriteState(enum.Enum):
    SCRATCH = "scratch"
    SPOOLING = "spooling"
    UPLOADING = "uploading"
    RETRYING = "retrying"
    REFUSED = "refused"
    LANDED = "landed"
    FAILED = "failed"


_LOCAL = (WriteState.SCRATCH, WriteState.SPOOLING, WriteState.RETRYING, WriteState.REFUSED)


def is_refusal(exc: BaseException) -> bool:
    """The platform said no for good (trying again would get the same answer)."""
    return isinstance(exc, InvalidParamsError | QuotaError | ContentRefusedError | FileTooLargeError | ReadOnlyError)


class ShortLanding(MmfsError):
    """The platform stored fewer bytes than were sent (a body cut on the way): deleted, sent again."""

    retryable = True


class CannotCheck(MmfsError):
    """The purpose cannot be listed, so whether an earlier try landed cannot be known."""


class CopyInError(MmfsError):
    """The old bytes of a file opened for editing could not be read: the edit cannot be made (EIO)."""


class SpoolError(MmfsError):
    """Writing the local spool failed (a full disk, an I/O error); carries that errno."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


# Sends of one try whose landing came back short before the try counts as failed (a cut body is a network
# fault: sending again at once usually lands whole).
_SHORT_RESENDS = 3


@dataclass(frozen=True)
class Landing:
    """What a pending file needs of the rest of mmfs: where spools and kept files go, the upload call,
    ``find_landed(purpose, filename, size, since, not_ids)`` (the file an earlier try stored, if any;
    raises ``CannotCheck`` when the purpose cannot be listed), ``delete(record)`` (best effort),
    ``retry_later(file)`` (queue a background try), and ``landed(file, record, sealed, old, journal)`` to
    seed the cache and show the file (it owns ``sealed``), returning what is left to do once the file's
    lock is released: delete the old ids (``journal`` is the manifest to remove once they are gone)."""

    spool_dir: Path
    failed_dir: Path
    space: SpaceKeeper
    upload: Callable[[Path, str, str], FileRecord]
    landed: Callable[[PendingFile, FileRecord, Sealed, list[FileRecord], Path | None], Callable[[], None]]
    find_landed: Callable[[str, str, int, float, frozenset[str]], FileRecord | None] = \
        lambda purpose, filename, size, since, not_ids: None
    delete: Callable[[FileRecord], None] = lambda record: None
    retry_later: Callable[[PendingFile], None] = lambda file: None
    existing: Callable[[str, str], frozenset[str]] = lambda purpose, filename: frozenset()


@dataclass(frozen=True)
class _Attempt:
    spool: Path
    purpose: str
    filename: str
    size: int
    since: float
    check_first: bool
    not_ids: frozenset[str]


class PendingFile:
    """One file being written or held locally, shared by every descriptor open on its path."""

    def __init__(self, path: str, purpose: str, filename: str, landing: Landing, *,
                 replaces: FileRecord | None = None, base: Callable[[], Iterable[bytes]] | None = None,
                 supersedes: Iterable[FileRecord] = (), local_only: bool = False,
                 adopt: tuple[Spool, dict[str, object]] | None = None) -> None:
        self.lock = threading.RLock()
        self._idle = threading.Condition(self.lock)
        self.path = path
        self.purpose = purpose
        self.filename = filename
        self.local_only = local_only  # in a local-only folder: never uploaded, whatever its name
        self.replaces = replaces  # the stored file this one will replace once it lands
        # The path's truth even before it lands: closed and not landed (waiting or refused), or renamed onto
        # its name. Until then a replacement being written leaves the stored file shown.
        self.settled = False
        self.supersedes = list(supersedes)  # other old ids to delete once it lands (a renamed stored file's)
        self.state = WriteState.SCRATCH if self._scratch(filename) else WriteState.SPOOLING
        self.record: FileRecord | None = None  # what landed, in LANDED
        self.failure: MmfsError | None = None  # why it is FAILED, or the last try's error
        self.reason: str | None = None  # RETRYING: the last error; REFUSED: the platform's reason
        self.tries = 0  # uploads sent for these bytes
        self.since = 0.0  # when the first of them was sent
        self.before: frozenset[str] = frozenset()  # ids of its name before the first: never taken for it
        self._maybe_landed = False  # the last try's body went out and no clear answer came back
        self.dirty = False  # bytes changed since the last upload
        self.writers = 0
        self.readers = 0
        self.unlinked = False
        self.mtime_ns = time.time_ns()
        self.in_place = False  # an edit of a stored file: started from its bytes (copied in), or ftruncate'd
        self._landing = landing
        self._base = base  # the old bytes of an edited stored file, copied in at the first change keeping them
        self._cut = False  # the failure left the spool short of what the program wrote
        self._kept: Path | None = None
        self._sealed: Sealed | None = None
        self._then: Callable[[], None] | None = None  # work a landing leaves for after the lock
        if adopt is None:
            self._spool: Spool | None = Spool(landing.spool_dir, landing.space, self._meta())
        else:
            self._spool, meta = adopt
            self._take_back(meta)

    def _scratch(self, filename: str) -> bool:
        # A stored file keeps its name whatever it looks like: only a new file can be a scratch file.
        return self.local_only or (self.replaces is None and is_scratch(filename))

    def _meta(self) -> dict[str, object]:
        return {"path": self.path, "purpose": self.purpose, "filename": self.filename,
                "scratch": self.state is WriteState.SCRATCH, "local_only": self.local_only,
                "replaces": self.replaces.file_id if self.replaces else None,
                "supersedes": [r.file_id for r in self.supersedes], "since": time.time()}

    def _take_back(self, meta: dict[str, object]) -> None:
        """A spool a stopped mount left, closed and whole: what it was is what it is again."""
        self.tries = int(meta.get("tries") or 0)
        self.since = float(meta.get("first_sent") or 0.0)
        self.before = frozenset(str(i) for i in meta.get("before") or [])  # type: ignore[attr-defined]
        self.reason = str(meta["reason"]) if meta.get("reason") else None
        self.mtime_ns = int(float(meta.get("mtime") or time.time()) * 1e9)
        self.settled = True
        if self.state is WriteState.SCRATCH:
            return
        if meta.get("refused"):
            self.state = WriteState.REFUSED
        elif meta.get("state") == COMPLETE and self.size:
            self.state, self._maybe_landed = WriteState.RETRYING, self.tries > 0
            self.reason = self.reason or "waiting to land after a restart"

    # -- what others ask ----------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        if self._spool is not None:
            return self._spool.size
        return self._sealed.size if self._sealed is not None else 0

    @property
    def is_local(self) -> bool:
        """Held here, not (yet) on the platform: scratch, written, waiting to land or refused."""
        return self.state in _LOCAL or self.state is WriteState.UPLOADING

    @property
    def shows_stored(self) -> bool:
        """Readers of the path still see the stored file it will replace: its replacement is being written.
        A replacement closed and waiting to land (or refused) is the path's truth from then on."""
        return self.replaces is not None and not self.settled and self.state in (
            WriteState.SPOOLING, WriteState.UPLOADING, WriteState.FAILED)

    @property
    def shows_own_size(self) -> bool:
        """The path's size is this file's, not the stored one's: a new file, or an edit in place. Only a
        replacement (O_TRUNC, ``cp`` onto it) shows the old size until it lands, so a reader that opened the
        old file before is not cut short; an editor in place needs its own size for SEEK_END."""
        return not self.shows_stored or self.in_place

    def lingers(self) -> bool:
        """Whether it stays in the tree with no descriptor open: every local file does (a scratch file, an
        empty new file waiting for bytes, one waiting to land or refused, a change to a stored file not
        uploaded); see doc/SEMANTICS.md, "Writing"."""
        with self.lock:
            if self.unlinked:
                return False
            if self.state in (WriteState.SCRATCH, WriteState.RETRYING, WriteState.REFUSED, WriteState.UPLOADING):
                return True
            return self.state is WriteState.SPOOLING and (self.replaces is None or self.dirty)

    def failed_for_good(self) -> bool:
        """Poisoned, with no other writer to outlive this close: nothing of it will ever land."""
        with self.lock:
            return self.state is WriteState.FAILED and self.writers <= 1 and not self.unlinked

    def describe_state(self) -> dict[str, object]:
        """What ``mmfs status`` and ``user.mmfs.state`` say of it."""
        with self.lock:
            state = {WriteState.SPOOLING: "writing" if self.writers else "pending"}.get(self.state, self.state.value)
            if self.state is WriteState.SCRATCH:
                state = "local"
            if self.state is WriteState.UPLOADING and self.tries > 1:
                state = "retrying"  # a background try on its way: still the last error until it answers
            info: dict[str, object] = {"path": self.path, "state": state, "size": self.size}
            if state in ("retrying", "refused") and self.reason:
                info["reason"] = self.reason
            if self.state is WriteState.FAILED and self.failure is not None:
                info["reason"] = str(self.failure)
            if self.tries:
                info["tries"] = self.tries
            return info

    # -- bytes --------------------------------------------------------------------------------------------

    def _wait_idle_locked(self) -> None:
        while self.state is WriteState.UPLOADING:
            self._idle.wait()

    def write(self, data: bytes, offset: int, *, append: bool = False) -> int:
        """Write at ``offset``; with ``append`` at the end of the file. The kernel computes an O_APPEND
        offset from the size it holds, which is the stored file's while a replacement of it is written."""
        with self.lock:
            self._wait_idle_locked()
            self._refuse_if_failed_locked()
            if not append:
                self._check_end_locked(offset + len(data))
            spool = self._spool_for_change_locked(keep_bytes=True)
            if append:
                offset = spool.size
                self._check_end_locked(offset + len(data))
            try:
                written = spool.write(data, offset)
            except OSError as exc:
                failure = SpoolError(f"spooling {self.filename} failed: {exc.strerror}", exc.errno or 5)
                if exc.errno == errno.ENOSPC:
                    # The program is told; a partial copy kept on the full disk would keep it full.
                    failed = self._fail_locked(failure)
                    with contextlib.suppress(OSError):
                        spool.truncate(0)
                    raise failed from None
                raise self._fail_locked(failure, cut=True) from None
            self._changed_locked()
            return written

    def _check_end_locked(self, end: int) -> None:
        if end > size_limit(self.purpose, self.filename) and self.state is not WriteState.SCRATCH:
            try:
                check_size(self.purpose, self.filename, end)
            except FileTooLargeError as exc:
                raise self._fail_locked(exc) from None

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            if self._spool is None and self._sealed is not None:
                return self._sealed.read_at(offset, max(offset, min(offset + size, self._sealed.size)))
            if self._spool is None:
                raise self.failure or MmfsError(f"{self.filename} is gone")
            if isinstance(self.failure, CopyInError):
                raise self.failure  # the spool holds a part of the old bytes at most: not the file
            if self._base is not None:
                self._wait_idle_locked()
                self._copy_in_locked()
            return self._spool.read(offset, size)

    def truncate(self, length: int, *, in_place: bool = False) -> None:
        """``in_place``: by a descriptor (``ftruncate``), not an O_TRUNC open: the file shows its own size."""
        with self.lock:
            self._wait_idle_locked()
            self._refuse_if_failed_locked()
            if self.state is not WriteState.SCRATCH:
                try:
                    check_size(self.purpose, self.filename, length)
                except FileTooLargeError as exc:
                    raise self._fail_locked(exc) from None
            if length == 0:
                self._base = None  # nothing of the old bytes survives: no need to fetch them
            spool = self._spool_for_change_locked(keep_bytes=length > 0)
            try:
                spool.truncate(length)
            except OSError as exc:
                raise self._fail_locked(SpoolError(f"truncating {self.filename}: {exc.strerror}", exc.errno or 5),
                                        cut=True) from None
            self._changed_locked()
            self.in_place = self.in_place or in_place

    def touch(self, mtime_ns: int | None) -> None:
        with self.lock:
            self.mtime_ns = mtime_ns if mtime_ns is not None else time.time_ns()

    def _changed_locked(self) -> None:
        self.dirty = True
        self.mtime_ns = time.time_ns()
        if self._spool is not None and self._spool.state != WRITING:
            # Written again after a close said it was whole: a crash from now on leaves it cut.
            self._spool.describe(state=WRITING)

    def _refuse_if_failed_locked(self) -> None:
        if self.state is WriteState.FAILED:
            assert self.failure is not None
            raise self.failure

    def _spool_for_change_locked(self, *, keep_bytes: bool) -> Spool:
        """The spool to change: after a landing, a new one (the sealed bytes stay what the platform has); a
        local file waiting to land or refused becomes a file being written again (its tries start over)."""
        if self.state is WriteState.LANDED:
            sealed, self._sealed = self._sealed, None
            assert sealed is not None
            self.replaces, self.record = self.record, None
            self.state, self.settled = WriteState.SPOOLING, False
            self._spool = Spool(self._landing.spool_dir, self._landing.space, self._meta())
            try:
                if keep_bytes:
                    self._spool.copy_from(sealed)
            except OSError as exc:
                raise self._fail_locked(SpoolError(f"spooling {self.filename} failed: {exc.strerror}",
                                                   exc.errno or 5)) from None
            finally:
                sealed.close()
        elif self.state in (WriteState.RETRYING, WriteState.REFUSED):
            self.state, self.reason, self.tries, self._maybe_landed = WriteState.SPOOLING, None, 0, False
            self.since = 0.0
            assert self._spool is not None
            self._spool.describe(state=WRITING, reason=None, refused=False, tries=0)
        if keep_bytes:
            self._copy_in_locked()
        assert self._spool is not None
        return self._spool

    def _copy_in_locked(self) -> None:
        """An edited stored file starts from its old bytes; if they cannot be had, the edit fails (EIO) and
        nothing is ever uploaded: never upload bytes we did not have."""
        if self._base is None:
            return
        base, self._base = self._base, None
        assert self._spool is not None
        offset = 0
        try:
            for chunk in base():
                offset += self._spool.write(chunk, offset)
        except OSError as exc:
            failure = CopyInError(f"could not copy in the current bytes of {self.filename} to edit it: {exc}")
            raise self._fail_locked(failure) from None
        self.in_place = True

    def copy_in(self) -> None:
        """Have the old bytes here now (a stored file renamed: the copy must be whole before the old id goes)."""
        with self.lock:
            self._copy_in_locked()

    def mark_changed(self) -> None:
        """Bytes not on the platform under this name (a stored file's copy): due to land."""
        with self.lock:
            self.dirty = True

    def unseen_landing(self) -> tuple[str, str, int, float, frozenset[str]] | None:
        """What to look for in the listing if a try may have landed unanswered: (purpose, filename, size,
        since, not_ids) for ``Landing.find_landed``; None if no try can have."""
        with self.lock:
            self._wait_idle_locked()
            if not self._maybe_landed or self.state not in (WriteState.RETRYING, WriteState.REFUSED):
                return None
            not_ids = frozenset(r.file_id for r in ([self.replaces] if self.replaces else []) + self.supersedes)
            return self.purpose, self.filename, self.size, self.since, not_ids

    def forget_superseded(self, gone: list[FileRecord]) -> None:
        """These old ids are deleted: no longer this file's to delete."""
        with self.lock:
            ids = {r.file_id for r in gone}
            self.supersedes = [r for r in self.supersedes if r.file_id not in ids]
            if self._spool is not None:
                self._spool.describe(supersedes=[r.file_id for r in self.supersedes])

    # -- closing and uploading ------------------------------------------------------------------------------

    def attach(self, writable: bool) -> None:
        with self.lock:
            if writable:
                self.writers += 1
            else:
                self.readers += 1

    def close_writer(self) -> None:
        """A writable descriptor is being closed (``flush``): if it is the last writer and bytes changed
        since the last upload, upload them now and raise what that try learned (the file stays either way)."""
        with self.lock:
            self._wait_idle_locked()
            self._refuse_if_failed_locked()
            if self.writers > 1 or self.unlinked:
                return
            self._closed_locked()
            attempt = self._begin_locked()
        if attempt is not None:
            self._attempt(attempt, report=True)

    def _closed_locked(self) -> None:
        """No writer left (or the last one is closing): the bytes are whole; the journal says what they are."""
        if self._spool is None or self.state is WriteState.FAILED:
            return
        if self._spool.state == WRITING and (self.state is not WriteState.SPOOLING or not self.dirty):
            # Not about to upload: held here (scratch, empty, an overwrite emptied) until it changes.
            with contextlib.suppress(OSError):
                self._spool.mark(LOCAL, **self._meta(), mtime=self.mtime_ns / 1e9)

    def detach(self, writable: bool) -> bool:
        """A descriptor released; whether none is left. The last writer uploads what came after the last
        flush (errors are logged: nobody is left to tell)."""
        attempt = None
        with self.lock:
            if writable:
                self.writers -= 1
            else:
                self.readers -= 1
            if writable and self.writers == 0 and not self.unlinked:
                self._wait_idle_locked()
                if self.state is WriteState.FAILED and self._cut:
                    self._keep_locked(f"a write failed ({self.failure})")
                elif self.state is not WriteState.FAILED:
                    self._closed_locked()
                    with contextlib.suppress(OSError):  # logged where it failed; nobody is left to tell
                        attempt = self._begin_locked()
        if attempt is not None:
            self._attempt(attempt, report=False)
        with self.lock:
            return self.writers + self.readers == 0

    def upload_after_rename(self) -> None:
        """Renamed to a name its purpose takes: with no writer left, try to land it now, so the platform's
        state is settled when the rename returns. The rename itself stands whatever the answer."""
        with self.lock:
            self._wait_idle_locked()
            if self.writers or self.unlinked or self.state not in (WriteState.SPOOLING, WriteState.RETRYING):
                return
            self._closed_locked()
            attempt = self._begin_locked(retrying=self.state is WriteState.RETRYING)
        if attempt is not None:
            self._attempt(attempt, report=False)

    def upload_if_unheld(self) -> None:
        """Changed by path (``truncate(2)``) with no descriptor open: no close will come, so upload now and
        let the call report what the try learned, as a close would."""
        with self.lock:
            self._wait_idle_locked()
            if self.writers or self.unlinked:
                return
            self._closed_locked()
            attempt = self._begin_locked()
        if attempt is not None:
            self._attempt(attempt, report=True)

    def land_in_background(self) -> bool:
        """One background try of a file waiting to land; whether it is done with (landed, or no longer
        waiting: changed, renamed to a temporary name, deleted, refused)."""
        with self.lock:
            if self.state is not WriteState.RETRYING or self.unlinked:
                return True
            if self.writers:
                return False  # its last close tries itself if bytes change; else the next round does
            attempt = self._begin_locked(retrying=True)
        if attempt is not None:
            self._attempt(attempt, report=False)
        with self.lock:
            return self.state is not WriteState.RETRYING

    def retry(self) -> bool:
        """``mmfs retry``: a refused file (or one that may have landed unseen) is queued again; whether it was."""
        with self.lock:
            if self.state is WriteState.REFUSED and not self.unlinked and self.size:
                self.state = WriteState.RETRYING
                self._maybe_landed = False  # the user says: send it
                if self._spool is not None:
                    self._spool.describe(state=COMPLETE, refused=False)
            elif self.state is not WriteState.RETRYING:
                return False
        self._landing.retry_later(self)
        return True

    def _begin_locked(self, *, retrying: bool = False) -> _Attempt | None:
        """Start a try if one is due: the file's bytes are journalled as whole and to land, and it is
        UPLOADING until ``_attempt`` is done. None when nothing is to upload."""
        if retrying:
            if self.state is not WriteState.RETRYING:
                return None
        elif self.state is not WriteState.SPOOLING or not self.dirty or self.size == 0:
            return None
        spool = self._spool
        assert spool is not None
        try:
            self._copy_in_locked()
            check_size(self.purpose, self.filename, spool.size)
            self.tries += 1
            if self.tries == 1:
                self.before = self._landing.existing(self.purpose, self.filename)
            self.since = self.since or time.time()
            spool.mark(COMPLETE, **self._meta(), tries=self.tries, first_sent=self.since, refused=False,
                       reason=self.reason, mtime=self.mtime_ns / 1e9, before=sorted(self.before))
        except FileTooLargeError as exc:
            raise self._fail_locked(exc) from None
        except OSError as exc:
            if isinstance(exc, MmfsError):
                raise
            raise self._fail_locked(SpoolError(f"spooling {self.filename}: {exc.strerror}", exc.errno or 5),
                                    cut=True) from None
        self.state, self.dirty = WriteState.UPLOADING, False
        not_ids = self.before | {r.file_id for r in ([self.replaces] if self.replaces else []) + self.supersedes}
        return _Attempt(spool.path, self.purpose, self.filename, spool.size, self.since,
                        check_first=self.tries > 1, not_ids=not_ids)

    def _attempt(self, attempt: _Attempt, *, report: bool) -> None:
        """One try, outside the lock: the file an earlier try stored, or a new upload, checked for its size."""
        outcome: FileRecord | BaseException
        try:
            outcome = self._try(attempt)
        except OSError as exc:
            outcome = exc
        except BaseException:
            with self.lock:  # a crash (a test's simulated kill): leave the journal as it is
                self.state = WriteState.RETRYING
                self._idle.notify_all()
            raise
        with self.lock:
            try:
                failure = self._finish_locked(attempt, outcome)
            finally:
                self._idle.notify_all()
            then, self._then = self._then, None
        if then is not None:
            then()  # the old ids' deletes: network calls, outside the lock
        if failure is not None and report:
            raise failure

    def _try(self, attempt: _Attempt) -> FileRecord:
        if attempt.check_first:
            try:
                found = self._landing.find_landed(attempt.purpose, attempt.filename, attempt.size, attempt.since,
                                                  attempt.not_ids)
            except CannotCheck:
                if self._maybe_landed:
                    raise CannotCheck(f"an earlier upload of {attempt.filename} may have landed, and "
                                      f"{attempt.purpose} cannot be listed to check; 'mmfs retry' sends it "
                                      "again") from None
                found = None
            if found is not None:
                log.info("%s (%s) had landed already as file %s; not sending it again", attempt.filename,
                         attempt.purpose, found.file_id)
                return found
        for _ in range(_SHORT_RESENDS):
            record = self._landing.upload(attempt.spool, attempt.purpose, attempt.filename)
            # A body cut on the way that a lenient server kept as if whole. Only a smaller size says so: 0
            # or none is "not said", and a larger one cannot come from our bytes.
            if not record.bytes or record.bytes >= attempt.size:
                return record
            log.warning("%s (%s) landed short as file %s (%d of %d bytes): deleting it and sending it again",
                        attempt.filename, attempt.purpose, record.file_id, record.bytes, attempt.size)
            try:
                self._landing.delete(record)
            except OSError as exc:
                log.warning("could not delete the short landing %s of %s: %s", record.file_id, attempt.filename,
                            exc)
                with self.lock:
                    self.supersedes.append(record)  # deleted once the whole file lands
        raise ShortLanding(f"the platform kept only part of {attempt.filename} {_SHORT_RESENDS} times; "
                           "it is sent again later")

    def _finish_locked(self, attempt: _Attempt, outcome: FileRecord | BaseException) -> MmfsError | None:
        if isinstance(outcome, FileRecord):
            self._landed_locked(outcome)
            return None
        failure = outcome if isinstance(outcome, MmfsError) else MmfsError(f"uploading {attempt.filename}: {outcome}")
        self.failure, self.reason, self.settled = failure, str(failure), True
        if is_refusal(failure) or isinstance(failure, CannotCheck):
            self.state = WriteState.REFUSED
            log.warning("%s (%s) was refused and stays local: %s", attempt.filename, attempt.purpose, failure)
            if self._spool is not None:
                with contextlib.suppress(OSError):
                    self._spool.describe(state=LOCAL, refused=True, reason=self.reason)
            return failure
        self.state = WriteState.RETRYING
        self._maybe_landed = bool(getattr(failure, "maybe_landed", False))
        log.warning("%s (%s) did not land yet (%s); it stays local and is tried again in the background",
                    attempt.filename, attempt.purpose, failure)
        if self._spool is not None:  # else let go meanwhile (the mount stopped): its journal says the rest
            with contextlib.suppress(OSError):
                self._spool.describe(reason=self.reason)
            self._landing.retry_later(self)
        return failure

    def _landed_locked(self, record: FileRecord) -> None:
        spool = self._spool
        assert spool is not None
        old = [r for r in ([self.replaces] if self.replaces else []) + self.supersedes if r.file_id != record.file_id]
        journal = spool.manifest_path if old else None
        sealed = spool.seal([r.file_id for r in old], file_id=record.file_id, deletes_purpose=self.purpose)
        self._spool, self._sealed = None, sealed
        self.replaces, self.supersedes = None, []
        self.record, self.state, self.dirty = record, WriteState.LANDED, False
        self.reason, self.failure, self.tries, self.since, self._maybe_landed = None, None, 0, 0.0, False
        self._then = self._landing.landed(self, record, sealed.dup(), old, journal)

    def _fail_locked(self, failure: MmfsError, *, cut: bool = False) -> MmfsError:
        """Poison the file: nothing more uploads; later writes and closes repeat ``failure``."""
        if self.state is not WriteState.FAILED:
            self.state, self.failure, self._cut = WriteState.FAILED, failure, cut
            log.warning("%s (%s): %s", self.filename, self.purpose, failure)
        assert self.failure is not None
        return self.failure

    def _keep_locked(self, why: str, *, cut: bool | None = None) -> Path | None:
        """Keep the spool's bytes in failed-uploads/, once, and say in the log where and whether whole."""
        spool = self._spool
        if self._kept is not None or spool is None or spool.size == 0:
            return self._kept
        cut = self._cut if cut is None else cut
        try:
            self._kept = failed_uploads.keep(spool.keep_at, self._landing.failed_dir, purpose=self.purpose,
                                             filename=self.filename, size=spool.size, complete=not cut, why=why)
        except OSError as exc:
            log.error("%s (%s): could not keep its %d bytes in failed-uploads: %s", self.filename, self.purpose,
                      spool.size, exc)
            return None
        if cut:
            log.error("%s (%s) was cut: only its first %d bytes were written before %s; they are in %s, which is "
                      "not the whole file", self.filename, self.purpose, spool.size, why, self._kept)
        else:
            log.error("%s (%s) did not reach the platform (%s); its %d bytes are kept in %s", self.filename,
                      self.purpose, why, spool.size, self._kept)
        return self._kept

    # -- names ------------------------------------------------------------------------------------------------

    def rename(self, path: str, purpose: str, filename: str, replaces: FileRecord | None, *,
               local_only: bool = False, refusal: MmfsError | None = None) -> None:
        """Take a new name (a local file only): a scratch name keeps it local, a real one makes it due, one
        the purpose refuses (``refusal``) keeps it local with that reason."""
        with self.lock:
            self._wait_idle_locked()
            self.path, self.purpose, self.filename = path, purpose, filename
            self.local_only = local_only
            self.settled = True  # renamed onto its name: what the name shows from now on
            if self.replaces is not None and (replaces is None or replaces.file_id != self.replaces.file_id):
                self.supersedes.append(self.replaces)  # the id it stood for under its old name goes too
            self.replaces = replaces
            if self.state in _LOCAL:
                scratch = self._scratch(filename)
                if scratch:
                    self.state = WriteState.SCRATCH
                elif self.state is WriteState.SCRATCH or self.state is WriteState.REFUSED:
                    self.state = WriteState.SPOOLING  # a rename to an uploadable name queues it again
                    self.reason, self.tries, self._maybe_landed = None, 0, False
                    self.dirty = self.dirty or self.size > 0
                elif self.state is WriteState.SPOOLING and not self.writers:
                    self.dirty = self.dirty or self.size > 0
                if refusal is not None and self.state is not WriteState.SCRATCH:
                    self.state, self.failure, self.reason = WriteState.REFUSED, refusal, str(refusal)
            if self._spool is not None:
                meta = self._meta()
                del meta["since"]
                if self.state is not WriteState.RETRYING:
                    meta.update(state=LOCAL if not self.writers else WRITING,
                                refused=self.state is WriteState.REFUSED, reason=self.reason)
                self._spool.describe(**meta)

    def unlink(self) -> list[FileRecord]:
        """Gone from the tree: writers still holding it write into the void, as on a local disk. Returns
        what the path stands for on the platform (the files it was replacing, or what landed), decided
        once a try under way has answered, so a file that lands is not left behind."""
        with self.lock:
            self._wait_idle_locked()
            self.unlinked = True
            if self.state is WriteState.LANDED:
                return [self.record] if self.record is not None else []
            return ([self.replaces] if self.replaces else []) + self.supersedes

    def unmount(self) -> None:
        """The mount is going away with this file still here: a file still open is cut (its bytes are kept
        in failed-uploads/); a closed local file stays in the spool folder for the next mount."""
        with self.lock:
            self._wait_idle_locked()
            if self.unlinked:
                self.discard()
                return
            if self.state is WriteState.FAILED:
                if self._cut:
                    self._keep_locked(f"a write failed ({self.failure})")
                self.discard()
            elif self.writers and self.state in _LOCAL and self.dirty and self.size:
                self._keep_locked("the mount stopped while it was open for writing", cut=True)
                self.discard()
            elif self.state is WriteState.SPOOLING and self.replaces is not None and not self.dirty:
                self.discard()  # a stored file opened for writing and left unchanged: nothing to keep
            elif self.state in _LOCAL and self._spool is not None:
                if not self.writers:
                    self._closed_locked()
                self._spool.release()  # its journal entry stays: the next mount takes it back
                self._spool = None
            self.discard()

    def release_spool(self) -> None:
        """Let go of the spool without touching it (a mount that dies: tests stop a core this way)."""
        with self.lock:
            if self._spool is not None:
                self._spool.release()
                self._spool = None

    def discard(self) -> None:
        with self.lock:
            if self._spool is not None:
                self._spool.discard()
                self._spool = None
            if self._sealed is not None:
                self._sealed.close()
                self._sealed = None
