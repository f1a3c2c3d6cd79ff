"""Names the platform will not take, said when they are written: in the log (so in ``mmfs status``'s last
error too), with why and what the folder would take.

``cp x.exe voice_clone/`` can only show ``Invalid argument``; the log line says which extensions voice_clone
takes. A name with no extension is taken (tools write such temporaries and rename them), but it will never
upload under that name: that is said when it is created, unless it looks like a tool's own temporary.
"""

from __future__ import annotations

import logging
import re

from mmfs.core.scratch_names import is_scratch
from mmfs.errors import MmfsError
from mmfs.upload_rules import accepted_extensions, check_create

__all__ = ["check_name"]

log = logging.getLogger("mmfs.refusals")

# Temporaries that tools make with no extension and rename within moments: sed -i (sedAb12Cd), Python's
# tempfile (tmpab12cd_x), vim's write test (4913), office suites' lock-ups (lu1234).
_TOOL_TEMPORARY = re.compile(r"sed[A-Za-z0-9]{6}|tmp[A-Za-z0-9_]{6,}|[0-9]+|lu[0-9]+[a-z]?", re.ASCII)


def check_name(path: str, purpose: str, filename: str) -> None:
    """Refuse, and log why, a name ``purpose`` would never take; note a name that will stay local."""
    if is_scratch(filename):
        if _no_extension(filename) and not _TOOL_TEMPORARY.fullmatch(filename):
            log.warning("%s has no extension, so it is never uploaded: it stays in this mount only; rename it "
                        "to a name %s takes (%s) to upload it", path.lstrip("/"), purpose,
                        ", ".join(f".{e}" for e in accepted_extensions(purpose)))
        return
    try:
        check_create(purpose, filename)
    except MmfsError as exc:
        log.warning("refused %s: %s", path.lstrip("/"), exc.message)
        raise


def _no_extension(filename: str) -> bool:
    dot = filename.rfind(".")
    return not filename.startswith(".") and (dot <= 0 or dot == len(filename) - 1)
