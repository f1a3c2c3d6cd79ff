"""How long a stored file is, as a reader or ``stat`` should see it now: decided here and nowhere else.

A file's size has several witnesses, trusted in this order:
- what a download stated (the object store's ``Content-Range`` total, ``RangeSource.true_size``): the
  bytes as they are, which corrects a wrong listing from the next open on;
- the listing's ``bytes``, when it is not 0;
- for a file listed without one (``bytes`` 0 or missing: generated videos), a size probed from its
  download once and remembered across mounts (``KnownFiles``): a file's bytes never change under its id;
- else the probe itself (one request).

A path can show more than its file's size: while a reader of an older file at the same path is open (an
overwrite landed under it), the path keeps the larger size (``OpenReaders``). A file still being written
here shows its spool's size (``PendingFile.size``): it has no id yet, so nothing here applies to it.
"""

from __future__ import annotations

from collections.abc import Callable

from mmfs.api.records import FileRecord
from mmfs.blocks.ports import FileNamespace, PlatformSource
from mmfs.tree.open_readers import OpenReaders

__all__ = ["Sizes"]


class Sizes:
    def __init__(self, namespace: FileNamespace, source: PlatformSource, open_readers: OpenReaders,
                 remote: Callable[[Callable[[], int], FileRecord], int] = lambda call, _record: call()) -> None:
        self._namespace = namespace
        self._source = source
        self._open_readers = open_readers
        self._remote = remote  # how the core runs a request for a file (its errors turned into the core's)

    def known(self, record: FileRecord) -> int | None:
        """The file's size when it costs no request; None when only a probe can tell."""
        if record.bytes:
            return self._source.true_size(record.file_id) or record.bytes
        return self._namespace.known_size(record.file_id)

    def of(self, record: FileRecord) -> int:
        """The file's size, probed (once, then remembered) when nothing known tells it, so ``cp`` never
        stops short of a file listed without a size."""
        size = self.known(record)
        if size is not None:
            return size
        size = self._remote(lambda: self._source.size(record.file_id), record)
        self._namespace.set_known_size(record.file_id, size)
        return size

    def known_by_id(self, file_id: str) -> int | None:
        """``known`` for a file by id, from the listings and memory the mount holds (never a request)."""
        record = self._namespace.local_record(file_id)
        if record is None:
            return self._source.true_size(file_id)
        return self.known(record)

    def at_path(self, path: str, record: FileRecord) -> int:
        """The size ``path`` shows for ``record``: never less than an older file a reader of it still has
        open."""
        return self._open_readers.size(path, record.file_id, self.of(record))
