"""The seams between the filesystem core and what it reads through: every method a caller uses, typed.

A port lists **every** method its caller may call, and every implementation and every wrapper defines each
one itself: nothing is found by ``getattr`` at run time, nothing is passed on by ``__getattr__``. A wrapper
without a capability answers its neutral value (no size known, Range honoured, nothing to share, no files).
``tests/test_ports.py`` checks each implementation against its port, signatures included, so a wrapper that
forgets a method fails a test rather than a read.

- ``RangeSource``: what ``BlockReader`` asks of the network. ``RemoteSource`` (downloads by signed URL),
  ``SharedBlockSource`` (Redis first, for a fleet) and ``CountingSource`` (status counters).
- ``PlatformSource``: a ``RangeSource`` plus what ``FileSystem`` asks of it: probe a file's size, forget a
  deleted file. ``RemoteSource`` and ``SharedBlockSource``.
- ``BlockStore``: what ``BlockReader`` (and its ``WriteBehind`` and ``BlockFiles``) asks of the disk.
  ``DiskBlockStore``, ``PinningStore`` (cache plus pins), ``CountingStore`` (status counters) and
  ``MemoryBlockStore``.
- ``FileNamespace``: what ``FileSystem``, the control service and the mount's wiring ask of the tree.
  ``Namespace`` and ``SharedNamespace`` (a fleet's, which tells other mounts of changes).
- ``UploadClient``: what ``FileSystem`` asks of the API client. ``ApiClient`` and ``ObservedClient``
  (counted and logged).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    import os

    from mmfs.api.records import FileRecord
    from mmfs.blocks.blockfiles import FileSpan
    from mmfs.tree.namespace import DirNode, FileNode

__all__ = ["BlockStore", "FileNamespace", "PlatformSource", "RangeSource", "UploadClient"]

# A block's bytes as a source or store hands them over: a view is passed on without a copy.
Data = bytes | bytearray | memoryview


@runtime_checkable
class RangeSource(Protocol):
    """What the block reader needs of the network."""

    def fetch(self, file_id: str, start: int, end: int) -> Data:
        """Bytes ``[start, end)`` of the file, all of them (or an error)."""
        ...

    def fetch_into(self, file_id: str, start: int, into: bytearray | memoryview) -> None:
        """Bytes ``[start, start + len(into))`` of the file written into ``into``, every one of them (or an
        error); a source that cannot receive into memory it was given copies ``fetch``'s (``copy_fetched``)."""
        ...

    def stream(self, file_id: str, start: int, end: int) -> Generator[bytes, None, None]:
        """Bytes ``[start, end)`` as they arrive, fewer if the file ends first: for a host that ignores
        Range, read once as a whole body. Closing it ends the download."""
        ...

    def true_size(self, file_id: str) -> int | None:
        """The file's size as its last download stated it; None before any did (or never told)."""
        ...

    def ignores_range(self, file_id: str) -> bool:
        """Whether the file's host was seen answering a Range request with the whole body."""
        ...

    def range_known(self, file_id: str) -> bool:
        """Whether the file's host has shown yet whether it honours Range (until then reads of it probe one
        at a time). A source that always honours Range answers True."""
        ...

    def share_block(self, file_id: str, start: int, data: bytes | bytearray) -> None:
        """A whole block the reader put together from pieces: a source that shares blocks keeps it."""
        ...


@runtime_checkable
class PlatformSource(RangeSource, Protocol):
    """The reader's source as the filesystem sees it."""

    def size(self, file_id: str) -> int:
        """The file's size asked of its download (a file listed without one); may cost a request."""
        ...

    def forget(self, file_id: str) -> None:
        """The file is gone: drop its URL and what downloads said of it."""
        ...


@runtime_checkable
class BlockStore(Protocol):
    """Where the reader keeps blocks. ``get`` returns a verified block or None."""

    def get(self, key: str) -> memoryview | bytes | None: ...

    def contains(self, key: str) -> bool:
        """Whether the block is stored (its bytes neither read nor checked)."""
        ...

    def put(self, key: str, data: bytes, file_id: str) -> None: ...

    def evict_file(self, file_id: str) -> int:
        """Drop every block of the file; how many went."""
        ...

    def keeps_files(self) -> bool:
        """Whether each block lives in a file of its own the reader opens and hands out by descriptor
        (``open_file`` answers); a store that answers ``span`` itself says False."""
        ...

    def open_file(self, key: str) -> BinaryIO | None:
        """The block's stored file, open and not yet checked; None when there is none."""
        ...

    def span(self, file_id: str, block_size: int, start: int, end: int, file_size: int) -> FileSpan | None:
        """Bytes ``[start, end)`` of the remote file as a span of one file on disk, when a store that keeps
        a file per remote file holds them all, checked; else None."""
        ...

    def let_go_of_evicted(self, wait: bool = False) -> int:
        """Close the descriptors of evicted data (their disk space comes back only then); with ``wait``,
        also those a read was handed just now."""
        ...

    def drop(self, key: str) -> None:
        """Forget a block found damaged."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class FileNamespace(Protocol):
    """The tree of files: what the filesystem core asks of it."""

    purposes: tuple[str, ...]
    on_gone: Callable[[str], None]

    def lookup(self, path: str) -> DirNode | FileNode: ...
    def root_names(self) -> list[str]: ...
    def names(self, purpose: str) -> dict[str, FileRecord]: ...
    def by_id_names(self) -> list[str]: ...
    def record_by_id(self, file_id: str) -> FileRecord: ...
    def local_record(self, file_id: str) -> FileRecord | None: ...
    def presence(self, file_id: str, purpose: str | None) -> bool | None: ...
    def ids_named(self, purpose: str, filename: str) -> frozenset[str]: ...
    def refresh(self, purposes: Iterable[str] | None = None) -> list[str]: ...
    def remember(self, record: FileRecord) -> None: ...
    def hide(self, file_id: str) -> None: ...
    def forget(self, file_id: str, purpose: str | None) -> None: ...
    def known_size(self, file_id: str) -> int | None: ...
    def set_known_size(self, file_id: str, size: int) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class UploadClient(Protocol):
    """The API calls the filesystem core makes."""

    def upload(self, path: str | os.PathLike[str], purpose: str, filename: str) -> FileRecord: ...
    def find_landed(self, purpose: str, filename: str, size: int, started: float,
                    not_ids: frozenset[str] = frozenset()) -> FileRecord | None: ...
    def delete(self, file_id: str, purpose: str) -> None: ...
