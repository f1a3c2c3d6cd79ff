"""Which names are a tool's temporary files: kept local, never uploaded under that name. Pure functions.

Tools rarely write a file in place. rsync writes ``.f.txt.Ab12Cd``, ``sed -i`` writes ``sedAb12Cd``, vim
``.f.txt.swp``, ``4913`` and ``f.txt~``, office suites ``lu1234.tmp``, browsers ``f.part``, Python's
``tempfile`` ``tmpab12cd``; then they rename it over the real name. The platform has no rename, so such a
file lives only in the mount until it is renamed to a name its purpose takes (then it uploads) or deleted.
The list is in doc/SEMANTICS.md, "Scratch files".
"""

from __future__ import annotations

import re

__all__ = ["SCRATCH_SUFFIXES", "is_scratch"]

# Endings that mark a temporary, whatever comes before them (lowercase; a suffix is compared as is).
SCRATCH_SUFFIXES: tuple[str, ...] = (
    "~",  # emacs, vim backups
    "#",  # emacs auto-saves (#f.txt#)
    ".tmp", ".temp",  # office suites, most atomic savers
    ".part", ".partial", ".crdownload",  # browsers, download managers
    ".swp", ".swo", ".swx",  # vim swap files
    ".bak", ".orig", ".old",  # backups made before an edit
    ".lock",
)


# mkstemp's six random letters and digits as the last "extension" (gawk -i inplace writes f.txt.gawk.f5NUOl):
# mixed case, or letters mixed with digits, which no real six-character extension is.
_MKSTEMP_TAIL = re.compile(r"\.(?=[A-Za-z0-9]{6}$)(?:(?=.*[A-Z])(?=.*[a-z])|(?=.*[0-9])(?=.*[A-Za-z]))")


def is_scratch(filename: str) -> bool:
    """A hidden name (leading ``.``), a name with no extension, one ending in a temporary suffix, or one
    ending in mkstemp's random tail."""
    if filename.startswith(".") or _MKSTEMP_TAIL.search(filename):
        return True
    lower = filename.lower()
    if lower.endswith(SCRATCH_SUFFIXES):
        return True
    dot = filename.rfind(".")
    return dot <= 0 or dot == len(filename) - 1
