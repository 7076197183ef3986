"""What a terminal's reply proves about one payment (protocol.md §8, design.md §3).

A reply settles a payment only when it proves the outcome of *that* payment. The rules, in
the order ``money_verdict`` and ``status_verdict`` apply them:

* Only ``status`` ``Success`` or ``Failed`` is an outcome; any other status ("Pending", a
  new word, none) proves nothing (``odd_status``).
* Every field the reply carries that names the request must match what was sent:
  ``referenceID``, ``amount`` (as a decimal), ``currency`` and ``transactionType``, and
  the ``requestID`` where the terminal echoes it. A field that is absent or empty is not
  carried. A reply that contradicts the request proves nothing, whatever its status
  (``reply_mismatch``): a ``Success`` for another order, another amount or another kind of
  transaction is not this sale's success.
* A ``Failed`` is proof of "not charged" only when it is about this attempt. An
  ``errorCode`` that says the reference was already used (``DUPLICATE_REFERENCE``: the
  first attempt may well have been charged) proves nothing (``inconclusive_error``).
  ``INCONCLUSIVE_CODES`` is the one list of such codes; a terminal's configuration
  extends it.
* A status query's answer must in addition *name* the transaction (its ``referenceID``
  present and equal) and *describe* it (``transactionType`` present); an error about the
  query itself ("unsupported", "not found") proves nothing about the payment.

Pure: dicts in, a ``Verdict`` out. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

import attrs

State = Literal["succeeded", "failed", "unknown"]

# The wire names of the actions that move money (protocol.md §8): the one definition.
MONEY_ACTIONS: Final = ("Sale", "PreAuth", "Refund", "Void")
# The socket API's method for each (docs/api.md): "sale" -> "Sale".
MONEY_METHODS: Final = {action.lower(): action for action in MONEY_ACTIONS}

# A Failed with one of these codes says nothing about whether the customer paid.
INCONCLUSIVE_CODES: Final = frozenset({"DUPLICATE_REFERENCE"})
# Errors about a status query itself, not about the transaction it asks for.
QUERY_ERROR_CODES: Final = frozenset(
    {"UNSUPPORTED_ACTION", "NOT_FOUND", "INVALID_REQUEST", "NOT_PAIRED", "BUSY", "DECRYPT_FAILED"}
)

_OUTCOMES: Final[Mapping[str, State]] = {"success": "succeeded", "failed": "failed"}


@attrs.frozen
class Expected:
    """What was sent: the fields a reply about this payment may not contradict."""

    reference_id: str
    action: str
    amount: str | None = None
    currency: str | None = None
    request_id: str | None = None


@attrs.frozen
class Verdict:
    state: State
    # Why an answer proves nothing: odd_status, reply_mismatch, inconclusive_error,
    # not_this_transaction. None when it settles the payment.
    cause: str | None = None
    message: str = ""

    @property
    def settles(self) -> bool:
        return self.state != "unknown"


def _carried(body: Mapping[str, Any], key: str) -> Any:
    value = body.get(key)
    return None if value is None or value == "" else value


def _same_amount(sent: str, got: object) -> bool:
    try:
        return isinstance(got, str) and Decimal(got) == Decimal(sent)
    except InvalidOperation:
        return False


def contradictions(expected: Expected, body: Mapping[str, Any]) -> list[str]:
    """The fields of ``body`` that contradict ``expected``, as short sentences."""
    found = []
    checks: tuple[tuple[str, str | None], ...] = (
        ("referenceID", expected.reference_id),
        ("currency", expected.currency),
        ("requestID", expected.request_id),
    )
    for key, sent in checks:
        got = _carried(body, key)
        if sent is not None and got is not None and got != sent:
            found.append(f"{key} {got!r} is not {sent!r}")
    amount = _carried(body, "amount")
    if (
        expected.amount is not None
        and amount is not None
        and not _same_amount(expected.amount, amount)
    ):
        found.append(f"amount {amount!r} is not {expected.amount!r}")
    kind = _carried(body, "transactionType")
    if kind is not None and str(kind).casefold() != expected.action.casefold():
        found.append(f"transactionType {kind!r} is not {expected.action!r}")
    return found


def _status(body: Mapping[str, Any]) -> State:
    return _OUTCOMES.get(str(body.get("status", "")).strip().lower(), "unknown")


def money_verdict(
    expected: Expected, body: Mapping[str, Any], inconclusive: Collection[str] = ()
) -> Verdict:
    """What the reply to a money request proves (see the module docstring)."""
    wrong = contradictions(expected, body)
    if wrong:
        why = "the reply contradicts the request: " + "; ".join(wrong)
        return Verdict("unknown", "reply_mismatch", why)
    state = _status(body)
    if state == "unknown":
        return Verdict("unknown", "odd_status", f"status {body.get('status')!r} is not an outcome")
    code = str(body.get("errorCode") or "")
    if state == "failed" and code in INCONCLUSIVE_CODES.union(inconclusive):
        return Verdict(
            "unknown",
            "inconclusive_error",
            f"errorCode {code!r} does not say whether the customer paid",
        )
    return Verdict(state)


def status_verdict(
    expected: Expected, body: Mapping[str, Any], inconclusive: Collection[str] = ()
) -> Verdict:
    """What an answer to the status action proves about the payment it asks for."""
    if _carried(body, "referenceID") != expected.reference_id:
        return Verdict("unknown", "not_this_transaction", "the answer does not name this reference")
    if _carried(body, "transactionType") is None:
        return Verdict(
            "unknown", "not_this_transaction", "the answer does not describe a transaction"
        )
    code = str(body.get("errorCode") or "")
    if code in QUERY_ERROR_CODES:
        return Verdict("unknown", "not_this_transaction", f"the query failed: {code}")
    return money_verdict(expected, body, inconclusive)
