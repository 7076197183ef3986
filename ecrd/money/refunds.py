"""Whether a refund or a void may go out, from what the journal knows of its original.

A pure function of the facts (the request, the original's record, the refunds and voids
already journaled against it and the voids of those refunds), so the rule is tested without
trio or a journal. ``Payments`` runs it inside the journal's write transaction that inserts
the ``pending`` record (``Journal.begin``'s ``guard``), so two refunds of one original — on
one terminal or two — cannot both pass on the same facts.

1. A refund or void always has its original checked when the journal holds it, whatever
   the caller says: ``original_elsewhere`` (the original was taken on another box) only
   lets one the journal does *not* hold go to the terminal, which then checks it
   (``original_not_found`` without it).
2. The original must have succeeded (or been resolved succeeded) and be of a kind that can
   be reversed that way: only a **sale** is refunded (a preauth is a hold, never money
   taken: it is voided); a sale, a preauth or a refund is voided. One voided already is
   not (``original_not_refundable``).
3. A refund is in the original's currency (``currency_mismatch``).
4. The refunds against it — succeeded, pending, unknown and disputed ones, since each may
   have been paid out, but not one a succeeded void undid — plus this one may not exceed
   what the terminal approved; a void reverses it whole, so it may not follow a refund
   (``refund_exceeds_original``, with both amounts in ``data``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from ecrd import errors
from ecrd.money.request import PaymentRequest
from ecrd.store.journal import Guard, TxRecord

# Which kinds of original each may reverse.
REVERSIBLE: Final = {"Refund": ("Sale",), "Void": ("Sale", "PreAuth", "Refund")}
SUCCEEDED: Final = ("succeeded", "resolved_succeeded")
# A reversal in one of these states may have been paid out: it counts.
COUNTING: Final = ("succeeded", "resolved_succeeded", "pending", "unknown", "disputed")


def journal_guard(request: PaymentRequest) -> Guard | None:
    """``check`` as ``Journal.begin``'s guard: None for a sale or preauth."""
    if request.action not in REVERSIBLE:
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

    ``reversals``: the journal's refunds and voids that name the same original, and the
    voids of those refunds (this request's own record is not among them yet).
    """
    orig_ref = request.original_reference_id
    if original is None:
        if request.original_elsewhere:
            return None  # taken on another box: the terminal checks it
        return errors.RefundRefused(
            f"no transaction {orig_ref!r} in the journal to {request.action.lower()}; if it was "
            'taken on another box, pass "original_elsewhere": true',
            reason="original_not_found",
            original_reference_id=orig_ref,
        )
    direct = [r for r in reversals if r.params.get("original_reference_id") == orig_ref]
    undone = {
        r.params.get("original_reference_id")
        for r in reversals
        if r.action == "Void" and r.state in SUCCEEDED
    }
    counted = [r for r in direct if r.state in COUNTING and r.reference_id not in undone]
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
    return _amount_check(request, original, [r for r in counted if r.action == "Refund"])


def _amount_check(
    request: PaymentRequest, original: TxRecord, refunds: Sequence[TxRecord]
) -> errors.RefundRefused | None:
    refunded = sum((Decimal(r.amount or "0") for r in refunds), Decimal("0.00"))
    total = Decimal(original.approved_amount or original.amount or "0")
    this = Decimal(request.amount) if request.amount is not None else total
    if request.action == "Void" and not refunds:
        return None
    if request.action == "Refund" and refunded + this <= total:
        return None
    left = max(total - refunded, Decimal("0.00"))
    return errors.RefundRefused(
        f"{request.action.lower()} of {this} would exceed what is left of "
        f"{original.reference_id!r}: {total} {original.currency}, {refunded} refunded or being "
        f"refunded ({', '.join(r.reference_id for r in refunds) or 'none'}), {left} left",
        reason="refund_exceeds_original",
        original_amount=str(total),
        refunded_amount=str(refunded),
        currency=original.currency,
        refunds=[r.reference_id for r in refunds],
    )
