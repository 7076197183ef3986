"""The simulated terminal's behaviour, link-independent: pairing, payments, faults."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio

from ecrd.protocol.crypto import KeyCache, WrongKey
from ecrd.protocol.envelope import Envelope, StaleResponse
from ecrd.sim import SimTerminal
from ecrd.sim.probe import Probe, call, pair

KEYS = KeyCache()  # shared by terminal and client: each derivation is paid once per file
PIN1, PIN2, WRONG = "111111", "222222", "999999"

# protocol.md §8: the response fields every money reply carries
SALE_FIELDS = {
    "status", "errorCode", "errorMessage", "referenceID", "customerOrderID", "currency",
    "amount", "paymentMethod", "paymentEntryType", "rrn", "brn", "transactionType",
}  # fmt: skip
DEVICE_INFO_FIELDS = {"deviceSn", "ip", "port", "businessID"}


def check_sale_shape(body: dict[str, Any], transaction_type: str) -> None:
    assert body.keys() >= SALE_FIELDS
    assert body["status"] in ("Success", "Failed")
    assert body["transactionType"] == transaction_type
    for field in SALE_FIELDS:
        assert isinstance(body[field], str), field
    if body["status"] == "Success":
        assert body["amount"].count(".") == 1 and len(body["amount"].split(".")[1]) == 2
        assert len(body["currency"]) == 3
        assert body["rrn"] and body["errorCode"] == ""
    else:
        assert body["errorCode"]


def terminal(**kwargs: Any) -> SimTerminal:
    options: dict[str, Any] = {"pin1": PIN1, "pin2": PIN2, "keys": KEYS, "reply_salt_reuse": True}
    return SimTerminal(**(options | kwargs))


def direct(t: SimTerminal) -> Any:
    async def exchange(envelope: Envelope) -> Envelope:
        reply = await t.handle(envelope, "lan")
        assert reply.envelope is not None, "the terminal said nothing"
        return reply.envelope

    return exchange


async def paired(**kwargs: Any) -> tuple[SimTerminal, Any, Probe]:
    t = terminal(**kwargs)
    ex = direct(t)
    return t, ex, await pair(ex, PIN1, keys=KEYS)


def sale(ref: str, amount: str = "10.20", **extra: Any) -> dict[str, Any]:
    return {"referenceID": ref, "amount": amount, "currency": "HKD", **extra}


# -- pairing ---------------------------------------------------------------------------


async def test_device_info_under_pin1_before_pairing() -> None:
    t = terminal()
    body = await call(direct(t), Probe(PIN1, keys=KEYS), "DeviceInfo")
    assert body.keys() >= DEVICE_INFO_FIELDS
    assert body["deviceSn"] == t.sn and isinstance(body["port"], str)
    assert t.pairing_state == "unpaired"


async def test_reply_header_answers_the_request() -> None:
    t = terminal()
    probe = Probe(PIN1, keys=KEYS)
    sent = await probe.seal("DeviceInfo")
    message = await probe.open_message(await direct(t)(sent.envelope))
    header = message["header"]
    assert header["responseID"] == sent.request_id
    assert header["serverDeviceSN"] == t.sn
    assert header["timestamp"].endswith("+00:00")


async def test_pin1_stays_valid_until_pin2_confirms() -> None:
    t = terminal()
    ex, first = direct(t), Probe(PIN1, keys=KEYS)
    reply = await call(ex, first, "Pair", {"pairUuid": "u-1"})
    assert reply["status"] == "Success" and reply["pinCode2"] == PIN2
    assert t.pairing_state == "awaiting_confirmation"
    await call(ex, first, "DeviceInfo")  # still good before the confirmation
    await call(ex, Probe(PIN2, keys=KEYS), "DeviceInfo")
    assert t.pairing_state == "paired"
    with pytest.raises(WrongKey):
        await call(ex, first, "DeviceInfo")


@pytest.mark.parametrize("field", ["pinCode", "newPinCode"])
async def test_pair_reply_field_is_configurable(field: str) -> None:
    t = terminal(pin2_field=field)
    reply = await call(direct(t), Probe(PIN1, keys=KEYS), "Pair", {"pairUuid": "u"})
    assert reply[field] == PIN2 and "pinCode2" not in reply


async def test_random_pins_are_six_digits_and_distinct() -> None:
    t = SimTerminal(keys=KEYS, reply_salt_reuse=True)
    assert len(t.pin1) == 6 and t.pin1.isdigit()
    probe = await pair(direct(t), t.pin1, keys=KEYS)
    assert len(probe.pin) == 6 and probe.pin != t.pin1 == t.qr()["pairCode"]


async def test_money_under_pin1_is_refused_not_paired() -> None:
    t = terminal()
    body = await call(direct(t), Probe(PIN1, keys=KEYS), "Sale", sale("r-1"))
    assert body["status"] == "Failed" and body["errorCode"] == "NOT_PAIRED"
    assert t.payments.ledger == []


async def test_pair_under_pin2_is_refused() -> None:
    _, ex, probe = await paired()
    body = await call(ex, probe, "Pair", {"pairUuid": "again"})
    assert body["errorCode"] == "PAIRING_CLOSED"


@pytest.mark.parametrize("action", ["DeviceInfo", "Pair", "Sale", "Abort", "Nonsense"])
async def test_wrong_pin_is_never_answered_with_success(action: str) -> None:
    t, ex, _ = await paired()
    wrong = Probe(WRONG, keys=KEYS)
    sent = await wrong.seal(action, sale("r-wrong") if action == "Sale" else {"pairUuid": "u"})
    reply = await ex(sent.envelope)
    assert reply.action == action
    for pin in (WRONG, PIN1, PIN2):
        with pytest.raises(WrongKey):
            await Probe(pin, keys=KEYS).open_message(reply)
    assert t.payments.ledger == [] and t.stats.decrypt_failed == 1
    assert t.pairing_state == "paired"


async def test_replies_get_a_random_salt_unless_reuse_is_set() -> None:
    async def salts(t: SimTerminal) -> set[bytes]:
        probe = Probe(PIN1, keys=KEYS)
        out = set()
        for _ in range(2):
            sent = await probe.seal("DeviceInfo")
            out.add(base64.b64decode((await direct(t)(sent.envelope)).data)[:16])
        return out

    assert len(await salts(terminal(reply_salt_reuse=False))) == 2
    assert len(await salts(terminal(reply_salt_reuse=True))) == 1


async def test_legacy_scheme_terminal_pairs_and_sells() -> None:
    t = terminal(scheme="legacy")
    first = Probe(PIN1, scheme="legacy", keys=KEYS)
    ex = direct(t)
    assert (await call(ex, first, "Pair", {"pairUuid": "u"}))["status"] == "Success"
    second = Probe(PIN2, scheme="legacy", keys=KEYS)
    check_sale_shape(await call(ex, second, "Sale", sale("r-legacy")), "Sale")
    with pytest.raises(WrongKey):  # a v2 client cannot talk to a legacy terminal
        await call(ex, Probe(PIN2, keys=KEYS), "DeviceInfo")


async def test_connection_info_is_answered_as_device_info() -> None:
    t = terminal()
    probe = Probe(PIN1, keys=KEYS)
    sent = await probe.seal("ConnectionInfo", {"businessID": t.business_id})
    reply = await direct(t)(sent.envelope)
    assert reply.action == "DeviceInfo"
    assert (await probe.open(reply, sent))["businessID"] == t.business_id
    other = await call(direct(t), probe, "ConnectionInfo", {"businessID": "someone-else"})
    assert other["errorCode"] == "BUSINESS_MISMATCH"


async def test_qr_code_is_the_seed_json() -> None:
    t = terminal(port=8443)
    qr = json.loads(t.qr_json())
    assert qr == {
        "deviceId": t.sn,
        "ip": "127.0.0.1",
        "pairCode": PIN1,
        "port": 8443,
        "businessId": t.business_id,
    }


# -- money -----------------------------------------------------------------------------


async def test_sale_is_charged_once_and_recorded() -> None:
    t, ex, probe = await paired()
    body = await call(ex, probe, "Sale", sale("r-1", customerOrderID="o-1", print="NO"))
    check_sale_shape(body, "Sale")
    assert body["status"] == "Success" and body["amount"] == "10.20"
    assert body["customerOrderID"] == "o-1" and body["paymentMethod"] == "credit_card"
    (entry,) = t.payments.ledger
    assert entry["charged"] and entry["amount"] == "10.20" and entry["status"] == "Success"
    assert t.payments.charges("r-1") == 1


async def test_preauth_is_its_own_transaction_type() -> None:
    _, ex, probe = await paired()
    check_sale_shape(await call(ex, probe, "PreAuth", sale("r-pa")), "PreAuth")


async def test_duplicate_reference_is_not_charged_twice() -> None:
    t, ex, probe = await paired()
    await call(ex, probe, "Sale", sale("r-dup"))
    again = await call(ex, probe, "Sale", sale("r-dup"))
    assert again["status"] == "Failed" and again["errorCode"] == "DUPLICATE_REFERENCE"
    assert t.payments.charges("r-dup") == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": "10.20", "currency": "HKD"}, "INVALID_REQUEST"),
        (sale("r", amount=10.2), "INVALID_AMOUNT"),
        (sale("r", amount="10.2"), "INVALID_AMOUNT"),
        (sale("r", amount="0.00"), "INVALID_AMOUNT"),
        ({"referenceID": "r", "amount": "1.00", "currency": "hkd"}, "INVALID_CURRENCY"),
        (sale("r", paymentMethod="cash"), "INVALID_PAYMENT_METHOD"),
    ],
)
async def test_invalid_sales_are_refused_uncharged(body: dict[str, Any], code: str) -> None:
    t, ex, probe = await paired()
    reply = await call(ex, probe, "Sale", body)
    check_sale_shape(reply, "Sale")
    assert reply["errorCode"] == code
    assert not any(e["charged"] for e in t.payments.ledger)


async def test_rejected_reference_can_be_used_again() -> None:
    _, ex, probe = await paired()
    await call(ex, probe, "Sale", sale("r-fix", amount="1.5"))
    assert (await call(ex, probe, "Sale", sale("r-fix")))["status"] == "Success"


async def test_refund_needs_a_known_original_and_money_left() -> None:
    t, ex, probe = await paired()
    await call(ex, probe, "Sale", sale("s-1", amount="10.00"))

    async def refund(ref: str, amount: str, original: str = "s-1", currency: str = "HKD") -> Any:
        body = {"referenceID": ref, "originalReferenceID": original, "amount": amount}
        return await call(ex, probe, "Refund", body | {"currency": currency})

    first = await refund("f-1", "6.00")
    check_sale_shape(first, "Refund")
    assert first["status"] == "Success" and first["originalReferenceID"] == "s-1"
    assert (await refund("f-2", "4.01"))["errorCode"] == "AMOUNT_EXCEEDS_REFUNDABLE"
    assert (await refund("f-3", "4.00"))["status"] == "Success"
    assert (await refund("f-4", "1.00", original="nope"))["errorCode"] == "ORIGINAL_NOT_FOUND"
    await call(ex, probe, "Sale", sale("s-2"))
    assert (await refund("f-5", "1.00", "s-2", "USD"))["errorCode"] == "CURRENCY_MISMATCH"
    assert t.payments.ledger[0]["refunded"] == "10.00"


async def test_void_marks_the_original_once() -> None:
    t, ex, probe = await paired()
    await call(ex, probe, "Sale", sale("s-v"))
    voided = await call(ex, probe, "Void", {"referenceID": "v-1", "originalReferenceID": "s-v"})
    check_sale_shape(voided, "Void")
    assert voided["status"] == "Success" and voided["amount"] == "10.20"
    assert t.payments.ledger[0]["voided"]
    again = await call(ex, probe, "Void", {"referenceID": "v-2", "originalReferenceID": "s-v"})
    assert again["errorCode"] == "ALREADY_VOIDED"
    refund = {"referenceID": "f-v", "originalReferenceID": "s-v", "amount": "1.00"}
    late = await call(ex, probe, "Refund", refund | {"currency": "HKD"})
    assert late["errorCode"] == "ALREADY_VOIDED"
    unknown = await call(ex, probe, "Void", {"referenceID": "v-3", "originalReferenceID": "x"})
    assert unknown["errorCode"] == "ORIGINAL_NOT_FOUND"


async def test_voiding_a_refund_gives_the_money_back_to_the_sale() -> None:
    t, ex, probe = await paired()
    await call(ex, probe, "Sale", sale("s-r", amount="5.00"))
    body = {"referenceID": "f-r", "originalReferenceID": "s-r", "amount": "5.00"}
    await call(ex, probe, "Refund", body | {"currency": "HKD"})
    await call(ex, probe, "Void", {"referenceID": "v-r", "originalReferenceID": "f-r"})
    assert t.payments.ledger[0]["refunded"] == "0.00"


async def test_abort_ends_the_waiting_sale_as_aborted() -> None:
    t, ex, probe = await paired()
    t.arm("delay", params={"seconds": 30})
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _collect(results, call(ex, probe, "Sale", sale("r-ab"))))
        await _until(lambda: t.payments.busy)
        aborted = await call(ex, probe, "Abort", {"referenceID": "r-ab"})
    assert aborted == {
        "status": "Success",
        "errorCode": "",
        "errorMessage": "",
        "referenceID": "r-ab",
    }
    (body,) = results
    assert body["status"] == "Failed" and body["errorCode"] == "ABORTED"
    assert t.payments.charges("r-ab") == 0 and not t.payments.busy


async def test_abort_with_nothing_in_progress_fails() -> None:
    _, ex, probe = await paired()
    body = await call(ex, probe, "Abort", {})
    assert body["status"] == "Failed" and body["errorCode"] == "NO_TRANSACTION"


async def test_second_sale_while_one_waits_is_busy() -> None:
    t, ex, probe = await paired()
    t.arm("never_answer")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, ex, probe, "Sale", sale("r-long"))
        await _until(lambda: t.payments.busy)
        busy = await call(ex, probe, "Sale", sale("r-second"))
        assert busy["errorCode"] == "BUSY"
        nursery.cancel_scope.cancel()  # the client goes away: the sale is never charged
    assert t.payments.ledger[0]["errorCode"] == "CONNECTION_CLOSED"
    assert not any(e["charged"] for e in t.payments.ledger)


async def test_status_action_is_off_by_default() -> None:
    _, ex, probe = await paired()
    body = await call(ex, probe, "TransactionStatus", {"referenceID": "x"})
    assert body["errorCode"] == "UNSUPPORTED_ACTION"


async def test_status_action_reports_a_transaction() -> None:
    _, ex, probe = await paired(status_action="TransactionStatus")
    charged = await call(ex, probe, "Sale", sale("r-st"))
    status = await call(ex, probe, "TransactionStatus", {"referenceID": "r-st"})
    assert status == charged
    missing = await call(ex, probe, "TransactionStatus", {"referenceID": "nope"})
    assert missing["status"] == "Failed" and missing["errorCode"] == "NOT_FOUND"


async def test_the_status_answer_fault_says_what_it_is_told_in_its_casing() -> None:
    t, ex, probe = await paired(status_action="TransactionStatus")
    await call(ex, probe, "Sale", sale("r-sa"))
    t.arm("status_answer", params={"error_code": "unsupported_action"})
    said = await call(ex, probe, "TransactionStatus", {"referenceID": "r-sa"})
    assert (said["status"], said["errorCode"]) == ("Failed", "unsupported_action")
    assert (said["referenceID"], said["transactionType"]) == ("r-sa", "Sale")
    t.arm("status_answer", params={"echo": "no", "status": "Pending"})
    bare = await call(ex, probe, "TransactionStatus", {"referenceID": "r-sa"})
    assert bare["status"] == "Pending" and "referenceID" not in bare
    # One-shot, and taken only by the status action: the real answer again.
    assert (await call(ex, probe, "TransactionStatus", {"referenceID": "r-sa"}))["status"] == (
        "Success"
    )


async def test_a_tip_is_charged_with_the_sale_and_said_in_the_reply() -> None:
    t, ex, probe = await paired()
    t.arm("tip", params={"amount": "1.50"})
    body = await call(ex, probe, "Sale", sale("r-tip", "10.00"))
    assert (body["status"], body["amount"], body["tipAmount"]) == ("Success", "11.50", "1.50")
    refund = {**sale("r-tip-r", "11.50"), "originalReferenceID": "r-tip"}
    assert (await call(ex, probe, "Refund", refund))["status"] == "Success"


async def test_a_partial_approval_charges_less_than_asked() -> None:
    t, ex, probe = await paired()
    t.arm("partial", params={"amount": "4.00"})
    body = await call(ex, probe, "PreAuth", sale("r-part", "10.00"))
    assert (body["status"], body["amount"]) == ("Success", "4.00")
    t.arm("partial", params={"amount": "40.00"})  # more than asked: nothing to cut
    assert (await call(ex, probe, "Sale", sale("r-part2", "10.00")))["amount"] == "10.00"


# -- faults ----------------------------------------------------------------------------


async def test_decline_fault_is_one_shot() -> None:
    t, ex, probe = await paired()
    t.arm("decline")
    await call(ex, probe, "DeviceInfo")  # not a money action: the fault stays armed
    declined = await call(ex, probe, "Sale", sale("r-d1"))
    assert declined["status"] == "Failed" and declined["errorCode"] == "DECLINED"
    assert (await call(ex, probe, "Sale", sale("r-d2")))["status"] == "Success"
    assert t.payments.charges("r-d1") == 0


async def test_sticky_fault_fires_until_cleared() -> None:
    t, ex, probe = await paired()
    t.arm("decline", sticky=True, params={"error_code": "INSUFFICIENT_FUNDS"})
    for ref in ("r-s1", "r-s2"):
        assert (await call(ex, probe, "Sale", sale(ref)))["errorCode"] == "INSUFFICIENT_FUNDS"
    assert t.faults.clear("decline") == 1
    assert (await call(ex, probe, "Sale", sale("r-s3")))["status"] == "Success"


async def test_drop_records_the_charge_and_says_nothing() -> None:
    t, _, probe = await paired()
    t.arm("drop")
    sent = await probe.seal("Sale", sale("r-drop"))
    assert (await t.handle(sent.envelope, "lan")).envelope is None
    assert t.payments.charges("r-drop") == 1


async def test_wrong_key_fault_charges_but_the_client_cannot_read() -> None:
    t, ex, probe = await paired()
    t.arm("wrong_key")
    with pytest.raises(WrongKey):
        await call(ex, probe, "Sale", sale("r-wk"))
    assert t.payments.charges("r-wk") == 1


async def test_stale_response_fault_names_an_earlier_request() -> None:
    t, ex, probe = await paired()
    t.arm("stale_response", actions=["DeviceInfo"])
    with pytest.raises(StaleResponse):
        await call(ex, probe, "DeviceInfo")


@pytest.mark.parametrize(
    ("amount", "check"),
    [
        ("10.91", "declined"),
        ("10.94", "dropped"),
        ("10.95", "wrong_key"),
        ("10.96", "stale"),
    ],
)
async def test_magic_amounts(amount: str, check: str) -> None:
    t, _, probe = await paired()
    sent = await probe.seal("Sale", sale("r-magic", amount=amount))
    reply = (await t.handle(sent.envelope, "lan")).envelope
    if check == "dropped":
        assert reply is None and t.payments.charges("r-magic") == 1
        return
    assert reply is not None
    if check == "declined":
        assert (await probe.open(reply, sent))["errorCode"] == "DECLINED"
    elif check == "wrong_key":
        with pytest.raises(WrongKey):
            await probe.open(reply, sent)
    else:
        with pytest.raises(StaleResponse):
            await probe.open(reply, sent)


async def test_magic_amounts_can_be_switched_off() -> None:
    _, ex, probe = await paired(magic_amounts=False)
    assert (await call(ex, probe, "Sale", sale("r-off", amount="10.91")))["status"] == "Success"


async def test_magic_delay_amount_waits() -> None:
    _, ex, probe = await paired(magic_delay=0.05)
    start = trio.current_time()
    assert (await call(ex, probe, "Sale", sale("r-slow", amount="1.92")))["status"] == "Success"
    assert trio.current_time() - start >= 0.05


async def test_reboot_forgets_pairing_keeps_ledger_and_silences_the_sale() -> None:
    t, _, probe = await paired()
    await call(direct(t), probe, "Sale", sale("r-before"))
    t.arm("never_answer")
    replies: list[Any] = []
    async with trio.open_nursery() as nursery:
        sent = await probe.seal("Sale", sale("r-held"))
        nursery.start_soon(lambda: _collect(replies, t.handle(sent.envelope, "lan")))
        await _until(lambda: t.payments.busy)
        new_pin1 = t.reboot("333333")
    assert replies[0].envelope is None
    assert new_pin1 == t.pin1 == "333333" and t.pairing_state == "unpaired"
    assert [e["errorCode"] for e in t.payments.ledger] == ["", "REBOOTED"]
    with pytest.raises(WrongKey):
        await call(direct(t), probe, "DeviceInfo")
    await pair(direct(t), "333333", keys=KEYS)


async def test_unknown_action_is_unsupported() -> None:
    _, ex, probe = await paired()
    body = await call(ex, probe, "Teleport", {})
    assert body["status"] == "Failed" and body["errorCode"] == "UNSUPPORTED_ACTION"


async def test_bad_fault_arguments_fail_when_armed() -> None:
    from ecrd.sim import FaultError

    t = terminal()
    with pytest.raises(FaultError):
        t.arm("meteor")
    with pytest.raises(FaultError):
        t.arm("delay", params={"seconds": "soon"})
    with pytest.raises(FaultError):
        t.arm("decline", params={"colour": "red"})


async def _collect(results: list[Any], awaitable: Any) -> None:
    results.append(await awaitable)


async def _until(predicate: Any) -> None:
    with trio.fail_after(5):
        while not predicate():
            await trio.sleep(0.001)


async def test_held_device_info_is_forgotten_on_reboot() -> None:
    t = terminal()
    t.arm("never_answer", actions=["DeviceInfo"])
    sent = await Probe(PIN1, keys=KEYS).seal("DeviceInfo")
    replies: list[Any] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _collect(replies, t.handle(sent.envelope, "lan")))
        await _until(lambda: t.held_requests == 1)
        t.reboot()
    assert replies[0].envelope is None
