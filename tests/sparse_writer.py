"""Blocks landing in a sparse store, in a process of its own, for tests that kill it with SIGKILL: ``python
sparse_writer.py FOLDER LIMIT`` lands block after block of files ``f0``, ``f1``... (each ``FILE_BLOCKS``
blocks of ``BLOCK`` bytes, the bytes of ``expected``), in a store bounded at LIMIT bytes so that evictions
(punched holes, removed files) happen too, printing ``landed N`` after each block. It never stops by itself."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from mmfs.blocks.sparse import SparseStore
from mmfs.blocks.store import block_key

BLOCK = 64 << 10
FILE_BLOCKS = 12


def expected(file_id: str, index: int) -> bytes:
    """Block ``index`` of ``file_id``: the last block of each file is short."""
    length = BLOCK if index < FILE_BLOCKS - 1 else BLOCK // 3
    return random.Random(f"{file_id}/{index}").randbytes(length)


def main() -> None:
    folder, limit = Path(sys.argv[1]), int(sys.argv[2])
    store = SparseStore(folder, limit)
    landed = 0
    while True:
        for n in range(1_000_000):
            file_id = f"f{n % 7}"
            for index in range(FILE_BLOCKS):
                store.put(block_key(file_id, BLOCK, index), expected(file_id, index), file_id)
                landed += 1
                print(f"landed {landed}", flush=True)


if __name__ == "__main__":
    main()
