"""One owner per file being written: ``PendingFile`` alone decides when the file uploads, what the block
cache is seeded with, and where its bytes go when something fails. The rest of mmfs asks it.

The platform has upload and delete and nothing else, so a write is: spool the bytes to a private file on
disk (``mmfs.spool``), and when the last writer closes it, upload the spool as one new file. An overwrite
uploads the new bytes first and deletes the old id only after that succeeded.

States (``WriteState``):

- ``SCRATCH``: a tool's temporary name (``mmfs.scratch_names``): readable, writable, renamable, never
  uploaded under that name.
- ``SPOOLING``: a name its purpose takes; bytes (maybe none yet) not uploaded.
- ``UPLOADING``: on its way, while the closing writer waits for the platform's answer.
- ``LANDED``: the platform holds exactly these bytes as ``record``; the spool is sealed.
- ``FAILED``: a write, the copy-in or the upload failed for good; ``failure`` says why, every later write
  and close repeats it, and bytes worth keeping are in ``failed-uploads/`` with the log saying where.

Moves: SCRATCH <-> SPOOLING by rename; SPOOLING -> UPLOADING at the last writer's close when bytes were
written since the last upload and the file is not empty (the platform refuses empty files), or at a rename
to a real name with no writer left; UPLOADING -> LANDED or FAILED (a failed upload after a rename goes back
to where it was: a failed rename changes nothing); LANDED -> SPOOLING at the next write (a new spool, copied
from the sealed one, replacing the id that just landed); anything -> FAILED when a write is refused.

Concurrency: ``lock`` (re-entrant) guards every field and the spool, and is held through the upload, so a
write racing a close waits for the upload and then starts a new version.
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

from mmfs import failed_uploads
from mmfs.api.records import FileRecord
from mmfs.errors import FileTooLargeError, MmfsError
from mmfs.scratch_names import is_scratch
from mmfs.spool import Sealed, SpaceKeeper, Spool
from mmfs.upload_rules import check_size, size_limit

__all__ = ["CopyInError", "Landing", "PendingFile", "SpoolError", "WriteState"]

log = logging.getLogger("mmfs.writes")


class WriteState(enum.Enum):
    SCRATCH = "scratch"
    SPOOLING = "spooling"
    UPLOADING = "uploading"
    LANDED = "landed"
    FAILED = "failed"


class CopyInError(MmfsError):
    """The old bytes of a file opened for editing could not be read: the edit cannot be made (EIO)."""


class SpoolError(MmfsError):
    """Writing the local spool failed (a full disk, an I/O error); carries that errno."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True)
class Landing:
    """What a pending file needs of the rest of mmfs: where spools and kept files go, the upload call,
    and ``landed(file, record, sealed, replaced)`` to seed the cache, show the file and delete the old id
    (it owns ``sealed`` and closes it)."""

    spool_dir: Path
    failed_dir: Path
    space: SpaceKeeper
    upload: Callable[[Path, str, str], FileRecord]
    landed: Callable[[PendingFile, FileRecord, Sealed, FileRecord | None], None]


class PendingFile:
    """One file being written, shared by every descriptor open on its path."""

    def __init__(self, path: str, purpose: str, filename: str, landing: Landing, *,
                 replaces: FileRecord | None = None, base: Callable[[], Iterable[bytes]] | None = None) -> None:
        self.lock = threading.RLock()
        self.path = path
        self.purpose = purpose
        self.filename = filename
        # A stored file keeps its name whatever it looks like: only a new file can be a scratch file.
        scratch = replaces is None and is_scratch(filename)
        self.state = WriteState.SCRATCH if scratch else WriteState.SPOOLING
        self.replaces = replaces  # the stored file this one will replace once it lands
        self.record: FileRecord | None = None  # what landed, in LANDED
        self.failure: MmfsError | None = None
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
        self._spool: Spool | None = Spool(landing.spool_dir, landing.space, self._meta())

    def _meta(self) -> dict[str, object]:
        return {"purpose": self.purpose, "filename": self.filename, "scratch": self.state is WriteState.SCRATCH,
                "replaces": self.replaces.file_id if self.replaces else None, "since": time.time()}

    # -- what others ask ----------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        if self._spool is not None:
            return self._spool.size
        return self._sealed.size if self._sealed is not None else 0

    @property
    def shows_stored(self) -> bool:
        """Readers of the path still see the stored file it will replace (new bytes have not landed)."""
        return self.replaces is not None and self.state is not WriteState.LANDED

    @property
    def shows_own_size(self) -> bool:
        """The path's size is this file's, not the stored one's: a new file, or an edit in place. Only a
        replacement (O_TRUNC, ``cp`` onto it) shows the old size until it lands, so a reader that opened the
        old file before is not cut short; an editor in place needs its own size for SEEK_END."""
        return not self.shows_stored or self.in_place

    def lingers(self) -> bool:
        """Whether it stays in the tree with no descriptor open: a scratch file waiting for its rename, an
        empty new file waiting for bytes, a change to a stored file not uploaded (emptied, or its rename
        refused), so that the next write starts from it (see doc/SEMANTICS.md, "Writing")."""
        with self.lock:
            if self.unlinked:
                return False
            if self.state is WriteState.SCRATCH:
                return True
            return self.state is WriteState.SPOOLING and (self.replaces is None or self.dirty)

    # -- bytes --------------------------------------------------------------------------------------------

    def write(self, data: bytes, offset: int, *, append: bool = False) -> int:
        """Write at ``offset``; with ``append`` at the end of the file. The kernel computes an O_APPEND
        offset from the size it holds, which is the stored file's while a replacement of it is written."""
        with self.lock:
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
        if end > size_limit(self.purpose, self.filename):
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
            self._copy_in_locked()
            return self._spool.read(offset, size)

    def truncate(self, length: int, *, in_place: bool = False) -> None:
        """``in_place``: by a descriptor (``ftruncate``), not an O_TRUNC open: the file shows its own size."""
        with self.lock:
            self._refuse_if_failed_locked()
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

    def _refuse_if_failed_locked(self) -> None:
        if self.state is WriteState.FAILED:
            assert self.failure is not None
            raise self.failure

    def _spool_for_change_locked(self, *, keep_bytes: bool) -> Spool:
        """The spool to change: after a landing, a new one (the sealed bytes stay what the platform has)."""
        if self.state is WriteState.LANDED:
            sealed, self._sealed = self._sealed, None
            assert sealed is not None
            self.replaces, self.record = self.record, None
            self.state = WriteState.SPOOLING
            self._spool = Spool(self._landing.spool_dir, self._landing.space, self._meta())
            try:
                if keep_bytes:
                    self._spool.copy_from(sealed)
            except OSError as exc:
                raise self._fail_locked(SpoolError(f"spooling {self.filename} failed: {exc.strerror}",
                                                   exc.errno or 5)) from None
            finally:
                sealed.close()
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

    # -- closing and uploading ------------------------------------------------------------------------------

    def attach(self, writable: bool) -> None:
        with self.lock:
            if writable:
                self.writers += 1
            else:
                self.readers += 1

    def close_writer(self) -> None:
        """A writable descriptor is being closed (``flush``): if it is the last writer and bytes changed
        since the last upload, upload them now and raise the platform's answer."""
        with self.lock:
            self._refuse_if_failed_locked()
            if self.writers <= 1 and not self.unlinked:
                self._upload_if_due_locked(keep_on_failure=True)

    def detach(self, writable: bool) -> bool:
        """A descriptor released; whether none is left. The last writer uploads what came after the last
        flush (errors are logged: nobody is left to tell)."""
        with self.lock:
            if writable:
                self.writers -= 1
            else:
                self.readers -= 1
            if writable and self.writers == 0 and not self.unlinked:
                with contextlib.suppress(OSError):  # logged where it failed; nobody is left to tell
                    self._upload_if_due_locked(keep_on_failure=True)
                if self.state is WriteState.FAILED and self._cut:
                    self._keep_locked(f"a write failed ({self.failure})")
            return self.writers + self.readers == 0

    def upload_after_rename(self) -> None:
        """Renamed to a name its purpose takes: with no writer left, upload now, so the rename reports the
        platform's answer. On failure the caller puts the name back; the spool is not kept elsewhere."""
        with self.lock:
            if self.writers == 0 and not self.unlinked:
                self._upload_if_due_locked(keep_on_failure=False)

    def upload_if_unheld(self) -> None:
        """Changed by path (``truncate(2)``) with no descriptor open: no close will come, so upload now and
        let the call report the platform's answer, as a close would."""
        with self.lock:
            if self.writers == 0 and not self.unlinked:
                self._upload_if_due_locked(keep_on_failure=True)

    def _upload_if_due_locked(self, *, keep_on_failure: bool) -> None:
        if self.state is not WriteState.SPOOLING or not self.dirty or self.size == 0:
            return
        spool = self._spool
        assert spool is not None
        try:
            self._copy_in_locked()
            check_size(self.purpose, self.filename, spool.size)
            spool.mark_complete()
        except FileTooLargeError as exc:
            raise self._fail_locked(exc) from None
        except OSError as exc:
            if isinstance(exc, MmfsError):
                raise
            raise self._fail_locked(SpoolError(f"spooling {self.filename}: {exc.strerror}", exc.errno or 5),
                                    cut=True) from None
        self.state = WriteState.UPLOADING
        try:
            record = self._landing.upload(spool.path, self.purpose, self.filename)
        except OSError as exc:
            failure = exc if isinstance(exc, MmfsError) else MmfsError(f"uploading {self.filename}: {exc}")
            if not keep_on_failure:
                self.state = WriteState.SPOOLING
                spool.describe(state="writing")
                raise failure from None
            self._fail_locked(failure)
            self._keep_locked(str(failure))
            raise failure from None
        sealed = spool.seal()
        self._spool, self._sealed = None, sealed
        replaced, self.replaces = self.replaces, None
        self.record, self.state, self.dirty = record, WriteState.LANDED, False
        self._landing.landed(self, record, sealed.dup(), replaced)

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

    def rename(self, path: str, purpose: str, filename: str, replaces: FileRecord | None) -> None:
        """Take a new name (only before it landed): a scratch name keeps it local, a real one makes it due."""
        with self.lock:
            self.path, self.purpose, self.filename, self.replaces = path, purpose, filename, replaces
            if self.state in (WriteState.SCRATCH, WriteState.SPOOLING):
                self.state = WriteState.SCRATCH if is_scratch(filename) else WriteState.SPOOLING
            if self._spool is not None:
                meta = self._meta()
                del meta["since"]
                self._spool.describe(**meta)

    def unlink(self) -> FileRecord | None:
        """Gone from the tree: writers still holding it write into the void, as on a local disk. Returns
        what the path stands for on the platform (the file being overwritten, or what landed), decided
        under the lock: an upload under way finishes first, so a file that lands is not left behind."""
        with self.lock:
            self.unlinked = True
            return self.replaces if self.shows_stored else self.record

    def unmount(self) -> None:
        """The mount is going away with this file still here: keep what is worth keeping, then let go."""
        with self.lock:
            if not self.unlinked and self.size:
                if self.state is WriteState.SCRATCH:
                    self._keep_locked("it still had a temporary name at unmount, so it was never uploaded",
                                      cut=self.writers > 0)
                elif self.state is WriteState.SPOOLING and self.dirty:
                    self._keep_locked("the mount stopped before the upload", cut=self.writers > 0)
                elif self.state is WriteState.FAILED and self._cut:
                    self._keep_locked(f"a write failed ({self.failure})")
            self.discard()

    def discard(self) -> None:
        with self.lock:
            if self._spool is not None:
                self._spool.discard()
                self._spool = None
            if self._sealed is not None:
                self._sealed.close()
                self._sealed = None
