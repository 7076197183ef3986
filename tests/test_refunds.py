"""The refund/void guard as a pure function (ecrd/money/refunds.py): what the journal
must know of the original before a refund or void may go out — without trio or a journal."""

from __future__ import annotations

import attrs
import pytest
from fakes import tx_record

from ecrd import errors
from ecrd.money.refunds import check, journal_guard
from ecrd.money.request import PaymentRequest
from ecrd.store.journal import TxRecord

SALE = PaymentRequest("t1", "Sale", "order-1", amount="30.00", currency="HKD")
REFUND = PaymentRequest(
    "t2", "Refund", "order-1-r1", amount="10.00", currency="HKD", original_reference_id="order-1"
)
VOID = PaymentRequest("t1", "Void", "order-1-v", original_reference_id="order-1")


def record(request: PaymentRequest, state: str = "succeeded") -> TxRecord:
    return tx_record(request, state)


def refund(ref: str, amount: str, state: str = "succeeded") -> TxRecord:
    return record(attrs.evolve(REFUND, reference_id=ref, amount=amount), state)


def reason(refusal: errors.ApiError | None) -> str | None:
    return None if refusal is None else refusal.to_error()["data"]["reason"]


def test_a_refund_within_the_original_on_another_terminal_passes() -> None:
    assert check(REFUND, record(SALE), []) is None
    assert check(attrs.evolve(REFUND, amount="30.00"), record(SALE), []) is None


def test_a_void_of_a_succeeded_sale_passes() -> None:
    assert check(VOID, record(SALE), []) is None
    assert check(VOID, record(SALE, "resolved_succeeded"), []) is None


@pytest.mark.parametrize("request_", [REFUND, VOID])
def test_an_original_not_in_the_journal_is_original_not_found(request_: PaymentRequest) -> None:
    refusal = check(request_, None, [])
    assert reason(refusal) == "original_not_found"
    assert refusal is not None and refusal.code == -32009
    assert "original_elsewhere" in refusal.message


@pytest.mark.parametrize("state", ["failed", "resolved_failed", "pending", "unknown"])
@pytest.mark.parametrize("request_", [REFUND, VOID])
def test_an_original_that_did_not_succeed_is_not_refundable(
    request_: PaymentRequest, state: str
) -> None:
    assert reason(check(request_, record(SALE, state), [])) == "original_not_refundable"


@pytest.mark.parametrize("void_state", ["succeeded", "pending", "unknown", "resolved_succeeded"])
def test_a_voided_original_is_not_refundable(void_state: str) -> None:
    void = record(VOID, void_state)
    assert reason(check(REFUND, record(SALE), [void])) == "original_not_refundable"
    assert reason(check(attrs.evolve(VOID, reference_id="v2"), record(SALE), [void])) == (
        "original_not_refundable"
    )


def test_a_failed_void_does_not_make_the_original_unrefundable() -> None:
    assert check(REFUND, record(SALE), [record(VOID, "failed")]) is None


def test_a_refund_of_a_refund_is_not_refundable_but_a_void_of_one_is_allowed() -> None:
    assert reason(check(REFUND, refund("order-1", "30.00"), [])) == "original_not_refundable"
    assert check(VOID, refund("order-1", "30.00"), []) is None


def test_only_a_sale_is_refunded_a_preauth_is_voided() -> None:
    """A preauth is a hold on the card, never money taken: refunding it would pay out money
    the shop never had. It is released by a void."""
    preauth = record(attrs.evolve(SALE, action="PreAuth"))
    refusal = check(REFUND, preauth, [])
    assert reason(refusal) == "original_not_refundable"
    assert refusal is not None and refusal.data["original_action"] == "PreAuth"
    assert check(VOID, preauth, []) is None


def test_a_void_undoes_exactly_its_refund_so_the_sale_is_refundable_again() -> None:
    first = refund("order-1-r0", "30.00")
    void_of_it = record(attrs.evolve(VOID, reference_id="v-r0", original_reference_id="order-1-r0"))
    assert reason(check(REFUND, record(SALE), [first])) == "refund_exceeds_original"
    assert check(REFUND, record(SALE), [first, void_of_it]) is None
    unsure = attrs.evolve(void_of_it, state="unknown")  # it may not have undone it
    assert reason(check(REFUND, record(SALE), [first, unsure])) == "refund_exceeds_original"


def test_a_tip_is_refundable_as_part_of_what_the_terminal_approved() -> None:
    tipped = attrs.evolve(record(SALE), approved_amount="36.00")
    assert check(attrs.evolve(REFUND, amount="36.00"), tipped, []) is None
    assert reason(check(attrs.evolve(REFUND, amount="36.01"), tipped, [])) == (
        "refund_exceeds_original"
    )


def test_a_refund_in_another_currency_is_currency_mismatch() -> None:
    refusal = check(attrs.evolve(REFUND, currency="USD"), record(SALE), [])
    assert reason(refusal) == "currency_mismatch"
    assert refusal is not None and refusal.data["original_currency"] == "HKD"


@pytest.mark.parametrize("state", ["succeeded", "resolved_succeeded", "pending", "unknown"])
def test_refunds_that_may_have_been_paid_out_count_toward_the_original(state: str) -> None:
    earlier = [refund("order-1-r0", "25.00", state)]
    refusal = check(REFUND, record(SALE), earlier)
    assert reason(refusal) == "refund_exceeds_original"
    assert refusal is not None
    assert refusal.data["original_amount"] == "30.00"
    assert refusal.data["refunded_amount"] == "25.00"
    assert refusal.data["refunds"] == ["order-1-r0"]
    assert check(attrs.evolve(REFUND, amount="5.00"), record(SALE), earlier) is None


@pytest.mark.parametrize("state", ["failed", "resolved_failed"])
def test_refunds_that_failed_do_not_count(state: str) -> None:
    assert check(REFUND, record(SALE), [refund("order-1-r0", "30.00", state)]) is None


def test_a_void_after_a_refund_would_exceed_the_original() -> None:
    refusal = check(VOID, record(SALE), [refund("order-1-r0", "1.00")])
    assert reason(refusal) == "refund_exceeds_original"
    assert refusal is not None and refusal.data["refunded_amount"] == "1.00"


def test_original_elsewhere_never_skips_a_local_original() -> None:
    """The caller's word that the original was taken elsewhere lets an original the journal
    does not hold go to the terminal; one it holds is checked all the same."""
    elsewhere = attrs.evolve(REFUND, original_elsewhere=True)
    guard = journal_guard(elsewhere)
    assert guard is not None
    guard(None, [])  # not in this journal: the terminal checks it
    spent = [refund("order-1-r0", "30.00")]
    with pytest.raises(errors.RefundRefused, match="exceed"):
        guard(record(SALE), spent)
    big = attrs.evolve(elsewhere, amount="99999.00")
    assert reason(check(big, record(SALE), [])) == "refund_exceeds_original"
    void_guard = journal_guard(attrs.evolve(VOID, original_elsewhere=True))
    assert void_guard is not None
    with pytest.raises(errors.RefundRefused):
        void_guard(record(SALE, "failed"), [])


def test_without_original_elsewhere_an_unknown_original_is_refused_and_sales_are_unchecked() -> (
    None
):
    assert journal_guard(SALE) is None
    guard = journal_guard(REFUND)
    assert guard is not None
    with pytest.raises(errors.RefundRefused):
        guard(None, [])
    guard(record(SALE), [])


def test_original_elsewhere_is_journaled_but_never_on_the_wire() -> None:
    request = attrs.evolve(REFUND, original_elsewhere=True)
    assert request.params()["original_elsewhere"] is True
    assert "original_elsewhere" not in request.body()
    assert PaymentRequest.of(record(request)) == request
    assert "original_elsewhere" not in REFUND.params()
