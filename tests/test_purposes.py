"""The purpose table: pure data, the one source both mmfs and the emulator read, and the documented facts.

The emulator imports nothing from mmfs but this table; the check walks the imports of every module in its
package, so a new ``from mmfs.errors import ...`` in the emulator fails here. The client's early refusals
and the emulator's upload checks are compared on every purpose and format: they read the same rows, so a
file mmfs lets through at ``open`` and ``write`` is one the emulator takes, and the other way round.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import mmfs.emulator
import mmfs.purposes
from mmfs import upload_rules
from mmfs.emulator import rules as emulator_rules
from mmfs.errors import FileTooLargeError, MmfsError, ReadOnlyError, UnsupportedFormatError
from mmfs.purposes import (
    DELETE_PURPOSES,
    LIST_PURPOSES,
    LIST_UNCERTAIN_PURPOSES,
    MB,
    PURPOSES,
    TABLE,
    UPLOAD_PURPOSES,
    Documented,
)
from mmfs.settings import config

EMULATOR_DIR = Path(mmfs.emulator.__file__).parent


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module a file imports, relative imports resolved against ``package``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            # ``from mmfs import errors`` imports mmfs.errors, not only mmfs.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _mmfs_imports_outside_emulator(path: Path) -> set[str]:
    modules = _imported_modules(path, "mmfs.emulator")
    return {m for m in modules
            if (m == "mmfs" or m.startswith("mmfs.")) and not m.startswith("mmfs.emulator")}


def test_the_emulator_imports_no_mmfs_module_but_the_purpose_table() -> None:
    files = sorted(EMULATOR_DIR.rglob("*.py"))
    assert len(files) > 10  # the whole package, not an empty glob
    outside = {str(path.relative_to(EMULATOR_DIR)): _mmfs_imports_outside_emulator(path) for path in files}
    # ``from mmfs.purposes import X`` is seen as mmfs.purposes and mmfs.purposes.X: both are the table.
    wrong = {name: sorted(m for m in mods if m != "mmfs.purposes" and not m.startswith("mmfs.purposes."))
             for name, mods in outside.items()}
    assert {name: mods for name, mods in wrong.items() if mods} == {}
    assert "mmfs.purposes" in outside["rules.py"]  # the emulator does read the table


@pytest.mark.parametrize("source, caught", [
    ("from mmfs.errors import MmfsError\n", {"mmfs.errors", "mmfs.errors.MmfsError"}),
    ("from .. import errors\n", {"mmfs", "mmfs.errors"}),
    ("from ..api import client\n", {"mmfs.api", "mmfs.api.client"}),
    ("import mmfs.core.fs\n", {"mmfs.core.fs"}),
    ("from . import rules\nfrom mmfs.purposes import TABLE\n", {"mmfs.purposes", "mmfs.purposes.TABLE"}),
])
def test_the_import_walk_sees_every_form(tmp_path: Path, source: str, caught: set[str]) -> None:
    module = tmp_path / "m.py"
    module.write_text(source)
    assert _mmfs_imports_outside_emulator(module) == caught


def test_the_table_imports_only_the_standard_library() -> None:
    modules = _imported_modules(Path(mmfs.purposes.__file__), "mmfs")
    assert modules  # it does import something (dataclasses, enum)
    assert {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names} == set()


# The API reference's purpose table: (upload, list, delete), and what each takes.
_SPEC = {
    "voice_clone": ("yes", "yes", "yes"),
    "prompt_audio": ("yes", "yes", "yes"),
    "t2a_async_input": ("yes", "yes", "yes"),
    "t2a_async": ("no", "uncertain", "yes"),
    "video_generation": ("no", "uncertain", "yes"),
    "video_understanding": ("yes", "no", "no"),
    "video_generation_input": ("yes", "yes", "no"),
    "retrieval": ("uncertain", "uncertain", "uncertain"),
}


def test_the_table_holds_the_documented_columns() -> None:
    assert set(TABLE) == set(_SPEC)
    for name, (upload, listed, delete) in _SPEC.items():
        row = TABLE[name]
        assert (row.upload, row.list, row.delete) == (Documented(upload), Documented(listed), Documented(delete))
    assert TABLE["voice_clone"].formats == dict.fromkeys(("mp3", "m4a", "wav"), 20 * MB)
    assert TABLE["video_generation_input"].formats["heic"] == 30 * MB
    assert TABLE["video_generation_input"].formats["wav"] == 15 * MB
    assert "m4a" not in TABLE["video_generation_input"].formats  # audio there is wav or mp3 only
    assert {p for p, row in TABLE.items() if row.kept_days == 7} == {"video_understanding", "video_generation_input"}
    assert {p for p, row in TABLE.items() if row.generated} == {"t2a_async", "video_generation"}


def test_the_derived_sets_follow_the_rows() -> None:
    # What the code keys on: an uncertain operation is offered and the platform's answer decides.
    assert {p for p, (u, _, _) in _SPEC.items() if u != "no"} == UPLOAD_PURPOSES
    assert {p for p, (_, lst, _) in _SPEC.items() if lst == "yes"} == LIST_PURPOSES
    assert {p for p, (_, lst, _) in _SPEC.items() if lst == "uncertain"} == LIST_UNCERTAIN_PURPOSES
    assert {p for p, (_, _, d) in _SPEC.items() if d != "no"} == DELETE_PURPOSES
    assert all(bool(TABLE[p].formats) == (p in UPLOAD_PURPOSES) for p in PURPOSES)
    assert mmfs.purposes.KEY_CHECK_PURPOSE in LIST_PURPOSES  # every account may list it


def test_mmfs_and_the_emulator_read_the_same_table() -> None:
    assert config.PURPOSES is PURPOSES and emulator_rules.KNOWN_PURPOSES is PURPOSES
    assert config.UPLOAD_PURPOSES is UPLOAD_PURPOSES is emulator_rules.UPLOAD_PURPOSES
    assert emulator_rules.DELETE_PURPOSES is DELETE_PURPOSES


def _client_refusal(purpose: str, filename: str, size: int) -> type[MmfsError] | None:
    try:
        upload_rules.check_create(purpose, filename)
        upload_rules.check_size(purpose, filename, size)
    except MmfsError as exc:
        return type(exc)
    return None


def _emulator_refusal(purpose: str, filename: str, size: int) -> str | None:
    allowed = emulator_rules.allowed_purposes("upload", lenient=False, list_generated=False)
    if purpose not in allowed:
        return "purpose not supported for upload"
    return emulator_rules.check_upload(purpose, filename, size, check_format=True)


@pytest.mark.parametrize("purpose", PURPOSES)
def test_the_client_refuses_early_exactly_what_the_emulator_refuses(purpose: str) -> None:
    formats = TABLE[purpose].formats
    cases = [("notes.exe", 1), ("clip.MP3", 1), ("x.txt", 1)]
    for extension, limit in formats.items():
        cases += [(f"a.{extension}", limit), (f"a.{extension}", limit + 1), (f"A.{extension.upper()}", 1)]
    for filename, size in cases:
        client, emulator = _client_refusal(purpose, filename, size), _emulator_refusal(purpose, filename, size)
        assert (client is None) == (emulator is None), (purpose, filename, size, client, emulator)
        if client is not None and not formats:
            assert client is ReadOnlyError
        elif client is not None:
            assert client in (UnsupportedFormatError, FileTooLargeError)


def test_the_semantics_name_the_folders_the_table_names() -> None:
    text = " ".join((Path(__file__).parents[1] / "doc" / "SEMANTICS.md").read_text().split())
    takes = re.search(r"\*\*Create\*\* works in purpose folders that take uploads \(([^)]*)\)", text)
    cannot = re.search(r"Purposes the platform cannot delete from \(([^:)]*):", text)
    assert takes and cannot
    assert set(re.findall(r"`(\w+)`", takes[1])) == UPLOAD_PURPOSES
    assert set(re.findall(r"`(\w+)`", cannot[1])) == set(PURPOSES) - DELETE_PURPOSES
