"""The config file's documentation: the annotated example (``etc/ecrd.toml``) read with the
declarations of ``ecrd/config.py``.

The example documents each key in the comment lines right above it and in a comment at the
end of its line; a key shown commented out (``# socket_group = "ecrd-clients"``) is one that
is unset by default. The declarations say which keys exist, what each takes, its default,
its one-line doc and whether a change needs a restart, so a key the example forgets to
explain, or one it names (set or commented out) that is not declared, is an error here (and
``tests/test_docgen.py`` fails): the man page and the key table describe every key
``check-config`` accepts, and nothing else. ``Line`` is each key line of the example, for
the test that it shows each key's default (``tests/test_config.py``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from typing import Any, Final

import attrs

from ecrd import config
from ecrd.config_decl import Decl, default_of, keys, tag_of


def _tables(record: type, prefix: str = "") -> dict[str, tuple[type, ...]]:
    """Every table of the file, ``[[http.client]]`` inside ``[http]`` too: its name and the
    record(s) its keys are read into (a union's, for terminals)."""
    found: dict[str, tuple[type, ...]] = {}
    for name, _, d in keys(record):
        if d.kind.records:
            found[prefix + name] = d.kind.records
            for inner in d.kind.records:
                found.update(_tables(inner, f"{prefix}{name}."))
    return found


TABLES: Final[dict[str, tuple[type, ...]]] = _tables(config.Config)
_HEADER: Final = re.compile(r"^(#\s*)?\[(\[)?([a-z_.]+)\]?\]\s*(#.*)?$")
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
    doc: str = ""  # the declaration's one line
    expected: str = ""  # what it takes ("an integer between 1 and 65535")
    restart: bool = False  # a change takes effect at the next start, not at reload
    only: str = ""  # 'transport = "serial"': a key of that kind of table alone


@attrs.frozen
class Line:
    """One key line of the example, as written."""

    table: str
    index: int  # which [[terminal]] (0 for a plain table)
    name: str
    value: str  # TOML
    commented: bool


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
    lines: list[Line] = attrs.field(factory=list)
    seen: dict[str, int] = attrs.field(factory=dict)  # how many of each table so far
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
    missing = sorted(set(TABLES) - set(reading.order))
    if missing:
        raise ConfigDocError(f"the example has no [{missing[0]}] table")
    tables = tuple(_table(reading, name) for name in reading.order)
    return ConfigDoc(header=" ".join(reading.header), tables=tables)


def lines(text: str) -> list[Line]:
    """Every key line of the example, set or commented out, in its order."""
    reading = _Reading()
    for raw in text.splitlines():
        _line(reading, raw.strip())
    return reading.lines


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
        r.seen[name] = r.seen.get(name, 0) + 1
        if r.pending and not r.texts.get(name):
            r.texts[name] = " ".join(r.pending)
        r.table, r.pending, r.last = name, [], None
    elif continued and r.last is not None:
        r.last["text"] = f"{r.last['text']} {continued.group(1)}".strip()
    elif key and r.table is not None and (key.group(1) is None or _parses(key.group(3))):
        if key.group(2) not in _fields(r.table):
            raise ConfigDocError(f"[{r.table}]: not a key of config.py: {line!r}")
        _key(r, key.group(2), key.group(3), commented=bool(key.group(1)))
    elif line.startswith("#"):
        r.pending.append(line.lstrip("#").strip())
    elif r.table is not None:
        raise ConfigDocError(f"[{r.table}]: not a key of config.py: {line!r}")


def _key(r: _Reading, name: str, rest: str, *, commented: bool) -> None:
    assert r.table is not None
    value, comment = split_comment(rest)
    r.lines.append(Line(r.table, r.seen[r.table] - 1, name, value, commented))
    text = " ".join([*r.pending, comment]).strip()
    known = r.keys[r.table].get(name)
    if known is None:
        known = r.keys[r.table][name] = {"text": "", "example": value, "commented": commented}
    if text and not known["text"]:
        known["text"] = text
    if not commented:
        known["commented"] = False
    r.pending, r.last = [], known


def _parses(rest: str) -> bool:
    """Whether a commented-out ``name = rest`` is a key (its value is TOML), not prose."""
    return _toml(split_comment(rest)[0])


def _toml(value: str) -> bool:
    try:
        tomllib.loads(f"v = {value}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def split_comment(rest: str) -> tuple[str, str]:
    """``value  # comment`` into the TOML value and the comment (a ``#`` inside a string is
    part of the value: the first split that parses wins)."""
    for match in re.finditer("#", rest):
        value = rest[: match.start()].strip()
        if _toml(value):
            return value, rest[match.end() :].strip()
    return rest.strip(), ""


def _table(r: _Reading, name: str) -> Table:
    found = r.keys[name]
    described = []
    for key_name, field, d, only in declared(name):
        if key_name not in found or not found[key_name]["text"]:
            raise ConfigDocError(
                f"etc/ecrd.toml does not explain [{name}].{key_name}: add a comment above "
                "it or at the end of its line"
            )
        doc = found[key_name]
        described.append(
            Key(
                name=key_name,
                text=doc["text"],
                example=doc["example"],
                commented=doc["commented"],
                default=toml_default(field),
                required=field.default is attrs.NOTHING or _is_tag(name, key_name),
                doc=d.doc,
                expected=d.kind.expected,
                restart=d.reload == "restart",
                only=only,
            )
        )
    notes = tuple(r.notes[name])
    return Table(name, name in r.arrays, r.texts.get(name, ""), tuple(described), notes)


def declared(table: str) -> list[tuple[str, attrs.Attribute[Any], Decl, str]]:
    """(key, field, declaration, 'transport = "lan"' or "") of every key of a table, each
    once: the keys every record of a union shares first, then each record's own."""
    out: dict[str, tuple[str, attrs.Attribute[Any], Decl, str]] = {}
    records = TABLES[table]
    for record in records:
        tag = tag_of(record)
        for name, field, d in keys(record):
            if d.kind.records:
                continue  # a table of its own ([[http.client]] in [http])
            shared = all(name in {n for n, _, _ in keys(other)} for other in records)
            if name not in out:
                out[name] = (
                    name,
                    field,
                    d,
                    "" if shared or tag is None else f'{tag[0]} = "{tag[1]}"',
                )
    return sorted(out.values(), key=lambda k: k[3] != "")


def _is_tag(table: str, name: str) -> bool:
    """The key that tells a union's records apart (``transport``) is required."""
    return any((tag_of(r) or ("",))[0] == name for r in TABLES[table])


def _fields(table: str) -> set[str]:
    return {name for name, *_ in declared(table)}


def toml_default(field: attrs.Attribute[Any]) -> str | None:
    """A default as the config file writes it; None for a computed one (a factory)."""
    default = default_of(field)
    if default is attrs.NOTHING:
        return ""
    if default is None and field.default is not None:
        return None  # computed
    if default == () and str(field.type).startswith("tuple[tuple["):
        return "{}"  # a table kept as pairs (action_timeouts)
    return toml_value(default)


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


def markdown(doc: ConfigDoc) -> str:
    """``docs/config.md``: every key of every table in one line each, from the declarations
    (what it takes, its default, whether a change needs a restart); the example's comments
    and ``ecrd.toml(5)`` say the rest."""
    out = [
        "# Configuration keys",
        "",
        "Generated from the declarations in `ecrd/config.py` by",
        "`python -m ecrd.docgen --keys docs/config.md`; `etc/ecrd.toml` explains each key,",
        "`man ecrd.toml` has both. Unset: no default, the feature it configures is off.",
        "Restart: a change takes effect at the next start, not at a reload.",
    ]
    for table in doc.tables:
        title = f"[[{table.name}]]" if table.array else f"[{table.name}]"
        out += ["", f"## `{title}`", "", "| key | what | value | default |", "|---|---|---|---|"]
        for k in table.keys:
            what = (
                k.doc + (f" ({k.only} only)" if k.only else "") + ("; restart" if k.restart else "")
            )
            default = "required" if k.required else "computed" if k.default is None else k.default
            cells = (_cell(what), _cell(k.expected), _cell(default))
            out.append(f"| `{k.name}` | {cells[0]} | {cells[1]} | `{cells[2]}` |")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
