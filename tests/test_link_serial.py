"""RS232 link over real pty pairs: the link opens the slave path like a real tty device."""

from __future__ import annotations

import logging
import os
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import serial.serialposix
import trio

from ecrd.backoff import Backoff
from ecrd.protocol.envelope import Envelope
from ecrd.protocol.frames import FrameDecoder, encode_frame
from ecrd.transport.base import MaybeDelivered, NotDelivered, ReplyTimeout, first_reply
from ecrd.transport.serial import SerialLink, SerialPortInUse, SerialSettings, open_serial
from ecrd.transport.serial_port import SerialOpenError

FAST = Backoff(initial=0.01, cap=0.05)


def envelope(action: str, data: str = "c2VhbGVk") -> Envelope:
    return Envelope(action=action, data=data)


class Pty:
    """A pty pair; the test plays the terminal on the master side."""

    def __init__(self) -> None:
        master, self._slave = os.openpty()
        self.path = os.ttyname(self._slave)
        self.master = trio.lowlevel.FdStream(master)

    async def send(self, reply: Envelope, garbage: bytes = b"") -> None:
        await self.master.send_all(garbage + encode_frame(reply.to_bytes()))

    async def aclose(self) -> None:
        await self.master.aclose()
        if self._slave >= 0:
            os.close(self._slave)
            self._slave = -1


# How the fake terminal answers one request.
Respond = Callable[[Pty, Envelope], Awaitable[None]]


async def echo(pty: Pty, request: Envelope) -> None:
    await pty.send(envelope(request.action, "cmVwbHk="))


async def play_terminal(pty: Pty, respond: Respond, seen: list[Envelope] | None = None) -> None:
    decoder = FrameDecoder()
    while True:
        for frame in decoder.feed(await pty.master.receive_some()):
            request = Envelope.from_bytes(frame.data)
            if seen is not None:
                seen.append(request)
            await respond(pty, request)


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@pytest.fixture
async def pty() -> AsyncIterator[Pty]:
    p = Pty()
    yield p
    await p.aclose()


@pytest.fixture
def stale() -> list[Envelope]:
    """The replies ``link`` handed to ``on_stale``: nobody waited for them."""
    return []


@pytest.fixture
async def link(nursery: trio.Nursery, pty: Pty, stale: list[Envelope]) -> AsyncIterator[SerialLink]:
    serial_link = SerialLink(
        pty.path, backoff=FAST, path_check_interval=0.05, on_stale=stale.append
    )
    await nursery.start(serial_link.run)
    yield serial_link
    await serial_link.aclose()


async def test_exchange_sends_a_frame_and_returns_the_reply(
    nursery: trio.Nursery, pty: Pty, link: SerialLink, stale: list[Envelope]
) -> None:
    seen: list[Envelope] = []
    nursery.start_soon(play_terminal, pty, echo, seen)

    reply = await first_reply(link, envelope("Sale"), timeout=5)

    assert reply == envelope("Sale", "cmVwbHk=")
    assert seen == [envelope("Sale")]
    assert link.state == "up"
    assert stale == []


async def test_garbage_before_the_reply_is_skipped(
    nursery: trio.Nursery, pty: Pty, link: SerialLink
) -> None:
    async def noisy(pty: Pty, request: Envelope) -> None:
        await pty.send(envelope(request.action), garbage=b"\x00\xff line noise \x55\x55\x02")

    nursery.start_soon(play_terminal, pty, noisy)

    reply = await first_reply(link, envelope("Sale"), timeout=5)

    assert reply == envelope("Sale")


async def test_replies_are_routed_by_action(
    nursery: trio.Nursery, pty: Pty, link: SerialLink
) -> None:
    # The customer is still at the terminal when the Abort arrives: the terminal answers
    # the Abort first, then the Sale, on the same line.
    async def customer_then_abort(pty: Pty, request: Envelope) -> None:
        if request.action == "Abort":
            await pty.send(envelope("Abort", "YWJvcnRlZA=="))
            await pty.send(envelope("Sale", "Y2FuY2VsbGVk"))

    nursery.start_soon(play_terminal, pty, customer_then_abort)
    replies: dict[str, Envelope] = {}

    async def ask(action: str) -> None:
        replies[action] = await first_reply(link, envelope(action), timeout=5)

    async with trio.open_nursery() as exchanges:
        exchanges.start_soon(ask, "Sale")
        await trio.sleep(0.05)
        exchanges.start_soon(ask, "Abort")

    assert replies == {
        "Sale": envelope("Sale", "Y2FuY2VsbGVk"),
        "Abort": envelope("Abort", "YWJvcnRlZA=="),
    }


async def test_connection_info_is_answered_by_device_info(
    nursery: trio.Nursery, pty: Pty, link: SerialLink
) -> None:
    async def device_info(pty: Pty, request: Envelope) -> None:
        await pty.send(envelope("DeviceInfo"))

    nursery.start_soon(play_terminal, pty, device_info)

    assert link.reply_action("ConnectionInfo") == "DeviceInfo"
    reply = await first_reply(link, envelope("ConnectionInfo"), timeout=5)

    assert reply.action == "DeviceInfo"


async def test_a_lone_exchange_takes_a_reply_under_another_action(
    nursery: trio.Nursery, pty: Pty, link: SerialLink
) -> None:
    async def renamed(pty: Pty, request: Envelope) -> None:
        await pty.send(envelope("SaleResult"))

    nursery.start_soon(play_terminal, pty, renamed)

    reply = await first_reply(link, envelope("Sale"), timeout=5)

    assert reply.action == "SaleResult"


async def test_a_reply_nobody_waits_for_is_dropped_as_stale(
    pty: Pty, nursery: trio.Nursery
) -> None:
    late: list[Envelope] = []
    serial_link = SerialLink(pty.path, backoff=FAST, on_stale=late.append)
    await nursery.start(serial_link.run)
    try:
        await pty.send(envelope("Sale", "bGF0ZQ=="))
        await eventually(lambda: len(late) == 1)
    finally:
        await serial_link.aclose()

    assert late == [envelope("Sale", "bGF0ZQ==")]


async def test_a_frame_that_is_not_an_envelope_is_dropped(
    nursery: trio.Nursery, pty: Pty, link: SerialLink, caplog: pytest.LogCaptureFixture
) -> None:
    async def garbled_first(pty: Pty, request: Envelope) -> None:
        await pty.master.send_all(encode_frame(b"\xffnot json"))
        await pty.send(envelope(request.action))

    nursery.start_soon(play_terminal, pty, garbled_first)

    with caplog.at_level(logging.WARNING, logger="ecrd.transport.serial"):
        reply = await first_reply(link, envelope("Sale"), timeout=5)

    assert reply == envelope("Sale")
    dropped = [r for r in caplog.records if "not an envelope" in r.getMessage()]
    assert len(dropped) == 1


async def test_a_silent_terminal_times_out(pty: Pty, link: SerialLink) -> None:
    start = trio.current_time()
    with pytest.raises(ReplyTimeout):
        await first_reply(link, envelope("Sale"), timeout=0.2)

    assert 0.2 <= trio.current_time() - start < 1.0
    assert link.state == "up"


async def test_exchange_on_a_missing_device_fails_at_once(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    serial_link = SerialLink(str(tmp_path / "ttyNONE"), backoff=FAST)
    await nursery.start(serial_link.run)
    try:
        assert serial_link.state == "down"
        with trio.fail_after(0.1), pytest.raises(NotDelivered) as caught:
            await first_reply(serial_link, envelope("Sale"), timeout=30)
    finally:
        await serial_link.aclose()

    assert not isinstance(caught.value, MaybeDelivered)


async def test_unplug_and_replug_recovers_without_restart(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ecrd.transport.serial")
    device = tmp_path / "ttyWONDER"
    first = Pty()
    device.symlink_to(first.path)
    serial_link = SerialLink(str(device), backoff=FAST, path_check_interval=0.05)
    await nursery.start(serial_link.run)
    try:
        async with trio.open_nursery() as terminal:
            terminal.start_soon(play_terminal, first, echo)
            await first_reply(serial_link, envelope("Sale"), timeout=5)
            terminal.cancel_scope.cancel()

        # Unplug: the adapter vanishes and udev removes its link.
        await first.aclose()
        device.unlink()
        await eventually(lambda: serial_link.state == "down")
        with trio.fail_after(0.1), pytest.raises(NotDelivered):
            await first_reply(serial_link, envelope("Sale"), timeout=30)
        await trio.sleep(0.3)  # several reopen attempts, which must not log

        # Replug: a new tty behind the same path.
        second = Pty()
        device.symlink_to(second.path)
        async with trio.open_nursery() as terminal:
            terminal.start_soon(play_terminal, second, echo)
            await eventually(lambda: serial_link.state == "up")
            reply = await first_reply(serial_link, envelope("Refund"), timeout=5)
            terminal.cancel_scope.cancel()
    finally:
        await serial_link.aclose()

    assert reply.action == "Refund"  # on the second device, opened when it came back
    records = [r for r in caplog.records if r.name == "ecrd.transport.serial"]
    assert [r.levelname for r in records] == ["INFO", "WARNING", "INFO"]
    assert "up again" in records[-1].getMessage()
    await second.aclose()


async def test_the_device_is_opened_exclusively(
    nursery: trio.Nursery, pty: Pty, link: SerialLink
) -> None:
    with pytest.raises(SerialPortInUse, match="in use by another program"):
        open_serial(pty.path, SerialSettings())

    rival = SerialLink(pty.path, backoff=FAST)
    await nursery.start(rival.run)
    try:
        assert rival.state == "down"
        with pytest.raises(NotDelivered):
            await first_reply(rival, envelope("Sale"), timeout=5)
    finally:
        await rival.aclose()
    assert link.state == "up"


async def test_aclose_fails_waiting_exchanges(pty: Pty, nursery: trio.Nursery) -> None:
    serial_link = SerialLink(pty.path, backoff=FAST)
    await nursery.start(serial_link.run)
    outcome: list[BaseException] = []

    async def wait_for_sale() -> None:
        try:
            await first_reply(serial_link, envelope("Sale"), timeout=30)
        except MaybeDelivered as exc:
            outcome.append(exc)

    async with trio.open_nursery() as exchanges:
        exchanges.start_soon(wait_for_sale)
        # The Sale is on the line (the terminal's side has it) before the link closes.
        assert await pty.master.receive_some()
        await serial_link.aclose()

    assert len(outcome) == 1
    assert serial_link.state == "down"


async def test_a_device_that_fails_while_it_is_configured_is_retried_not_fatal(
    nursery: trio.Nursery, pty: Pty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device can go away between pyserial's open() and its tcsetattr (seen on a pty
    whose other side closed): termios.error, not an OSError. It is a failed open like any
    other: the link is down and retries, the daemon does not fall over."""
    real, failures = termios.tcsetattr, [1, 1]

    def vanishing(fd: int, when: int, attributes: list[Any]) -> None:
        if failures:
            failures.pop()
            raise termios.error(5, "Input/output error")
        real(fd, when, attributes)

    monkeypatch.setattr(serial.serialposix.termios, "tcsetattr", vanishing)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(SerialOpenError, match="Input/output error"):
        open_serial(pty.path, SerialSettings())
    assert len(os.listdir("/proc/self/fd")) == fds  # nothing left open
    serial_link = SerialLink(pty.path, backoff=FAST)
    await nursery.start(serial_link.run)
    try:
        assert serial_link.state == "down"
        await eventually(lambda: serial_link.state == "up")
    finally:
        await serial_link.aclose()


def test_bad_line_settings_are_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="parity"):
        SerialLink("/dev/ttyS0", parity="X")
    with pytest.raises(ValueError, match="bytesize"):
        SerialLink("/dev/ttyS0", bytesize=9)


async def test_a_vanished_device_path_takes_the_link_down(
    nursery: trio.Nursery, pty: Pty, tmp_path: Path
) -> None:
    # Some adapters leave the old fd silent instead of hanging up; the path tells.
    device = tmp_path / "ttyWONDER"
    device.symlink_to(pty.path)
    serial_link = SerialLink(str(device), backoff=FAST, path_check_interval=0.05)
    await nursery.start(serial_link.run)
    try:
        assert serial_link.state == "up"
        device.unlink()
        await eventually(lambda: serial_link.state == "down")
    finally:
        await serial_link.aclose()


async def test_a_reply_for_neither_of_two_waiting_exchanges_is_stale(
    nursery: trio.Nursery, pty: Pty, link: SerialLink, stale: list[Envelope]
) -> None:
    async def refund_first(pty: Pty, request: Envelope) -> None:
        if request.action == "Abort":
            await pty.send(envelope("Refund"))
            await pty.send(envelope("Abort"))
            await pty.send(envelope("Sale"))

    nursery.start_soon(play_terminal, pty, refund_first)

    replies: dict[str, str] = {}

    async def ask(action: str) -> None:
        replies[action] = (await first_reply(link, envelope(action), timeout=5)).action

    async with trio.open_nursery() as exchanges:
        exchanges.start_soon(ask, "Sale")
        await trio.sleep(0.05)
        exchanges.start_soon(ask, "Abort")

    assert replies == {"Sale": "Sale", "Abort": "Abort"}
    assert stale == [envelope("Refund")]


BIG = envelope("Sale", "A" * 30_000)  # more than a pty buffers while nobody reads


async def test_a_write_cut_short_may_have_been_delivered(pty: Pty, link: SerialLink) -> None:
    with pytest.raises(ReplyTimeout):
        await first_reply(link, BIG, timeout=0.2)


async def test_a_request_that_never_got_the_line_was_not_delivered(
    pty: Pty, link: SerialLink
) -> None:
    outcome: list[BaseException] = []

    async def stuck_writer() -> None:
        try:
            await first_reply(link, BIG, timeout=30)
        except MaybeDelivered as exc:
            outcome.append(exc)

    async with trio.open_nursery() as exchanges:
        exchanges.start_soon(stuck_writer)
        await trio.sleep(0.05)
        with pytest.raises(NotDelivered) as caught:
            await first_reply(link, envelope("Abort"), timeout=0.1)
        await link.aclose()  # wakes the stuck writer

    assert not isinstance(caught.value, MaybeDelivered)
    assert len(outcome) == 1


def test_reconnect_delays_grow_to_the_cap_with_jitter_below_it() -> None:
    backoff = Backoff(initial=0.2, cap=10.0, jitter=0.5, rng=lambda: 1.0)
    delays = backoff.delays()
    assert [next(delays) for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]

    no_jitter = Backoff(initial=0.2, cap=10.0, rng=lambda: 0.0).delays()
    assert max(next(no_jitter) for _ in range(20)) == 10.0


async def test_an_exchange_hands_up_every_reply_routed_to_it_in_order(
    nursery: trio.Nursery, pty: Pty, link: SerialLink
) -> None:
    """The terminal first sends a late reply to an earlier Sale, then the real one: the link
    hands up both, in order; which one answers the request is the caller's to decide (it
    decrypts them; the link never does)."""

    async def late_then_real(pty: Pty, request: Envelope) -> None:
        await pty.send(envelope("Sale", "bGF0ZQ=="))
        await trio.sleep(0.05)
        await pty.send(envelope("Sale", "cmVhbA=="))

    nursery.start_soon(play_terminal, pty, late_then_real)
    seen: list[str] = []
    async with link.exchange(envelope("Sale"), timeout=5) as replies:
        async for reply in replies:
            seen.append(reply.data)
            if reply.data == "cmVhbA==":  # the caller recognises its own (by responseID)
                break
    assert seen == ["bGF0ZQ==", "cmVhbA=="]


async def test_an_exchange_that_takes_no_reply_times_out_as_maybe_delivered(
    nursery: trio.Nursery, pty: Pty, link: SerialLink
) -> None:
    nursery.start_soon(play_terminal, pty, echo)
    with pytest.raises(ReplyTimeout):
        async with link.exchange(envelope("Sale"), timeout=0.5) as replies:
            async for _ in replies:
                pass  # none of them is taken: the deadline ends it
