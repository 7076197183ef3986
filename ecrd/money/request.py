"""A money command as a value: what the caller asked for, built once at the API edge.

``PaymentRequest`` is carried unchanged to the journal (``params``: what rule 2 compares),
to the wire (``body``, protocol.md §8) and to the reply check (``expected``). A journal
record gives back the request it was made from (``of``), so a payment's expectations are
defined once, by what was journaled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from ecrd import errors
from ecrd.money.evidence import Expected
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
    # The caller says the original was taken on another box. A local original is checked
    # all the same (refunds.py); only an original the journal does not hold is then left
    # to the terminal. Never on the wire.
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
    """What an answer about ``record`` may not contradict (evidence.py)."""
    return PaymentRequest.of(record).expected(record.request_id)


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
