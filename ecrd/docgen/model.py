"""An argparse parser as plain data: what ``--help`` shows, for the man pages and completions.

argparse keeps its declarations in ``_actions`` and its subcommands in a
``_SubParsersAction``; this is the one place that reads them, so the documents follow the
parsers (a new option, a changed help text or default) without anyone copying them.
"""

from __future__ import annotations

import argparse
from typing import Any

import attrs

# How a value is completed: a file name, a terminal id (asked from ecrd), or nothing known.
FILE_DESTS = frozenset({"config", "socket", "file"})
TERMINAL_DESTS = frozenset({"terminal"})


@attrs.frozen
class Argument:
    """One option (``flags`` set) or positional argument (``flags`` empty)."""

    name: str  # the metavar shown: REF, terminal
    flags: tuple[str, ...] = ()
    help: str = ""
    takes_value: bool = True
    choices: tuple[str, ...] = ()
    optional: bool = False  # a positional that may be left out
    repeated: bool = False  # nargs + or *
    completes: str = ""  # "file", "terminal" or ""
    default: str = ""  # said in the man page when the help text does not say it

    @property
    def is_option(self) -> bool:
        return bool(self.flags)


@attrs.frozen
class Command:
    name: str  # "ecrctl" or "ecrctl sale"
    help: str  # the one line in the parent's list of commands
    description: str
    epilog: str
    raw_epilog: bool  # the parser keeps the epilog's line breaks
    arguments: tuple[Argument, ...]
    commands: tuple[Command, ...] = ()

    @property
    def options(self) -> tuple[Argument, ...]:
        return tuple(a for a in self.arguments if a.is_option)

    @property
    def positionals(self) -> tuple[Argument, ...]:
        return tuple(a for a in self.arguments if not a.is_option)

    @property
    def word(self) -> str:
        """The subcommand's own word (``sale`` of ``ecrctl sale``)."""
        return self.name.rsplit(" ", 1)[-1]


def read(parser: argparse.ArgumentParser, name: str | None = None, help: str = "") -> Command:
    """``parser`` with its subcommands, as ``--help`` and each ``COMMAND --help`` show them."""
    arguments: list[Argument] = []
    commands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands += _subcommands(action)
        elif action.help != argparse.SUPPRESS:
            arguments.append(_argument(action, parser.prog))
    raw = (argparse.RawDescriptionHelpFormatter, argparse.RawTextHelpFormatter)
    return Command(
        name=name or parser.prog,
        help=help,
        description=parser.description or "",
        epilog=parser.epilog or "",
        raw_epilog=issubclass(parser.formatter_class, raw),  # type: ignore[arg-type]
        arguments=tuple(arguments),
        commands=tuple(commands),
    )


def _subcommands(action: argparse._SubParsersAction[Any]) -> list[Command]:
    helps = {a.dest: a.help or "" for a in action._choices_actions}
    return [read(sub, sub.prog, helps.get(word, "")) for word, sub in action.choices.items()]


def _argument(action: argparse.Action, prog: str) -> Argument:
    takes_value = action.nargs != 0
    if action.option_strings:
        metavar = action.metavar or action.dest.upper()
    else:
        metavar = action.metavar or action.dest
    completes = ""
    if action.dest in FILE_DESTS or "--config" in action.option_strings:
        completes = "file"
    elif action.dest in TERMINAL_DESTS:
        completes = "terminal"
    return Argument(
        name=metavar if isinstance(metavar, str) else " ".join(metavar),
        flags=tuple(action.option_strings),
        help=expand_help(action, prog),
        takes_value=takes_value,
        choices=tuple(str(c) for c in action.choices or ()),
        optional=action.nargs in ("?", "*") or bool(action.option_strings),
        repeated=action.nargs in ("+", "*"),
        completes=completes,
        default=default_of(action),
    )


def expand_help(action: argparse.Action, prog: str) -> str:
    """The help text with ``%(default)s`` and the like filled in, as argparse prints it."""
    params: dict[str, Any] = {**vars(action), "prog": prog}
    if action.choices is not None:
        params["choices"] = ", ".join(str(c) for c in action.choices)
    return (action.help or "") % params


def default_of(action: argparse.Action) -> str:
    """The default, when the help text does not say it already and there is one to say (as
    ArgumentDefaultsHelpFormatter shows it, without its "default: None")."""
    if action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0:
        return ""
    return "" if "%(default)" in (action.help or "") else str(action.default)
