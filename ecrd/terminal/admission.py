"""A money command as a value, and whether it may start (design.md §3 rules 2, 4, 5).

``PaymentRequest`` is built once, at the API edge, and carried unchanged to the journal
(``params``), the wire (``body``, protocol.md §8) and the reply check (``expected``).

``admit`` is the admission rule as a pure function of what is known at one instant — the
stored record for the reference, the terminal's unresolved records, whether it is busy —
and returns one decision. ``Payments`` gathers those facts, applies the decision, and
loops on ``Wait``; nothing here awaits, so the rule is tested without trio.

Rule order (the first that applies wins):

1. the reference is known (rule 2): the same request → ``Replay`` its record; another →
   ``Refuse`` ``duplicate_reference_mismatch``;
2. ecrd is stopping → ``shutting_down``; the terminal has no usable pairing → ``not_paired``;
3. the terminal has transactions of unknown outcome (rule 4) → ``unresolved_transaction``;
4. the terminal is idle → ``Go``; busy (rule 5) → ``Wait`` if the caller asked to wait, else
   ``terminal_busy``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from ecrd import errors
from ecrd.protocol.outcome import Expected
from ecrd.store.journal import TxRecord, same_params

# API field → wire field of the request body (protocol.md §8), in the body's order.
WIRE_NAMES: Final = {
    "original_reference_id": "originalReferenceID",
    "currency": "currency",
    "amount": "amount",
    "customer_order_id": "customerOrderID",
    "payment_method": "paymentMethod",
    "print": "print",
}


@attrs.frozen
class PaymentRequest:
    terminal: str
    action: str  # the wire name: Sale, PreAuth, Refund, Void
    reference_id: str
    amount: str | None = None
    currency: str | None = None
    original_reference_id: str | None = None
    customer_order_id: str | None = None
    payment_method: str | None = None
    print: str | None = None
    extra: Mapping[str, Any] | None = None
    # True: the original was taken on another box, so the journal check is skipped
    # (refunds.py). Never on the wire.
    original_elsewhere: bool | None = None

    @classmethod
    def of(cls, record: TxRecord) -> PaymentRequest:
        """The request a journal record was made from."""
        return cls(record.terminal, record.action, record.reference_id, **record.params)

    def params(self) -> dict[str, Any]:
        """The parameters as the journal keeps and compares them (rule 2)."""
        fields = attrs.asdict(self, recurse=False)
        for key in ("terminal", "action", "reference_id"):
            del fields[key]
        return {k: dict(v) if k == "extra" else v for k, v in fields.items() if v is not None}

    def body(self) -> dict[str, Any]:
        """The request body on the wire (protocol.md §8)."""
        body: dict[str, Any] = {"referenceID": self.reference_id}
        for key, wire in WIRE_NAMES.items():
            value = getattr(self, key)
            if value is not None:
                body[wire] = value
        for key, value in (self.extra or {}).items():
            body.setdefault(key, value)  # callers' extra fields never override typed ones
        return body

    def expected(self, request_id: str | None = None) -> Expected:
        return Expected(
            reference_id=self.reference_id,
            action=self.action,
            amount=self.amount,
            currency=self.currency,
            request_id=request_id,
        )

    def same_as(self, other: PaymentRequest) -> bool:
        return (
            (self.terminal, self.action) == (other.terminal, other.action)
            and same_params(self.params(), other.params())
        )  # fmt: skip


def expected_of(record: TxRecord) -> Expected:
    """What a reply about ``record`` may not contradict (protocol/outcome.py)."""
    return PaymentRequest.of(record).expected(record.request_id)


@attrs.frozen
class Replay:
    record: TxRecord


@attrs.frozen
class Refuse:
    error: errors.ApiError


@attrs.frozen
class Wait:
    pass


@attrs.frozen
class Go:
    pass


Decision = Replay | Refuse | Wait | Go


@attrs.frozen
class Facts:
    """What admission looks at, read at one instant."""

    stored: TxRecord | None  # the journal's record for this reference
    blocking: Sequence[TxRecord]  # the terminal's unknown (or unjournaled pending) records
    busy_with: str | None  # the reference the terminal is busy with
    paired: bool
    pairing_unconfirmed: bool = False
    accepting: bool = True
    block_on_unknown: bool = True


def mismatch(
    request: PaymentRequest, earlier: TxRecord | PaymentRequest
) -> errors.DuplicateReferenceMismatch:
    """Rule 2's refusal: ``earlier`` (journaled, or still being journaled) used the
    reference for something else."""
    if isinstance(earlier, TxRecord):
        transaction = earlier.to_api()
    else:
        transaction = {**attrs.asdict(earlier, recurse=False), "state": "pending"}
    return errors.DuplicateReferenceMismatch(
        f"reference_id {request.reference_id!r} was already used for a different "
        f"request ({earlier.action} on {earlier.terminal}); use a new reference_id",
        transaction=transaction,
    )


def admit(request: PaymentRequest, facts: Facts, *, wait: bool) -> Decision:
    """The admission rule (see the module docstring)."""
    tid = request.terminal
    if facts.stored is not None:
        if request.same_as(PaymentRequest.of(facts.stored)):
            return Replay(facts.stored)
        return Refuse(mismatch(request, facts.stored))
    if not facts.accepting:
        return Refuse(errors.ShuttingDown("ecrd is stopping and takes no new payments"))
    if not facts.paired:
        return Refuse(errors.NotPaired(not_paired_message(tid, facts.pairing_unconfirmed)))
    if facts.blocking and facts.block_on_unknown:
        refs = [r.reference_id for r in facts.blocking]
        return Refuse(
            errors.UnresolvedTransaction(
                f"terminal {tid!r} has {len(refs)} transaction(s) of unknown outcome "
                f"({', '.join(refs)}); settle with `ecrctl resolve REF succeeded|failed` first",
                reference_ids=refs,
            )
        )
    if facts.busy_with is None:
        return Go()
    if wait:
        return Wait()
    return Refuse(
        errors.TerminalBusy(
            f"terminal {tid!r} is busy with {facts.busy_with}", busy_with=facts.busy_with
        )
    )


def not_paired_message(terminal_id: str, unconfirmed: bool) -> str:
    if unconfirmed:
        return (
            f"terminal {terminal_id!r} is finishing an interrupted pairing (asking it which "
            "PIN it uses); try again in a moment, or pair it again"
        )
    return (
        f"terminal {terminal_id!r} is not paired: run `ecrctl pair {terminal_id} CODE` with "
        "the code the terminal shows"
    )
