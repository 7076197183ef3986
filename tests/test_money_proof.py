"""Money safety, round two: a reply settles only what it proves, and a missing record is
never trusted (design.md §3 rules 3 and 4, docs/flows.md "A reply settles only what it
proves"). The simulator on real links, the daemon on a real Unix socket.

Each test is one way a shop could charge a customer twice or lose a result, and fails if
the check that prevents it is taken out of ecrd.
"""

from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from stack import Stack, call_error, config_for, pair, start_stack, until

from ecrd.client import open_trio_client
from ecrd.daemon import Daemon
from ecrd.money.evidence import Expected, Policy, Reply, StatusAnswer, Verdict, classify

TID = {"lan": "lan-1", "serial": "serial-1", "cloud": "cloud-1"}


def sale(link: str, ref: str, amount: str = "100.00") -> dict[str, Any]:
    return {"terminal": TID[link], "amount": amount, "currency": "HKD", "reference_id": ref}


# -- the rule, without I/O ------------------------------------------------------------------


def money_verdict(
    sent: Expected, body: dict[str, Any], inconclusive: tuple[str, ...] = ()
) -> Verdict:
    """What the reply to ``sent`` proves (the envelope's action is the request's)."""
    return classify(sent, Reply(sent.action, body), Policy.of(inconclusive))


def status_verdict(
    sent: Expected, body: dict[str, Any], not_charged: tuple[str, ...] = ()
) -> Verdict:
    return classify(
        sent, StatusAnswer("TransactionStatus", body), Policy.of(not_charged=not_charged)
    )


SENT = Expected("order-1", "Sale", amount="100.00", currency="HKD", request_id="rq-1")
GOOD = {
    "status": "Success",
    "referenceID": "order-1",
    "amount": "100.00",
    "currency": "HKD",
    "transactionType": "Sale",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("referenceID", "order-2"),
        ("amount", "0.01"),
        ("currency", "JPY"),
        ("transactionType", "Refund"),
        ("requestID", "rq-other"),
    ],
)
def test_a_success_that_contradicts_the_request_is_unknown(field: str, value: str) -> None:
    verdict = money_verdict(SENT, {**GOOD, field: value})
    assert (verdict.state, verdict.cause) == ("unknown", "reply_mismatch")
    assert field in verdict.message


def test_fields_a_reply_leaves_out_or_empty_contradict_nothing() -> None:
    assert money_verdict(SENT, {"status": "Success", "referenceID": ""}).state == "succeeded"
    assert money_verdict(SENT, {**GOOD, "amount": "100.0"}).state == "succeeded"  # a decimal
    assert money_verdict(SENT, {"status": "Failed", "errorCode": "DECLINED"}).state == "failed"


def test_duplicate_reference_proves_nothing_and_the_list_extends_per_terminal() -> None:
    dup = {"status": "Failed", "errorCode": "DUPLICATE_REFERENCE", "referenceID": "order-1"}
    assert money_verdict(SENT, dup).cause == "inconclusive_error"
    odd = {"status": "Failed", "errorCode": "HOST_TIMEOUT"}
    assert money_verdict(SENT, odd).state == "failed"
    assert money_verdict(SENT, odd, ("HOST_TIMEOUT",)).cause == "inconclusive_error"


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "Failed", "errorCode": "UNSUPPORTED_ACTION"},
        {"status": "Failed", "errorCode": "UNSUPPORTED_ACTION", "referenceID": "order-1",
         "transactionType": "Sale"},
        {"status": "Failed", "errorCode": "NOT_FOUND", "referenceID": "order-1"},
        {"status": "Failed", "errorCode": "DECLINED", "referenceID": "order-2",
         "transactionType": "Sale"},
        {"status": "Success"},
    ],
)  # fmt: skip
def test_a_status_answer_settles_only_when_it_names_and_describes_the_payment(
    answer: dict[str, Any],
) -> None:
    assert not status_verdict(SENT, answer).settles


def test_a_status_answer_that_names_and_matches_the_payment_settles_it() -> None:
    """A Success proves the charge; a Failed proves "not charged" only with a code the
    terminal's not_charged_codes allowlist names (money/evidence.py)."""
    declined = {**GOOD, "status": "Failed", "errorCode": "DECLINED"}
    assert status_verdict(SENT, declined, not_charged=("declined",)).state == "failed"
    assert status_verdict(SENT, declined).cause == "not_proven"
    assert status_verdict(SENT, GOOD).state == "succeeded"


# -- 1. an unsupported status action ------------------------------------------------------


async def test_an_unsupported_status_action_leaves_a_charged_payment_unknown(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """ecrd is configured with a status action the terminal does not know: its answer
    ``Failed/UNSUPPORTED_ACTION`` must not settle a charged sale as failed."""
    stack = await start_stack(nursery, tmp_path, status_action="TransactionStatus")
    term = stack.terminal("lan")
    assert term.status_action is None  # the simulated terminal answers UNSUPPORTED_ACTION
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        term.arm("drop")  # charged, then no reply
        before = term.stats.requests
        err = await call_error(c, "sale", **sale("lan", "s1"))
        assert err.reason == "timeout_outcome_unknown"
        with trio.fail_after(10):  # the status action is asked at once, then after 1 s
            while term.stats.requests < before + 3:
                await trio.sleep(0.05)
        tx = await c.call("transaction.get", reference_id="s1")
    assert tx["state"] == "unknown"
    assert stack.charges("lan", "s1") == 1


# -- 2. replies checked against their request ---------------------------------------------


@pytest.mark.parametrize(
    ("link", "field"),
    [
        ("lan", "referenceID"),
        ("lan", "amount"),
        ("lan", "currency"),
        ("lan", "transactionType"),
        ("lan", "action"),
        ("lan", "duplicate_keys"),
        ("cloud", "amount"),
        ("cloud", "action"),
        ("serial", "referenceID"),
        ("serial", "duplicate_keys"),
    ],
)
async def test_a_charged_reply_that_contradicts_the_request_is_unknown_never_succeeded(
    stack: Stack, link: str, field: str
) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, link)
        stack.terminal(link).arm("mismatch", params={"field": field})
        err = await call_error(c, "sale", **sale(link, "m1"))
        tx = await c.call("transaction.get", reference_id="m1")
    assert err.reason == "timeout_outcome_unknown"
    expected_cause = "ambiguous_reply" if field == "duplicate_keys" else "reply_mismatch"
    assert err.data["cause"] == expected_cause
    assert tx["state"] == "unknown"
    if field != "duplicate_keys":  # the reply is kept verbatim as the evidence
        assert tx["reply"]["status"] == "Success"
    assert stack.charges(link, "m1") == 1


# -- 3. the journal checked, not assumed ----------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_journal_deleted_or_replaced_under_ecrd_refuses_payments_before_sending(
    stack: Stack, how: str
) -> None:
    state = stack.tmp / "state"
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        assert (await c.call("sale", **sale("lan", "j1")))["state"] == "succeeded"
        for f in state.glob("journal.sqlite3*"):
            f.unlink()
        if how == "replaced":
            (state / "journal.sqlite3").write_bytes(b"")
        err = await call_error(c, "sale", **sale("lan", "j2"))
        status = await c.call("status")
    assert err.reason == "journal_error"
    assert how in err.message
    assert stack.requests("lan", "j2") == 0  # nothing left the box
    assert status["journal_problem"] is not None
    assert "NO PAYMENTS" in stack.daemon.status_line()


async def test_a_retry_the_terminal_calls_a_duplicate_reference_is_unknown_not_failed(
    stack: Stack, nursery: trio.Nursery
) -> None:
    """The journal that knew ``d1`` is gone (a second ecrd on an empty state directory,
    paired the same way): the retry of a charged sale gets DUPLICATE_REFERENCE from the
    terminal, which proves nothing about the first attempt."""
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        assert (await c.call("sale", **sale("lan", "d1")))["state"] == "succeeded"
    other = stack.tmp / "other"
    (other / "state").mkdir(parents=True, mode=0o700)
    shutil.copy(stack.tmp / "state" / "pairings.toml", other / "state" / "pairings.toml")
    daemon = Daemon(config_for(stack.description, other))
    await nursery.start(daemon.run)
    async with open_trio_client(daemon.config.daemon.socket) as c:
        err = await call_error(c, "sale", **sale("lan", "d1"))
        tx = await c.call("transaction.get", reference_id="d1")
    assert err.data["cause"] == "inconclusive_error"
    assert tx["state"] == "unknown"
    assert tx["reply"]["errorCode"] == "DUPLICATE_REFERENCE"
    assert stack.charges("lan", "d1") == 1


# -- 4. a waiting sale ends with its client -----------------------------------------------


async def test_a_sale_waiting_for_a_busy_terminal_is_dropped_when_its_client_hangs_up(
    stack: Stack,
) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        stack.terminal("lan").arm("delay", params={"seconds": 1.5})
        async with trio.open_nursery() as n:
            n.start_soon(partial(c.call, "sale", **sale("lan", "first")))
            await stack.held("lan", "first")
            waiter = await trio.open_unix_socket(stack.socket)
            line = {"jsonrpc": "2.0", "id": 1, "method": "sale",
                    "params": {**sale("lan", "second"), "wait": True}}  # fmt: skip
            await waiter.send_all(trio_json(line))
            await stack.queued("lan-1")
            await waiter.aclose()
        await stack.queued("lan-1", 0)  # the terminal is idle again: the waiter's turn came
        err = await call_error(c, "transaction.get", reference_id="second")
    assert err.reason == "transaction_not_found"  # never journaled
    assert stack.requests("lan", "second") == 0  # never sent


async def test_a_waiting_sale_whose_client_stays_is_sent(stack: Stack) -> None:
    """The control for the test above: the same wait with the client still there."""
    async with open_trio_client(stack.socket) as c, open_trio_client(stack.socket) as d:
        await pair(c, stack, "lan")
        stack.terminal("lan").arm("delay", params={"seconds": 0.5})
        async with trio.open_nursery() as n:
            n.start_soon(partial(c.call, "sale", **sale("lan", "first")))
            await stack.held("lan", "first")
            tx = await d.call("sale", **sale("lan", "second"), wait=True)
    assert tx["state"] == "succeeded"


def trio_json(obj: dict[str, Any]) -> bytes:
    import json

    return json.dumps(obj).encode() + b"\n"


# -- 5, 6. pairing changes nothing until it has succeeded and is saved ----------------------


async def hang_up_server(nursery: trio.Nursery) -> int:
    """A port on loopback that takes a connection and closes it unanswered (a host that is
    not this terminal): a request sent there may have been delivered, and gets no reply."""

    async def hang_up(stream: trio.SocketStream) -> None:
        with trio.move_on_after(2):
            await stream.receive_some(65536)  # the request arrives...
        await stream.aclose()  # ...and nothing comes back

    listeners = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


@pytest.mark.parametrize("where", ["another host", "right address"])
async def test_a_failed_re_pair_with_a_qr_address_leaves_the_terminal_where_it_was(
    stack: Stack, nursery: trio.Nursery, where: str
) -> None:
    lan = next(t for t in stack.description["terminals"] if t["link"] == "lan")
    port = await hang_up_server(nursery) if where == "another host" else lan["port"]
    qr = {"pairCode": "000000", "ip": "127.0.0.1", "port": port, "deviceId": "x"}
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await call_error(c, "terminal.pair", terminal="lan-1", code=qr)
        listed = {t["id"]: t for t in await c.call("terminal.list")}
        tx = await c.call("sale", **sale("lan", "after"))
    assert listed["lan-1"]["paired"] is True
    assert tx["state"] == "succeeded"
    assert stack.charges("lan", "after") == 1


async def test_a_re_pair_whose_pin_cannot_be_saved_stops_before_the_terminal_switches(
    stack: Stack,
) -> None:
    term = stack.terminal("lan")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        old_pin2 = term.pin2
        (stack.tmp / "state" / "pairings.toml").write_text("this is = not [valid toml\n")
        code = term.show_pairing_page()
        err = await call_error(c, "terminal.pair", terminal="lan-1", code=code)
        tx = await c.call("sale", **sale("lan", "still-works"))
    assert err.reason == "pairing_failed"
    assert "pairing store" in err.message
    assert term.pin2 == old_pin2  # the terminal was never asked for a new PIN
    assert tx["state"] == "succeeded"


async def _second_daemon(stack: Stack, nursery: trio.Nursery, pairings: str) -> Daemon:
    other = stack.tmp / "other"
    (other / "state").mkdir(parents=True, mode=0o700)
    path = other / "state" / "pairings.toml"
    path.write_text(pairings)
    os.chmod(path, 0o600)
    daemon = Daemon(config_for(stack.description, other))
    await nursery.start(daemon.run)
    return daemon


def pairings_text(sn: str, pin: str, pending_pin: str) -> str:
    entry = (
        'device_sn = "{sn}"\npin = "{pin}"\nscheme = "v2"\n'
        'paired_at = "2026-11-27T10:00:00+00:00"\n'
    )
    return (
        "version = 1\n\n[terminals.lan-1]\n" + entry.format(sn=sn, pin=pin)
        + "\n[pending.lan-1]\n" + entry.format(sn=sn, pin=pending_pin)
    )  # fmt: skip


@pytest.mark.parametrize("terminal_uses", ["pending", "old"])
async def test_a_pending_pin_is_settled_at_start_by_what_the_terminal_accepts(
    stack: Stack, nursery: trio.Nursery, terminal_uses: str
) -> None:
    """A crash between Pair and saving the pairing left the new PIN as pending. At start
    the terminal decides: the PIN it answers under becomes the pairing."""
    term = stack.terminal("lan")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
    real = term.pin2
    assert real is not None
    bogus = "999999" if real != "999999" else "888888"
    pin, pending = (bogus, real) if terminal_uses == "pending" else (real, bogus)
    daemon = await _second_daemon(stack, nursery, pairings_text(term.sn, pin, pending))
    async with open_trio_client(daemon.config.daemon.socket) as c:
        with trio.fail_after(10):
            while not {t["id"]: t for t in await c.call("terminal.list")}["lan-1"]["paired"]:
                await trio.sleep(0.05)
        tx = await c.call("sale", **sale("lan", f"after-{terminal_uses}"))
    assert tx["state"] == "succeeded"
    text = (stack.tmp / "other" / "state" / "pairings.toml").read_text()
    assert "[pending" not in text
    assert f'pin = "{real}"' in text


async def test_no_sale_starts_while_the_terminal_is_being_paired_again(stack: Stack) -> None:
    """Rule 5 holds pairing too: a sale sent while the terminal changes its PIN would be
    sealed under a PIN it may no longer accept, so it is refused as busy, never sent."""
    term = stack.terminal("lan")
    async with open_trio_client(stack.socket) as c, open_trio_client(stack.socket) as pos:
        await pair(c, stack, "lan")
        code = term.show_pairing_page()
        term.arm("delay", params={"seconds": 1.0}, actions=["DeviceInfo"])
        before = term.stats.requests
        async with trio.open_nursery() as n:
            n.start_soon(partial(c.call, "terminal.pair", terminal="lan-1", code=code))
            await until(lambda: term.stats.requests > before)  # its DeviceInfo is there
            err = await call_error(pos, "sale", **sale("lan", "during"))
        tx = await pos.call("sale", **sale("lan", "after"))
    assert err.reason == "terminal_busy"
    assert stack.requests("lan", "during") == 0
    assert tx["state"] == "succeeded"
