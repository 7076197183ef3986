"""The money rules of design.md §3, each test named after the rule it proves, in one
process (the simulator on real links, the daemon on a real Unix socket): the home of these
rules at this level. The pure parts are proved on their functions (test_admission.py,
test_settlement.py, test_refunds.py); a crash and a kill -9 with real subprocesses
(test_e2e_crash.py); the link fallback in test_flows.py.

Each fails if its rule is taken out of ecrd/money/. Ordering waits on the daemon's events
(``Stack.event``, ``Stack.settled``) or, for the simulator's side, on its ledger
(``Stack.held``); never on a sleep.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from stack import Stack, call_error, config_for, make_sim, pair, start_stack, until

from ecrd.client import TrioClient, open_trio_client
from ecrd.daemon import Daemon
from ecrd.store.journal import Journal, JournalError
from ecrd.store.journal_view import JournalView

TID = {"lan": "lan-1", "serial": "serial-1", "cloud": "cloud-1"}


def sale(link: str, ref: str, amount: str = "10.00", **more: Any) -> dict[str, Any]:
    return {"terminal": TID[link], "amount": amount, "currency": "HKD", "reference_id": ref, **more}


def journal_path(stack: Stack) -> Path:
    return stack.tmp / "state" / "journal.sqlite3"


def read_row(path: Path, ref: str) -> dict[str, Any] | None:
    """The journal row as another process would see it: a separate SQLite connection."""
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT state, request_id, link FROM transactions WHERE reference_id = ?", (ref,)
        ).fetchone()
    return None if row is None else dict(row)


# -- rule 1: write ahead -------------------------------------------------------------------


@pytest.mark.parametrize("link", ["lan", "serial", "cloud"])
async def test_rule1_the_pending_row_is_committed_before_the_terminal_sees_the_request(
    stack: Stack, link: str
) -> None:
    """Rule 1. At the instant the terminal starts on the request, a separate SQLite
    connection already reads the ``pending`` row carrying the requestID that was sent —
    even on a slow disk, where sending alongside the journal write would win the race."""
    term = stack.terminal(link)
    seen: list[dict[str, Any] | None] = []
    money = term.payments.money
    journal = stack.daemon.journal
    begin = journal.begin

    def slow_begin(**kwargs: Any) -> Any:
        time.sleep(0.3)  # in the daemon's journal thread: a slow fsync
        return begin(**kwargs)

    async def spy(action: str, body: dict[str, Any], faults: Any) -> Any:
        seen.append(read_row(journal_path(stack), body["referenceID"]))
        return await money(action, body, faults)

    journal.begin = slow_begin  # type: ignore[method-assign]
    term.payments.money = spy  # type: ignore[method-assign]
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, link)
        tx = await c.call("sale", **sale(link, "w1"))
    assert tx["state"] == "succeeded"
    assert seen == [{"state": "pending", "request_id": tx["request_id"], "link": link}]
    # Committed is not enough: the commit must be fsynced (WAL, synchronous=FULL).
    conn = stack.daemon.journal._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


async def test_rule1_a_held_request_has_its_pending_row_on_disk(stack: Stack) -> None:
    """Rule 1, seen from outside while the terminal holds the request (never_answer)."""
    async with open_trio_client(stack.socket) as c, open_trio_client(stack.socket) as other:
        await pair(c, stack, "lan")
        stack.terminal("lan").arm("never_answer")
        async with trio.open_nursery() as n:
            n.start_soon(lambda: c.call("sale", **sale("lan", "w2")))
            await stack.held("lan", "w2")
            row = read_row(journal_path(stack), "w2")
            assert row is not None and row["state"] == "pending" and row["request_id"]
            await other.call("abort", terminal="lan-1")
        tx = await c.call("transaction.get", reference_id="w2")
    assert tx["request_id"] == row["request_id"] and tx["state"] == "failed"


async def test_rule1_nothing_is_sent_when_the_journal_cannot_record_it(stack: Stack) -> None:
    """Rule 1 (and §4): if ``begin`` cannot be made durable, the command fails and not one
    byte reaches the terminal; the terminal is not left busy."""
    journal = stack.daemon.journal
    begin = journal.begin

    def full_disk(**kwargs: Any) -> Any:
        raise JournalError("database or disk is full")

    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        journal.begin = full_disk  # type: ignore[method-assign]
        err = await call_error(c, "sale", **sale("lan", "df"))
        assert err.reason == "journal_error"
        assert stack.requests("lan", "df") == 0
        journal.begin = begin  # type: ignore[method-assign]
        tx = await c.call("sale", **sale("lan", "df2"))
    assert tx["state"] == "succeeded"


# -- rule 2: reference_id is the idempotency key --------------------------------------------


async def test_rule2_same_reference_replays_the_stored_record(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        first = await c.call("sale", **sale("lan", "r", amount="1.00"))
        again = await c.call("sale", **sale("lan", "r", amount="1.00"))
    assert again == first
    assert stack.charges("lan", "r") == 1


async def test_rule2_same_reference_while_in_flight_attaches(stack: Stack) -> None:
    stack.terminal("lan").arm("delay", params={"seconds": 0.5})
    results = []
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")

        async def attempt() -> None:
            results.append(await c.call("sale", **sale("lan", "a", amount="2.00")))

        async with trio.open_nursery() as n:
            n.start_soon(attempt)
            n.start_soon(attempt)
            n.start_soon(attempt)
    assert len(results) == 3 and results[0] == results[1] == results[2]
    assert results[0]["state"] == "succeeded"
    assert stack.charges("lan", "a") == 1


async def test_rule2_same_reference_other_parameters_is_refused(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await c.call("sale", **sale("lan", "m", amount="1.00"))
        err = await call_error(c, "sale", **sale("lan", "m", amount="2.00"))
    assert err.reason == "duplicate_reference_mismatch"
    assert err.data["transaction"]["amount"] == "1.00"
    assert stack.charges("lan", "m") == 1


async def test_rule2_a_declined_sale_is_not_tried_again_with_the_same_reference(
    stack: Stack,
) -> None:
    """Rule 2. A finished ``failed`` record is the answer for that reference forever: the
    retry does not become a second attempt at the terminal."""
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        first = await c.call("sale", **sale("lan", "dec", amount="10.91"))
        again = await c.call("sale", **sale("lan", "dec", amount="10.91"))
    assert first["state"] == "failed" and again == first
    assert stack.requests("lan", "dec") == 1


async def test_rule2_other_parameters_while_in_flight_are_refused_and_not_sent(
    stack: Stack,
) -> None:
    """Rule 2, in flight: same id, other amount → ``duplicate_reference_mismatch`` at once
    (not ``terminal_busy``, not attached), and the first request finishes alone."""
    stack.terminal("lan").arm("delay", params={"seconds": 0.5})
    async with open_trio_client(stack.socket) as c, open_trio_client(stack.socket) as other:
        await pair(c, stack, "lan")
        out: dict[str, Any] = {}

        async def first() -> None:
            out["tx"] = await c.call("sale", **sale("lan", "dup"))

        async with trio.open_nursery() as n:
            n.start_soon(first)
            await stack.held("lan", "dup")
            err = await call_error(other, "sale", **sale("lan", "dup", amount="99.00"))
            assert err.reason == "duplicate_reference_mismatch"
            elsewhere = await call_error(other, "sale", **sale("serial", "dup"))
            assert elsewhere.reason == "duplicate_reference_mismatch"
    assert out["tx"]["state"] == "succeeded" and out["tx"]["amount"] == "10.00"
    assert stack.requests("lan", "dup") == 1 and stack.requests("serial", "dup") == 0


# -- rule 3: never resend blindly ------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "fault", "cause", "charged"),
    [
        ("lan", "drop", None, 1),  # the cause of a lost reply is the link's own
        ("serial", "drop", None, 1),
        ("cloud", "drop", None, 1),
        ("lan", "wrong_key", "wrong_key", 1),
        ("lan", "stale_response", "stale_response", 1),
        ("serial", "bad_crc", "timeout", 1),
        ("lan", "never_answer", "timeout", 0),
    ],
)
async def test_rule3_an_unusable_reply_is_unknown_and_never_resent_even_with_a_fallback(
    stack: Stack, link: str, fault: str, cause: str | None, charged: int
) -> None:
    """Rule 3. The request reached the terminal, no usable reply came back (lost,
    unreadable, someone else's, corrupt, or none in time): ``unknown``, one request only,
    the cloud fallback is not used (every simulated terminal is reachable through the
    gateway too, so a resend anywhere would show up in its ledger), and the POS's retry
    with the same reference gets the stored outcome, not a second request."""
    term = stack.daemon.terminals[TID[link]]
    if link != "cloud":
        term.cfg = attrs.evolve(term.cfg, fallback="cloud")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, link)
        stack.terminal(link).arm(fault)
        err = await call_error(c, "sale", **sale(link, "u3", timeout_s=1))
        assert err.reason == "timeout_outcome_unknown"
        assert cause is None or err.data["cause"] == cause
        assert err.data["transaction"]["state"] == "unknown"
        assert err.data["transaction"]["link"] == link
        assert "ecrctl resolve" in err.data["transaction"]["note"]
        again = await call_error(c, "sale", **sale(link, "u3", timeout_s=1))
        assert again.reason == "timeout_outcome_unknown"
        # The terminal is done with the customer either way.
        await until(lambda: not stack.terminal(link).payments.busy)
    assert stack.requests(link, "u3") == 1
    assert stack.charges(link, "u3") == charged


# -- rule 4: unknown blocks ------------------------------------------------------------------


async def make_unknown(c: TrioClient, stack: Stack, ref: str) -> None:
    stack.terminal("lan").arm("drop")
    err = await call_error(c, "sale", **sale("lan", ref))
    assert err.reason == "timeout_outcome_unknown"


async def test_rule4_unknown_blocks_every_money_action_on_that_terminal_only(
    stack: Stack,
) -> None:
    """Rule 4. Sale, preauth, refund and void are all refused on the terminal with the
    unknown; another terminal and read-only methods carry on; nothing reaches the terminal."""
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await pair(c, stack, "serial")
        await c.call("sale", **sale("lan", "paid"))
        await make_unknown(c, stack, "u4")
        attempts = [
            ("sale", sale("lan", "n1")),
            ("preauth", sale("lan", "n2")),
            ("refund", sale("lan", "n3", original_reference_id="paid")),
            ("void", {"terminal": "lan-1", "reference_id": "n4", "original_reference_id": "paid"}),
        ]
        for method, params in attempts:
            err = await call_error(c, method, **params)
            assert err.reason == "unresolved_transaction", method
            assert err.data["reference_ids"] == ["u4"]
        assert all(stack.requests("lan", f"n{i}") == 0 for i in range(1, 5))
        assert (await c.call("terminal.info", terminal="lan-1"))["deviceSn"]
        assert (await c.call("sale", **sale("serial", "s1")))["state"] == "succeeded"
        # Only an unknown can be resolved; a finished record is refused.
        bad = await call_error(
            c, "transaction.resolve", reference_id="paid", outcome="failed", note="typo"
        )
        assert bad.reason == "invalid_state"


async def test_rule4_resolve_journals_who_and_why(stack: Stack) -> None:
    """Rule 4. The operator's resolution is on the record and in the audit trail: the
    caller's uid/pid (from SO_PEERCRED) and the note."""
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await make_unknown(c, stack, "who")
        note = "not on the terminal's list; customer paid cash"
        done = await c.call("transaction.resolve", reference_id="who", outcome="failed", note=note)
    peer = f"uid={os.getuid()} user={pwd.getpwuid(os.getuid()).pw_name} pid={os.getpid()} "
    assert done["state"] == "resolved_failed"
    assert done["resolved_by"].startswith(peer) and done["note"] == note
    with closing(JournalView(str(journal_path(stack)))) as view:
        last = view.history("who")[-1]
    assert (last["from"], last["to"], last["why"]) == ("unknown", "resolved_failed", note)
    assert last["who"].startswith(peer)
    # Resolved, the terminal takes money again.
    async with open_trio_client(stack.socket) as c:
        assert (await c.call("sale", **sale("lan", "next")))["state"] == "succeeded"


async def test_rule4_status_action_settles_an_unknown_by_itself(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path, status_action="TransactionStatus")
    stack.terminal("lan").status_action = "TransactionStatus"
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        settled = stack.event("transaction.state", reference_id="s", state="succeeded")
        await make_unknown(c, stack, "s")
        with trio.fail_after(10):
            await settled.wait()
        tx = await c.call("transaction.get", reference_id="s")
    assert tx["state"] == "succeeded"
    assert stack.charges("lan", "s") == 1


async def test_rule4_block_on_unknown_false_lets_new_sales_through(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Rule 4 is configurable: ``[daemon] block_on_unknown = false`` admits new payments;
    the unknown stays unknown and listed until someone settles it."""
    sim = make_sim(tmp_path)
    desc = await nursery.start(sim.run)
    cfg = config_for(desc, tmp_path)
    cfg = attrs.evolve(cfg, daemon=attrs.evolve(cfg.daemon, block_on_unknown=False))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    stack = Stack(sim, daemon, cfg.daemon.socket, desc, tmp_path)
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await make_unknown(c, stack, "u5")
        tx = await c.call("sale", **sale("lan", "after"))
        unknown = await c.call("transaction.list", state="unknown")
    assert tx["state"] == "succeeded" and stack.charges("lan", "after") == 1
    assert [t["reference_id"] for t in unknown] == ["u5"]


# -- rule 5: one money command per terminal ---------------------------------------------------


@pytest.mark.parametrize("link", ["lan", "serial", "cloud"])
async def test_rule5_abort_from_another_client_ends_the_payment_aborted(
    stack: Stack, link: str
) -> None:
    """Rule 5. While a sale waits for the customer: a second
    payment is ``terminal_busy``, read-only calls answer (``terminal.info`` from the answer
    it keeps: no DeviceInfo goes to a terminal during a payment), and ``abort`` from another
    client gets through; the sale ends ``failed`` with the terminal's reason, uncharged."""
    async with open_trio_client(stack.socket) as c, open_trio_client(stack.socket) as other:
        await pair(c, stack, link)
        await c.call("terminal.info", terminal=TID[link])  # kept info_cache_s (5 s)
        stack.terminal(link).arm("never_answer")
        out: dict[str, Any] = {}

        async def waiting_sale() -> None:
            out["tx"] = await c.call("sale", **sale(link, "ab"))

        async with trio.open_nursery() as n:
            n.start_soon(waiting_sale)
            await stack.held(link, "ab")
            busy = await call_error(other, "preauth", **sale(link, "ab2"))
            assert busy.reason == "terminal_busy" and busy.data["busy_with"] == "ab"
            assert (await other.call("transaction.get", reference_id="ab"))["state"] == "pending"
            assert (await other.call("terminal.info", terminal=TID[link]))["deviceSn"]
            reply = await other.call("abort", terminal=TID[link])
            assert reply["status"] == "Success"
    assert out["tx"]["state"] == "failed"
    assert out["tx"]["reply"]["errorCode"] == "ABORTED"
    assert stack.charges(link, "ab") == 0 and stack.requests(link, "ab2") == 0


async def test_rule5_wait_queues_behind_the_payment_in_progress(stack: Stack) -> None:
    stack.terminal("lan").arm("delay", params={"seconds": 0.4})
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        out = []

        async def attempt(ref: str, wait: bool) -> None:
            out.append(await c.call("sale", **sale("lan", ref, wait=wait)))

        async with trio.open_nursery() as n:
            n.start_soon(attempt, "w1", False)
            await stack.held("lan", "w1")
            n.start_soon(attempt, "w2", True)
    assert [t["reference_id"] for t in out] == ["w1", "w2"]
    assert [t["state"] for t in out] == ["succeeded", "succeeded"]


# -- rule 6: crash recovery before the socket takes money --------------------------------------


@asynccontextmanager
async def daemon_on(cfg: Any) -> AsyncIterator[Daemon]:
    async with trio.open_nursery() as nursery:
        daemon = Daemon(cfg)
        await nursery.start(daemon.run)
        yield daemon
        nursery.cancel_scope.cancel()


async def test_rule6_pending_rows_are_unknown_before_the_first_money_command(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Rule 6. A journal left with a ``pending`` row (the daemon died mid-payment) is
    recovered before the socket serves: the very first sale on that terminal is refused
    with ``unresolved_transaction``, and the row is ``unknown`` with its note."""
    sim = make_sim(tmp_path)
    desc = await nursery.start(sim.run)
    cfg = config_for(desc, tmp_path)
    stack = Stack(sim, None, cfg.daemon.socket, desc, tmp_path)  # type: ignore[arg-type]
    async with daemon_on(cfg), open_trio_client(cfg.daemon.socket) as c:
        await pair(c, stack, "lan")
    with Journal(journal_path(stack)) as journal:
        journal.begin(
            reference_id="crashed", terminal="lan-1", action="Sale",
            params={"amount": "5.00", "currency": "HKD"}, amount="5.00", currency="HKD",
            request_id="5b0c3f9e-8d7a-4c2b-9e1f-0a1b2c3d4e5f", link="lan",
        )  # fmt: skip
    async with daemon_on(cfg), open_trio_client(cfg.daemon.socket) as c:
        err = await call_error(c, "sale", **sale("lan", "first"))
        assert err.reason == "unresolved_transaction"
        assert err.data["reference_ids"] == ["crashed"]
        tx = await c.call("transaction.get", reference_id="crashed")
        listed = await c.call("transaction.list", state="unknown")
    assert tx["state"] == "unknown" and "ecrd stopped" in tx["note"]
    assert tx["error"]["reason"] == "daemon_restarted"
    assert [t["reference_id"] for t in listed] == ["crashed"]
    assert stack.requests("lan", "first") == 0


# -- rule 7: a hang-up does not cancel --------------------------------------------------------


async def test_rule7_a_client_that_disconnects_does_not_cancel_the_payment(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
    stack.terminal("lan").arm("delay", params={"seconds": 0.5})
    async with open_trio_client(stack.socket) as c, trio.open_nursery() as n:
        n.start_soon(lambda: c.call("sale", **sale("lan", "gone", amount="6.00")))
        await stack.held("lan", "gone")
        n.cancel_scope.cancel()  # the client hangs up while the terminal has it
    await stack.settled("gone", "succeeded")
    async with open_trio_client(stack.socket) as c:
        tx = await c.call("transaction.get", reference_id="gone")
    assert tx["state"] == "succeeded"
    assert stack.charges("lan", "gone") == 1
