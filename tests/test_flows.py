"""Flows: the daemon against the simulator over real links (HTTP on loopback, a pty, the
cloud gateway), through the real Unix socket, in one process: pairing, each link, refunds
and voids, declines, the terminal's faults, the fallback between links, a moved terminal,
the liveness probe, reloads and late replies.

The money rules of design.md §3 themselves are proved in test_money_rules.py (one test per
rule) and on the pure functions they rest on (test_admission.py, test_settlement.py).
"""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import attrs
import pytest
import trio
from stack import Stack, call_error, pair, start_stack, until

from ecrd.client import open_trio_client
from ecrd.terminal.links import cloud_link


@pytest.mark.parametrize("link", ["lan", "serial", "cloud"])
async def test_pair_then_sale_on_each_link(stack: Stack, link: str) -> None:
    tid = f"{link}-1"
    async with open_trio_client(stack.socket) as c:
        paired = await pair(c, stack, link)
        assert paired["device_sn"] == stack.terminal(link).sn
        tx = await c.call(
            "sale", terminal=tid, amount="10.20", currency="HKD", reference_id=f"s-{link}"
        )
    assert tx["state"] == "succeeded"
    assert tx["reply"]["status"] == "Success" and tx["reply"]["referenceID"] == f"s-{link}"
    assert tx["link"] == link
    assert stack.charges(link, f"s-{link}") == 1
    pairings = stack.tmp / "state" / "pairings.toml"
    assert stat.S_IMODE(pairings.stat().st_mode) == 0o600
    assert stat.S_IMODE(pairings.parent.stat().st_mode) == 0o700
    saved = tomllib.loads(pairings.read_text())
    entry = saved["terminals"][tid]
    assert entry["device_sn"] == stack.terminal(link).sn
    assert entry["pin"] == stack.terminal(link).pin2


async def test_pairing_accepts_the_qr_json(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        res = await c.call("terminal.pair", terminal="lan-1", code=stack.terminal("lan").qr_json())
    assert res["device_sn"] == stack.terminal("lan").sn


async def test_wrong_pairing_code_is_a_clear_error(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        err = await call_error(c, "terminal.pair", terminal="lan-1", code="999999")
        assert err.reason == "wrong_key"
        assert "pairing page" in err.message
        rows = await c.call("terminal.list")
    assert not next(r for r in rows if r["id"] == "lan-1")["paired"]


async def test_refund_and_void(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await c.call("sale", terminal="lan-1", amount="30.00", currency="HKD", reference_id="o1")
        r = await c.call(
            "refund", terminal="lan-1", amount="10.00", currency="HKD",
            reference_id="o1-r", original_reference_id="o1",
        )  # fmt: skip
        assert r["state"] == "succeeded" and r["reply"]["transactionType"] == "Refund"
        await c.call("sale", terminal="lan-1", amount="5.00", currency="HKD", reference_id="o2")
        v = await c.call("void", terminal="lan-1", reference_id="o2-v", original_reference_id="o2")
        assert v["state"] == "succeeded"
        # ecrd refuses a refund above what is left before it leaves (test_refund_guard.py);
        # for an original this journal does not hold (original_elsewhere), the terminal
        # checks, and its refusal is a result.
        r2 = await c.call(
            "refund", terminal="lan-1", amount="25.00", currency="HKD",
            reference_id="o1-r2", original_reference_id="taken-elsewhere",
            original_elsewhere=True,
        )  # fmt: skip
        assert r2["state"] == "failed" and r2["reply"]["status"] == "Failed"


async def test_a_declined_card_is_a_result_not_an_error(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        tx = await c.call(
            "sale", terminal="lan-1", amount="10.91", currency="HKD", reference_id="d"
        )
    assert tx["state"] == "failed"
    assert tx["reply"]["errorCode"] == "DECLINED"
    assert stack.charges("lan", "d") == 0


async def test_a_rebooted_terminal_gives_wrong_key_not_a_hang(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        stack.terminal("lan").reboot()
        with trio.fail_after(5):
            err = await call_error(c, "terminal.info", terminal="lan-1")
        assert err.reason == "wrong_key"
        assert "pair" in err.message
        # Pairing again with the new code shown on the screen fixes it.
        await pair(c, stack, "lan")
        info = await c.call("terminal.info", terminal="lan-1")
    assert info["deviceSn"] == stack.terminal("lan").sn


@pytest.mark.parametrize("link", ["lan", "serial", "cloud"])
async def test_a_reply_that_decrypts_but_is_not_strict_json_is_a_bad_reply_not_wrong_key(
    stack: Stack, link: str
) -> None:
    """It opened under the paired PIN, so re-pairing (what wrong_key asks for) would not
    help: the terminal answered badly. A sale answered so is unknown, with that cause."""
    tid = f"{link}-1"
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, link)
        stack.terminal(link).arm("not_json")
        err = await call_error(c, "terminal.info", terminal=tid)
        assert (err.code, err.reason) == (-32013, "bad_reply")
        assert "pair" not in err.message
        stack.terminal(link).arm("not_json")
        err = await call_error(c, "sale", terminal=tid, amount="1.00", currency="HKD",
                               reference_id=f"nj-{link}")  # fmt: skip
        assert (err.reason, err.data["cause"]) == ("timeout_outcome_unknown", "bad_reply")
        assert err.data["transaction"]["state"] == "unknown"
        assert (await c.call("terminal.info", terminal=tid))["deviceSn"]  # the PIN still works
    assert stack.charges(link, f"nj-{link}") == 1


async def test_a_stale_response_id_is_rejected(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        stack.terminal("lan").arm("stale_response")
        err = await call_error(
            c, "sale", terminal="lan-1", amount="8.00", currency="HKD", reference_id="st"
        )
    assert err.reason == "timeout_outcome_unknown"
    assert err.data["cause"] == "stale_response"


async def test_serial_garbage_before_the_reply_is_survived(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "serial")
        stack.terminal("serial").arm("garbage", params={"bytes": 64})
        tx = await c.call(
            "sale", terminal="serial-1", amount="10.00", currency="HKD", reference_id="g"
        )
    assert tx["state"] == "succeeded"


async def test_never_delivered_falls_back_to_the_cloud(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        # The terminal's LAN port now refuses connections (and terminal-info reports that
        # same address, so no new one is found); the cloud still reaches it.
        term = stack.daemon.terminals["lan-1"]
        term.cfg = attrs.evolve(term.cfg, fallback="cloud")
        term.aim(attrs.evolve(term.target, host="127.0.0.1", port=1))
        stack.terminal("lan").port = 1
        tx = await c.call(
            "sale", terminal="lan-1", amount="5.00", currency="HKD", reference_id="fb"
        )
    assert tx["state"] == "succeeded" and tx["link"] == "cloud"
    assert stack.charges("lan", "fb") == 1


async def test_maybe_delivered_never_falls_back(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        term = stack.daemon.terminals["lan-1"]
        term.cfg = attrs.evolve(term.cfg, fallback="cloud")
        stack.terminal("lan").arm("drop")
        err = await call_error(
            c, "sale", terminal="lan-1", amount="5.00", currency="HKD", reference_id="nf"
        )
    assert err.reason == "timeout_outcome_unknown"
    assert err.data["transaction"]["link"] == "lan"
    assert stack.requests("lan", "nf") == 1


async def test_never_delivered_without_fallback_is_link_down_and_nothing_charged(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
    term = stack.daemon.terminals["lan-1"]
    term.aim(attrs.evolve(term.target, host="127.0.0.1", port=1))
    stack.daemon.shared.cloud = stack.daemon.shared.cloud.__class__()  # no cloud to ask
    async with open_trio_client(stack.socket) as c:
        err = await call_error(
            c, "sale", terminal="lan-1", amount="5.00", currency="HKD", reference_id="ld"
        )
        assert err.reason == "link_down"
        assert err.data["transaction"]["state"] == "failed"
        # Not unknown: the terminal is not blocked.
        assert await c.call("transaction.list", state="unknown") == []


async def test_a_lan_terminal_that_moved_is_found_through_terminal_info(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        term = stack.daemon.terminals["lan-1"]
        real_port = term.target.port
        term.aim(attrs.evolve(term.target, host="127.0.0.1", port=1))
        stack.terminal("lan").port = real_port  # what the terminal reports as its address
        tx = await c.call(
            "sale", terminal="lan-1", amount="5.00", currency="HKD", reference_id="mv"
        )
    assert tx["state"] == "succeeded" and tx["link"] == "lan"
    saved = tomllib.loads((stack.tmp / "state" / "pairings.toml").read_text())
    assert saved["terminals"]["lan-1"]["port"] == real_port


async def test_the_liveness_probe_reports_link_state_and_a_needed_re_pair(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path, probe_interval_s=0.1)
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        with trio.fail_after(5):
            while (await c.call("terminal.list"))[0]["link"] != "up":
                await trio.sleep(0.05)
        stack.terminal("lan").reboot()
        with trio.fail_after(5):
            while (await c.call("terminal.list"))[0]["last_error"] != "wrong_key":
                await trio.sleep(0.05)
        await c.call("terminal.pair", terminal="lan-1", code=stack.terminal("lan").pin1)
        with trio.fail_after(5):
            while (await c.call("terminal.list"))[0]["last_error"] is not None:
                await trio.sleep(0.05)


async def test_a_cloud_refusal_is_unknown_unless_declared_not_delivered(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "cloud")
        stack.terminal("cloud").arm("business_mismatch")
        err = await call_error(
            c, "sale", terminal="cloud-1", amount="1.00", currency="HKD", reference_id="bm1"
        )
        assert err.reason == "timeout_outcome_unknown"  # safe default: refusal is ambiguous
        await c.call("transaction.resolve", reference_id="bm1", outcome="failed", note="test")
        # The admin declares 403 a proof of "not relayed": then it is failed, not unknown.
        term = stack.daemon.terminals["cloud-1"]
        stack.daemon.shared.cloud = attrs.evolve(stack.daemon.shared.cloud, refusal_statuses=(403,))
        term._links["cloud"] = cloud_link(stack.daemon.shared.cloud, term.device_sn)
        stack.terminal("cloud").arm("business_mismatch")
        err = await call_error(
            c, "sale", terminal="cloud-1", amount="1.00", currency="HKD", reference_id="bm2"
        )
        assert err.reason == "cloud_refused"
        assert err.data["transaction"]["state"] == "failed"
        assert await c.call("transaction.list", state="unknown") == []
    assert stack.requests("cloud", "bm1") == 0 and stack.requests("cloud", "bm2") == 0


async def test_reload_applies_a_new_address_and_a_new_cloud_url(stack: Stack) -> None:
    import tomli_w
    from stack import config_data

    async with open_trio_client(stack.socket) as c:
        await c.call("terminal.pair", terminal="lan-1", code=stack.terminal("lan").qr_json())
    saved = tomllib.loads((stack.tmp / "state" / "pairings.toml").read_text())
    assert saved["terminals"]["lan-1"]["port"]  # the QR code's address, remembered
    data = config_data(stack.description, stack.tmp)
    data["terminal"][0]["port"] = 9  # the admin moved the terminal
    data["cloud"]["command_url"] = data["cloud"]["base_url"] + "/elsewhere"
    (stack.tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
    before = dict(stack.daemon.terminals)
    async with open_trio_client(stack.socket) as c:
        result = await c.call("config.reload")
    assert result["changed"] == ["cloud-1", "lan-1", "serial-1"]
    # Terminals are replaced in the background, one by one.
    await until(lambda: all(stack.daemon.terminals.get(t) not in (None, before[t]) for t in before))
    assert stack.daemon.terminals["lan-1"].links["lan"].port == 9  # type: ignore[attr-defined]
    cloud = stack.daemon.terminals["cloud-1"].links["cloud"]
    assert cloud.command_url.endswith("/elsewhere")  # type: ignore[attr-defined]
    saved = tomllib.loads((stack.tmp / "state" / "pairings.toml").read_text())
    assert "port" not in saved["terminals"]["lan-1"]  # the admin's address wins


async def test_two_reloads_while_a_payment_runs_apply_in_order_after_it(stack: Stack) -> None:
    import tomli_w
    from stack import config_data

    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        stack.terminal("lan").arm("delay", params={"seconds": 0.6})
        result = {}

        async def sale() -> None:
            result["tx"] = await c.call(
                "sale", terminal="lan-1", amount="1.00", currency="HKD", reference_id="rl"
            )

        async with trio.open_nursery() as n:
            n.start_soon(sale)
            await stack.held("lan", "rl")
            for timeout in (41, 42):
                data = config_data(stack.description, stack.tmp)
                data["terminal"][0]["timeout_s"] = timeout
                (stack.tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
                reloaded = await c.call("config.reload")
                assert "lan-1" in reloaded["deferred"]
        assert result["tx"]["state"] == "succeeded"  # the payment was not disturbed

        def applied() -> bool:
            term = stack.daemon.terminals.get("lan-1")
            return term is not None and term.cfg.timeout_s == 42

        await until(applied)
        assert (await c.call("status"))["reload_error"] is None
        tx = await c.call("sale", terminal="lan-1", amount="1.00", currency="HKD")
    assert tx["state"] == "succeeded"


async def test_a_late_serial_reply_settles_the_unknown_it_belongs_to(stack: Stack) -> None:
    """Rule 3 keeps a timed-out payment unknown; the terminal's own late reply, matched by
    requestID and referenceID, then settles it without anyone guessing."""
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "serial")
        stack.terminal("serial").arm("delay", params={"seconds": 1.5})
        err = await call_error(
            c, "sale", terminal="serial-1", amount="4.00", currency="HKD", reference_id="late",
            timeout_s=1,
        )  # fmt: skip
        assert err.reason == "timeout_outcome_unknown"
        await stack.settled("late", "succeeded", timeout=10)
        tx = await c.call("transaction.get", reference_id="late")
    assert tx["state"] == "succeeded" and tx["reply"]["referenceID"] == "late"
    assert stack.charges("serial", "late") == 1 and stack.requests("serial", "late") == 1
