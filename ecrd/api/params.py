"""The params of a socket API call: declared once per method (``Param``, ``MethodSpec``;
the declarations are ``api/declarations.py``), checked against that declaration by one
validator (``MethodSpec.validate``, run by ``server.dispatch`` before the method), and
described by it as JSON Schema (``Param.schema``, for ``api/openrpc.py``).

Invariants:

* What the schema says is what the validator enforces: both are read off the same
  ``Param`` fields, next to each other in this module (a test walks every declared
  param's bounds through both).
* An unknown parameter is refused, so a typo never drops a field silently; a missing
  required one is refused; ``null`` is the same as absent.
* No text parameter may hold a control character (``no_controls``), so nothing a client
  sends can forge a log line or reach a terminal; ``InvalidParams`` names the field (a
  path inside an object: ``extra.lines[2]``) and what was expected.
* What depends on the configuration (the terminal exists, the currency is allowed on this
  box) is checked by the method, after the declaration.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import attrs

from ecrd import errors
from ecrd.api.service import Service
from ecrd.protocol.envelope import (
    AMOUNT_PATTERN,
    CURRENCY_PATTERN,
    MAX_AMOUNT,
    AmountError,
    check_currency,
    parse_amount,
)
from ecrd.store.journal import parse_time
from ecrd.terminal.terminal import Terminal
from ecrd.text import first_control

TYPES: Final = ("string", "integer", "number", "boolean", "object", "array", "code")


def _amount(value: Any) -> str:
    return str(parse_amount(value))


def _time(value: str) -> str:
    return parse_time(value)


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be absolute (ecrd writes it)")
    return value


# format -> (its check: the value or ValueError, the JSON Schema it adds, checks the type itself)
FORMATS: Final[dict[str, tuple[Callable[[Any], Any], dict[str, Any], bool]]] = {
    "amount": (_amount, {
        "pattern": f"^{AMOUNT_PATTERN}$",
        "description": f"a decimal string with two decimals, above 0.00, at most {MAX_AMOUNT}",
    }, True),
    "currency": (check_currency, {"pattern": f"^{CURRENCY_PATTERN}$"}, True),
    "date-time": (_time, {"format": "date-time"}, False),
    "absolute-path": (_absolute, {"pattern": "^/"}, False),
}  # fmt: skip


@attrs.frozen
class Param:
    """One parameter of a method. ``type`` is its JSON type (``code``: a pairing code, as
    text or as the QR code's object); ``max_len`` bounds a string, ``choices`` a string's
    values or an array's items, ``low``/``high`` a number, ``max_bytes`` an object as
    compact UTF-8 JSON; ``format`` names a check of ``FORMATS``."""

    name: str
    type: str = attrs.field(validator=attrs.validators.in_(TYPES))
    doc: str
    required: bool = False
    max_len: int = 128
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    max_bytes: int | None = None
    format: str | None = None

    def check(self, value: Any) -> Any:
        """``value`` (not None) as the method gets it, or ``InvalidParams``."""
        try:
            return CHECKS[self.type](self, value)
        except (AmountError, ValueError, OverflowError) as exc:
            # OverflowError: a valid time out of range once in UTC.
            raise errors.InvalidParams(_why(self, exc), field=self.name) from None

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the value: what ``check`` accepts (less what only words can
        say: ``describe``)."""
        schema: dict[str, Any]
        if self.type == "code":
            schema = {"oneOf": [{"type": "string", "minLength": 1}, {"type": "object"}]}
        elif self.type == "string" and self.choices:
            schema = {"type": "string", "enum": list(self.choices)}
        elif self.type == "string":
            schema = {"type": "string", "minLength": 1, "maxLength": self.max_len}
        elif self.type in ("integer", "number"):
            schema = {"type": self.type, "minimum": _plain(self.low), "maximum": _plain(self.high)}
        elif self.type == "array":
            schema = {"type": "array", "items": {"type": "string", "enum": list(self.choices)}}
        else:
            schema = {"type": self.type}
        if self.format is not None:
            _, extra, own = FORMATS[self.format]
            if own:  # its own rule replaces the generic bounds
                schema = {"type": "string"}
            schema.update({k: v for k, v in extra.items() if k != "description"})
        return schema

    def describe(self) -> str:
        """``doc``, and the rules the schema cannot state."""
        more = [FORMATS[self.format][1].get("description")] if self.format else []
        if self.max_bytes is not None:
            more.append(f"at most {self.max_bytes} bytes as compact UTF-8 JSON")
        return "; ".join([self.doc, *(m for m in more if m)])


def _plain(number: float | None) -> float | None:
    """300.0 as 300: the document says what a person would."""
    return int(number) if number is not None and number == int(number) else number


def _why(param: Param, exc: Exception) -> str:
    if isinstance(exc, AmountError):
        return str(exc)
    if param.format == "date-time":
        return f"{param.name} must be an RFC 3339 time with offset, years 0001-9999 in UTC: {exc}"
    return f"{param.name} {exc}"


def _string(param: Param, value: Any) -> Any:
    if param.format is not None and FORMATS[param.format][2]:
        return FORMATS[param.format][0](value)
    if not isinstance(value, str) or not value or len(value) > param.max_len:
        raise errors.InvalidParams(
            f"{param.name} must be a non-empty string of at most {param.max_len} characters",
            field=param.name,
        )
    no_controls(value, param.name)
    if param.choices and value not in param.choices:
        raise errors.InvalidParams(
            f"{param.name} must be one of {', '.join(param.choices)}", field=param.name
        )
    return value if param.format is None else FORMATS[param.format][0](value)


def _number(param: Param, value: Any) -> Any:
    assert param.low is not None and param.high is not None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not param.low <= value <= param.high
    ):
        raise errors.InvalidParams(
            f"{param.name} must be a number from {param.low:g} to {param.high:g}",
            field=param.name,
        )
    if param.type == "integer":
        if value != int(value):
            raise errors.InvalidParams(f"{param.name} must be an integer", field=param.name)
        return int(value)
    return float(value)


def _boolean(param: Param, value: Any) -> Any:
    if not isinstance(value, bool):
        raise errors.InvalidParams(f"{param.name} must be true or false", field=param.name)
    return value


def _object(param: Param, value: Any) -> Any:
    if not isinstance(value, dict):
        raise errors.InvalidParams(f"{param.name} must be a JSON object", field=param.name)
    no_controls(value, param.name)
    if param.max_bytes is not None and len(compact(value)) > param.max_bytes:
        raise errors.InvalidParams(
            f"{param.name} must be at most {param.max_bytes} bytes as compact JSON",
            field=param.name,
        )
    return value


def _array(param: Param, value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.InvalidParams(f"{param.name} must be a list of strings", field=param.name)
    unknown = sorted(set(value) - set(param.choices))
    if unknown:
        raise errors.InvalidParams(
            f"unknown {param.name.rstrip('s')} {unknown[0]!r}; {param.name}: "
            + ", ".join(param.choices),
            field=param.name,
        )
    return value


def _code(param: Param, value: Any) -> Any:
    if not isinstance(value, str | dict) or value == "":
        raise errors.InvalidParams(
            f"{param.name} must be the pairing code or the QR JSON", field=param.name
        )
    no_controls(value, param.name)
    return value


CHECKS: Final[dict[str, Callable[[Param, Any], Any]]] = {
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": _boolean,
    "object": _object,
    "array": _array,
    "code": _code,
}


@attrs.frozen
class MethodSpec:
    """A method's declaration: its params, in the order they are checked, and its result
    (a JSON Schema; ``$ref`` names one of ``declarations.SCHEMAS``)."""

    name: str
    summary: str
    params: tuple[Param, ...]
    result: dict[str, Any]

    def validate(self, raw: dict[str, Any]) -> Params:
        names = tuple(p.name for p in self.params)
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise errors.InvalidParams(
                f"unknown parameter {unknown[0]!r}; this method takes: "
                + (", ".join(names) or "nothing"),
                field=unknown[0],
            )
        values: dict[str, Any] = {}
        for param in self.params:
            value = raw.get(param.name)
            if value is None and param.required:
                raise errors.InvalidParams(f"{param.name} is required", field=param.name)
            values[param.name] = None if value is None else param.check(value)
        return Params(values)


class Params:
    """A call's params once its declaration passed them: every declared name, None where
    absent. A name the declaration lacks is a bug (``KeyError``: ``internal_error``)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def terminal(self, daemon: Service) -> Terminal:
        tid = self.values["terminal"]
        term = daemon.terminals.get(tid)
        if term is None:
            raise errors.TerminalNotFound(
                f"no terminal {tid!r}; configured: {', '.join(daemon.terminals) or 'none'}",
                terminal=tid,
            )
        return term


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        errors="surrogatepass"
    )


def no_controls(value: Any, name: str) -> None:
    """Text with a control character never reaches a terminal, the journal or a log."""
    where = first_control(value, name)
    if where is not None:
        raise errors.InvalidParams(
            f"{where} must not contain control characters (newline, tab, ESC...)", field=where
        )
