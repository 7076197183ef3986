"""Admission (design.md §3 rules 2, 4, 5) as a pure function: which decision each set of
facts gives, without trio, a journal or a terminal (ecrd/money/admission.py)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from fakes import tx_record

from ecrd import errors
from ecrd.money.admission import Facts, Go, Refuse, Replay, Wait, admit
from ecrd.money.request import PaymentRequest
from ecrd.store.journal import TxRecord

SALE = PaymentRequest("t1", "Sale", "order-1", amount="10.00", currency="HKD")
IDLE = Facts(stored=None, blocking=(), busy_with=None, paired=True)


def record(request: PaymentRequest = SALE, state: str = "succeeded") -> TxRecord:
    return tx_record(request, state)


def refused(decision: Any) -> type[errors.ApiError]:
    assert isinstance(decision, Refuse), decision
    return type(decision.error)


def test_rule2_the_same_request_again_replays_its_record() -> None:
    stored = record()
    assert admit(SALE, attrs.evolve(IDLE, stored=stored), wait=False) == Replay(stored)


@pytest.mark.parametrize(
    "other",
    [
        attrs.evolve(SALE, amount="10.01"),
        attrs.evolve(SALE, currency="USD"),
        attrs.evolve(SALE, terminal="t2"),
        attrs.evolve(SALE, action="PreAuth"),
        attrs.evolve(SALE, extra={"memo": "x"}),
    ],
)
def test_rule2_the_same_reference_for_another_request_is_a_mismatch(
    other: PaymentRequest,
) -> None:
    decision = admit(other, attrs.evolve(IDLE, stored=record()), wait=False)
    assert refused(decision) is errors.DuplicateReferenceMismatch


def test_rule2_a_replay_wins_over_every_other_refusal() -> None:
    """A retry after a crash gets its result even while the terminal is busy or blocked."""
    facts = Facts(stored=record(), blocking=[record(state="unknown")], busy_with="x",
                  paired=False, accepting=False)  # fmt: skip
    assert isinstance(admit(SALE, facts, wait=False), Replay)


def test_rule4_an_unknown_outcome_on_the_terminal_blocks_new_payments() -> None:
    blocked = attrs.evolve(IDLE, blocking=[record(attrs.evolve(SALE, reference_id="o"))])
    assert refused(admit(SALE, blocked, wait=True)) is errors.UnresolvedTransaction
    unblocked = attrs.evolve(blocked, block_on_unknown=False)
    assert admit(SALE, unblocked, wait=False) == Go()


def test_rule5_a_busy_terminal_refuses_or_makes_the_caller_wait() -> None:
    busy = attrs.evolve(IDLE, busy_with="order-0")
    assert refused(admit(SALE, busy, wait=False)) is errors.TerminalBusy
    assert admit(SALE, busy, wait=True) == Wait()
    assert admit(SALE, IDLE, wait=False) == Go()


def test_no_payment_while_stopping_or_unpaired() -> None:
    assert refused(admit(SALE, attrs.evolve(IDLE, accepting=False), wait=False)) is (
        errors.ShuttingDown
    )
    unpaired = attrs.evolve(IDLE, paired=False, pairing_unconfirmed=True)
    decision = admit(SALE, unpaired, wait=False)
    assert refused(decision) is errors.NotPaired
    assert isinstance(decision, Refuse) and "interrupted pairing" in decision.error.message


def test_the_request_carries_its_journal_params_and_its_wire_body() -> None:
    refund = PaymentRequest(
        "t1", "Refund", "r-2", amount="5.00", currency="HKD",
        original_reference_id="order-1", extra={"referenceID": "forged"},
    )  # fmt: skip
    assert refund.params() == {
        "amount": "5.00", "currency": "HKD", "original_reference_id": "order-1",
        "extra": {"referenceID": "forged"},
    }  # fmt: skip
    body = refund.body()
    assert body["referenceID"] == "r-2"  # extra never overrides a typed field
    assert body["originalReferenceID"] == "order-1" and body["amount"] == "5.00"
    assert PaymentRequest.of(record(refund)) == refund
