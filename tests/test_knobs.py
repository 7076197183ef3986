"""The readings of the vendor's document that a real terminal may contradict, each a knob
with the old behaviour as its default, each proved against a simulator that reads it the
other way: ``identify_action`` (DeviceInfo or ConnectionInfo {businessID} for pairing's
serial-number look-up), ``pair_uuid_field`` (the Pair body's field), and a LAN reply
wrapped as the cloud's ``{code, message, data}`` (no knob: both shapes are taken)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import trio
from stack import (
    BUSINESS,
    PIN1,
    SIM_KEYS,
    SN,
    Stack,
    call_error,
    config_data,
    make_sim,
    pair,
    start_stack,
    wait_link_up,
)

from ecrd.client import TrioClient, open_trio_client
from ecrd.config import parse
from ecrd.daemon import Daemon
from ecrd.sim.simulator import Simulator
from ecrd.sim.terminal import SimTerminal

TIDS = {"lan": "lan-1", "serial": "serial-1", "cloud": "cloud-1"}


async def pair_and_sell(c: TrioClient, stack: Stack, link: str, ref: str) -> None:
    await wait_link_up(c, TIDS[link])
    paired = await pair(c, stack, link)
    assert paired["device_sn"] == SN[link]
    tx = await c.call("sale", terminal=TIDS[link], amount="4.00", currency="HKD", reference_id=ref)
    assert tx["state"] == "succeeded" and stack.charges(link, ref) == 1


async def test_identify_action_connection_info_pairs_a_terminal_that_takes_only_that(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A terminal that answers only ConnectionInfo {businessID} under its pairing code:
    the default (DeviceInfo) stops at the first step and says which knob to turn; the knob
    pairs it on LAN and RS232, each with the business ID in the request."""
    default = await start_stack(
        nursery, tmp_path / "default", sim_kw={"identify_only": "ConnectionInfo"}
    )
    async with open_trio_client(default.socket) as c:
        await wait_link_up(c, "serial-1")
        for link in ("lan", "serial"):
            err = await call_error(c, "terminal.pair", terminal=TIDS[link], code=PIN1[link])
            assert err.reason == "pairing_failed", err
            assert "UNSUPPORTED_ACTION" in err.message
            assert "identify_action = 'ConnectionInfo'" in err.message
            assert default.terminal(link).pairing_state == "unpaired"
    stack = await start_stack(
        nursery,
        tmp_path / "knob",
        sim_kw={"identify_only": "ConnectionInfo", "strict": True},  # businessID required
        identify_action="ConnectionInfo",
    )
    async with open_trio_client(stack.socket) as c:
        for link in ("lan", "serial", "cloud"):
            await pair_and_sell(c, stack, link, f"id-{link}")


async def test_identify_action_connection_info_without_a_business_is_a_clear_error(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    sim = make_sim(tmp_path)
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp_path, identify_action="ConnectionInfo")
    del data["cloud"]["business_id"]
    cfg = parse(data, str(tmp_path / "ecrd.toml"))
    await nursery.start(Daemon(cfg).run)
    async with open_trio_client(cfg.daemon.socket) as c:
        err = await call_error(c, "terminal.pair", terminal="lan-1", code=PIN1["lan"])
        assert err.reason == "pairing_failed"
        assert "business" in err.message and "QR code" in err.message
        assert sim.terminal(SN["lan"]).stats.requests == 0  # refused before sending
        # The QR code carries the business: then it pairs.
        qr = sim.terminal(SN["lan"]).qr_json()
        assert (await c.call("terminal.pair", terminal="lan-1", code=qr))["device_sn"] == SN["lan"]


async def test_pair_uuid_field_names_the_field_a_terminal_wants(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A terminal whose Pair takes another field than pairUuid: the default is refused at
    Pair with the terminal's own words and the knob's name; the knob pairs every link."""
    default = await start_stack(nursery, tmp_path / "default", sim_kw={"pair_uuid_field": "uuid"})
    async with open_trio_client(default.socket) as c:
        err = await call_error(c, "terminal.pair", terminal="lan-1", code=PIN1["lan"])
    assert err.reason == "pairing_failed"
    assert "INVALID_REQUEST" in err.message and "pair_uuid_field" in err.message
    assert default.terminal("lan").pairing_state == "unpaired"
    stack = await start_stack(
        nursery, tmp_path / "knob", sim_kw={"pair_uuid_field": "uuid"}, pair_uuid_field="uuid"
    )
    async with open_trio_client(stack.socket) as c:
        for link in ("lan", "serial", "cloud"):
            await pair_and_sell(c, stack, link, f"uuid-{link}")


async def wrapped_stack(nursery: trio.Nursery, tmp: Path) -> Stack:
    sim = Simulator(state_dir=tmp / "sim", business_id=BUSINESS, control_port=None)
    for link in ("lan", "serial", "cloud"):
        term = SimTerminal(
            SN[link], business_id=BUSINESS, pin1=PIN1[link], keys=SIM_KEYS, reply_salt_reuse=True
        )
        if link == "lan":
            sim.add_lan(term, wrap=True)
        else:
            getattr(sim, f"add_{link}")(term)
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp, trace=True)
    cfg = parse(data, str(tmp / "ecrd.toml"))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    return Stack(sim, daemon, cfg.daemon.socket, desc, tmp)


async def test_a_lan_terminal_that_wraps_its_replies_pairs_sells_and_settles(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Wrapped as the cloud wraps, ``{code: 0, message: success, data: envelope}``: a sale
    settles as with a bare envelope (never ``unknown``), a decline too, and the trace
    shows the wrapper's code and message verbatim."""
    stack = await wrapped_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        sale = partial(c.call, "sale", terminal="lan-1", currency="HKD")
        tx = await sale(amount="6.00", reference_id="w1")
        declined = await sale(amount="6.91", reference_id="w2")
        trace = await c.call("terminal.trace", terminal="lan-1", tail=50)
    assert tx["state"] == "succeeded" and stack.charges("lan", "w1") == 1
    assert declined["state"] == "failed" and stack.charges("lan", "w2") == 0
    replies: list[dict[str, Any]] = [line for line in trace["lines"] if line["dir"] == "in"]
    assert replies and all(
        line.get("wrapper") == {"code": 0, "message": "success"} for line in replies
    ), json.dumps(replies)
