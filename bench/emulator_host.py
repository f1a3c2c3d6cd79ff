"""The emulator in its own process, seeded with the benchmark corpus.

``python -m mmfs.emulator`` could only be seeded over HTTP (a gibibyte through the socket on every run);
this host seeds from local paths with ``Emulator.seed`` and keeps its data folder between runs, seeding only
what is missing. It runs in its own process so the harness's own Python never competes with it for a GIL.

Run as ``python -m bench.emulator_host --data DIR --manifest FILE --ids-out FILE``. The manifest is a JSON
list of ``{"purpose", "filename", "path"}``; the ids file gets ``{"purpose/filename": file_id}``. The key is
``MINIMAX_API_KEY`` from the environment. Prints ``emulator listening on URL`` once seeded, then serves until
SIGTERM. Network shaping is changed later through ``POST /_emulator/config``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from mmfs.emulator import Emulator, EmulatorConfig


def seed_missing(emu: Emulator, manifest: list[dict[str, str]]) -> dict[str, str]:
    """Seed what the store lacks; drop stray or stale copies so each name exists exactly once."""
    wanted = {(m["purpose"], m["filename"]): Path(m["path"]) for m in manifest}
    ids: dict[str, str] = {}
    for record in emu.store.all():
        key = (record.purpose, record.filename)
        path = wanted.get(key)
        if path is None or f"{key[0]}/{key[1]}" in ids or record.bytes != path.stat().st_size:
            emu.store.delete(record.file_id)
        else:
            ids[f"{key[0]}/{key[1]}"] = str(record.file_id)
    missing = [(k, p) for k, p in wanted.items() if f"{k[0]}/{k[1]}" not in ids]
    for n, ((purpose, filename), path) in enumerate(missing, 1):
        obj = emu.seed(purpose, filename, path)
        ids[f"{purpose}/{filename}"] = str(obj["file_id"])
        if n % 1000 == 0:
            print(f"seeded {n} of {len(missing)}", file=sys.stderr, flush=True)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_host", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--ids-out", type=Path, required=True)
    args = parser.parse_args(argv)
    manifest = json.loads(args.manifest.read_text())
    emu = Emulator(EmulatorConfig(data_dir=args.data, port=0))
    ids = seed_missing(emu, manifest)
    args.ids_out.write_text(json.dumps(ids))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    emu.start()
    try:
        print(f"emulator listening on {emu.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
