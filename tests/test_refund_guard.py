"""Refunds and voids are checked against the journal before anything is sent or journaled
(ecrd/money/refunds.py, run in ``Journal.begin``'s transaction): the daemon against the
simulator, through the real socket. A refused request never reaches a terminal (the
simulator's ledger) and leaves no record."""

from __future__ import annotations

from typing import Any

import trio
from stack import Stack, call_error, pair

from ecrd.client import EcrdError, TrioClient, open_trio_client


def refund(ref: str, original: str, amount: str = "10.00", **more: Any) -> dict[str, Any]:
    return {"terminal": "lan-1", "amount": amount, "currency": "HKD", "reference_id": ref,
            "original_reference_id": original, **more}  # fmt: skip


async def sale(c: TrioClient, ref: str, amount: str = "30.00") -> dict[str, Any]:
    tx: dict[str, Any] = await c.call(
        "sale", terminal="lan-1", amount=amount, currency="HKD", reference_id=ref
    )
    return tx


async def refused(c: TrioClient, stack: Stack, method: str, **params: Any) -> EcrdError:
    """The call is refused, and neither the terminal nor the journal ever saw it."""
    err = await call_error(c, method, **params)
    assert err.code == -32009
    assert stack.requests("lan", params["reference_id"]) == 0
    missing = await call_error(c, "transaction.get", reference_id=params["reference_id"])
    assert missing.reason == "transaction_not_found"
    return err


async def test_each_refusal_of_the_guard_reaches_the_pos_and_nothing_else(stack: Stack) -> None:
    """The guard's verdicts (each proved on the pure function in test_refunds.py) come back
    through the socket with their reason, and a refused request never reaches the terminal
    nor the journal: an original that never existed, one declined or voided, another
    currency, refunds together over the sale, a void after a refund."""
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        err = await refused(c, stack, "refund", **refund("r1", "no-such-order"))
        assert err.reason == "original_not_found"
        err = await refused(c, stack, "void", terminal="lan-1", reference_id="v1",
                            original_reference_id="no-such-order")  # fmt: skip
        assert err.reason == "original_not_found"
        assert (await sale(c, "declined", "10.91"))["state"] == "failed"
        err = await refused(c, stack, "refund", **refund("r2", "declined"))
        assert err.reason == "original_not_refundable"
        await sale(c, "voided")
        v = await c.call("void", terminal="lan-1", reference_id="voided-v",
                         original_reference_id="voided")  # fmt: skip
        assert v["state"] == "succeeded"
        err = await refused(c, stack, "refund", **refund("r3", "voided"))
        assert err.reason == "original_not_refundable"
        await sale(c, "o1")
        err = await refused(c, stack, "refund", **refund("r4", "o1", currency="USD"))
        assert err.reason == "currency_mismatch"
        assert (await c.call("refund", **refund("r5", "o1", "20.00")))["state"] == "succeeded"
        err = await refused(c, stack, "refund", **refund("r6", "o1", "10.01"))
        assert err.reason == "refund_exceeds_original"
        assert err.data["original_amount"] == "30.00"
        assert err.data["refunded_amount"] == "20.00"
        assert (await c.call("refund", **refund("r7", "o1", "10.00")))["state"] == "succeeded"
        # A void reverses the whole sale: not after a refund.
        err = await refused(c, stack, "void", terminal="lan-1", reference_id="v2",
                            original_reference_id="o1")  # fmt: skip
        assert err.reason == "refund_exceeds_original"


async def test_an_unknown_refund_counts_as_paid_out(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await sale(c, "o1")
        stack.terminal("lan").arm("never_answer")
        err = await call_error(c, "refund", **refund("r1", "o1", "25.00"), timeout_s=1)
        assert err.reason == "timeout_outcome_unknown"
        await c.call("transaction.resolve", reference_id="r1", outcome="succeeded", note="seen")
        err = await refused(c, stack, "refund", **refund("r2", "o1", "5.01"))
        assert err.reason == "refund_exceeds_original"
        assert err.data["refunded_amount"] == "25.00"


async def test_original_elsewhere_skips_the_journal_check_but_is_journaled(
    stack: Stack,
) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await sale(c, "o1")  # known to the terminal, pretend another box took it
        tx = await c.call("refund", **refund("r1", "o1", "5.00", original_elsewhere=True))
        assert tx["state"] == "succeeded"
        stored = await c.call("transaction.get", reference_id="r1")
        assert stored["params"]["original_elsewhere"] is True
        tx = await c.call("refund", **refund("r2", "elsewhere-9", "5.00", original_elsewhere=True))
        assert tx["state"] == "failed"  # the terminal itself refuses what it never took
        assert stack.requests("lan", "r2") == 1


async def test_concurrent_refunds_of_one_original_never_together_exceed_it(
    stack: Stack,
) -> None:
    """Refunds on three terminals at once (no busy lock between them), each alone within
    the sale, together over it: exactly one passes; the others never leave the box."""
    links = ("lan", "serial", "cloud")
    async with open_trio_client(stack.socket) as c:
        for link in links:
            await pair(c, stack, link)
        await sale(c, "o1")
        for link in links:  # whoever goes out first stays pending a while
            stack.terminal(link).arm("delay", params={"seconds": 0.5})
        outcomes: dict[str, str] = {}

        async def one(link: str) -> None:
            params = {**refund(f"r-{link}", "o1", "20.00"), "terminal": f"{link}-1"}
            try:
                await c.call("refund", **params)
                outcomes[link] = "sent"
            except EcrdError as exc:
                outcomes[link] = exc.reason

        async with trio.open_nursery() as n:
            for link in links:
                n.start_soon(one, link)
        listed = await c.call("transaction.list", limit=10)
    assert sorted(outcomes.values()) == ["refund_exceeds_original"] * 2 + ["sent"]
    for link, outcome in outcomes.items():
        assert stack.requests(link, f"r-{link}") == (outcome == "sent")
    refunds = [r for r in listed if r["action"] == "Refund"]
    assert len(refunds) == 1
