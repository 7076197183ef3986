"""The simulator over RS232: frames on a real pty, opened through its tty path."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ecrd.protocol.crypto import KeyCache
from ecrd.protocol.frames import FrameDecoder, FrameFormat, encode_frame
from ecrd.sim import SimCable, SimTerminal, serve_serial
from ecrd.sim.probe import Probe, SerialProbe, call, pair, serial_exchange

KEYS = KeyCache()
PIN1, PIN2 = "111111", "222222"


@pytest.fixture
async def terminal() -> SimTerminal:
    return SimTerminal(pin1=PIN1, pin2=PIN2, keys=KEYS, reply_salt_reuse=True)


@pytest.fixture
async def port(nursery: trio.Nursery, terminal: SimTerminal, tmp_path: Path) -> SimCable:
    serve = _serve(terminal, symlink=tmp_path / "ttyECR0")
    port: SimCable = await nursery.start(serve)
    return port


@pytest.fixture
async def line(port: SimCable) -> AsyncIterator[SerialProbe]:
    async with SerialProbe(port.path) as line:
        yield line


def _serve(terminal: SimTerminal, **kwargs: Any) -> Any:
    async def serve(task_status: trio.TaskStatus[SimCable]) -> None:
        await serve_serial(terminal, task_status=task_status, **kwargs)

    return serve


def sale(ref: str, amount: str = "10.20") -> dict[str, Any]:
    return {"referenceID": ref, "amount": amount, "currency": "HKD"}


async def test_symlink_points_at_a_real_tty(port: SimCable, tmp_path: Path) -> None:
    assert port.path == str(tmp_path / "ttyECR0")
    assert port.slave_path is not None and os.path.realpath(port.path) == port.slave_path
    fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


async def test_pairing_and_sale_over_the_line(line: SerialProbe, terminal: SimTerminal) -> None:
    ex = serial_exchange(line)
    probe = await pair(ex, PIN1, keys=KEYS)
    assert (await call(ex, probe, "Sale", sale("r-1")))["status"] == "Success"
    assert terminal.payments.charges("r-1") == 1


async def test_line_is_raw_without_echo(line: SerialProbe) -> None:
    sent = await Probe(PIN1, keys=KEYS).seal("DeviceInfo")
    await line.send(sent.envelope)
    reply = await line.receive()
    assert reply.action == "DeviceInfo"
    # nothing but the reply came back: no echo of our frame, no line-discipline mangling
    assert line.decoder.garbage_bytes == 0 and line.decoder.buffered == 0


async def test_abort_while_the_sale_waits_on_the_same_line(
    line: SerialProbe, terminal: SimTerminal
) -> None:
    probe = await pair(serial_exchange(line), PIN1, keys=KEYS)
    terminal.arm("delay", params={"seconds": 30})
    sale_sent = await probe.seal("Sale", sale("r-ab"))
    await line.send(sale_sent.envelope)
    await _until(lambda: terminal.payments.busy)
    abort_sent = await probe.seal("Abort", {"referenceID": "r-ab"})
    await line.send(abort_sent.envelope)
    # both replies come back, in either order: the aborted Sale may well answer first
    replies = {r.action: r for r in (await line.receive(), await line.receive())}
    assert (await probe.open(replies["Abort"], abort_sent))["status"] == "Success"
    assert (await probe.open(replies["Sale"], sale_sent))["errorCode"] == "ABORTED"


async def test_garbage_before_the_reply_is_survived(
    line: SerialProbe, terminal: SimTerminal
) -> None:
    terminal.arm("garbage", params={"bytes": 40})
    body = await call(serial_exchange(line), Probe(PIN1, keys=KEYS), "DeviceInfo")
    assert body["deviceSn"] == terminal.sn
    assert line.decoder.garbage_bytes >= 39


async def test_bad_crc_reply_is_dropped_by_the_receiver(
    line: SerialProbe, terminal: SimTerminal
) -> None:
    terminal.arm("bad_crc")
    sent = await Probe(PIN1, keys=KEYS).seal("DeviceInfo")
    await line.send(sent.envelope)
    with trio.move_on_after(0.3):
        await line.receive()
        pytest.fail("a frame with a bad CRC came through")
    assert line.decoder.bad_data_crc >= 1
    # the next reply is whole again
    assert (await call(serial_exchange(line), Probe(PIN1, keys=KEYS), "DeviceInfo"))["deviceSn"]


async def test_drop_charges_and_sends_nothing(line: SerialProbe, terminal: SimTerminal) -> None:
    probe = await pair(serial_exchange(line), PIN1, keys=KEYS)
    terminal.arm("drop")
    sent = await probe.seal("Sale", sale("r-drop"))
    await line.send(sent.envelope)
    with trio.move_on_after(0.2):
        await line.receive()
        pytest.fail("the terminal answered")
    assert terminal.payments.charges("r-drop") == 1


async def test_request_split_into_many_writes_and_noise_is_understood(line: SerialProbe) -> None:
    sent = await Probe(PIN1, keys=KEYS).seal("DeviceInfo")
    data = b"\x00\x55noise" + encode_frame(sent.envelope.to_bytes())
    for i in range(0, len(data), 7):
        await line.send_raw(data[i : i + 7])
    assert (await line.receive()).action == "DeviceInfo"


async def test_unplug_removes_the_device_and_replug_brings_a_new_one(
    port: SimCable, terminal: SimTerminal
) -> None:
    async with SerialProbe(port.path) as old:
        await port.unplug()
        assert not os.path.lexists(port.path) and not port.plugged
        with pytest.raises((trio.EndOfChannel, trio.BrokenResourceError)):
            await old.receive()  # the daemon's fd sees the hang-up
    await port.replug()
    assert os.path.realpath(port.path) == port.slave_path
    async with SerialProbe(port.path) as new:
        body = await call(serial_exchange(new), Probe(PIN1, keys=KEYS), "DeviceInfo")
    assert body["deviceSn"] == terminal.sn


async def test_reply_due_after_replug_goes_out_on_the_new_line(
    port: SimCable, terminal: SimTerminal
) -> None:
    async with SerialProbe(port.path) as line:
        probe = await pair(serial_exchange(line), PIN1, keys=KEYS)
        terminal.arm("delay", params={"seconds": 0.3})
        sent = await probe.seal("Sale", sale("r-replug"))
        await line.send(sent.envelope)
        await _until(lambda: terminal.payments.busy)
        await port.unplug()
    await port.replug()
    async with SerialProbe(port.path) as line:
        with trio.fail_after(5):
            reply = await line.receive()
    assert (await probe.open(reply, sent))["status"] == "Success"
    assert terminal.payments.charges("r-replug") == 1


async def test_reply_due_while_unplugged_is_lost_but_charged(
    port: SimCable, terminal: SimTerminal
) -> None:
    async with SerialProbe(port.path) as line:
        probe = await pair(serial_exchange(line), PIN1, keys=KEYS)
        terminal.arm("delay", params={"seconds": 0.05})
        await line.send((await probe.seal("Sale", sale("r-lost"))).envelope)
        await _until(lambda: terminal.payments.busy)
        await port.unplug()
    await _until(lambda: port.replies_lost == 1)
    assert terminal.payments.charges("r-lost") == 1
    await port.replug()
    async with SerialProbe(port.path) as line:
        with trio.move_on_after(0.1):
            await line.receive()
            pytest.fail("a lost reply came back")


async def test_pacing_limits_the_reply_rate(nursery: trio.Nursery, terminal: SimTerminal) -> None:
    port: SimCable = await nursery.start(_serve(terminal, pace_bps=2000.0))
    assert port.path == port.slave_path  # no symlink asked for
    async with SerialProbe(port.path) as line:
        start = trio.current_time()
        await call(serial_exchange(line), Probe(PIN1, keys=KEYS), "DeviceInfo")
        assert trio.current_time() - start >= 0.1  # a DeviceInfo frame is > 200 bytes


async def test_frame_format_is_configurable_and_cmd_is_echoed(
    nursery: trio.Nursery, terminal: SimTerminal
) -> None:
    fmt = FrameFormat(cmd=0x0101, byteorder="little", crc="crc32c")
    port: SimCable = await nursery.start(_serve(terminal, fmt=fmt))
    async with SerialProbe(port.path, fmt) as line:
        sent = await Probe(PIN1, keys=KEYS).seal("DeviceInfo")
        await line.send_raw(encode_frame(sent.envelope.to_bytes(), fmt, cmd=0x0202))
        decoder = FrameDecoder(fmt)
        frames = []
        with trio.fail_after(5):
            while not frames:
                frames = decoder.feed(await line.stream.receive_some(4096))
    assert frames[0].cmd == 0x0202


async def test_non_envelope_frame_is_dropped(port: SimCable, line: SerialProbe) -> None:
    await line.send_raw(encode_frame(b"not an envelope"))
    await _until(lambda: port.frames_dropped == 1)


async def _until(predicate: Any) -> None:
    with trio.fail_after(5):
        while not predicate():
            await trio.sleep(0.001)
