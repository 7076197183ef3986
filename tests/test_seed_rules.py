"""The vendor's document (seed-ecr-connection.txt), exactly: terminal-info sealed under
pinCode1 (falling back to pinCode2, which one worked kept with the pairing), ``x-device-sn``
on every cloud call whose SN can be known, the QR's ``businessId`` used or checked, and
DeviceInfo's ``businessID`` kept and shown."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import attrs
import trio
from stack import (
    BUSINESS,
    PIN1,
    Stack,
    call_error,
    config_data,
    make_sim,
    pair,
    start_stack,
    wait_link_up,
)

from ecrd.client import open_trio_client
from ecrd.config import parse
from ecrd.daemon import Daemon

OTHER_BUSINESS = "00000000-1111-4222-8333-444444444444"


def saved(stack: Stack, tid: str) -> dict[str, Any]:
    path = stack.tmp / "state" / "pairings.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry: dict[str, Any] = tomllib.loads(path.read_text())["terminals"][tid]
    return entry


async def moved_then_sold(stack: Stack, c: Any, ref: str) -> None:
    """The LAN terminal seems gone from its address; the sale finds it via terminal-info."""
    term = stack.daemon.terminals["lan-1"]
    real_port = term.target.port
    term.aim(attrs.evolve(term.target, host="127.0.0.1", port=1))
    stack.terminal("lan").port = real_port
    tx = await c.call("sale", terminal="lan-1", amount="5.00", currency="HKD", reference_id=ref)
    assert tx["state"] == "succeeded"


async def test_terminal_info_is_sealed_under_pin1_and_falls_back_to_pin2_recording_which(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    sim = stack.terminal("lan")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        assert saved(stack, "lan-1")["pin1"] == PIN1["lan"]  # kept, in the 0600 file
        sim.show_pairing_page(PIN1["lan"])  # the terminal takes pinCode1 again
        await moved_then_sold(stack, c, "m1")
        assert saved(stack, "lan-1")["info_pin"] == "pin1"
        sim.show_pairing_page("864209")  # pinCode1 is no longer taken
        await moved_then_sold(stack, c, "m2")
        assert saved(stack, "lan-1")["info_pin"] == "pin2"
    assert stack.charges("lan", "m1") == 1 and stack.charges("lan", "m2") == 1


async def test_cloud_calls_carry_x_device_sn_whenever_an_sn_is_known(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    sim = stack.terminal("cloud")
    async with open_trio_client(stack.socket) as c:
        # The QR code names the SN: even the first call, terminal-info, carries it.
        await c.call("terminal.pair", terminal="cloud-1", code=sim.qr_json())
        await c.call("sale", terminal="cloud-1", amount="1.00", currency="HKD", reference_id="h1")
        assert sim.stats.cloud_calls >= 4 and sim.stats.cloud_calls_without_sn == 0
        # A bare code, with the SN known from the pairing: still carried.
        sim.show_pairing_page()
        await c.call("terminal.pair", terminal="cloud-1", code=sim.pin1)
        assert sim.stats.cloud_calls_without_sn == 0


async def test_only_first_contact_by_bare_code_goes_without_x_device_sn(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    sim = stack.terminal("cloud")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "cloud")  # nothing tells the SN before terminal-info answers
        await c.call("sale", terminal="cloud-1", amount="1.00", currency="HKD", reference_id="h2")
    assert sim.stats.cloud_calls_without_sn == 1
    assert sim.stats.cloud_calls >= 4


async def start_without_business(nursery: trio.Nursery, tmp: Path) -> Stack:
    sim = make_sim(tmp)
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp)
    del data["cloud"]["business_id"]
    cfg = parse(data, str(tmp / "ecrd.toml"))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    return Stack(sim, daemon, cfg.daemon.socket, desc, tmp)


async def test_the_qr_business_id_is_used_when_none_is_configured(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_without_business(nursery, tmp_path)
    sim = stack.terminal("cloud")
    async with open_trio_client(stack.socket) as c:
        err = await call_error(c, "terminal.pair", terminal="cloud-1", code=sim.pin1)
        assert "business" in err.message and "QR" in err.message
        await c.call("terminal.pair", terminal="cloud-1", code=sim.qr_json())
        tx = await c.call(
            "sale", terminal="cloud-1", amount="2.00", currency="HKD", reference_id="b1"
        )
        row = next(r for r in await c.call("terminal.list") if r["id"] == "cloud-1")
    assert tx["state"] == "succeeded" and stack.charges("cloud", "b1") == 1
    assert saved(stack, "cloud-1")["business_id"] == BUSINESS
    assert row["business_id"] == BUSINESS


async def test_a_qr_of_another_business_is_refused_before_anything_is_sent(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    for link in ("lan", "cloud"):
        sim = stack.terminal(link)
        qr = json.dumps({**sim.qr(), "businessId": OTHER_BUSINESS})
        async with open_trio_client(stack.socket) as c:
            err = await call_error(c, "terminal.pair", terminal=f"{link}-1", code=qr)
        assert err.reason == "pairing_failed"
        assert OTHER_BUSINESS in err.message and BUSINESS in err.message
        assert sim.stats.requests == 0 and sim.pairing_state == "unpaired"


async def test_device_info_business_id_is_kept_and_shown_in_list_and_status(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        await wait_link_up(c, "serial-1")
        await pair(c, stack, "serial")
        rows = await c.call("terminal.list")
        status = await c.call("status")
    assert saved(stack, "serial-1")["business_id"] == BUSINESS
    assert next(r for r in rows if r["id"] == "serial-1")["business_id"] == BUSINESS
    assert next(r for r in status["terminals"] if r["id"] == "serial-1")["business_id"] == BUSINESS
    assert next(r for r in rows if r["id"] == "lan-1")["business_id"] is None
