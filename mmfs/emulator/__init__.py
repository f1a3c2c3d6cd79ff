"""The MiniMax file platform on loopback: a real HTTP server with the platform's quirks and injected faults.

It stands apart from the rest of mmfs and imports none of it but ``mmfs.purposes``, the platform's purposes as
pure data (shared so that the emulator and the client it tests agree on them): mmfs is tested against it, and
anyone can run it (``python -m mmfs.emulator`` or ``mmfs emulator``) to try mmfs without an account.
"""

from .config import DEMO_API_KEY, SWITCH_HELP, SWITCH_NAMES, EmulatorConfig
from .demo import DemoFile, demo_files
from .rules import MB, UPLOAD_RULES
from .server import Emulator

__all__ = [
    "DEMO_API_KEY",
    "MB",
    "SWITCH_HELP",
    "SWITCH_NAMES",
    "UPLOAD_RULES",
    "DemoFile",
    "Emulator",
    "EmulatorConfig",
    "demo_files",
]
