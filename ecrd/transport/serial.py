"""The RS232 link: framed envelopes over a tty (protocol.md §6), kept open by a supervisor.

``SerialLink``
    ``run()`` (started in a nursery) opens the device exclusively, reads frames and routes
    each reply to the exchange waiting for it. On device loss — EOF, EIO/ENXIO, the path
    disappearing or pointing to another device, open failing — the link is ``down``, the
    port is closed and reopened with capped, jittered backoff. Each outage logs one
    warning and one info when it ends, never a line per retry.

The port itself (opening the device, the Trio stream over the tty) is
``ecrd.transport.serial_port``; its names are importable from here too.

Invariants of ``SerialLink.exchange``:

* Port not open → ``NotDelivered`` at once; it never waits for the device to return.
* Writes are serialised by a lock, so frames never interleave. A write that fails or runs
  out of time before its first byte went out is ``NotDelivered``; after that,
  ``MaybeDelivered`` (design.md §3 rule 3).
* Replies are routed by envelope ``action`` (docs/internals.md): a frame goes to the oldest
  exchange expecting that action; with no such exchange and exactly one exchange waiting,
  to that one; otherwise it is handed to ``on_stale`` (a reply nobody waits for any more)
  and counted. This is what lets an ``Abort`` be answered while a ``Sale`` still waits for
  the customer. An exchange hands up every reply routed to it until its deadline; which one
  answers the request is the caller's to decide (it decrypts, the link never does).
* An exchange that already wrote its frame keeps waiting through a device outage until its
  deadline: a terminal that answers after the cable was replugged still settles the
  payment, which beats an unknown outcome.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Final

import trio
import trio.lowlevel

from ecrd.backoff import Backoff
from ecrd.protocol.envelope import Envelope, MalformedEnvelope
from ecrd.protocol.frames import FrameDecoder, FrameError, FrameFormat, encode_frame
from ecrd.transport.base import (
    LinkError,
    LinkState,
    MaybeDelivered,
    NotDelivered,
    Replies,
    ReplyTimeout,
)
from ecrd.transport.serial_port import (
    SerialOpenError,
    SerialPortInUse,
    SerialSettings,
    TtyStream,
    open_serial,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_FRAME_FORMAT",
    "DEFAULT_REPLY_ACTIONS",
    "SerialLink",
    "SerialOpenError",
    "SerialPortInUse",
    "SerialSettings",
    "TtyStream",
    "open_serial",
]

# The request's action names its reply, except where protocol.md §2 says otherwise.
DEFAULT_REPLY_ACTIONS: Final[Mapping[str, str]] = {"ConnectionInfo": "DeviceInfo"}
DEFAULT_FRAME_FORMAT: Final = FrameFormat()
DEFAULT_BACKOFF: Final = Backoff(initial=0.2, cap=10.0)

log = logging.getLogger(__name__)


class _Waiter:
    """One exchange's replies: queued as they are routed to it, handed up in order until
    its deadline (``Link.exchange``: the caller decides which one answers it)."""

    def __init__(self, action: str, device: str, timeout: float) -> None:
        self.action = action
        self.pending = True  # routed replies are welcome until the exchange ends
        self._device = device
        self._timeout = timeout
        self._deadline = trio.current_time() + timeout
        self._error: LinkError | None = None
        self._queue: list[Envelope] = []
        self._arrived = trio.Event()

    def deliver(self, reply: Envelope) -> None:
        self._queue.append(reply)
        self._arrived.set()

    def fail(self, error: LinkError) -> None:
        self._error = error
        self._arrived.set()

    def __aiter__(self) -> _Waiter:
        return self

    async def __anext__(self) -> Envelope:
        with trio.move_on_at(self._deadline):
            await self._arrived.wait()
        if self._queue:  # one that came in the instant of the deadline is still good
            reply = self._queue.pop(0)
            if not self._queue:
                self._arrived = trio.Event()
            return reply
        if self._error is not None:
            raise self._error
        await trio.lowlevel.checkpoint()
        raise ReplyTimeout(f"no {self.action} reply on {self._device} within {self._timeout:g} s")


class _Written:
    """How many bytes of one request the kernel accepted (survives cancellation)."""

    def __init__(self) -> None:
        self.count = 0


class _DeviceLost(Exception):
    """Internal: the open port stopped working; the message says why."""


class SerialLink:
    """A terminal on an RS232 line (kind ``serial``). Start ``run`` in a nursery first."""

    kind = "serial"

    def __init__(
        self,
        device: str,
        baudrate: int = 115200,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        rtscts: bool = False,
        frame_format: FrameFormat = DEFAULT_FRAME_FORMAT,
        *,
        reply_actions: Mapping[str, str] = DEFAULT_REPLY_ACTIONS,
        backoff: Backoff = DEFAULT_BACKOFF,
        path_check_interval: float = 1.0,
        on_stale: Callable[[Envelope], None] | None = None,
    ) -> None:
        if path_check_interval <= 0:
            raise ValueError("path_check_interval must be greater than zero")
        self.device = device
        self.settings = SerialSettings(baudrate, bytesize, parity, stopbits, rtscts)
        self.frame_format = frame_format
        self._reply_actions = dict(reply_actions)
        self._backoff = backoff
        self._path_check_interval = path_check_interval
        # Called with every reply nobody waits for: a Sale reply that arrives after its
        # exchange timed out can still settle an unknown transaction upstream.
        self._on_stale = on_stale
        self._decoder = FrameDecoder(frame_format)
        self._port: TtyStream | None = None
        self._waiters: list[_Waiter] = []
        self._write_lock = trio.Lock()
        self._closing = trio.Event()
        self._lent: trio.Event | None = None  # set when a lend ends; the port stays shut until
        self._state: LinkState = "unknown"
        self._down_since = 0.0

    def __repr__(self) -> str:
        return f"<SerialLink {self.device} {self._state}>"

    @property
    def state(self) -> LinkState:
        return self._state

    def reply_action(self, action: str) -> str:
        """The action the terminal names its reply to ``action`` with."""
        return self._reply_actions.get(action, action)

    # -- exchanges ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def exchange(self, request: Envelope, *, timeout: float) -> AsyncIterator[Replies]:
        """As ``Link.exchange``: every reply routed to this request, until the deadline."""
        port = self._port
        if port is None:
            await trio.lowlevel.checkpoint()  # fail fast, but stay a checkpoint for retry loops
            raise NotDelivered(f"serial port {self.device} is not open")
        frame = self._encode(request)
        waiter = _Waiter(self.reply_action(request.action), self.device, timeout)
        written = _Written()
        # Registered before the write, so a quick reply cannot arrive unclaimed.
        self._waiters.append(waiter)
        try:
            with trio.move_on_after(timeout):
                await self._write(port, frame, written)
            if written.count == 0:
                raise NotDelivered(
                    f"serial port {self.device} did not take the request in {timeout:g} s"
                )
            if written.count < len(frame):
                raise ReplyTimeout(f"the request did not fit on {self.device} in {timeout:g} s")
            yield waiter
        finally:
            waiter.pending = False
            self._waiters.remove(waiter)

    def _encode(self, request: Envelope) -> bytes:
        try:
            return encode_frame(request.to_bytes(), self.frame_format)
        except FrameError as exc:
            raise NotDelivered(f"request cannot be sent over RS232: {exc}") from exc

    async def _write(self, port: TtyStream, frame: bytes, written: _Written) -> None:
        async with self._write_lock:
            before = port.bytes_sent
            try:
                await port.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if port.bytes_sent == before:
                    raise NotDelivered(f"serial port {self.device} failed: {exc}") from exc
                raise MaybeDelivered(
                    f"serial port {self.device} failed after part of the request went out: {exc}"
                ) from exc
            finally:
                written.count = port.bytes_sent - before

    def _route(self, reply: Envelope) -> None:
        pending = [w for w in self._waiters if w.pending]
        match = next((w for w in pending if w.action == reply.action), None)
        if match is None and len(pending) == 1:
            match = pending[0]
        if match is not None:
            match.deliver(reply)
            return
        log.warning(
            "serial %s: dropped a %s reply no exchange waits for", self.device, reply.action
        )
        if self._on_stale is not None:
            try:
                self._on_stale(reply)
            except Exception:
                # A bug upstream must not stop the reader: every later reply would be lost.
                log.exception("serial %s: on_stale callback failed", self.device)

    # -- the supervisor ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the device open until ``aclose``. Reports started after the first attempt
        to open, so ``state`` is ``up`` or ``down`` when ``nursery.start`` returns."""
        started = False
        delays = self._backoff.delays()
        while not self._closing.is_set():
            if self._lent is not None:
                await self._lent.wait()
                continue
            port = await self._open()
            if not started:
                task_status.started()
                started = True
            if port is not None:
                opened_at = trio.current_time()
                await self._session(port)
                if trio.current_time() - opened_at > self._backoff.cap:
                    delays = self._backoff.delays()  # a long good session ends the outage streak
            with trio.move_on_after(next(delays)):
                await self._closing.wait()

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[None]:
        """The device for someone else (a probe with other line settings) for the block:
        the port is closed and not reopened until the block ends, however it ends."""
        if self._lent is not None or self._waiters:
            raise NotDelivered(f"serial port {self.device} is in use")
        lent = self._lent = trio.Event()
        port, self._port = self._port, None
        try:
            if port is not None:
                await port.aclose()  # the session ends; the run loop then waits for ``lent``
            await trio.lowlevel.checkpoint()
            yield
        finally:
            self._lent = None
            lent.set()
            log.info("serial %s: given back", self.device)

    async def _open(self) -> TtyStream | None:
        try:
            port = await trio.to_thread.run_sync(open_serial, self.device, self.settings)
        except SerialOpenError as exc:
            self._went_down(str(exc))
            return None
        if self._lent is not None:  # lent while it opened: give it up at once
            with trio.CancelScope(shield=True):
                await port.aclose()
            return None
        # No checkpoint between the thread returning and this line: the port cannot leak.
        self._port = port
        return port

    async def _session(self, port: TtyStream) -> None:
        try:
            self._came_up()
            await self._read_until_lost(port)
        except _DeviceLost as lost:
            if not self._closing.is_set():
                self._went_down(str(lost))
        finally:
            self._port = None
            self._decoder.reset()  # a partial frame of the old session must not prefix the next
            with trio.CancelScope(shield=True):
                await port.aclose()

    async def _read_until_lost(self, port: TtyStream) -> None:
        while True:
            with trio.move_on_after(self._path_check_interval):
                while True:
                    self._feed(await self._receive(port))
            self._check_path(port)

    async def _receive(self, port: TtyStream) -> bytes:
        try:
            chunk = await port.receive_some()
        except trio.BrokenResourceError as exc:
            raise _DeviceLost(str(exc)) from exc
        except trio.ClosedResourceError as exc:
            raise _DeviceLost("port closed") from exc
        if not chunk:
            raise _DeviceLost("device hung up")
        return chunk

    def _check_path(self, port: TtyStream) -> None:
        # A USB adapter that vanished may leave the old fd silently dead; the path tells.
        try:
            same = os.stat(self.device).st_rdev == os.fstat(port.fd).st_rdev
        except OSError:
            same = False
        if not same:
            raise _DeviceLost(f"{self.device} disappeared or now names another device")

    def _feed(self, chunk: bytes) -> None:
        for frame in self._decoder.feed(chunk):
            try:
                reply = Envelope.from_bytes(frame.data)
            except MalformedEnvelope as exc:
                log.warning(
                    "serial %s: dropped a frame that is not an envelope: %s", self.device, exc
                )
                continue
            self._route(reply)

    def _went_down(self, why: str) -> None:
        if self._state != "down":
            log.warning("serial %s down: %s; reopening in the background", self.device, why)
            self._down_since = trio.current_time()
        else:
            log.debug("serial %s still down: %s", self.device, why)
        self._state = "down"

    def _came_up(self) -> None:
        if self._state == "down":
            outage = trio.current_time() - self._down_since
            log.info("serial %s up again after %.1f s", self.device, outage)
        else:
            log.info("serial %s opened", self.device)
        self._state = "up"

    async def aclose(self) -> None:
        """Close the port, stop ``run`` and fail the exchanges still waiting."""
        self._closing.set()
        for waiter in self._waiters:
            if waiter.pending:
                waiter.fail(MaybeDelivered(f"serial link {self.device} closed before the reply"))
        port, self._port = self._port, None
        if port is not None:
            await port.aclose()
        self._state = "down"
        await trio.lowlevel.checkpoint()
