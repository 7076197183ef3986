"""The config file's documentation: the annotated example (``etc/ecrd.toml``) read with the
keys and defaults of ``ecrd/config.py``.

The example documents each key in the comment lines right above it and in a comment at the
end of its line; a key shown commented out (``# socket_group = "ecrd-clients"``) is one that
is unset by default. ``config.py``'s records say which keys exist and their defaults, so a
key the example forgets to explain, or one it names that does not exist, is an error here
(and ``tests/test_docgen.py`` fails): the man page describes every key ``check-config``
accepts, and nothing else.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from typing import Any, Final

import attrs

from ecrd import config

# The example's tables and the records their keys are read into (config.parse).
TABLES: Final[dict[str, type]] = {
    "daemon": config.DaemonConfig,
    "journal": config.JournalConfig,
    "access": config.AccessConfig,
    "cloud": config.CloudConfig,
    "terminal": config.TerminalConfig,
}
_HEADER: Final = re.compile(r"^(#\s*)?\[(\[)?([a-z_]+)\]?\]\s*(#.*)?$")
_KEY: Final = re.compile(r"^(#\s*)?([a-z_][a-z0-9_]*)\s*=\s*(.*)$")
_CONTINUED: Final = re.compile(r"^#\s+#\s?(.*)$")  # "#          # more of the line above"


class ConfigDocError(Exception):
    """The example and config.py disagree: a key without a comment, or one that is not a key."""


@attrs.frozen
class Key:
    name: str
    text: str  # what the example says about it
    example: str  # its value as the example writes it (TOML)
    commented: bool  # shown commented out: unset unless you set it
    default: str | None  # TOML of config.py's default; None: computed (the text says how)
    required: bool


@attrs.frozen
class Table:
    name: str
    array: bool  # [[terminal]]: one table per terminal
    text: str
    keys: tuple[Key, ...]
    notes: tuple[str, ...] = ()  # comments between keys that belong to no key


@attrs.frozen
class ConfigDoc:
    header: str  # the example's opening comment
    tables: tuple[Table, ...]


@attrs.define
class _Reading:
    """The example read line by line."""

    header: list[str] = attrs.field(factory=list)
    pending: list[str] = attrs.field(factory=list)  # comment lines since the last key
    order: list[str] = attrs.field(factory=list)
    arrays: set[str] = attrs.field(factory=set)
    texts: dict[str, str] = attrs.field(factory=dict)
    keys: dict[str, dict[str, dict[str, Any]]] = attrs.field(factory=dict)
    notes: dict[str, list[str]] = attrs.field(factory=dict)
    table: str | None = None
    last: dict[str, Any] | None = None  # the key a continued comment adds to

    def flush(self) -> None:
        """A blank line: comments not followed by a key are the table's notes."""
        if self.pending and self.table is None:
            self.header += self.pending
        elif self.pending and self.table is not None:
            self.notes[self.table].append(" ".join(self.pending))
        self.pending, self.last = [], None


def read(text: str) -> ConfigDoc:
    reading = _Reading()
    for raw in text.splitlines():
        _line(reading, raw.strip())
    reading.flush()
    tables = tuple(_table(reading, name) for name in reading.order)
    missing = sorted(set(TABLES) - set(reading.order))
    if missing:
        raise ConfigDocError(f"the example has no [{missing[0]}] table")
    return ConfigDoc(header=" ".join(reading.header), tables=tables)


def _line(r: _Reading, line: str) -> None:
    header = _HEADER.match(line)
    key = _KEY.match(line)
    continued = _CONTINUED.match(line)
    if not line:
        r.flush()
    elif header and header.group(3) in TABLES:
        name = header.group(3)
        if name not in r.order:
            r.order.append(name)
            r.keys[name], r.notes[name] = {}, []
        if header.group(2):
            r.arrays.add(name)
        if r.pending and not r.texts.get(name):
            r.texts[name] = " ".join(r.pending)
        r.table, r.pending, r.last = name, [], None
    elif key and r.table is not None and key.group(2) in _fields(r.table):
        _key(r, key.group(2), key.group(3), commented=bool(key.group(1)))
    elif continued and r.last is not None:
        r.last["text"] = f"{r.last['text']} {continued.group(1)}".strip()
    elif line.startswith("#"):
        r.pending.append(line.lstrip("#").strip())
    elif r.table is not None:
        raise ConfigDocError(f"[{r.table}]: not a key of config.py: {line!r}")


def _key(r: _Reading, name: str, rest: str, *, commented: bool) -> None:
    assert r.table is not None
    value, comment = split_comment(rest)
    text = " ".join([*r.pending, comment]).strip()
    known = r.keys[r.table].get(name)
    if known is None:
        known = r.keys[r.table][name] = {"text": "", "example": value, "commented": commented}
    if text and not known["text"]:
        known["text"] = text
    if not commented:
        known["commented"] = False
    r.pending, r.last = [], known


def split_comment(rest: str) -> tuple[str, str]:
    """``value  # comment`` into the TOML value and the comment (a ``#`` inside a string is
    part of the value: the first split that parses wins)."""
    for match in re.finditer("#", rest):
        value = rest[: match.start()].strip()
        try:
            tomllib.loads(f"v = {value}")
        except tomllib.TOMLDecodeError:
            continue
        return value, rest[match.end() :].strip()
    return rest.strip(), ""


def _table(r: _Reading, name: str) -> Table:
    found = r.keys[name]
    keys = []
    for field in attrs.fields(TABLES[name]):
        if field.name not in found or not found[field.name]["text"]:
            raise ConfigDocError(
                f"etc/ecrd.toml does not explain [{name}].{field.name}: add a comment above "
                "it or at the end of its line"
            )
        doc = found[field.name]
        keys.append(
            Key(
                name=field.name,
                text=doc["text"],
                example=doc["example"],
                commented=doc["commented"],
                default=toml_default(field),
                required=field.default is attrs.NOTHING,
            )
        )
    return Table(name, name in r.arrays, r.texts.get(name, ""), tuple(keys), tuple(r.notes[name]))


def _fields(table: str) -> set[str]:
    return {f.name for f in attrs.fields(TABLES[table])}


def toml_default(field: attrs.Attribute[Any]) -> str | None:
    """A default as the config file writes it; None for a computed one (a factory)."""
    if field.default is attrs.NOTHING:
        return ""
    if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        return None
    if field.default == () and str(field.type).startswith("tuple[tuple["):
        return "{}"  # a table kept as pairs (action_timeouts)
    return toml_value(field.default)


def toml_value(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return f'"{value}"' if isinstance(value, str) else str(value)
    if isinstance(value, tuple | list):
        pairs = all(isinstance(v, tuple) and len(v) == 2 for v in value)
        if value and pairs:  # action_timeouts: a table
            return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value) + " }"
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ConfigDocError(f"no TOML form for the default {value!r}")


def keys_named(doc: ConfigDoc) -> Iterable[tuple[str, str]]:
    """(table, key) of every key the document describes."""
    for table in doc.tables:
        for key in table.keys:
            yield table.name, key.name
