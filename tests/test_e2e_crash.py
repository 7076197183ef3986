"""Crash tests: ``ecrd`` is SIGKILLed at each stage of a sale, restarted, and the POS retries
with the same ``reference_id``. The simulator (a separate process that keeps running across
the daemon's restart) keeps a ledger of what the terminal received and charged, so every
test can check the one thing that matters: **at most one charge per reference, and no result
lost** (design.md §3, rules 1, 2, 3, 4 and 6).

The stages, with the failpoint (``ECRD_FAILPOINTS``, ecrd/failpoints.py) or simulator fault
that holds the sale there while the test kills the daemon:

a. journaled ``pending``, nothing sent yet         ``after_begin``
b. sent, the customer is still paying              simulator ``delay`` fault
c. the terminal's reply in hand, not journaled     ``before_finish``
   journaled ``succeeded``, not yet returned       ``after_finish``
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from e2e import Daemon, Sim, pair, running, until

from ecrd.client import EcrdError

# Two decimals always; none of these cents is a magic amount (.91-.98) of the simulator.
AMOUNT = "12.30"
SIM_ARGS = ("--lan", "1", "--serial", "1", "--reply-salt-reuse")


def rig(
    tmp: Path, *sim_args: str, env: dict[str, str] | None = None, **terminal_extra: Any
) -> AbstractContextManager[tuple[Sim, Daemon]]:
    """The simulator and ``ecrd run`` (with ``env``, e.g. a failpoint) as subprocesses."""
    return running(tmp, *SIM_ARGS, *sim_args, env=env, timeout_s=10, **terminal_extra)


class Background:
    """One money call from its own client in a thread: the POS waiting for its reply."""

    def __init__(self, daemon: Daemon, method: str, **params: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(daemon, method, params))
        self._thread.start()

    def _run(self, daemon: Daemon, method: str, params: dict[str, Any]) -> None:
        try:
            with daemon.client(timeout=60) as client:
                self.result = client.call(method, **params)
        except (EcrdError, OSError) as exc:
            self.error = exc

    @property
    def waiting(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join(15)
        assert not self._thread.is_alive(), "the client never got an answer"


def state_of(daemon: Daemon, ref: str) -> str | None:
    try:
        return str(daemon.call("transaction.get", reference_id=ref)["state"])
    except EcrdError as exc:
        if exc.reason == "transaction_not_found":
            return None
        raise


def on_terminal(sim: Sim, link: str, ref: str) -> str:
    """The status of ``ref`` in the terminal's ledger: InProgress, Success or Failed."""
    return str(next(e for e in sim.ledger(link) if e["referenceID"] == ref)["status"])


def sale(tid: str, ref: str, amount: str = AMOUNT) -> dict[str, Any]:
    return {"terminal": tid, "amount": amount, "currency": "HKD", "reference_id": ref}


def kill_and_restart(daemon: Daemon, pos: Background) -> None:
    """SIGKILL (nothing runs: no shutdown grace, no journal write), then a fresh process
    without any failpoint. The POS that was waiting sees its connection drop."""
    assert pos.waiting, "the sale finished before the kill"
    daemon.kill()
    pos.join()
    assert pos.result is None and pos.error is not None
    daemon.env = None
    daemon.start()


def assert_unknown_after_restart(daemon: Daemon, tid: str, ref: str) -> dict[str, Any]:
    """Rule 6: the record is ``unknown`` with a note; rule 4: the terminal is blocked."""
    tx: dict[str, Any] = daemon.call("transaction.get", reference_id=ref)
    assert tx["state"] == "unknown"
    assert tx["error"]["reason"] == "daemon_restarted"
    assert "ecrctl resolve" in tx["note"] and "may have been charged" in tx["note"]
    listed = daemon.call("transaction.list", state="unknown")
    assert [t["reference_id"] for t in listed] == [ref]
    blocked = daemon.error("sale", **sale(tid, f"{ref}-next"))
    assert blocked.reason == "unresolved_transaction"
    assert blocked.data["reference_ids"] == [ref]
    return tx


def assert_retry_is_unknown(daemon: Daemon, tid: str, ref: str) -> None:
    """Rules 2 and 3: the same reference returns the stored unknown record; nothing is sent."""
    again = daemon.error("sale", **sale(tid, ref))
    assert again.reason == "timeout_outcome_unknown"
    assert again.data["transaction"]["reference_id"] == ref
    assert again.data["transaction"]["state"] == "unknown"


def test_stage_a_journaled_not_sent_lan(tmp_path: Path) -> None:
    """Killed between the journal's ``pending`` row and the first byte (rules 1, 6, 2, 4).

    The request never left, but the daemon cannot prove that after a crash: the record is
    ``unknown`` and blocks the terminal. The terminal's ledger shows it never saw the ref,
    and a retry with the same reference_id does not send it now either.
    """
    env = {"ECRD_FAILPOINTS": "after_begin=30"}
    with rig(tmp_path, env=env) as (sim, daemon):
        pair(daemon, sim, "lan")
        pos = Background(daemon, "sale", **sale("lan-1", "a1"))
        until("a1 journaled pending", lambda: state_of(daemon, "a1") == "pending")
        # Rule 1: the record is on disk while the terminal has seen nothing.
        assert sim.requests("lan", "a1") == 0
        kill_and_restart(daemon, pos)

        assert_unknown_after_restart(daemon, "lan-1", "a1")
        assert sim.requests("lan", "a1") == 0
        assert_retry_is_unknown(daemon, "lan-1", "a1")
        assert sim.requests("lan", "a1") == 0

        # The cashier checks the terminal: never charged.
        done = daemon.call("transaction.resolve", reference_id="a1", outcome="failed", note="n/a")
        assert done["state"] == "resolved_failed"
        tx = daemon.call("sale", **sale("lan-1", "a2"))
        assert tx["state"] == "succeeded"
        # The reference is used up forever: a retry now gets the settled record, unsent.
        assert daemon.call("sale", **sale("lan-1", "a1"))["state"] == "resolved_failed"
        assert sim.requests("lan", "a1") == 0
        assert sim.charges("lan", "a2") == 1


@pytest.mark.parametrize("link", ["lan", "serial"])
def test_stage_b_sent_customer_still_paying(tmp_path: Path, link: str) -> None:
    """Killed while the terminal holds the request (rules 3, 6, 2, 4).

    On serial, the simulated terminal does not notice the daemon going away: the customer
    finishes and is charged, and the reply frame goes to a line nobody reads. On LAN the
    terminal sees its TCP connection close and cancels (``CONNECTION_CLOSED``, nothing
    charged). Either way the daemon cannot know: ``unknown``, and the retry must not reach
    the terminal a second time.
    """
    tid = f"{link}-1"
    with rig(tmp_path) as (sim, daemon):
        pair(daemon, sim, link)
        sim.fault(link, "delay", params={"seconds": 1.5})
        if link == "serial":
            # The reply must not be readable: a late serial reply would settle b1 by
            # itself (test_flows.py covers that); this test is about the unknown.
            sim.fault(link, "bad_crc")
        pos = Background(daemon, "sale", **sale(tid, "b1"))
        until("the terminal got b1", lambda: sim.requests(link, "b1") == 1)
        assert state_of(daemon, "b1") == "pending"
        kill_and_restart(daemon, pos)

        assert_unknown_after_restart(daemon, tid, "b1")
        # The terminal finishes with the customer on its own.
        until("the terminal finished b1", lambda: on_terminal(sim, link, "b1") != "InProgress")
        charged = {"serial": 1, "lan": 0}[link]
        assert sim.charges(link, "b1") == charged
        assert_retry_is_unknown(daemon, tid, "b1")
        assert sim.requests(link, "b1") == 1

        outcome = "succeeded" if charged else "failed"
        done = daemon.call("transaction.resolve", reference_id="b1", outcome=outcome, note="seen")
        assert done["state"] == f"resolved_{outcome}"
        # The line works for the next payment (no stale reply frame taken for its answer).
        assert daemon.call("sale", **sale(tid, "b2"))["state"] == "succeeded"
        assert sim.charges(link, "b1") == charged and sim.charges(link, "b2") == 1


def test_stage_c_reply_in_hand_not_journaled_lan(tmp_path: Path) -> None:
    """Killed with the terminal's Success in memory, before the journal write (rules 6, 3, 2).

    The customer was charged, but nothing durable says so: ``unknown``, never resent.
    """
    env = {"ECRD_FAILPOINTS": "before_finish=30"}
    with rig(tmp_path, env=env) as (sim, daemon):
        pair(daemon, sim, "lan")
        pos = Background(daemon, "sale", **sale("lan-1", "c1"))
        until("the terminal charged c1", lambda: sim.charges("lan", "c1") == 1)
        until("the failpoint", lambda: "failpoint before_finish" in daemon.log_text())
        assert state_of(daemon, "c1") == "pending"
        kill_and_restart(daemon, pos)

        assert_unknown_after_restart(daemon, "lan-1", "c1")
        assert_retry_is_unknown(daemon, "lan-1", "c1")
        assert sim.requests("lan", "c1") == 1 and sim.charges("lan", "c1") == 1
        done = daemon.call(
            "transaction.resolve", reference_id="c1", outcome="succeeded", note="on the list"
        )
        assert done["state"] == "resolved_succeeded"
        assert daemon.call("sale", **sale("lan-1", "c2"))["state"] == "succeeded"


def test_stage_c_journaled_not_returned_lan(tmp_path: Path) -> None:
    """Killed after ``succeeded`` was journaled, before the POS got it (rules 2, 6: no lost
    result). The retry returns the stored record, the terminal is not blocked, one charge."""
    env = {"ECRD_FAILPOINTS": "after_finish=30"}
    with rig(tmp_path, env=env) as (sim, daemon):
        pair(daemon, sim, "lan")
        pos = Background(daemon, "sale", **sale("lan-1", "d1"))
        until("d1 journaled", lambda: state_of(daemon, "d1") == "succeeded")
        stored = daemon.call("transaction.get", reference_id="d1")
        kill_and_restart(daemon, pos)

        assert daemon.call("transaction.get", reference_id="d1") == stored
        assert daemon.call("transaction.list", state="unknown") == []
        again = daemon.call("sale", **sale("lan-1", "d1"))
        only_get = ("started_by", "history")  # who and the audit trail: transaction.get's
        assert again == {k: v for k, v in stored.items() if k not in only_get}
        assert again["reply"]["status"] == "Success"
        assert sim.requests("lan", "d1") == 1 and sim.charges("lan", "d1") == 1
        assert daemon.call("sale", **sale("lan-1", "d2"))["state"] == "succeeded"


def test_stage_c_status_action_settles_the_recovered_record(tmp_path: Path) -> None:
    """Rule 6's other branch: with a ``status_action``, the record recovered as ``unknown``
    is settled by asking the terminal, without an operator; the retry then gets it."""
    env = {"ECRD_FAILPOINTS": "before_finish=30"}
    with rig(
        tmp_path, "--status-action", "TransactionStatus", env=env, status_action="TransactionStatus"
    ) as (sim, daemon):
        pair(daemon, sim, "lan")
        pos = Background(daemon, "sale", **sale("lan-1", "e1"))
        until("the failpoint", lambda: "failpoint before_finish" in daemon.log_text())
        kill_and_restart(daemon, pos)

        until("e1 settled", lambda: state_of(daemon, "e1") == "succeeded")
        tx = daemon.call("sale", **sale("lan-1", "e1"))
        assert tx["state"] == "succeeded" and tx["reply"]["referenceID"] == "e1"
        assert sim.requests("lan", "e1") == 1 and sim.charges("lan", "e1") == 1
        assert "in flight at the last stop" in daemon.log_text()
