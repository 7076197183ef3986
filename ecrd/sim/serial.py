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
  or EIO) and the path disappears. Requests in flight on the line are cancelled (not
  charged). ``replug`` opens a new pair (a new ``/dev/pts/N``) and re-points the symlink.
* A reply frame echoes the request frame's ``cmd``. Frames whose payload is not an
  envelope are dropped (logged): the terminal has nobody to answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tty
from pathlib import Path

import trio

from ecrd.protocol.envelope import Envelope, MalformedEnvelope
from ecrd.protocol.frames import Frame, FrameDecoder, FrameFormat, encode_frame
from ecrd.sim.pacing import write_paced
from ecrd.sim.terminal import SimTerminal

log = logging.getLogger("ecrd.sim.serial")


class SerialPort:
    """One simulated cable. ``path`` is what a daemon should open."""

    def __init__(self, symlink: str | os.PathLike[str] | None = None) -> None:
        self.symlink = Path(symlink) if symlink is not None else None
        self.slave_path: str | None = None
        self.frames_in = 0
        self.frames_dropped = 0
        self._want_plugged = True
        self._changed = trio.Event()
        self._settled = trio.Event()

    def __repr__(self) -> str:
        return f"<SerialPort {self.path} {'plugged' if self.plugged else 'unplugged'}>"

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
    task_status: trio.TaskStatus[SerialPort] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``terminal`` on a pty; reports the ``SerialPort`` (its ``path`` is the symlink
    if one was asked for, else the slave). ``pace_bps`` limits the reply write rate
    (11520 bytes/s mimics 115200 baud 8N1)."""
    port = SerialPort(symlink)
    fmt = fmt or FrameFormat()
    started = False
    try:
        while True:
            if not port._want_plugged:
                await port._wait_for_change()
                continue
            master, slave = os.openpty()
            tty.setraw(slave)
            stream = trio.lowlevel.FdStream(master)
            try:
                port._publish(os.ttyname(slave))
                log.info("%s: serial line at %s", terminal.sn, port.path)
                if not started:
                    task_status.started(port)
                    started = True
                async with trio.open_nursery() as line:
                    line.start_soon(_read_frames, terminal, port, stream, fmt, pace_bps)
                    while port._want_plugged:
                        await port._wait_for_change()
                    line.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                os.close(slave)
                if not port._want_plugged:
                    log.info("%s: serial line unplugged", terminal.sn)
                port._publish(None)
    finally:
        port._want_plugged = False


async def _read_frames(
    terminal: SimTerminal,
    port: SerialPort,
    stream: trio.lowlevel.FdStream,
    fmt: FrameFormat,
    pace_bps: float | None,
) -> None:
    decoder = FrameDecoder(fmt)
    write_lock = trio.Lock()
    async with trio.open_nursery() as requests:
        while True:
            try:
                chunk = await stream.receive_some(4096)
            except trio.BrokenResourceError as exc:  # EIO: not while we hold the slave open
                log.error("%s: serial line failed: %s", terminal.sn, exc)
                return
            if not chunk:
                await trio.sleep(0.05)  # likewise: no EOF while the slave is held
                continue
            for frame in decoder.feed(chunk):
                port.frames_in += 1
                requests.start_soon(
                    _answer, terminal, port, stream, write_lock, frame, fmt, pace_bps
                )


async def _answer(
    terminal: SimTerminal,
    port: SerialPort,
    stream: trio.lowlevel.FdStream,
    write_lock: trio.Lock,
    frame: Frame,
    fmt: FrameFormat,
    pace_bps: float | None,
) -> None:
    try:
        request = Envelope.from_bytes(frame.data)
    except MalformedEnvelope as exc:
        port.frames_dropped += 1
        log.warning("%s: dropped a frame that is not an envelope: %s", terminal.sn, exc)
        return
    reply = await terminal.handle(request, "serial")
    if reply.envelope is None:
        return
    data = bytearray(encode_frame(reply.envelope.to_bytes(), fmt, cmd=frame.cmd))
    if reply.corrupt_crc:
        data[-1] ^= 0xFF
    async with write_lock:
        await write_paced(
            stream.send_all, reply.garbage + bytes(data), reply.bytes_per_s or pace_bps
        )
