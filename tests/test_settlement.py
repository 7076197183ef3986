"""The one authority on a payment's state, as a table: every state against every kind of
evidence (ecrd/money/settlement.py), without trio, a journal or a terminal.

Each row says what the evidence must do to a record in that state; a change of the rules
that no row foresaw fails here first.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from fakes import tx_record

from ecrd import errors
from ecrd.money.evidence import (
    Evidence,
    Expected,
    LateReply,
    NoAnswer,
    NotSent,
    Policy,
    Reply,
    Resolved,
    StatusAnswer,
    Stopped,
    classify,
    to_obj,
)
from ecrd.money.request import PaymentRequest
from ecrd.money.settlement import TRANSITIONS, settle
from ecrd.store.journal import STATES, TxRecord

SALE = PaymentRequest("t1", "Sale", "order-1", amount="10.00", currency="HKD")
CHARGED = {"status": "Success", "referenceID": "order-1", "amount": "10.00", "currency": "HKD",
           "transactionType": "Sale", "rrn": "111111111111"}  # fmt: skip
DECLINED = {**CHARGED, "status": "Failed", "errorCode": "DECLINED", "rrn": ""}
NOT_FOUND = {**DECLINED, "errorCode": "TRANSACTION_NOT_FOUND"}
PENDING = {**CHARGED, "status": "Pending", "rrn": ""}
OTHER = {**CHARGED, "referenceID": "order-2"}  # another order's success
PERSON = "uid=0 user=root"

EVIDENCE: dict[str, Evidence] = {
    "reply charged": Reply("Sale", CHARGED),
    "reply declined": Reply("Sale", DECLINED),
    "reply pending": Reply("Sale", PENDING),
    "reply of another order": Reply("Sale", OTHER),
    "reply for a refund": Reply("Refund", CHARGED),
    "late charged": LateReply("Sale", CHARGED),
    "late declined": LateReply("Sale", DECLINED),
    "late pending": LateReply("Sale", PENDING),
    "status charged": StatusAnswer("TransactionStatus", CHARGED),
    "status declined": StatusAnswer("TransactionStatus", DECLINED),
    "status not found": StatusAnswer("TransactionStatus", NOT_FOUND),
    "not sent": NotSent("link_down", "refused"),
    "no answer": NoAnswer("timeout", "no reply in 180 s"),
    "stopped": Stopped("daemon_restarted", "ecrd stopped"),
    "resolved succeeded": Resolved("succeeded", "seen on the terminal", PERSON),
    "resolved failed": Resolved("failed", "declined on screen", PERSON),
}

# What each kind of evidence does, by the record's state. A state name: the next state;
# "keep": the state stays (the evidence is kept on the audit row); "refused": a person's
# word that does not apply (InvalidState).
K, R = "keep", "refused"
TABLE: dict[str, dict[str, str]] = {
    "pending": {
        "reply charged": "succeeded", "reply declined": "failed", "reply pending": "unknown",
        "reply of another order": "unknown", "reply for a refund": "unknown",
        "late charged": "succeeded", "late declined": "failed", "late pending": "unknown",
        "status charged": "succeeded", "status declined": K, "status not found": K,
        "not sent": "failed", "no answer": "unknown", "stopped": "unknown",
        "resolved succeeded": R, "resolved failed": R,
    },
    "unknown": {
        "reply charged": "succeeded", "reply declined": "failed", "reply pending": K,
        "reply of another order": K, "reply for a refund": K,
        "late charged": "succeeded", "late declined": "failed", "late pending": K,
        "status charged": "succeeded", "status declined": K, "status not found": K,
        "not sent": K, "no answer": K, "stopped": K,
        "resolved succeeded": "resolved_succeeded", "resolved failed": "resolved_failed",
    },
    "succeeded": {
        "reply charged": K, "reply declined": "disputed", "reply pending": K,
        "reply of another order": K, "reply for a refund": K,
        "late charged": K, "late declined": "disputed", "late pending": K,
        "status charged": K, "status declined": K, "status not found": K,
        "not sent": K, "no answer": K, "stopped": K,
        "resolved succeeded": R, "resolved failed": R,
    },
    "failed": {
        "reply charged": "disputed", "reply declined": K, "reply pending": K,
        "reply of another order": K, "reply for a refund": "disputed",
        "late charged": "disputed", "late declined": K, "late pending": K,
        "status charged": "disputed", "status declined": K, "status not found": K,
        "not sent": K, "no answer": K, "stopped": K,
        "resolved succeeded": R, "resolved failed": R,
    },
    "disputed": {
        **dict.fromkeys(EVIDENCE, K),
        "resolved succeeded": "resolved_succeeded", "resolved failed": "resolved_failed",
    },
}  # fmt: skip
TABLE["resolved_succeeded"] = TABLE["succeeded"]
TABLE["resolved_failed"] = TABLE["failed"]


def record(state: str, **fields: Any) -> TxRecord:
    return attrs.evolve(tx_record(SALE, state), request_id="rq-1", **fields)


def test_the_table_covers_every_state_and_every_kind_of_evidence() -> None:
    assert set(TABLE) == set(STATES)
    assert all(set(row) == set(EVIDENCE) for row in TABLE.values())


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("said", list(EVIDENCE))
def test_each_piece_of_evidence_does_what_the_table_says(state: str, said: str) -> None:
    current = record(state, reply=CHARGED if state in ("succeeded", "resolved_succeeded") else None)
    expected = TABLE[state][said]
    if expected == R:
        with pytest.raises(errors.InvalidState):
            settle(current, EVIDENCE[said])
        return
    change = settle(current, EVIDENCE[said])
    assert change.state == (state if expected == K else expected)
    assert change.state == state or (state, change.state) in TRANSITIONS
    # No proof is ever thrown away: every piece of evidence is on its audit row.
    assert change.evidence == to_obj(EVIDENCE[said])


def test_a_status_answer_settles_failed_only_with_a_code_on_the_allowlist() -> None:
    unknown = record("unknown")
    not_found = StatusAnswer("TransactionStatus", NOT_FOUND)
    assert settle(unknown, not_found).state == "unknown"
    allow = Policy.of(not_charged=("transaction_not_found",))  # any casing
    assert settle(unknown, not_found, allow).state == "failed"
    lower = StatusAnswer("TransactionStatus", {**NOT_FOUND, "errorCode": "unsupported_action"})
    assert settle(unknown, lower, allow).state == "unknown"


def test_a_second_charge_with_other_identifiers_is_disputed() -> None:
    succeeded = record("succeeded", reply=CHARGED)
    again = LateReply("Sale", {**CHARGED, "rrn": "222222222222"})
    change = settle(succeeded, again)
    assert change.state == "disputed"
    assert "rrn" in change.why
    assert settle(succeeded, LateReply("Sale", CHARGED)).state == "succeeded"


def test_a_late_success_after_a_person_resolved_failed_is_disputed_and_explained() -> None:
    resolved = record("resolved_failed", note="not on the list", resolved_by=PERSON)
    change = settle(resolved, LateReply("Sale", CHARGED))
    assert change.state == "disputed"
    assert change.set["error"]["reason"] == "disputed"
    assert "resolved_failed" in change.why and "ecrctl resolve order-1" in change.set["note"]


def test_a_disputed_record_is_resolved_again_only_with_a_note() -> None:
    disputed = record("disputed")
    with pytest.raises(errors.InvalidParams, match="note"):
        settle(disputed, Resolved("succeeded", "  ", PERSON))
    change = settle(disputed, Resolved("succeeded", "charged: on the statement", PERSON))
    assert (change.state, change.who, change.set["resolved_by"]) == (
        "resolved_succeeded", PERSON, PERSON,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "amount", "state", "approved"),
    [
        ((), "12.00", "unknown", None),
        (("tip",), "12.00", "succeeded", "12.00"),
        (("tip",), "8.00", "unknown", None),
        (("partial",), "8.00", "succeeded", "8.00"),
        (("partial",), "0.00", "unknown", None),
        (("tip", "partial"), "10.00", "succeeded", None),
        (("tip",), "12.0", "unknown", None),  # not a wire amount
    ],
)
def test_an_amount_the_terminal_changed_settles_only_as_the_terminal_is_allowed(
    changes: tuple[str, ...], amount: str, state: str, approved: str | None
) -> None:
    reply = Reply("Sale", {**CHARGED, "amount": amount})
    change = settle(record("pending"), reply, Policy.of(amount_changes=changes))
    assert change.state == state
    assert change.set.get("approved_amount") == approved


def test_a_tip_never_changes_the_currency_nor_a_refund() -> None:
    tip = Policy.of(amount_changes=("tip", "partial"))
    yen = Reply("Sale", {**CHARGED, "amount": "12.00", "currency": "JPY"})
    assert settle(record("pending"), yen, tip).state == "unknown"
    refund = attrs.evolve(
        tx_record(attrs.evolve(SALE, action="Refund", original_reference_id="o"), "pending"),
        request_id="rq-1",
    )
    more = Reply("Refund", {**CHARGED, "transactionType": "Refund", "amount": "12.00"})
    assert settle(refund, more, tip).state == "unknown"


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("Success", "succeeded"),
        ("SUCCESS", "succeeded"),
        ("Failed", "failed"),
        ("Pending", "unknown"),
        ("Processing", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_only_success_or_failed_settles_a_payment(status: str | None, state: str) -> None:
    """Rule 3: a reply that proves neither outcome leaves the payment unknown, never failed
    (a POS would charge again) nor succeeded."""
    body = {} if status is None else {"status": status}
    assert classify(Expected("order-1", "Sale"), Reply("Sale", body)).state == state
