"""How a config key is declared, once: a field of a frozen attrs record with a ``Decl``.

Invariants:

* a key is an attrs field whose metadata holds a ``Decl``: its kind (what values it takes,
  ``expected`` completing "KEY must be ..."), its one-line doc, whether a running daemon
  takes a new value (``reload``) and the value the annotated example shows when it is not
  the default; its type and default are the field's own;
* the TOML file is structured into the records by cattrs, each field through its kind's
  hook, with unknown keys refused: the validator is the declarations, nothing else;
* an error names the file, the key's path as the admin writes it (``[daemon].socket``,
  ``terminal[2].port``, ``[http].client[0].name``) and what was expected; one error, the
  first in the file's order (an unknown key first in its table: a typo explains the rest).

The kinds (``text``, ``integer``, ``strings``, ``table``, ``tables``...) are the only
functions that look at a raw TOML value; a machine or cross-key rule is a ``problem``
function (``config_rules.py``) passed to a kind, or an ``Invalid`` raised by the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, cast, get_args

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, override

from ecrd.text import first_control

Reload = Literal["live", "restart"]
Problem = Callable[[Any], str | None]  # why a value is refused (completes "must be"), or None
Hook = Callable[[Any, Any], Any]  # cattrs' structure hook: (raw value, type) -> value

_META: Final = "ecrd.key"
_CONTROL: Final = " without control characters (newline, tab, ESC...)"
_NO_VALUE: Final = object()


class Invalid(ValueError):
    """A value a key refuses: ``expected`` completes "KEY must be ..."; ``within`` is the
    path below the key that raised it (a record's own check names its key there)."""

    def __init__(
        self, expected: str, got: object = _NO_VALUE, within: tuple[str | int, ...] = ()
    ) -> None:
        super().__init__(expected)
        self.expected, self.got, self.within = expected, got, within


@attrs.frozen
class Kind:
    expected: str  # "an integer between 1 and 65535"
    hook: Callable[[Any], Any]  # raw TOML value -> the record's value, or raises Invalid
    records: tuple[type, ...] = ()  # a table of keys of its own: its record(s) (a union's)
    array: bool = False  # [[name]]: a list of such tables


@attrs.frozen
class Decl:
    kind: Kind
    doc: str
    reload: Reload = "live"
    example: object = None  # what etc/ecrd.toml shows, where it is not the default
    name: str | None = None  # the TOML key, when the attribute is named otherwise


def key(
    kind: Kind,
    default: object = attrs.NOTHING,
    *,
    doc: str,
    reload: Reload = "live",
    example: object = None,
    factory: Callable[[], object] | None = None,
    name: str | None = None,
    repr: bool = True,
) -> Any:
    """A config key: an attrs field declared with its kind, doc and reload rule; ``repr``
    False for a secret's hash (never in a log line of the config)."""
    meta = {_META: Decl(kind, doc, reload, example, name)}
    if factory is not None:
        return attrs.field(factory=factory, metadata=meta, repr=repr)
    return attrs.field(default=default, metadata=meta, repr=repr)


def decl(field: attrs.Attribute[Any]) -> Decl | None:
    found = field.metadata.get(_META)
    return found if isinstance(found, Decl) else None


def keys(cls: type) -> Iterator[tuple[str, attrs.Attribute[Any], Decl]]:
    """(TOML name, field, declaration) of every key of a record, in declaration order."""
    for field in attrs.fields(cls):
        d = decl(field)
        if d is not None:
            yield d.name or field.name, field, d


def default_of(field: attrs.Attribute[Any]) -> object:
    """The field's default; ``attrs.NOTHING`` when required, ``None`` too when computed."""
    if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        return None
    return field.default


# -- the kinds -----------------------------------------------------------------------------


def _plain(
    value: object, kinds: type | tuple[type, ...], expected: str, *, deep: bool = True
) -> Any:
    """``value`` if it is of ``kinds`` (a bool is no number) and, ``deep``, holds no control
    character in any string, key or item."""
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _tuple(kinds)):
        raise Invalid(expected, value)
    if deep and first_control(value, "-") is not None:
        raise Invalid(expected + _CONTROL, value)
    return value


def _tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _checked(value: Any, rule: Problem | None) -> Any:
    problem = rule(value) if rule is not None and value is not None else None
    if problem is not None:
        raise Invalid(problem, value)
    return value


def _quoted(choices: tuple[object, ...]) -> str:
    return ", ".join(repr(c) for c in choices)


def text(
    *, choices: tuple[str, ...] = (), rule: Problem | None = None, expected: str = "a string"
) -> Kind:
    if choices:
        expected = "one of " + _quoted(choices)

    def hook(value: object) -> Any:
        got = _plain(value, str, expected)
        if choices and got not in choices:
            raise Invalid(expected, value)
        return _checked(got, rule)

    return Kind(expected, hook)


def integer(low: int = 0, high: int = 2**31) -> Kind:
    expected = f"an integer between {low} and {high}"

    def hook(value: object) -> int:
        got: int = _plain(value, int, expected)
        if not low <= got <= high:
            raise Invalid(expected, value)
        return got

    return Kind(expected, hook)


def number(low: float = 0, high: float = 1e9, *, choices: tuple[float, ...] = ()) -> Kind:
    expected = f"a number between {low:g} and {high:g}"
    if choices:
        *most, last = (f"{c:g}" for c in choices)
        expected = f"{', '.join(most)} or {last}"

    def hook(value: object) -> float:
        got = float(_plain(value, (int, float), expected))
        if not low <= got <= high or (choices and got not in choices):
            raise Invalid(expected, value)
        return got

    return Kind(expected, hook)


def flag() -> Kind:
    return Kind("true or false", lambda value: _plain(value, bool, "true or false"))


def strings(
    what: str,
    *,
    required: bool = False,
    choices: tuple[str, ...] = (),
    each: Problem | None = None,
    rule: Problem | None = None,
) -> Kind:
    """A list of non-empty strings, as a tuple; ``choices``: some of them, each once;
    ``each`` checks every item, ``rule`` the whole list."""
    expected = f"a {'non-empty ' if required else ''}list of non-empty {what}"
    if choices:
        expected = f"a list of {_quoted(choices)}, each once"

    def hook(value: object) -> tuple[str, ...]:
        items = _plain(value, list, expected)
        if (required and not items) or not all(isinstance(v, str) and v for v in items):
            raise Invalid(expected, value)
        if choices and (not set(items) <= set(choices) or len(set(items)) != len(items)):
            raise Invalid(expected, value)
        for item in items:
            _checked(item, each)
        got: tuple[str, ...] = _checked(tuple(items), rule)
        return got

    return Kind(expected, hook)


def integers(expected: str, check: Callable[[int], bool]) -> Kind:
    """A list of integers each passing ``check``, as a tuple."""

    def hook(value: object) -> tuple[int, ...]:
        items = _plain(value, list, expected)
        if not all(isinstance(v, int) and not isinstance(v, bool) and check(v) for v in items):
            raise Invalid(expected, value)
        return tuple(items)

    return Kind(expected, hook)


def seconds_by_name(low: float, high: float, example: str) -> Kind:
    """A table of names to seconds (``{Refund = 60}``), as sorted (name, seconds) pairs."""
    expected = f"a table like {example}, seconds from {low:g} to {high:g} for each"

    def hook(value: object) -> tuple[tuple[str, float], ...]:
        table = _plain(value, dict, expected)
        for name, seconds in table.items():
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise Invalid(f"{expected} ({name})", value)
            if not low <= seconds <= high:
                raise Invalid(f"{expected} ({name})", value)
        return tuple((str(n), float(s)) for n, s in sorted(table.items()))

    return Kind(expected, hook)


def table(cls: type) -> Kind:
    """A table of keys of its own (``[daemon]``, or ``client = {...}`` inside one)."""
    return Kind(
        "a table", lambda value: structure(_plain(value, dict, "a table", deep=False), cls), (cls,)
    )


def tables(cls: Any, header: str) -> Kind:
    """A list of tables (``[[terminal]]``, ``[[http.client]]``), each one ``cls`` (a record
    or a union with a ``tagged`` hook), as a tuple."""
    expected = f"{header} tables"

    def hook(value: object) -> tuple[Any, ...]:
        items = _plain(value, list, expected, deep=False)
        out = []
        for i, item in enumerate(items):
            try:
                out.append(structure(_plain(item, dict, "a table", deep=False), cls))
            except Exception as exc:
                raise _Item(i, exc) from None
        return tuple(out)

    return Kind(expected, hook, get_args(cls) or (cls,), array=True)


def tagged(tag: str, classes: Mapping[str, type]) -> Callable[[Mapping[str, Any]], Any]:
    """The structure hook of a union of records told apart by the key ``tag`` (each
    record declares it with its one value): the record its value names, or an error."""
    expected = "one of " + _quoted(tuple(classes))
    for value, cls in classes.items():
        _TAGGED[cls] = (tag, value, classes)

    def hook(value: Mapping[str, Any]) -> Any:
        got = value.get(tag)
        cls = classes.get(got) if isinstance(got, str) else None
        if cls is None:
            raise Invalid(expected, got, within=(tag,))
        return structure(value, cls)

    return hook


def unique(names: Iterable[str], table: str, key: str, what: str) -> None:
    """Each of a list of tables' ``key`` once (``[[terminal]]`` ids, ``[[http.client]]``
    names): the first repeat is ``Invalid``, naming that table's key."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            twice = f"a name no other {what} has ({name!r} is used twice)"
            raise Invalid(twice, within=(table, i, key))
        seen.add(name)


# -- structuring and its errors --------------------------------------------------------------


# A record of a tagged union: (the tag's key, its value, every record of the union).
_TAGGED: Final[dict[type, tuple[str, str, Mapping[str, type]]]] = {}


class _Item(Exception):
    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(index)
        self.index, self.error = index, error


_converter: Final = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)


def _record_hook(cls: type) -> Hook:
    """Each key through its kind's hook; then the record's own ``check`` of keys together
    (it raises ``Invalid`` naming the key), if it has one."""
    overrides = {
        field.name: override(rename=d.name, struct_hook=_kind_hook(d.kind))
        for _, field, d in keys(cls)
    }
    made: Hook = make_dict_structure_fn(cls, _converter, **cast(Any, overrides))
    check = getattr(cls, "check", None)
    if check is None:
        return made

    def checked(value: Any, type_: Any) -> Any:
        record = made(value, type_)
        check(record)
        return record

    return checked


def _kind_hook(kind: Kind) -> Hook:
    return lambda value, _type: kind.hook(value)


_converter.register_structure_hook_factory(attrs.has, _record_hook)


def register_union(union: Any, hook: Callable[[Mapping[str, Any]], Any]) -> None:
    _converter.register_structure_hook_func(lambda t: t == union, lambda v, _t: hook(v))


def structure(data: Mapping[str, Any], cls: Any) -> Any:
    return _converter.structure(data, cls)


def explain(exc: BaseException, top: type) -> str:
    """``exc`` of ``structure(data, top)`` as "KEY must be EXPECTED (got VALUE)"."""
    path: list[str | int] = []
    owner: type = top  # the record that holds the last key of path
    while isinstance(exc, ClassValidationError | _Item):
        if isinstance(exc, _Item):
            path.append(exc.index)
            exc = exc.error
            continue
        owner = exc.cl
        exc = sorted(exc.exceptions, key=lambda e: not isinstance(e, ForbiddenExtraKeysError))[0]
        name = _noted_name(exc)
        if name is not None:
            path.append(_toml_name(owner, name))
    where = _where(path, top)
    if isinstance(exc, ForbiddenExtraKeysError):
        extra = sorted(exc.extra_fields)[0]
        return f"unknown key {where + '.' if where else ''}{extra}" + _unknown_why(owner, extra)
    if isinstance(exc, Invalid):
        got = "" if exc.got is _NO_VALUE else f" (got {exc.got!r})"
        return f"{_where([*path, *exc.within], top)} must be {exc.expected}{got}"
    if isinstance(exc, KeyError):
        return f"{where} must be set{required_why(owner, path[-1])}"
    return f"{where}: {exc}"


def _unknown_why(owner: type, name: str) -> str:
    """A key of another record of the union (``device`` in a LAN terminal) says whose."""
    tag, value, classes = _TAGGED.get(owner, ("", "", {}))
    for other, cls in classes.items():
        if any(toml == name for toml, _, _ in keys(cls)):
            return f' (a key of {tag} = "{other}" only, not of {tag} = "{value}")'
    return " (check the spelling; etc/ecrd.toml lists every option)"


def _noted_name(exc: BaseException) -> str | None:
    for note in getattr(exc, "__notes__", []):
        name = getattr(note, "name", None)
        if isinstance(name, str):
            return name
    return None


def _toml_name(record: type, attribute: str) -> str:
    field = getattr(attrs.fields(record), attribute)
    d = decl(field)
    return (d.name if d is not None else None) or attribute


def tag_of(record: type) -> tuple[str, str] | None:
    """(key, value) that selects ``record`` in its tagged union, if it is in one."""
    found = _TAGGED.get(record)
    return None if found is None else found[:2]


def required_why(record: type, name: object) -> str:
    """What "must be set" adds: the tag whose own key it is, and the key's doc."""
    tag, value, _ = _TAGGED.get(record, ("", "", {}))
    for toml, field, d in keys(record):
        if toml == name:
            inherited = getattr(field, "inherited", False)  # a key of the union's base
            own = f' for {tag} = "{value}"' if tag and not inherited else ""
            return f"{own} ({d.doc})"
    return ""


def _where(path: list[str | int], top: type) -> str:
    """``["daemon", "socket"]`` as ``[daemon].socket``; ``["terminal", 2]``: ``terminal[2]``."""
    out = ""
    for i, part in enumerate(path):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 0 and _is_table(top, part):
            out = f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _is_table(top: type, name: str) -> bool:
    return any(t == name and not d.kind.array and d.kind.records for t, _, d in keys(top))
