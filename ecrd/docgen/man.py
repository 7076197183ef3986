"""The man pages: ``ecrd(8)`` and ``ecrctl(1)`` from their parsers, ``ecrd.toml(5)`` from the
annotated example config and config.py's declarations (what each key takes, its default,
which need a restart).

What a parser cannot say (signals, files, the environment) is written here once per page, in
``ECRD`` and ``ECRCTL``; everything about commands, options, arguments, defaults, choices
and exit codes comes from the parser, so ``--help`` and the page say the same.
"""

from __future__ import annotations

from typing import Final

import attrs

from ecrd import __version__
from ecrd.docgen import roff
from ecrd.docgen.config_doc import ConfigDoc, Key, Table
from ecrd.docgen.model import Argument, Command

MANUAL: Final = "ecrd manual"
SOURCE: Final = f"ecrd {__version__}"


@attrs.frozen
class Extra:
    """A page's sections the parser does not declare: (title, paragraphs) in order, and the
    title its parser's epilog goes under."""

    epilog_title: str
    before: tuple[tuple[str, tuple[str, ...]], ...] = ()  # before the options
    after: tuple[tuple[str, tuple[str, ...]], ...] = ()  # after the commands


ECRD: Final = Extra(
    epilog_title="EXIT STATUS",
    before=(
        (
            "DESCRIPTION",
            (
                "ecrd owns the links to the shop's Wonder payment terminals (an RS232 cable, "
                "the local network, or Wonder's cloud relay), pairs with them, encrypts every "
                "message with the PIN pairing establishes, and offers every local app one "
                "JSON-RPC 2.0 API on a Unix socket (`/run/ecrd/ecrd.sock` by default). Every "
                "payment is journaled to disk before a byte leaves the box; a lost reply makes "
                "a payment unknown, which blocks its terminal until someone settles it "
                "(`ecrctl resolve`).",
                "systemd runs `ecrd run` as the unit ecrd.service (Type=notify, with a "
                "watchdog), as the user ecrd; `ecrctl`(1) is the command line over the socket.",
            ),
        ),
    ),
    after=(
        (
            "SIGNALS",
            (
                "SIGTERM or SIGINT: stop. New payments are refused; payments in progress get "
                "[daemon].shutdown_grace_s to finish, then become unknown. A second signal "
                "stops waiting.",
                "SIGHUP (`systemctl reload ecrd`): read the config file again. A file that is "
                "not valid changes nothing (`ecrctl status` says why).",
            ),
        ),
        (
            "FILES",
            (
                "`/etc/ecrd/ecrd.toml`: the configuration (`ecrd.toml`(5)).",
                "`/var/lib/ecrd/journal.sqlite3`: the transaction journal (0700 directory).",
                "`/var/lib/ecrd/pairings.toml`: the terminals' PINs (0600).",
                "`/run/ecrd/ecrd.sock`: the API socket (0660, group ecrd).",
            ),
        ),
        ("SEE ALSO", ("`ecrctl`(1), `ecrd.toml`(5), systemctl(1), journalctl(1)",)),
    ),
)

ECRCTL: Final = Extra(
    epilog_title="EXIT STATUS",
    before=(
        (
            "DESCRIPTION",
            (
                "ecrctl is the command line over the socket of `ecrd`(8): each command is one "
                "or a few JSON-RPC calls, its result printed as text or, with `--json`, as the "
                "JSON the API returned. A payment command waits for the outcome and says it "
                "in its exit status; stopping it (Ctrl-C) does not cancel the payment.",
                "What a caller may do is its role in the config's [access] table "
                "(`ecrd.toml`(5)): reading needs only access to the socket.",
            ),
        ),
    ),
    after=(
        (
            "ENVIRONMENT",
            ("ECRD_SOCKET: the socket to talk to, when `--socket` is not given.",),
        ),
        ("SEE ALSO", ("`ecrd`(8), `ecrd.toml`(5)",)),
    ),
)


def program_page(cmd: Command, section: int, extra: Extra, date: str) -> str:
    lines = roff.header(cmd.name, section, date, SOURCE, MANUAL)
    lines += roff.name_section(cmd.name, cmd.description)
    lines += [roff.section("SYNOPSIS"), *_synopsis(cmd)]
    described = False
    for title, texts in extra.before:
        lines += [roff.section(title), *roff.paragraphs(texts)]
        described = described or title == "DESCRIPTION"
    if not described:
        lines += [roff.section("DESCRIPTION"), *roff.paragraphs([cmd.description])]
    if cmd.options:
        lines.append(roff.section("OPTIONS"))
        lines += _arguments(cmd.options)
    if cmd.commands:
        lines.append(roff.section("COMMANDS"))
        for sub in cmd.commands:
            lines += _command(sub)
    if cmd.epilog:
        lines.append(roff.section(extra.epilog_title))
        if cmd.raw_epilog:
            lines += roff.kept_lines(cmd.epilog)
        else:
            lines += roff.paragraphs([cmd.epilog])
    for title, texts in extra.after:
        lines += [roff.section(title), *roff.paragraphs(texts)]
    return "\n".join(lines) + "\n"


def usage(cmd: Command, *, options: bool = True) -> str:
    """``sale terminal amount [currency] [options]`` in roff."""
    words = [roff.flag(cmd.word)]
    for a in cmd.positionals:
        shown = roff.arg(a.name) + (" ..." if a.repeated else "")
        words.append(f"[{shown}]" if a.optional else shown)
    if options and [o for o in cmd.options if "--help" not in o.flags]:
        words.append("[" + roff.arg("options") + "]")
    return " ".join(words)


def _synopsis(cmd: Command) -> list[str]:
    opts = " ".join(f"[{_option_tag(o)}]" for o in cmd.options if "--help" not in o.flags)
    lines = [roff.flag(cmd.name) + " " + opts]
    if cmd.commands:
        lines[0] += " " + roff.arg("command") + " [" + roff.arg("arguments") + "]"
    return lines


def _command(sub: Command) -> list[str]:
    lines = [".SS " + usage(sub)]
    lines += [roff.escape(" ".join((sub.description or sub.help).split())) or "\\&"]
    lines += _arguments(sub.positionals)
    lines += _arguments(tuple(o for o in sub.options if "--help" not in o.flags))
    return lines


def _arguments(arguments: tuple[Argument, ...]) -> list[str]:
    lines: list[str] = []
    for a in arguments:
        text = a.help
        if a.choices and not a.is_option:
            text = f"{text} One of: {', '.join(a.choices)}.".strip()
        elif a.choices:
            text = f"{text} ({', '.join(a.choices)})".strip()
        if a.default:
            text = f"{text} (default: {a.default})".strip()
        tag = _option_tag(a) if a.is_option else roff.arg(a.name)
        lines += roff.tagged(tag, text)
    return lines


def _option_tag(a: Argument) -> str:
    names = ", ".join(roff.flag(f) for f in a.flags)
    return names + (" " + roff.arg(a.name) if a.takes_value else "")


def config_page(doc: ConfigDoc, date: str) -> str:
    lines = roff.header("ecrd.toml", 5, date, SOURCE, MANUAL)
    lines += roff.name_section("ecrd.toml", "The configuration file of ecrd(8)")
    lines += [roff.section("SYNOPSIS"), roff.flag("/etc/ecrd/ecrd.toml")]
    lines += [roff.section("DESCRIPTION")]
    lines += roff.paragraphs(
        [
            doc.header,
            "A TOML file, read by `ecrd run`, `ecrd check-config` and at every reload. "
            "An unknown key is an error (a typo must not fall back to a default silently), "
            "and so is a value of the wrong type or out of range: the message names the file "
            'and the key (`terminal[2].port`). Each key below gives its default; "unset" '
            "means it has none and the feature it configures is off. The package installs "
            "an annotated example as the file itself.",
        ]
    )
    for table in doc.tables:
        lines += _table(table)
    lines += [roff.section("SEE ALSO"), "\\fBecrd\\fR(8), \\fBecrctl\\fR(1)"]
    return "\n".join(lines) + "\n"


def _table(table: Table) -> list[str]:
    title = f"[[{table.name}]]" if table.array else f"[{table.name}]"
    lines = [roff.section(f"THE {title} TABLE"), *roff.paragraphs([table.text])]
    for key in table.keys:
        lines += roff.tagged(roff.flag(key.name), _key_text(key))
    lines += roff.paragraphs(table.notes)
    return lines


def _key_text(key: Key) -> str:
    text = key.text.rstrip()
    if text and not text.endswith((".", ")", "!")):
        text += "."
    if key.only:
        text += f" Only in a table with {key.only}."
    if key.expected:
        text += f" Value: {key.expected}."
    if key.restart:
        text += " A change takes effect at the next start, not at a reload."
    if key.required:
        return f"{text} Required."
    if key.default is not None and "default:" not in text.lower():
        text += f" Default: {key.default}."
    if key.commented or (key.default is not None and key.example != key.default):
        text += f" Example: {key.example}"
    return text
