"""The source port's methods beyond ``fetch``, as a host that honours Range and states no size answers them:
test sources define ``fetch`` and take the rest from here."""

from __future__ import annotations

from collections.abc import Generator

from mmfs.blocks.source import copy_fetched


class HonoursRange:
    def fetch(self, file_id: str, start: int, end: int) -> bytes | bytearray:
        raise NotImplementedError

    def stream(self, file_id: str, start: int, end: int) -> Generator[bytes | bytearray, None, None]:
        yield self.fetch(file_id, start, end)

    def fetch_into(self, file_id: str, start: int, into: bytearray | memoryview) -> None:
        copy_fetched(self.fetch, file_id, start, into)

    def true_size(self, file_id: str) -> int | None:
        return None

    def ignores_range(self, file_id: str) -> bool:
        return False

    def range_known(self, file_id: str) -> bool:
        return True

    def share_block(self, file_id: str, start: int, data: bytes | bytearray) -> None:
        pass
