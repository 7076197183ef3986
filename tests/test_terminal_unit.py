"""``Terminal`` and ``Payments`` on an in-memory link (tests/fakes.py): the money rules
without the simulator, one behaviour per test. The simulator tests (test_flows.py,
test_money_rules.py, test_money_proof.py) prove the same rules over real links."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from fakes import FakeLink, fake_terminal

from ecrd import errors
from ecrd.events import EventBus
from ecrd.money.payments import Payments
from ecrd.money.request import PaymentRequest
from ecrd.protocol.envelope import WrongTerminal
from ecrd.store.journal import Journal
from ecrd.transport.base import NotDelivered, ReplyTimeout


def charged(action: str, message: dict[str, Any]) -> dict[str, Any]:
    body = message.get("body") or {}
    return {
        "status": "Success",
        "referenceID": body.get("referenceID", ""),
        "amount": body.get("amount", ""),
        "currency": body.get("currency", ""),
        "transactionType": action,
    }


async def start_payments(
    nursery: trio.Nursery, tmp_path: Path, link: FakeLink
) -> tuple[Payments, Journal]:
    term = fake_terminal(str(tmp_path), link)
    journal = Journal(tmp_path / "journal.sqlite3")
    payments = Payments(journal, {"t1": term}, EventBus())
    await nursery.start(payments.run)
    return payments, journal


def sale(ref: str) -> PaymentRequest:
    return PaymentRequest("t1", "Sale", ref, amount="10.00", currency="HKD")


async def test_an_exchange_returns_the_body_of_the_reply_that_answers_it(tmp_path: Path) -> None:
    link = FakeLink(lambda action, message: {"deviceSn": "FAKE-0001"})
    term = fake_terminal(str(tmp_path), link)
    response = await term.exchange("DeviceInfo", None, timeout=1)
    assert (response.action, response.body) == ("DeviceInfo", {"deviceSn": "FAKE-0001"})
    assert [action for action, _ in link.sent] == ["DeviceInfo"]


async def test_a_reply_signed_by_another_terminal_is_refused(tmp_path: Path) -> None:
    link = FakeLink(lambda action, message: {"deviceSn": "X"}, sn="SOMEONE-ELSE")
    term = fake_terminal(str(tmp_path), link, paired_sn="FAKE-0001")
    with pytest.raises(WrongTerminal):
        await term.exchange("DeviceInfo", None, timeout=1)


async def test_a_sale_the_terminal_charges_is_succeeded(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    payments, journal = await start_payments(nursery, tmp_path, FakeLink(charged))
    record = await payments.money(sale("r1"))
    assert record.state == "succeeded"
    assert journal.get("r1") == record


async def test_a_reply_for_another_action_leaves_the_sale_unknown(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    def refund_reply(action: str, message: dict[str, Any]) -> Any:
        return link.reply("Refund", message, charged(action, message))

    link = FakeLink(refund_reply)
    payments, _ = await start_payments(nursery, tmp_path, link)
    record = await payments.money(sale("r1"))
    assert record.state == "unknown"
    assert record.error == {"reason": "reply_mismatch", "message": record.error["message"]}
    assert record.reply is not None and record.reply["status"] == "Success"


async def test_a_request_that_never_left_is_failed_and_blocks_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    calls = iter([NotDelivered("connection refused")])

    def script(action: str, message: dict[str, Any]) -> Any:
        return next(calls, None) or charged(action, message)

    payments, _ = await start_payments(nursery, tmp_path, FakeLink(script))
    assert (await payments.money(sale("r1"))).state == "failed"
    assert (await payments.money(sale("r2"))).state == "succeeded"


async def test_a_request_that_may_have_arrived_is_unknown_and_blocks_the_terminal(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    link = FakeLink(lambda action, message: ReplyTimeout("no reply in time"))
    payments, _ = await start_payments(nursery, tmp_path, link)
    assert (await payments.money(sale("r1"))).state == "unknown"
    with pytest.raises(errors.UnresolvedTransaction):
        await payments.money(sale("r2"))
    assert len(link.sent) == 1  # never resent
