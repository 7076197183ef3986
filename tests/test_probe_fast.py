"""The fast probe: serial variants one, two and four settings away from the entry found in
one window per speed, the look-up (``identify_action``) varied on every link, LAN tries in
parallel, and the raw port's pacing and echo guard. Times are asserted against the goals
of issue #23 (serial ≤ 30 s found, ≤ 60 s nothing answering; LAN ≤ 10 s); bench/probe.py
prints them, 9600 baud and the whole silent sweep included."""

from __future__ import annotations

import os
import tty
from pathlib import Path
from typing import Any

import pytest
import trio
from stack import BUSINESS, PIN1, SIM_KEYS, SN, Stack, config_data, wait_link_up
from test_probe import apply_found, only_device_info_was_sent, pair_and_sell, serial_stack

from ecrd.client import open_trio_client
from ecrd.config import parse
from ecrd.daemon import Daemon
from ecrd.protocol.frames import FrameFormat, encode_frame
from ecrd.sim.simulator import Simulator
from ecrd.sim.terminal import SimTerminal
from ecrd.terminal.probe_serial import sweep_seconds, turnaround
from ecrd.terminal.probing import BAUDRATES
from ecrd.transport.serial_port import SerialSettings
from ecrd.transport.serial_window import ProbePort, line_seconds

FOUR_OFF = {"frame_crc": "crc32c", "frame_byteorder": "little", "frame_cmd": 0x0101}


async def probe(stack: Stack, tid: str, **params: Any) -> tuple[dict[str, Any], float]:
    async with open_trio_client(stack.socket) as c:
        start = trio.current_time()
        result = await c.call("terminal.probe", terminal=tid, **params)
        return result, trio.current_time() - start


@pytest.mark.parametrize(
    ("off", "scheme"),
    [({"frame_crc": "crc32c"}, "v2"),
     ({"frame_byteorder": "little", "frame_cmd": 0x0101}, "v2"),
     (FOUR_OFF, "legacy")],
    ids=["one-off", "two-off", "four-off"],
)  # fmt: skip
async def test_a_serial_terminal_settings_off_is_found_in_one_window(
    nursery: trio.Nursery, tmp_path: Path, off: dict[str, Any], scheme: str
) -> None:
    fmt = FrameFormat(
        cmd=off.get("frame_cmd", 6), byteorder=off.get("frame_byteorder", "big"),
        crc=off.get("frame_crc", "crc32"),
    )  # fmt: skip
    stack = await serial_stack(nursery, tmp_path, scheme=scheme, fmt=fmt)
    result, took = await probe(stack, "serial-1", code=PIN1["serial"])
    found = result["found"]
    assert found is not None, result["tried"]
    assert {k: found[k] for k in off} == off and found["crypto"] == scheme
    assert found["baudrate"] == 115200 and found["identify_action"] == "DeviceInfo"
    assert took <= 30, took
    window = result["tried"][0]
    if scheme == "legacy":  # the window proved the framing; then one request per try
        assert "does not decrypt" in window["result"]
        assert result["tried"][-1] == {"settings": found, "result": "answered"}
    only_device_info_was_sent(stack, "serial")
    if off is FOUR_OFF:
        async with open_trio_client(stack.socket) as c:
            await apply_found(stack, c, "serial-1", found)
            await wait_link_up(c, "serial-1")
            await pair_and_sell(stack, c, "serial", "four-off")


async def identify_stack(nursery: trio.Nursery, tmp: Path, **lan: Any) -> Stack:
    """Terminals that answer only ConnectionInfo under the pairing code (LAN: ``lan``)."""
    sim = Simulator(state_dir=tmp / "sim", business_id=BUSINESS, control_port=None)
    for link in ("lan", "serial", "cloud"):
        term = SimTerminal(
            SN[link], business_id=BUSINESS, pin1=PIN1[link], keys=SIM_KEYS,
            identify_only="ConnectionInfo", strict=True,
        )  # fmt: skip
        if link == "lan":
            sim.add_lan(term, **lan)
        else:
            getattr(sim, f"add_{link}")(term, **({"strict_cmd": True} if link == "serial" else {}))
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp)
    cfg = parse(data, str(tmp / "ecrd.toml"))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    stack = Stack(sim, daemon, cfg.daemon.socket, desc, tmp)
    async with open_trio_client(stack.socket) as c:
        await wait_link_up(c, "serial-1")
    return stack


async def test_the_probe_finds_the_look_up_a_terminal_takes_on_lan_and_serial(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """DeviceInfo is refused (it decrypts: framing and crypto proven), ConnectionInfo
    {businessID} answers: ``identify_action = "ConnectionInfo"`` is what to paste."""
    stack = await identify_stack(nursery, tmp_path)
    for tid in ("lan-1", "serial-1"):
        result, took = await probe(stack, tid, code=PIN1[tid.split("-")[0]])
        assert result["found"] is not None, result["tried"]
        assert result["found"]["identify_action"] == "ConnectionInfo"
        assert any("refuses the look-up" in t["result"] for t in result["tried"])
        assert took <= 10


async def test_a_lan_terminal_that_wraps_its_replies_is_found_as_it_is(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The wrapped reply needs no knob: the entry's own settings answer."""
    sim = Simulator(state_dir=tmp_path / "sim", business_id=BUSINESS, control_port=None)
    for link in ("lan", "serial", "cloud"):
        term = SimTerminal(SN[link], business_id=BUSINESS, pin1=PIN1[link], keys=SIM_KEYS)
        if link == "lan":
            sim.add_lan(term, wrap=True, path="/wonder-terminal")
        else:
            getattr(sim, f"add_{link}")(term)
    desc = await nursery.start(sim.run)
    cfg = parse(config_data(desc, tmp_path), str(tmp_path / "ecrd.toml"))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    stack = Stack(sim, daemon, cfg.daemon.socket, desc, tmp_path)
    result, took = await probe(stack, "lan-1", code=PIN1["lan"])
    assert result["found"]["path"] == "/wonder-terminal" and result["device_sn"] == SN["lan"]
    assert took <= 10


async def test_nothing_answering_on_lan_ends_within_ten_seconds(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    from test_probe import probe_stack

    stack = await probe_stack(nursery, tmp_path)
    stack.terminal("lan").arm("never_answer", sticky=True, actions=["DeviceInfo"])
    result, took = await probe(stack, "lan-1", code=PIN1["lan"])
    assert result["found"] is None and took <= 10, took
    tried = {(t["settings"]["path"], t["settings"]["tls"], t["settings"]["port"]) for t in
             result["tried"] if "path" in t["settings"]}  # fmt: skip
    assert len(tried) == 8  # every address, at once


def test_the_silent_serial_sweep_fits_its_goals_by_arithmetic() -> None:
    """The pacing's arithmetic for the default entry: every speed, 20 framings × two
    look-ups of DeviceInfo (~276 bytes) and ConnectionInfo (~364 bytes) frames."""
    cfg = parse({"terminal": [{"id": "s", "transport": "serial", "device": "/dev/null"}]})
    entry = cfg.terminals[0]
    frames = [276] * 20 + [364] * 20
    silent = sweep_seconds(entry, frames)
    # Found at the last speed, in its last DeviceInfo framing, then one legacy retry.
    slowest = SerialSettings(9600)
    found = (
        sweep_seconds(entry, frames)
        - line_seconds(sum(frames), slowest, len(frames))
        - turnaround(entry, slowest)
        + line_seconds(276 * 20, slowest, 20)
        + 2 * turnaround(entry, slowest)
        + line_seconds(276, slowest)
    )
    assert silent <= 60 and found <= 30, (silent, found)


def test_the_probe_waits_for_a_slow_terminal_as_long_as_its_entry_says() -> None:
    """probe_turnaround_s ([ASSUMED], 0.5 s) is the wait after each speed's window."""
    entries = parse(
        {"terminal": [
            {"id": "s", "transport": "serial", "device": "/dev/null"},
            {"id": "slow", "transport": "serial", "device": "/dev/null", "probe_turnaround_s": 2},
        ]}
    ).terminals  # fmt: skip
    speeds = len({entries[0].baudrate, *BAUDRATES})
    longer = sweep_seconds(entries[1], [276]) - sweep_seconds(entries[0], [276])
    assert longer == pytest.approx(1.5 * speeds)


async def test_the_probe_port_paces_at_the_line_rate_and_ignores_its_own_echo() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    fmt = FrameFormat(crc="crc32c", byteorder="little")
    ours = encode_frame(b'{"version":"2.0","action":"DeviceInfo","data":"x"}', fmt)
    theirs = encode_frame(b'{"version":"2.0","action":"DeviceInfo","data":"y"}', fmt, cmd=0x0101)
    settings = SerialSettings(38400)
    stream = trio.lowlevel.FdStream(master)

    async def echo_then_answer() -> None:
        got = b""
        while len(got) < 3 * len(ours):
            got += await stream.receive_some(4096)
        await stream.send_all(got[: len(ours)] + theirs)  # the echo, then a reply

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_then_answer)
            async with ProbePort.open(os.ttyname(slave), settings, [FrameFormat(), fmt]) as port:
                start = trio.current_time()
                assert await port.send([ours] * 3) == 3
                assert trio.current_time() - start >= line_seconds(3 * len(ours), settings, 3)
                with trio.fail_after(2):
                    heard = await port.heard.receive()
        assert (heard.fmt, heard.frame.cmd) == (fmt, 0x0101)
        assert heard.frame.data.endswith(b'"y"}')
    finally:
        await stream.aclose()
        os.close(slave)
