"""The terminal's RS232 port, simulated by a pty pair (protocol.md §6).

The simulator owns the master side and serves the frame protocol on it; the slave side
(``/dev/pts/N``) is the device a daemon opens, a real tty. Optionally a stable symlink
(e.g. ``<state dir>/ttyECR0``) points at the current slave, like a udev by-id link.

Invariants:

* The slave is put in raw mode (no echo, no line discipline) and the simulator keeps its
  own slave fd open while plugged, so the daemon can close and reopen the device without
  the master seeing a hang-up, and the tty settings survive.
* Frames are read continuously and each one is answered by its own task, so an Abort is
  answered while a Sale still waits for the customer. Replies are written whole, one at a
  time (a lock), never interleaved.
* ``unplug`` closes both sides and removes the symlink: the daemon's open fd fails (EOF
  or EIO) and the path disappears. ``replug`` opens a new pair (a new ``/dev/pts/N``) and
  re-points the symlink.
* Like a real terminal, the simulator does not notice the cable: a request in flight
  goes on (the customer pays), and its reply is written to whatever line is plugged in
  when it is due; if none is, the reply is lost (``replies_lost``), the charge stands.
* A reply frame echoes the request frame's ``cmd``. Frames whose payload is not an
  envelope are dropped (logged): the terminal has nobody to answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import termios
import tty
from pathlib import Path

import trio

from ecrd.protocol.envelope import Envelope, MalformedEnvelope
from ecrd.protocol.frames import Frame, FrameDecoder, FrameFormat, encode_frame
from ecrd.sim.pacing import write_paced
from ecrd.sim.terminal import SimTerminal

log = logging.getLogger("ecrd.sim.serial")


class SimCable:
    """One simulated cable. ``path`` is what a daemon should open."""

    def __init__(self, symlink: str | os.PathLike[str] | None = None) -> None:
        self.symlink = Path(symlink) if symlink is not None else None
        self.slave_path: str | None = None
        self.frames_in = 0
        self.frames_dropped = 0
        self.replies_lost = 0
        self._want_plugged = True
        self._changed = trio.Event()
        self._settled = trio.Event()

    def __repr__(self) -> str:
        return f"<SimCable {self.path} {'plugged' if self.plugged else 'unplugged'}>"

    @property
    def path(self) -> str:
        if self.symlink is not None:
            return str(self.symlink)
        return self.slave_path or ""

    @property
    def plugged(self) -> bool:
        return self.slave_path is not None

    async def unplug(self) -> None:
        """Pull the cable; returns once the pty is closed and the symlink is gone."""
        await self._set(plugged=False)

    async def replug(self) -> str:
        """Plug a new cable; returns the new slave path once it is open."""
        await self._set(plugged=True)
        assert self.slave_path is not None
        return self.slave_path

    async def _set(self, *, plugged: bool) -> None:
        if self.plugged == plugged:
            return
        self._want_plugged = plugged
        self._settled = trio.Event()
        self._changed.set()
        await self._settled.wait()

    async def _wait_for_change(self) -> None:
        self._changed = trio.Event()
        await self._changed.wait()

    def _publish(self, slave_path: str | None) -> None:
        self.slave_path = slave_path
        if self.symlink is not None:
            with contextlib.suppress(FileNotFoundError):
                self.symlink.unlink()
            if slave_path is not None:
                # Create aside and rename, so the link never points at a stale device.
                tmp = self.symlink.with_name(f".{self.symlink.name}.{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                tmp.symlink_to(slave_path)
                tmp.replace(self.symlink)
        self._settled.set()


async def serve_serial(
    terminal: SimTerminal,
    *,
    symlink: str | os.PathLike[str] | None = None,
    fmt: FrameFormat | None = None,
    pace_bps: float | None = None,
    baudrate: int | None = None,
    strict_cmd: bool = False,
    task_status: trio.TaskStatus[SimCable] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``terminal`` on a pty; reports the ``SimCable`` (its ``path`` is the symlink
    if one was asked for, else the slave). ``pace_bps`` limits the reply write rate
    (11520 bytes/s mimics 115200 baud 8N1). ``baudrate``: the terminal's own speed; bytes
    that arrive while the pty is set to another speed are garbled, as a UART would garble
    them. ``strict_cmd``: frames with another cmd than ``fmt``'s are ignored."""
    port = SimCable(symlink)
    line = _Line(terminal, port, fmt or FrameFormat(), pace_bps)
    line.baudrate, line.strict_cmd = baudrate, strict_cmd
    try:
        await line.run(task_status)
    finally:
        port._want_plugged = False


class _Line:
    def __init__(
        self, terminal: SimTerminal, port: SimCable, fmt: FrameFormat, pace_bps: float | None
    ) -> None:
        self.terminal = terminal
        self.port = port
        self.fmt = fmt
        self.pace_bps = pace_bps
        self.stream: trio.lowlevel.FdStream | None = None  # the pty plugged in now, if any
        self.write_lock = trio.Lock()
        self.baudrate: int | None = None  # answers only at this speed (None: at any)
        self.strict_cmd = False
        self._slave: int | None = None

    async def run(self, task_status: trio.TaskStatus[SimCable]) -> None:
        port, started = self.port, False
        # Requests outlive the pty they came on: the customer goes on paying while the
        # cable is out, and the reply goes to whatever line is plugged in when it is due.
        async with trio.open_nursery() as requests:
            while True:
                if not port._want_plugged:
                    await port._wait_for_change()
                    continue
                master, slave = os.openpty()
                tty.setraw(slave)
                self._slave = slave
                stream = self.stream = trio.lowlevel.FdStream(master)
                try:
                    port._publish(os.ttyname(slave))
                    log.info("%s: serial line at %s", self.terminal.sn, port.path)
                    if not started:
                        task_status.started(port)
                        started = True
                    async with trio.open_nursery() as session:
                        session.start_soon(self._read, stream, requests)
                        while port._want_plugged:
                            await port._wait_for_change()
                        session.cancel_scope.cancel()
                finally:
                    self.stream = None
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
                    os.close(slave)
                    if not port._want_plugged:
                        log.info("%s: serial line unplugged", self.terminal.sn)
                    port._publish(None)

    async def _read(self, stream: trio.lowlevel.FdStream, requests: trio.Nursery) -> None:
        decoder = FrameDecoder(self.fmt)
        while True:
            try:
                chunk = await stream.receive_some(4096)
            except trio.BrokenResourceError as exc:  # EIO: not while we hold the slave open
                log.error("%s: serial line failed: %s", self.terminal.sn, exc)
                return
            if not chunk:
                await trio.sleep(0.05)  # likewise: no EOF while the slave is held
                continue
            if not self._at_own_speed():
                chunk = bytes(b ^ 0xA5 for b in chunk)  # what a UART at another speed reads
            for frame in decoder.feed(chunk):
                if self.strict_cmd and frame.cmd != self.fmt.cmd:
                    self.port.frames_dropped += 1
                    continue
                self.port.frames_in += 1
                requests.start_soon(self._answer, frame)

    def _at_own_speed(self) -> bool:
        """The speed the other end set on the pty (termios is shared by both ends)."""
        if self.baudrate is None or self._slave is None:
            return True
        try:
            speed = termios.tcgetattr(self._slave)[4]
        except termios.error:
            return False
        return bool(speed == getattr(termios, f"B{self.baudrate}", None))

    async def _answer(self, frame: Frame) -> None:
        sn = self.terminal.sn
        try:
            request = Envelope.from_bytes(frame.data)
        except MalformedEnvelope as exc:
            self.port.frames_dropped += 1
            log.warning("%s: dropped a frame that is not an envelope: %s", sn, exc)
            return
        problem = self.terminal.check_envelope(request)
        if problem is not None:
            self.port.frames_dropped += 1
            log.warning("%s: dropped a frame (strict): %s", sn, problem)
            return
        reply = await self.terminal.handle(request, "serial")
        if reply.envelope is None:
            return
        data = bytearray(encode_frame(reply.envelope.to_bytes(), self.fmt, cmd=frame.cmd))
        if reply.corrupt_crc:
            data[-1] ^= 0xFF
        async with self.write_lock:
            stream = self.stream
            try:
                if stream is None:
                    raise trio.ClosedResourceError("unplugged")
                rate = reply.bytes_per_s or self.pace_bps
                await write_paced(stream.send_all, reply.garbage + bytes(data), rate)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.port.replies_lost += 1
                log.info("%s: %s reply lost, the line is unplugged", sn, request.action)
