"""``Sizes``: which witness of a file's size wins, and when a probe is made (once, remembered)."""

from __future__ import annotations

from mmfs.api.records import FileRecord
from mmfs.tree.open_readers import OpenReaders
from mmfs.tree.sizes import Sizes


class _Namespace:
    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.records: dict[str, FileRecord] = {}

    def known_size(self, file_id: str) -> int | None:
        return self.sizes.get(file_id)

    def set_known_size(self, file_id: str, size: int) -> None:
        self.sizes[file_id] = size

    def local_record(self, file_id: str) -> FileRecord | None:
        return self.records.get(file_id)


class _Source:
    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.probes: list[str] = []

    def true_size(self, file_id: str) -> int | None:
        return self.totals.get(file_id)

    def size(self, file_id: str) -> int:
        self.probes.append(file_id)
        return 4242


def _sizes() -> tuple[Sizes, _Namespace, _Source, OpenReaders]:
    namespace, source, readers = _Namespace(), _Source(), OpenReaders()
    return Sizes(namespace, source, readers), namespace, source, readers  # type: ignore[arg-type]


def test_a_download_corrects_the_listing_and_a_file_listed_without_a_size_is_probed_once() -> None:
    sizes, namespace, source, _ = _sizes()
    listed = FileRecord(file_id="1", bytes=100, filename="a", purpose="retrieval", created_at=None)
    assert sizes.of(listed) == sizes.known(listed) == 100
    source.totals["1"] = 90  # the object store says otherwise: its word is the bytes
    assert sizes.of(listed) == 90
    unsized = FileRecord(file_id="2", bytes=0, filename="b", purpose="retrieval", created_at=None)
    assert sizes.known(unsized) is None and source.probes == []  # known never asks
    assert sizes.of(unsized) == 4242 and sizes.of(unsized) == 4242
    assert source.probes == ["2"] and namespace.sizes == {"2": 4242}  # remembered across mounts
    assert sizes.known(unsized) == 4242
    namespace.records["1"] = listed
    assert sizes.known_by_id("1") == 90 and sizes.known_by_id("3") is None


def test_a_path_shows_no_less_than_an_older_file_a_reader_still_holds() -> None:
    sizes, _, _, readers = _sizes()
    old = FileRecord(file_id="1", bytes=500, filename="a", purpose="retrieval", created_at=None)
    new = FileRecord(file_id="2", bytes=200, filename="a", purpose="retrieval", created_at=None)
    readers.opened(7, "/retrieval/a", old.file_id, 500)
    assert sizes.at_path("/retrieval/a", new) == 500
    readers.closed(7)
    assert sizes.at_path("/retrieval/a", new) == 200
