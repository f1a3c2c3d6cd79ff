"""``--bwlimit`` measured: download and upload rates of one mount with no limit and with limits, against
the emulator on loopback. Writes bench/bwlimit-results.md (``--out DIR`` for another folder).

Run as ``scripts/bench --bwlimit [--size-mib N] [--out DIR]``. Each row is a fresh mount on a fresh cache:
a cold sequential read of one file, then one file written into a purpose folder (timed to its close, which
returns once the upload landed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmfs.emulator import Emulator, EmulatorConfig
from mmfs.runtime.mount import is_live_mount

KEY = "sk-api-bench-bwlimit"
MiB = 1 << 20
LIMITS = ("off", "20M", "4M:32M")


def _mount(emu: Emulator, root: Path, bwlimit: str) -> subprocess.Popen[bytes]:
    mnt = root / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "mmfs", "mount", str(mnt), "--base-url", emu.base_url, "--cache-dir",
            str(root / "cache"), "--state-dir", str(root / "state"), "--log-file", str(root / "mount.log"),
            "--bwlimit", bwlimit]
    proc = subprocess.Popen(argv, env=dict(os.environ, MINIMAX_API_KEY=KEY), stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not is_live_mount(mnt):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the mount did not come up: {(root / 'mount.log').read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


def _unmount(proc: subprocess.Popen[bytes], mnt: Path) -> None:
    subprocess.run(["fusermount3", "-u", str(mnt)], check=False, capture_output=True)
    proc.wait(timeout=30)


def measure(emu: Emulator, work: Path, bwlimit: str, size: int, payload: Path) -> tuple[float, float]:
    """(download MB/s, upload MB/s) through a fresh mount with ``--bwlimit bwlimit``."""
    root = work / bwlimit.replace(":", "-")
    proc = _mount(emu, root, bwlimit)
    mnt = root / "mnt"
    try:
        start = time.monotonic()
        with open(mnt / "retrieval" / "big.bin", "rb") as f:
            got = 0
            while chunk := f.read(MiB):
                got += len(chunk)
        down = got / (time.monotonic() - start) / 1e6
        assert got == size, f"read {got} of {size} bytes"
        start = time.monotonic()
        with open(payload, "rb") as src, open(mnt / "retrieval" / f"up-{bwlimit.replace(':', '-')}.txt", "wb") as dst:
            while chunk := src.read(MiB):
                dst.write(chunk)
        up = payload.stat().st_size / (time.monotonic() - start) / 1e6
    finally:
        _unmount(proc, mnt)
    return down, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --bwlimit", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=64, help="size of the file read and of the one written")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder for bwlimit-results.md")
    args = parser.parse_args(argv)
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="mmfs-bwlimit-") as tmp:
        work = Path(tmp)
        payload = work / "payload.txt"
        payload.write_bytes(os.urandom(size // 2).hex().encode())  # text: retrieval takes .txt
        emu = Emulator(EmulatorConfig(data_dir=work / "platform", port=0, api_key=KEY)).start()
        try:
            emu.seed("retrieval", "big.bin", os.urandom(size))
            rows = []
            for limit in LIMITS:
                down, up = measure(emu, work, limit, size, payload)
                rows.append(f"| `--bwlimit {limit}` | {down:,.1f} | {up:,.1f} |")
                print(rows[-1], flush=True)
        finally:
            emu.stop()
    table = "\n".join([
        f"# --bwlimit: {args.size_mib} MiB read cold, {args.size_mib} MiB written, emulator on loopback",
        "",
        "Rates in MB/s (10^6 bytes per second); a limit is in MiB/s (`20M` = 20.97 MB/s; `UP:DOWN`).",
        "Measured by `scripts/bench --bwlimit`.",
        "",
        "| limit | download MB/s | upload MB/s |",
        "|---|---:|---:|",
        *rows,
        "",
    ])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bwlimit-results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
