"""Whether a refund or a void may go out, from what the journal knows of its original.

A pure function of the facts (the request, the original's record, the refunds and voids
already journaled against it), so the rule is tested without trio or a journal.
``Payments`` runs it inside the journal's write transaction that inserts the ``pending``
record (``Journal.begin``'s ``guard``), so two refunds of one original — on one terminal
or two — cannot both pass on the same facts.

1. The original must be in the journal (``original_not_found``).
2. It must be a payment that succeeded (or was resolved succeeded), of a kind that can be
   refunded (a sale or preauth, as the terminal allows) or voided (also a refund), and not
   voided already (``original_not_refundable``).
3. A refund is in the original's currency (``currency_mismatch``).
4. The refunds against it — succeeded, pending and unknown ones, since each may have been
   paid out — plus this one may not exceed its amount; a void reverses it whole, so it
   may not follow a refund (``refund_exceeds_original``, with both amounts in ``data``).

A request with ``original_elsewhere`` (the original was taken on another box) is not
checked here; ``Payments`` logs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from ecrd import errors
from ecrd.store.journal import Guard, TxRecord
from ecrd.terminal.admission import PaymentRequest

# Which kinds of original each may reverse.
REVERSIBLE: Final = {"Refund": ("Sale", "PreAuth"), "Void": ("Sale", "PreAuth", "Refund")}
SUCCEEDED: Final = ("succeeded", "resolved_succeeded")
# A reversal in one of these states may have been paid out: it counts.
COUNTING: Final = ("succeeded", "resolved_succeeded", "pending", "unknown")


def journal_guard(request: PaymentRequest) -> Guard | None:
    """``check`` as ``Journal.begin``'s guard: None when it does not apply."""
    if request.action not in REVERSIBLE or request.original_elsewhere:
        return None

    def guard(original: TxRecord | None, reversals: Sequence[TxRecord]) -> None:
        refusal = check(request, original, reversals)
        if refusal is not None:
            raise refusal

    return guard


def check(
    request: PaymentRequest, original: TxRecord | None, reversals: Sequence[TxRecord]
) -> errors.RefundRefused | None:
    """The refusal for this refund or void, or None when it may go out.

    ``reversals``: the journal's refunds and voids that name the same original (this
    request's own record is not among them: it is not journaled yet).
    """
    orig_ref = request.original_reference_id
    if original is None:
        return errors.RefundRefused(
            f"no transaction {orig_ref!r} in the journal to {request.action.lower()}; if it was "
            'taken on another box, pass "original_elsewhere": true',
            reason="original_not_found",
            original_reference_id=orig_ref,
        )
    counted = [r for r in reversals if r.state in COUNTING]
    voids = [r.reference_id for r in counted if r.action == "Void"]
    if (
        original.action not in REVERSIBLE[request.action]
        or original.state not in SUCCEEDED
        or voids
    ):
        why = f"voided by {', '.join(voids)}" if voids else f"{original.action} {original.state}"
        done = "voided" if request.action == "Void" else "refunded"
        return errors.RefundRefused(
            f"transaction {orig_ref!r} cannot be {done} ({why})",
            reason="original_not_refundable",
            original_reference_id=orig_ref,
            original_action=original.action,
            original_state=original.state,
        )
    if request.action == "Refund" and request.currency != original.currency:
        return errors.RefundRefused(
            f"the refund is in {request.currency}, the original {orig_ref!r} in "
            f"{original.currency}",
            reason="currency_mismatch",
            original_currency=original.currency,
        )
    return _amount_check(request, original, counted)


def _amount_check(
    request: PaymentRequest, original: TxRecord, counted: Sequence[TxRecord]
) -> errors.RefundRefused | None:
    refunded = sum((Decimal(r.amount or "0") for r in counted), Decimal("0.00"))
    total = Decimal(original.amount or "0")
    this = Decimal(request.amount) if request.amount is not None else total
    if request.action == "Void" and not counted:
        return None
    if request.action == "Refund" and refunded + this <= total:
        return None
    left = max(total - refunded, Decimal("0.00"))
    return errors.RefundRefused(
        f"{request.action.lower()} of {this} would exceed what is left of "
        f"{original.reference_id!r}: {total} {original.currency}, {refunded} refunded or being "
        f"refunded ({', '.join(r.reference_id for r in counted) or 'none'}), {left} left",
        reason="refund_exceeds_original",
        original_amount=str(total),
        refunded_amount=str(refunded),
        currency=original.currency,
        refunds=[r.reference_id for r in counted],
    )
