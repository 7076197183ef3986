"""A raw serial port for the probe: many frames out in one paced window, every reply
decoded under every framing at once.

``SerialLink`` speaks one framing and routes replies to exchanges; a probe that does not
know the framing yet needs the opposite: send the request framed every way it might be
(CRC variant × byte order × cmd), and read back whatever frames under *any* of them. The
terminal's own ``SerialLink`` lends the device meanwhile (``SerialLink.lend``).

``ProbePort``
    One open device at one line setting (``open_serial``: exclusive, raw). A reader task
    feeds every byte to one ``FrameDecoder`` per framing; each frame heard is handed on
    (``heard``) with the framing that decoded it, its cmd and its data. ``send`` writes
    frames paced at the line's own rate.

Pacing, and why: a frame is written whole, then the writer waits until the line would
have carried it at the port's speed (start, data, parity and stop bits per byte) plus a
gap of ``GAP_CHARS`` character times of silence (at least ``GAP_MIN_S``). So:

* the probe never outruns the line, also where nothing enforces its speed (a pty, an
  adapter with a deep FIFO): the terminal's UART receives at most what the wire can carry,
  and stopping the window stops the bytes within one frame;
* every frame is followed by silence well past the 4-character receive timeout of a
  16550-style UART (which hands the bytes up on it) and the 3.5 characters after which
  a frame-by-silence receiver ends a frame: a terminal whose reader misread a frame (its
  length in the other byte order, say) is idle again before the next one starts;
* a terminal is idle until the first frame it can read — it drops the others at line
  rate — so that frame always lands in an empty input buffer. What arrives while it is
  busy with it (deriving a key) may overflow a small buffer, but the probe relies on none
  of it: it stops the window at the first reply, and everything after goes one frame at a
  time, each waiting for its answer.

A frame heard whose payload is one of the frames sent (a half-duplex adapter echoing the
line) is dropped, not taken for an answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Final

import attrs
import trio

from ecrd.protocol.frames import Frame, FrameDecoder, FrameFormat, encode_frame
from ecrd.transport.serial_port import SerialSettings, TtyStream, open_serial

GAP_CHARS: Final = 16  # silence after each frame, in character times (see above)
GAP_MIN_S: Final = 0.002


def char_time(settings: SerialSettings) -> float:
    """Seconds one byte takes on the wire: start bit, data bits, parity, stop bits."""
    bits = 1 + settings.bytesize + (settings.parity != "N") + settings.stopbits
    return bits / settings.baudrate


def line_seconds(nbytes: int, settings: SerialSettings, frames: int = 1) -> float:
    """How long ``frames`` frames of ``nbytes`` in all take, paced as ``send`` paces them."""
    gap = max(GAP_CHARS * char_time(settings), GAP_MIN_S)
    return nbytes * char_time(settings) + frames * gap


@attrs.frozen
class Heard:
    """One frame that came back: the framing that decoded it, its cmd, its payload."""

    fmt: FrameFormat
    frame: Frame


class ProbePort:
    """One open device at one line setting; see the module docstring."""

    def __init__(
        self, stream: TtyStream, settings: SerialSettings, formats: Sequence[FrameFormat]
    ) -> None:
        self.settings = settings
        self._stream = stream
        self._decoders = [FrameDecoder(fmt) for fmt in formats]
        self._sent: set[bytes] = set()
        self._send_heard, self.heard = trio.open_memory_channel[Heard](256)
        self.any_heard = trio.Event()  # set at the first frame heard
        self.bytes_in = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, device: str, settings: SerialSettings, formats: Sequence[FrameFormat]
    ) -> AsyncIterator[ProbePort]:
        """The device open at ``settings`` for the block, its replies read meanwhile.
        Raises ``SerialOpenError`` if it cannot be opened."""
        stream = await trio.to_thread.run_sync(open_serial, device, settings)
        try:
            port = cls(stream, settings, formats)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(port._read)
                yield port
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def send(self, frames: Sequence[bytes], *, stop: trio.Event | None = None) -> int:
        """Write ``frames`` paced (module docstring); stop early once ``stop`` is set.
        Returns how many went out."""
        gap = max(GAP_CHARS * char_time(self.settings), GAP_MIN_S)
        due = trio.current_time()
        sent = 0
        for frame in frames:
            if stop is not None and stop.is_set():
                break
            self._sent.add(frame)
            await self._stream.send_all(frame)
            sent += 1
            due = max(due, trio.current_time()) + len(frame) * char_time(self.settings) + gap
            if stop is None:
                await trio.sleep_until(due)
                continue
            with trio.move_on_at(due):
                await stop.wait()
        return sent

    async def _read(self) -> None:
        while True:
            try:
                chunk = await self._stream.receive_some()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not chunk:
                return
            self.bytes_in += len(chunk)
            for decoder in self._decoders:
                for frame in decoder.feed(chunk):
                    if frame.data and not self._is_echo(decoder.fmt, frame):
                        self.any_heard.set()
                        await self._send_heard.send(Heard(decoder.fmt, frame))

    def _is_echo(self, fmt: FrameFormat, frame: Frame) -> bool:
        return encode_frame(frame.data, fmt, cmd=frame.cmd) in self._sent
