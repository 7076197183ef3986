"""Rules of evidence (issue #21): one authority settles a payment, on proof alone, and keeps
every proof. Each test is one way a shop lost money or a result before, and fails if the
rule that prevents it is taken out: the daemon and the simulator on real links, the real
socket, the real ``ecrctl`` and ``socat`` where a person would use them.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from stack import Stack, call_error, pair, start_stack, wait_link_up

from ecrd import ctl_out
from ecrd.client import TrioClient, open_trio_client
from ecrd.ctl_fleet import summarise
from ecrd.store.journal import JournalError

ROOT = Path(__file__).resolve().parents[1]
ECRCTL = str(Path(sys.executable).parent / "ecrctl")
TID = {"lan": "lan-1", "serial": "serial-1", "cloud": "cloud-1"}


def sale(link: str, ref: str, amount: str = "10.00", **more: Any) -> dict[str, Any]:
    return {"terminal": TID[link], "amount": amount, "currency": "HKD", "reference_id": ref,
            **more}  # fmt: skip


async def state_of(c: TrioClient, ref: str) -> str:
    tx = await c.call("transaction.get", reference_id=ref)
    return str(tx["state"])


async def until_state(c: TrioClient, ref: str, state: str, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while await state_of(c, ref) != state:
            await trio.sleep(0.05)


# -- 1. proof after a person's resolve ------------------------------------------------------


async def test_a_late_success_after_a_person_resolved_failed_is_kept_and_disputed(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A serial sale times out, a supervisor resolves it failed, then the terminal's real
    Success arrives on the line. Dropping it would make the cashier charge again."""
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c, open_trio_client(stack.socket) as watch:
        await watch.call("subscribe", topics=["transaction.disputed"])
        await pair(c, stack, "serial")
        await wait_link_up(c, "serial-1")
        stack.terminal("serial").arm("delay", params={"seconds": 2.0})
        err = await call_error(c, "sale", **sale("serial", "s1", timeout_s=1))
        assert err.reason == "timeout_outcome_unknown"
        resolved = await c.call(
            "transaction.resolve", reference_id="s1", outcome="failed", note="not on screen"
        )
        assert resolved["state"] == "resolved_failed"
        await until_state(c, "s1", "disputed")
        with trio.fail_after(2):  # systemd's STATUS= line, refreshed by the change itself
            while "1 DISPUTED" not in stack.daemon.status_line():
                await trio.sleep(0.01)
        with trio.fail_after(5):
            event = await watch.events.receive()
        tx = await c.call("transaction.get", reference_id="s1")
        status = await c.call("status")
        listed = await c.call("transaction.list", state="disputed")
        metrics = await c.call("metrics")
        after = await c.call("sale", **sale("serial", "s2"))  # disputed does not block
        no_note = await call_error(c, "transaction.resolve", reference_id="s1",
                                   outcome="succeeded", note="")  # fmt: skip
        again = await c.call("transaction.resolve", reference_id="s1", outcome="succeeded",
                             note="on the customer's statement")  # fmt: skip
    assert stack.charges("serial", "s1") == 1
    assert (event["reference_id"], event["was"]) == ("s1", "resolved_failed")
    kinds = [h["evidence"]["kind"] for h in tx["history"] if h["evidence"]]
    assert kinds[-1] == "late_reply"
    assert tx["history"][-1]["evidence"]["body"]["status"] == "Success"
    assert tx["error"]["reason"] == "disputed" and "ecrctl resolve s1" in tx["note"]
    assert status["journal"]["disputed"] == 1
    assert [r["reference_id"] for r in listed] == ["s1"]
    assert 'ecrd_disputed_transactions{terminal="serial-1"} 1.0' in metrics
    assert any(r.levelname == "ERROR" and "DISPUTED" in r.getMessage() for r in caplog.records)
    assert after["state"] == "succeeded"
    assert no_note.reason == "invalid_params"
    assert again["state"] == "resolved_succeeded"


# -- 2. a status answer settles by an allowlist -------------------------------------------


@pytest.mark.parametrize("code", ["unsupported_action", "TRANSACTION_NOT_FOUND"])
async def test_a_failed_status_answer_never_settles_a_possibly_charged_sale(
    nursery: trio.Nursery, tmp_path: Path, code: str
) -> None:
    stack = await start_stack(nursery, tmp_path, sim_kw={"status_action": "TransactionStatus"},
                              status_action="TransactionStatus")  # fmt: skip
    term = stack.terminal("lan")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        term.arm("status_answer", params={"error_code": code}, sticky=True)
        term.arm("drop")  # charged, then no reply
        err = await call_error(c, "sale", **sale("lan", "u1"))
        before = term.stats.requests
        with trio.fail_after(10):  # asked at once, then after 1 s
            while term.stats.requests < before + 2:
                await trio.sleep(0.05)
        tx = await c.call("transaction.get", reference_id="u1")
    assert err.reason == "timeout_outcome_unknown"
    assert tx["state"] == "unknown" and stack.charges("lan", "u1") == 1
    kept = [
        h["evidence"] for h in tx["history"] if (h["evidence"] or {}).get("kind") == "status_answer"
    ]
    assert kept and kept[0]["body"]["errorCode"] == code  # the answer is kept as evidence


async def test_a_status_answer_with_a_code_on_not_charged_codes_settles_failed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(
        nursery, tmp_path, sim_kw={"status_action": "TransactionStatus"},
        status_action="TransactionStatus", not_charged_codes=["transaction_not_found"],
    )  # fmt: skip
    term = stack.terminal("lan")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        term.arm("status_answer", params={"error_code": "TRANSACTION_NOT_FOUND"}, sticky=True)
        term.arm("never_answer")  # the terminal never took it to the customer
        err = await call_error(c, "sale", **sale("lan", "n1", timeout_s=1))
        await until_state(c, "n1", "failed")
    assert err.reason == "timeout_outcome_unknown"
    assert stack.charges("lan", "n1") == 0


# -- 3. the refund guard has no side doors --------------------------------------------------


@pytest.fixture
async def lan(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
    return stack


def refund(ref: str, original: str, amount: str, **more: Any) -> dict[str, Any]:
    return {**sale("lan", ref, amount), "original_reference_id": original, **more}


@pytest.mark.parametrize("amount", ["30.00", "99999.00"])
async def test_original_elsewhere_never_skips_a_local_original(lan: Stack, amount: str) -> None:
    async with open_trio_client(lan.socket) as c:
        await c.call("sale", **sale("lan", "o1", "30.00"))
        await c.call("refund", **refund("o1-r1", "o1", "30.00"))
        err = await call_error(c, "refund", **refund("o1-r2", "o1", amount,
                                                      original_elsewhere=True))  # fmt: skip
    assert err.reason == "refund_exceeds_original"
    assert lan.requests("lan", "o1-r2") == 0  # it never reached the terminal


async def test_a_preauth_is_not_refunded_it_is_voided(lan: Stack) -> None:
    async with open_trio_client(lan.socket) as c:
        await c.call("preauth", **sale("lan", "p1", "50.00"))
        err = await call_error(c, "refund", **refund("p1-r", "p1", "50.00"))
        void = await c.call("void", terminal="lan-1", reference_id="p1-v",
                            original_reference_id="p1")  # fmt: skip
    assert (err.reason, err.data["original_action"]) == ("original_not_refundable", "PreAuth")
    assert lan.requests("lan", "p1-r") == 0
    assert void["state"] == "succeeded"


# -- 4. the end-of-day report nets by what each void undoes ---------------------------------


def row(ref: str, action: str, amount: str | None, original: str | None = None,
        **more: Any) -> dict[str, Any]:  # fmt: skip
    params = {"original_reference_id": original} if original else {}
    currency = None if action == "Void" else "HKD"
    return {"reference_id": ref, "terminal": "t1", "action": action, "amount": amount,
            "currency": currency, "state": "succeeded", "params": params, **more}  # fmt: skip


def test_the_report_nets_a_void_by_what_it_undoes_with_amounts_from_the_journal() -> None:
    """Sale 10, refund 4, void of that refund, preauth 50, void of it: +10.00, not -48.00.
    A void's reply carries a non-numeric amount: it is never read."""
    odd = {"reply": {"amount": "n/a", "currency": "XXX"}}
    rows = [
        row("s", "Sale", "10.00"),
        row("r", "Refund", "4.00", "s"),
        row("rv", "Void", None, "r", **odd),
        row("p", "PreAuth", "50.00"),
        row("pv", "Void", None, "p", **odd),
    ]
    (t1,) = summarise(rows)["terminals"]
    assert (t1["currency"], t1["net"]) == ("HKD", "10.00")
    assert t1["count"] == {"Sale": 1, "Refund": 1, "Void of Refund": 1, "PreAuth": 1,
                           "Void of PreAuth": 1}  # fmt: skip


def test_a_void_of_an_original_from_another_day_nets_with_that_original() -> None:
    earlier = {"s0": row("s0", "Sale", "20.00", approved_amount="25.00")}  # a tip
    report = summarise([row("v", "Void", None, "s0")], earlier)
    assert report["terminals"][0]["net"] == "-25.00"
    elsewhere = summarise([row("v2", "Void", None, "from-another-box")])
    assert [r["reference_id"] for r in elsewhere["not_netted"]] == ["v2"]


# -- 5. money needs a caller who hears the answer ------------------------------------------


async def test_a_money_method_sent_as_a_notification_is_not_executed(lan: Stack) -> None:
    stream = await trio.open_unix_socket(lan.socket)
    lines = [
        {"jsonrpc": "2.0", "method": "sale", "params": sale("lan", "quiet-1")},
        [{"jsonrpc": "2.0", "method": "refund", "params": refund("quiet-2", "x", "1.00")}],
        {"jsonrpc": "2.0", "id": 7, "method": "ping"},
    ]
    await stream.send_all(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    with trio.fail_after(5):
        reply = json.loads((await stream.receive_some(65536)).split(b"\n")[0])
    await stream.aclose()
    assert reply["id"] == 7  # nothing else was answered: a notification gets no reply
    async with open_trio_client(lan.socket) as c:
        for ref in ("quiet-1", "quiet-2"):
            assert (await call_error(c, "transaction.get", reference_id=ref)).reason == (
                "transaction_not_found"
            )
            assert lan.requests("lan", ref) == 0
        metrics = await c.call("metrics")
    assert 'ecrd_refusals_total{kind="money_notification"} 2.0' in metrics


# -- 6. a failed write is retried, and visible ------------------------------------------------


async def test_an_outcome_the_journal_could_not_take_is_listed_and_written_later(
    lan: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = lan.daemon.journal

    def disk_full(*args: object, **kwargs: object) -> None:
        raise JournalError("database or disk is full")

    async with open_trio_client(lan.socket) as c:
        monkeypatch.setattr(journal, "apply", disk_full)
        err = await call_error(c, "sale", **sale("lan", "df"))
        listed = await c.call("transaction.list", state="unknown")
        blocked = await call_error(c, "sale", **sale("lan", "df2"))
        refused = await call_error(c, "transaction.resolve", reference_id="df",
                                   outcome="failed", note="not seen")  # fmt: skip
        monkeypatch.undo()  # the disk has room again
        await until_state(c, "df", "succeeded")  # the terminal's reply, written by ecrd
        late = await call_error(c, "transaction.resolve", reference_id="df",
                                outcome="failed", note="too late")  # fmt: skip
        tx = await c.call("sale", **sale("lan", "df2"))
    assert err.reason == "timeout_outcome_unknown" and err.data["cause"] == "journal_error"
    assert err.data["reply"]["status"] == "Success"  # the terminal's word is not lost
    assert [(r["reference_id"], r["state"], r["error"]["reason"]) for r in listed] == [
        ("df", "unknown", "journal_error")
    ]
    assert listed[0]["reply"]["status"] == "Success"
    assert blocked.reason == "unresolved_transaction"
    assert refused.reason == "journal_error"  # a person cannot overrule the kept reply
    assert late.reason == "invalid_state"
    assert tx["state"] == "succeeded"
    assert lan.charges("lan", "df") == 1


# -- 7. amounts the terminal changes --------------------------------------------------------


async def test_a_tipped_sale_settles_with_its_approved_amount_when_tips_are_allowed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path, amount_changes=["tip"])
    term = stack.terminal("lan")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        term.arm("tip", params={"amount": "2.00"})
        tx = await c.call("sale", **sale("lan", "t1", "10.00"))
        too_much = await call_error(c, "refund", **refund("t1-r", "t1", "12.01"))
        back = await c.call("refund", **refund("t1-r2", "t1", "12.00"))
        term.arm("partial", params={"amount": "4.00"})  # not allowed on this terminal
        err = await call_error(c, "sale", **sale("lan", "t2", "10.00"))
    assert (tx["state"], tx["amount"], tx["approved_amount"]) == ("succeeded", "10.00", "12.00")
    assert too_much.reason == "refund_exceeds_original" and back["state"] == "succeeded"
    assert err.data["cause"] == "reply_mismatch" and stack.charges("lan", "t2") == 1


async def test_a_tipped_sale_is_unknown_where_tips_are_not_allowed(lan: Stack) -> None:
    lan.terminal("lan").arm("tip", params={"amount": "2.00"})
    async with open_trio_client(lan.socket) as c:
        err = await call_error(c, "sale", **sale("lan", "t3", "10.00"))
    assert err.data["cause"] == "reply_mismatch"


# -- 8. ecrctl never lies by exit code ------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_an_interrupted_ecrctl_sale_says_the_payment_goes_on(
    lan: Stack, signum: signal.Signals
) -> None:
    lan.terminal("lan").arm("delay", params={"seconds": 1.5})
    proc = await trio.lowlevel.open_process(
        [ECRCTL, "--socket", lan.socket, "sale", "lan-1", "10.00", "--ref", "cc-1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    with trio.fail_after(10):
        while lan.requests("lan", "cc-1") == 0:
            await trio.sleep(0.02)
    proc.send_signal(signum)
    assert proc.stderr is not None
    err = b""
    with trio.fail_after(10):
        while chunk := await proc.stderr.receive_some():
            err += chunk
        code = await proc.wait()
    text = err.decode()
    assert code == ctl_out.EXIT_INTERRUPTED and code not in (0, 1)
    assert "Traceback" not in text
    assert "cc-1" in text and "ecrctl tx cc-1" in text and "NOT cancelled" in text
    async with open_trio_client(lan.socket) as c:
        await until_state(c, "cc-1", "succeeded")  # the payment went on
    assert lan.charges("lan", "cc-1") == 1


def readme_socat_line() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\necho '(.+?)' \\\n  \| (socat .+?)\n```", text, re.S)
    assert block is not None, "README's socat example"
    return [block.group(1), *shlex.split(block.group(2))]


async def test_the_readmes_socat_line_prints_the_result_of_a_slow_sale(lan: Stack) -> None:
    request, *socat = readme_socat_line()
    line = json.loads(request)
    line["params"].update(terminal="lan-1", reference_id="socat-1")
    lan.terminal("lan").arm("delay", params={"seconds": 1.5})  # longer than socat's 0.5 s
    argv = [f"UNIX-CONNECT:{lan.socket}" if a.startswith("UNIX-CONNECT:") else a for a in socat]
    done = await trio.run_process(argv, stdin=json.dumps(line).encode() + b"\n",
                                  capture_stdout=True, check=False)  # fmt: skip
    reply = json.loads(done.stdout)
    assert reply["result"]["state"] == "succeeded"
    assert reply["result"]["reference_id"] == "socat-1"
