"""The mmfs command's own surface: help texts, argument errors, the key's sources. No FUSE needed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmfs.commands.main import _op_params, build_parser
from mmfs.settings.config import parse_size


def mmfs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmfs", *args], capture_output=True, text=True, timeout=60,
                          env=env or dict(os.environ))


@pytest.mark.parametrize("args", [["--help"], ["mount", "--help"], ["unmount", "--help"], ["emulator", "--help"]])
def test_help_texts_print(args):
    done = mmfs(*args)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_mount_without_a_key_says_how_to_give_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MINIMAX_API_KEY"}
    done = mmfs("mount", str(tmp_path), env=env)
    assert done.returncode != 0
    assert "MINIMAX_API_KEY" in done.stderr and "--api-key-file" in done.stderr


def test_the_key_is_never_an_argument():
    options = {opt for action in build_parser()._subparsers._group_actions[0].choices["mount"]._actions
               for opt in action.option_strings}
    assert "--api-key-file" in options
    assert not {o for o in options if o.startswith("--api-key") and o != "--api-key-file"}


def test_op_params_for_gateways():
    assert _op_params(["retrieve:model=minimax-files-retrieve", "list:model=x"]) == {
        "retrieve": {"model": "minimax-files-retrieve"}, "list": {"model": "x"}}
    with pytest.raises(SystemExit):
        _op_params(["nonsense"])


@pytest.mark.parametrize(("text", "value"), [("10G", 10 << 30), ("512MiB", 512 << 20), ("4m", 4 << 20),
                                             ("1048576", 1 << 20), ("1.5k", 1536)])
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_size_refuses_nonsense():
    with pytest.raises(ValueError):
        parse_size("ten gigs")
