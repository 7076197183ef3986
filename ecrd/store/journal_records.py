"""What the journal holds: records, audit events, their errors, and how a record is a row.

Invariants:

* ``TxRecord`` is the one definition of the ``transactions`` columns: ``COLUMNS`` is its
  field names, in order, and every SELECT, INSERT and row conversion is derived from it.
  (The ``CREATE TABLE`` in ``journal_schema.MIGRATIONS`` is released history and is not
  derived; a new column is a new migration and a new field.)
* ``params``, ``reply`` and ``error`` are stored as JSON objects; ``params`` as its
  canonical text (``canonical_params``), so the stored text of one request is always the
  same. Every other column holds its value as it is.
* A record handed out never shares a mutable dict with the journal: ``to_api`` copies.
* Timestamps are RFC 3339 UTC with milliseconds (``2026-11-26T04:50:42.123Z``): fixed
  width, so they sort as text. A naive datetime is refused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from ecrd import errors
from ecrd.protocol import actions

STATES: Final = (
    "pending",
    "succeeded",
    "failed",
    "unknown",
    "resolved_succeeded",
    "resolved_failed",
    "disputed",
)
MONEY_ACTIONS: Final = actions.MONEY_ACTIONS  # the CHECK of journal_schema spells them too
# Who the audit trail names when the daemon itself changes a record.
DAEMON: Final = "ecrd"


# Defined once with the other errors that reach the socket as they are.
JournalError = errors.JournalError
TransactionNotFound = errors.TransactionNotFound


class DuplicateReference(errors.Reasoned):
    """``begin`` was given a reference id the journal already holds."""

    reason = "duplicate_reference"

    def __init__(self, existing: TxRecord) -> None:
        super().__init__(
            f"reference_id {existing.reference_id!r} is already journalled "
            f"({existing.action} on {existing.terminal}, {existing.state})"
        )
        self.existing = existing


class TransitionRefused(errors.InvalidState, ValueError):
    """The record is not in a state from which the requested change is allowed (at the
    socket: ``invalid_state``)."""


def _optional_str(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string or None, not {type(value).__name__}")


# The columns that hold a JSON object; ``params`` is written as its canonical text.
_JSON_COLUMNS: Final = frozenset({"params", "reply", "error"})

# The order in which the socket API shows a record's fields (design.md §2).
_API_ORDER: Final = (
    "reference_id",
    "terminal",
    "action",
    "amount",
    "approved_amount",
    "currency",
    "state",
    "reply",
    "error",
    "note",
    "resolved_by",
    "created_at",
    "updated_at",
    "link",
    "request_id",
    "params",
)


@attrs.frozen
class TxRecord:
    """One money command as the journal knows it, one row of ``transactions``.

    The fields are the table's columns, in order (``COLUMNS``). ``amount`` is a decimal
    string.
    """

    reference_id: str
    terminal: str
    action: str = attrs.field(validator=attrs.validators.in_(MONEY_ACTIONS))
    params: dict[str, Any]
    state: str = attrs.field(validator=attrs.validators.in_(STATES))
    amount: str | None = attrs.field(validator=_optional_str)
    currency: str | None = attrs.field(validator=_optional_str)
    request_id: str | None
    link: str | None
    reply: dict[str, Any] | None
    error: dict[str, Any] | None
    note: str | None
    resolved_by: str | None
    created_at: str
    updated_at: str
    # What the terminal approved where it differs from ``amount`` (a tip, a partial
    # approval: the terminal's ``amount_changes``); None: the amount asked for.
    approved_amount: str | None = attrs.field(default=None, validator=_optional_str)

    def to_api(self) -> dict[str, Any]:
        """The record as the socket API returns it (design.md §2)."""
        return {name: self._api_value(name) for name in _API_ORDER}

    def _api_value(self, name: str) -> Any:
        value = getattr(self, name)
        return _copy(value) if name in _JSON_COLUMNS else value


COLUMNS: Final = tuple(field.name for field in attrs.fields(TxRecord))

# The SQL below formats in column names, which are TxRecord's own field names, never input.
SELECT: Final = f"SELECT {', '.join(COLUMNS)} FROM transactions "  # noqa: S608
INSERT: Final = (
    f"INSERT INTO transactions ({', '.join(COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)


def update_sql(columns: Sequence[str]) -> str:
    """The ``UPDATE`` of ``columns`` in the row with a given reference id (the last ``?``)."""
    assert set(columns) <= set(COLUMNS), columns
    assignments = ", ".join(f"{name} = ?" for name in columns)
    return f"UPDATE transactions SET {assignments} WHERE reference_id = ?"  # noqa: S608


def new_record(**given: Any) -> TxRecord:
    """A record with the ``given`` fields; every other field is None."""
    return TxRecord(**{**dict.fromkeys(COLUMNS), **given})


def record_from_row(row: sqlite3.Row) -> TxRecord:
    """The record a ``SELECT`` row holds."""
    values = {name: _decode(name, row[name]) for name in COLUMNS}
    assert values["params"] is not None
    return TxRecord(**values)


def column_value(record: TxRecord, name: str) -> Any:
    """What the column ``name`` stores for ``record``."""
    value = getattr(record, name)
    if name == "params":
        return canonical_params(value)
    if name in _JSON_COLUMNS:
        return json_text(value)
    return value


def check_error(error: Mapping[str, Any] | None) -> None:
    """Refuse an ``error`` that is not ``{"reason": <str>, "message": ...}``."""
    if error is not None and not isinstance(error.get("reason"), str):
        raise ValueError('error must be {"reason": <str>, "message": ...}')


def _decode(name: str, value: Any) -> Any:
    return json_value(value) if name in _JSON_COLUMNS else value


# The record columns a ``Change`` may set; the others are ``begin``'s (and ``mark_sending``'s).
CHANGEABLE: Final = frozenset({"reply", "error", "note", "resolved_by", "approved_amount"})


@attrs.frozen
class Change:
    """What one piece of evidence does to a record, as ``money/settlement.py`` decides it:
    the next ``state`` (the same one when the evidence is only kept), the columns to set,
    and the audit trail's row (``why``, ``who``, the ``evidence`` itself)."""

    state: str = attrs.field(validator=attrs.validators.in_(STATES))
    why: str
    who: str = DAEMON
    evidence: dict[str, Any] | None = None
    set: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        unknown = set(self.set) - CHANGEABLE
        if unknown:
            raise ValueError(f"a change cannot set {', '.join(sorted(unknown))}")
        check_error(self.set.get("error"))


def canonical_params(params: Mapping[str, Any]) -> str:
    """The one JSON text for a set of request parameters: sorted keys, no spaces.

    Strict on purpose: ``1`` and ``1.0``, ``True`` and ``1`` are different parameters, and
    NaN is refused. Callers drop or fill optional parameters before they get here.
    """
    return json.dumps(
        params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two requests with one reference id are the same request (design.md §3 rule 2)."""
    return canonical_params(a) == canonical_params(b)


def format_time(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC with milliseconds. A naive datetime is refused."""
    if moment.tzinfo is None:
        raise ValueError("a timestamp needs a time zone")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def parse_time(text: str) -> str:
    """Normalise an RFC 3339 timestamp a caller gave into the journal's own format."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"an RFC 3339 timestamp needs an offset or 'Z': {text!r}")
    return format_time(moment)


def _copy(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # A frozen record still holds mutable dicts; callers get a copy they may change.
    return None if value is None else json.loads(json.dumps(value))


def json_text(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False)


def json_value(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    assert isinstance(value, dict), "the journal stores JSON objects only"
    return value


# The same expression as the index transactions_by_original (journal_schema), so it is used.
_ORIGINAL: Final = "json_extract(params, '$.original_reference_id')"
# Formats in only this module's constant expression; the value is a parameter.
_REVERSALS: Final = (
    SELECT + f"WHERE action IN ('Refund', 'Void') AND ({_ORIGINAL} = :original OR "  # noqa: S608
    f"{_ORIGINAL} IN (SELECT reference_id FROM transactions WHERE action IN ('Refund', 'Void') "
    f"AND {_ORIGINAL} = :original)) ORDER BY seq"
)


def select_reversals(conn: sqlite3.Connection, original: str) -> list[TxRecord]:
    """The refunds and voids whose ``original_reference_id`` is ``original``, and the voids
    of those refunds, oldest first."""
    rows = conn.execute(_REVERSALS, {"original": original}).fetchall()
    return [record_from_row(row) for row in rows]
