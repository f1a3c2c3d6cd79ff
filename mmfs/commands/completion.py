"""``mmfs completion bash|zsh|fish``: a completion script made from the command's own parser, so it never
falls behind it. bash and zsh come from shtab; fish, which shtab does not write, from the same parser here.
Which options take a file or a folder is the options table's (mmfs.options). ``man_page()`` is the manual
page, from the parser through argparse-manpage (``scripts/manpage``), with the table's sources of each option
and its environment variables."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

__all__ = ["add_completion_command", "completion_script", "man_page", "run_completion"]

SHELLS = ("bash", "zsh", "fish")

_EPILOG = """\
examples:
  mmfs completion bash > ~/.local/share/bash-completion/completions/mmfs
  mmfs completion zsh > ~/.zfunc/_mmfs            (with fpath+=~/.zfunc before compinit in ~/.zshrc)
  mmfs completion fish > ~/.config/fish/completions/mmfs.fish
"""


def add_completion_command(sub: Any) -> None:
    p = sub.add_parser("completion", help="print a shell completion script for bash, zsh or fish", epilog=_EPILOG,
                       description="Print a completion script for the shell, made from mmfs's own options.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=SHELLS, help="the shell, e.g. bash")


def run_completion(args: argparse.Namespace) -> int:
    print(completion_script(args.shell), end="")
    return 0


def completion_script(shell: str) -> str:
    from mmfs.commands.parser import build_parser

    parser = build_parser()
    if shell == "fish":
        return _fish(parser)
    import shtab

    paths = {"file": shtab.FILE, "dir": shtab.DIRECTORY, "profile": _PROFILES}
    for action in _all_actions(parser):
        kind = _completes(action)
        if kind:
            action.complete = paths[kind]  # type: ignore[attr-defined]
    return str(shtab.complete(parser, shell=shell))


# The profile names of the config file, read by the shell itself (a Python start per keypress is too slow):
# the [NAME] headers that ``mmfs config new`` writes.
_PROFILE_NAMES = ("sed -n 's/^[[:space:]]*\\[\\([A-Za-z0-9_-]*\\)\\][[:space:]]*$/\\1/p' "
                  '"${MMFS_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/mmfs/config.toml}" 2>/dev/null')
_PROFILES = {
    "bash": "_mmfs_profiles",
    "zsh": "_mmfs_profiles",
    "preamble": {
        "bash": f'_mmfs_profiles() {{\n  compgen -W "$({_PROFILE_NAMES})" -- "$1"\n}}\n',
        "zsh": f'_mmfs_profiles() {{\n  local -a names\n  names=(${{(f)"$({_PROFILE_NAMES})"}})\n'
               f'  compadd -a names\n}}\n',
    },
}


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions = list(parser._actions)
    for sub in _subparsers(parser).values():
        actions += _all_actions(sub)
    return actions


def _completes(action: argparse.Action) -> str | None:
    """"file", "dir" or "profile": what the action's value is, as the options table says (a mount point is
    a folder)."""
    from mmfs.settings.options import OPTIONS

    if not action.option_strings:
        return "dir" if action.dest == "mountpoint" else None
    for option in OPTIONS:
        if option.name == action.dest and set(action.option_strings) <= set(option.flag_names):
            return option.completes
    return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    """A subcommand's one-line help; an alias (umount) has its command's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            target = action.choices[name]
            for choice in action._choices_actions:
                if action.choices.get(choice.dest) is target:
                    return choice.help or ""
    return ""


def _fish(parser: argparse.ArgumentParser) -> str:
    q = shlex.quote
    lines = ["# fish completion for mmfs, made by: mmfs completion fish", "complete -c mmfs -f"]
    commands = _subparsers(parser)
    for name in commands:
        lines.append(f"complete -c mmfs -n __fish_use_subcommand -a {q(name)} -d {q(_help_of(parser, name))}")
    for name, sub in commands.items():
        cond = f"'__fish_seen_subcommand_from {name}'"
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:
                continue
            help_text = (action.help or "").split(", e.g.")[0].split(" (")[0]
            for option in action.option_strings:
                flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
                values = {"file": " -F", "dir": " -F",  # fish has no ${VAR:-default}: sh reads the names
                          "profile": f" -a {q('(sh -c ' + q(_PROFILE_NAMES) + ')')}"}.get(_completes(action) or "", "")
                takes = "" if action.nargs == 0 else " -r" + values
                choices = f" -a {q(' '.join(map(str, action.choices)))}" if action.choices else ""
                lines.append(f"complete -c mmfs -n {cond} {flag}{takes}{choices} -d {q(help_text)}")
            if not action.option_strings and action.choices and not isinstance(action, argparse._SubParsersAction):
                lines.append(f"complete -c mmfs -n {cond} -a {q(' '.join(map(str, action.choices)))}")
            elif not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                lines.append(f"complete -c mmfs -n {cond} -F")  # paths: mount points, files to pin
    return "\n".join(lines) + "\n"


def man_page() -> str:
    """mmfs(1), from the parser (argparse-manpage: ``pip install argparse-manpage``)."""
    from build_manpages.manpage import Manpage

    from mmfs.commands.parser import build_parser

    parser = build_parser()
    page = Manpage(parser)
    page.add_section("option sources", "=", _option_sources())
    page.add_section("environment", "=", _environment())
    return str(page)


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _option_sources() -> str:
    """Each option of mount and serve webdav that may come from elsewhere than its flag: its -o form, its
    profile key (older spellings too) and its variable."""
    from mmfs.settings.options import ENV, MOUNT_OPTION, OPTIONS, PROFILE

    lines = [_roff("Where each option of mmfs mount and mmfs serve webdav may come from besides its flag: "
                   "-o NAME[=VALUE] (as mount(8) and /etc/fstab pass it), NAME as a key of a profile in the config "
                   "file, and an environment variable. A flag (or -o) beats the environment, which beats the "
                   "profile, which beats the default. In -o, commas separate options: several purposes are joined "
                   "with ':'. An older spelling still read is shown after 'or'.")]
    for option in OPTIONS:
        outside = option.sources & {MOUNT_OPTION, PROFILE, ENV}
        if not outside:
            continue
        names = " or ".join((option.name, *option.aliases))
        forms = [f"flag {option.flag}"] if option.flag_names else ["no flag"]
        if MOUNT_OPTION in option.sources:
            forms.append("-o")
        if PROFILE in option.sources:
            forms.append("profile")
        if option.env_var:
            forms.append(option.env_var)
        note = "; its value is never echoed" if option.secret else ""
        lines += [".TP", f"\\fB{_roff(names)}\\fR", _roff(f"{', '.join(forms)}{note}")]
    return "\n".join(lines)


def _environment() -> str:
    from mmfs.settings.options import OPTIONS

    lines = []
    for option in OPTIONS:
        if option.env_var:
            several = "; in the variable, several are separated by spaces" if option.kind == "list" else ""
            lines += [".TP", f"\\fB{_roff(option.env_var)}\\fR", _roff(option.help + several)]
    lines += [".TP", "\\fBMMFS_CONFIG\\fR", _roff("the config file of profiles, instead of the user config "
                                                "folder's mmfs/config.toml")]
    return "\n".join(lines)
