"""What ecrd learns about a payment once it is journaled, and what each answer proves.

Evidence is every fact that may change a payment's state: the terminal's reply in the
exchange (``Reply``), its reply after the exchange gave up (``LateReply``), its answer to
the status action (``StatusAnswer``), the request provably never sent (``NotSent``) or
maybe delivered with no usable answer (``NoAnswer``), ecrd stopping while it was in flight
(``Stopped``), and a person's word (``Resolved``). ``settlement.settle`` turns (record,
evidence) into the record's next state; this module says what an *answer* proves
(``classify``), by what proves right, never by a list of what is wrong:

* An answer is an outcome only with status ``Success`` or ``Failed``; any other status
  ("Pending", a new word, none) proves nothing (``odd_status``).
* Every field it carries that names the request must match what was sent: ``referenceID``,
  ``currency``, ``transactionType``, the envelope's action, the ``requestID`` where echoed,
  and the ``amount`` as a decimal — which may differ only as the terminal's
  ``amount_changes`` allow: ``tip`` (more, a sale), ``partial`` (less, a sale or preauth),
  never another currency (``reply_mismatch``). A field that is absent or empty is not
  carried.
* A reply's ``Failed`` is the terminal declining this very request, so it proves "not
  charged" — except a code that says the reference was used before
  (``DUPLICATE_REFERENCE``, plus the terminal's ``inconclusive_codes``: the first attempt
  may well have been charged), which proves nothing (``inconclusive_error``).
* A status answer must in addition *name* the payment (``referenceID`` present and equal)
  and *describe* it (``transactionType`` present). Its ``Success`` proves "charged"; its
  ``Failed`` proves "not charged" only when its ``errorCode`` is on the terminal's
  ``not_charged_codes`` allowlist (empty by default; compared case-insensitively): "not
  found", "unsupported" or a firmware's own words prove nothing (``not_proven``).

A verdict also carries the answer's ``claim`` — what it says, proven or not — so that an
answer contradicting a settled record is recognised as a dispute (``settlement.py``).

Pure: values in, a ``Verdict`` out. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

import attrs

State = Literal["succeeded", "failed", "unknown"]
Outcome = Literal["succeeded", "failed"]

# A Failed reply with one of these codes says nothing about whether the customer paid.
INCONCLUSIVE_CODES: Final = frozenset({"DUPLICATE_REFERENCE"})
# Which kinds of payment each amount change (config.AMOUNT_CHANGES) may happen to.
_CHANGES_FOR: Final = {"tip": ("Sale",), "partial": ("Sale", "PreAuth")}
_OUTCOMES: Final[Mapping[str, Outcome]] = {"success": "succeeded", "failed": "failed"}


# -- the evidence ---------------------------------------------------------------------------


@attrs.frozen
class Reply:
    """The terminal's answer to the request, in its exchange."""

    action: str  # the reply envelope's action
    body: Mapping[str, Any]


@attrs.frozen
class LateReply:
    """The terminal's answer to the request, after its exchange gave up (a serial line)."""

    action: str
    body: Mapping[str, Any]


@attrs.frozen
class StatusAnswer:
    """The terminal's answer to the status action about this payment (protocol.md §8)."""

    action: str  # the status action asked
    body: Mapping[str, Any]


@attrs.frozen
class NotSent:
    """The request provably never left ecrd (design.md §3 rule 3)."""

    reason: str
    message: str


@attrs.frozen
class NoAnswer:
    """The request may have reached the terminal, and no usable answer came back."""

    reason: str
    message: str


@attrs.frozen
class Stopped:
    """ecrd stopped while the payment was in flight (shutdown, or found at start)."""

    reason: str  # daemon_restarted | shutting_down
    message: str


@attrs.frozen
class Resolved:
    """A person checked the terminal and says what happened."""

    outcome: Outcome
    note: str
    who: str


Answer = Reply | LateReply | StatusAnswer
Evidence = Reply | LateReply | StatusAnswer | NotSent | NoAnswer | Stopped | Resolved


def kind_of(evidence: Evidence) -> str:
    """The evidence's name in the journal's audit trail: ``late_reply``, ``resolved``..."""
    name = type(evidence).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def to_obj(evidence: Evidence) -> dict[str, Any]:
    """The evidence as the audit trail keeps it (JSON)."""
    return {"kind": kind_of(evidence), **attrs.asdict(evidence)}


# -- what an answer proves --------------------------------------------------------------------


@attrs.frozen
class Expected:
    """What was sent: the fields an answer about this payment may not contradict."""

    reference_id: str
    action: str
    amount: str | None = None
    currency: str | None = None
    request_id: str | None = None


@attrs.frozen
class Policy:
    """A terminal's settings that bear on what its answers prove (etc/ecrd.toml)."""

    inconclusive_codes: frozenset[str] = frozenset()  # upper case
    not_charged_codes: frozenset[str] = frozenset()  # upper case
    amount_changes: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        inconclusive: Collection[str] = (),
        not_charged: Collection[str] = (),
        amount_changes: Collection[str] = (),
    ) -> Policy:
        return cls(
            frozenset(c.strip().upper() for c in inconclusive),
            frozenset(c.strip().upper() for c in not_charged),
            frozenset(amount_changes),
        )


@attrs.frozen
class Verdict:
    state: State  # what the answer proves
    # Why it proves nothing: odd_status, reply_mismatch, inconclusive_error,
    # not_this_transaction, not_proven. None when it settles the payment.
    cause: str | None = None
    message: str = ""
    claim: Outcome | None = None  # what it says, proven or not
    approved_amount: str | None = None  # where an allowed amount change happened

    @property
    def settles(self) -> bool:
        return self.state != "unknown"


def _carried(body: Mapping[str, Any], key: str) -> Any:
    value = body.get(key)
    return None if value is None or value == "" else value


def _decimal(value: object) -> Decimal | None:
    """A finite decimal from a string, or None."""
    try:
        number = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        return None
    return number if number is not None and number.is_finite() else None


def _amount(expected: Expected, body: Mapping[str, Any], policy: Policy) -> tuple[str, str | None]:
    """(what is wrong with the answer's amount or "", the approved amount if it changed)."""
    got, sent = _carried(body, "amount"), expected.amount
    if sent is None or got is None:
        return "", None
    approved, asked = _decimal(got), Decimal(sent)
    if approved == asked:
        return "", None
    allowed = {c for c in policy.amount_changes if expected.action in _CHANGES_FOR.get(c, ())}
    wire = approved is not None and approved.as_tuple().exponent == -2  # "12.50", like ours
    tip = "tip" in allowed and approved is not None and approved > asked
    partial = "partial" in allowed and approved is not None and 0 < approved < asked
    if wire and (tip or partial):
        return "", str(approved)
    return f"amount {got!r} is not {sent!r}", None


def contradictions(
    expected: Expected, body: Mapping[str, Any], policy: Policy = Policy()
) -> tuple[list[str], str | None]:
    """The fields of ``body`` that contradict ``expected``, as short sentences, and the
    approved amount where an allowed amount change happened."""
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
    wrong_amount, approved = _amount(expected, body, policy)
    if wrong_amount:
        found.append(wrong_amount)
    kind = _carried(body, "transactionType")
    if kind is not None and str(kind).casefold() != expected.action.casefold():
        found.append(f"transactionType {kind!r} is not {expected.action!r}")
    return found, approved


def _status(body: Mapping[str, Any]) -> Outcome | None:
    return _OUTCOMES.get(str(body.get("status", "")).strip().lower())


def _code(body: Mapping[str, Any]) -> str:
    return str(body.get("errorCode") or "").strip().upper()


def classify(expected: Expected, answer: Answer, policy: Policy = Policy()) -> Verdict:
    """What ``answer`` proves about the payment ``expected`` describes (module docstring)."""
    body = answer.body
    claim = _status(body)
    if isinstance(answer, StatusAnswer):
        named = _carried(body, "referenceID") == expected.reference_id
        if not named or _carried(body, "transactionType") is None:
            why = "does not name this reference" if not named else "describes no transaction"
            return Verdict("unknown", "not_this_transaction", f"the answer {why}")
        if claim == "failed" and _code(body) not in policy.not_charged_codes:
            why = f"a Failed status answer with errorCode {_code(body)!r} is not proof of "
            return Verdict("unknown", "not_proven", why + "no charge (not_charged_codes)")
    elif answer.action != expected.action:
        why = f"the reply is for action {answer.action!r}, not {expected.action!r}"
        return Verdict("unknown", "reply_mismatch", why, claim=claim)
    elif claim == "failed" and _code(body) in INCONCLUSIVE_CODES | policy.inconclusive_codes:
        why = f"errorCode {_code(body)!r} does not say whether the customer paid"
        return Verdict("unknown", "inconclusive_error", why)
    wrong, approved = contradictions(expected, body, policy)
    if wrong:
        why = "the reply contradicts the request: " + "; ".join(wrong)
        return Verdict("unknown", "reply_mismatch", why, claim=claim)
    if claim is None:
        why = f"status {body.get('status')!r} is not an outcome"
        return Verdict("unknown", "odd_status", why)
    return Verdict(claim, claim=claim, approved_amount=approved if claim == "succeeded" else None)
