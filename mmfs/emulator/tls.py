"""A self-signed certificate for the emulator's https form, made with the ``openssl`` command at start.

The certificate names ``127.0.0.1``, ``::1`` and ``localhost`` and is its own CA, so a client trusts it by
adding this one file to its trust store (``--ca-bundle`` for mmfs, ``NODE_EXTRA_CA_CERTS`` for Node), never by
turning verification off. A fresh pair is made for every start; the key stays in the data folder (0600).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["make_self_signed"]

_SUBJECT = "/CN=minimax-files-emulator"
_EXTENSIONS = (
    "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,digitalSignature,keyCertSign",
    "extendedKeyUsage=serverAuth",
)


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (EC P-256, valid 2 days) into ``folder``; return their paths."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the emulator's https form needs the openssl command")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = folder / "cert.pem", folder / "key.pem"
    argv = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", _SUBJECT]
    for extension in _EXTENSIONS:
        argv += ["-addext", extension]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl could not make the emulator's certificate: {done.stderr.strip()}")
    os.chmod(key, 0o600)
    return cert, key
