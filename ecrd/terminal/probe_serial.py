"""The serial probe: at each speed, every framing in one window.

At each baud rate (the entry's, then ``BAUDRATES``) the device is opened raw
(``transport/serial_window.py``; the terminal's own link lends it) and the look-up is
sent framed every way the knobs allow — ``frame_crc`` × ``frame_byteorder`` ×
``frame_cmd``, the entry's framing first, then the fewest knobs off — for each look-up
(``identify_action``, the entry's first), each request with its own requestID, paced at
the line's rate. What comes back is decoded under every framing at once: a reply names
its framing by the decoder that reads it (its cmd by its header) and, when it decrypts,
the very request it answers by its responseID.

The window stops at the first reply heard. One that decrypts and answers is the result.
One that frames but does not decrypt proves the line and the framing: only then is the
crypto varied, one request at a time on the same port, each waiting for its answer; one
that decrypts but refuses the look-up proves the crypto too, and only the look-up varies.
After a proven framing no other speed is tried.

Time, per speed: the window's bytes at the line's rate and its gaps, then ``turnaround``
for the last reply. Nothing answering, the sweep is the sum over the five speeds
(``sweep_seconds``; bench/probe.py measures it).
"""

from __future__ import annotations

from typing import Any, Final

import trio

from ecrd.config import SerialTerminal
from ecrd.protocol.crypto import Scheme
from ecrd.protocol.envelope import Envelope, MalformedEnvelope
from ecrd.protocol.frames import CRC_VARIANTS, FrameFormat, encode_frame
from ecrd.terminal.probing import (
    BAUDRATES,
    FRAME_CMDS,
    Ask,
    Probe,
    Reading,
    ask,
    describe,
    fewest_off_first,
    judge,
    open_reply,
    response_id,
    uniq,
)
from ecrd.terminal.terminal import Terminal
from ecrd.transport.serial_port import SerialOpenError, SerialSettings
from ecrd.transport.serial_window import Heard, ProbePort, char_time, line_seconds

# After a window, how long its last reply may take: the entry's [ASSUMED]
# ``probe_turnaround_s`` (the terminal derives a key to read the request and one to seal the
# reply: PBKDF2, ~0.1-0.3 s on terminal hardware), then the reply's own line time
# (REPLY_BYTES at the line's rate).
REPLY_BYTES: Final = 512  # a DeviceInfo reply frame is ~450 bytes
NOTHING_DECRYPTS: Final = (
    "the framing is proven, but nothing decrypts: is the code the one on the pairing page?"
)
REFUSES: Final = "the terminal reads these settings, but refuses every look-up: "
Hit = tuple[Heard, Ask | None, Reading]  # a reply, the request it answers, how it reads


def turnaround(cfg: SerialTerminal, settings: SerialSettings) -> float:
    return cfg.probe_turnaround_s + REPLY_BYTES * char_time(settings)


def framings(cfg: SerialTerminal) -> list[dict[str, Any]]:
    """Every framing the window sends, in its order: the entry's first, then the fewest
    knobs off."""
    return fewest_off_first(
        [("frame_crc", uniq([cfg.frame_crc, *sorted(CRC_VARIANTS)])),
         ("frame_byteorder", uniq([cfg.frame_byteorder, "big", "little"])),
         ("frame_cmd", uniq([cfg.frame_cmd, *FRAME_CMDS]))]
    )  # fmt: skip


def line(cfg: SerialTerminal, baudrate: int) -> SerialSettings:
    return SerialSettings(baudrate, cfg.bytesize, cfg.parity, cfg.stopbits, cfg.rtscts)


def frame_of(request: Ask) -> bytes:
    s = request.settings
    fmt = FrameFormat(cmd=s["frame_cmd"], byteorder=s["frame_byteorder"], crc=s["frame_crc"])
    return encode_frame(request.envelope.to_bytes(), fmt)


def sweep_seconds(cfg: SerialTerminal, frame_bytes: list[int]) -> float:
    """How long the windows at every speed take when nothing answers: their line time and
    gaps, and a turnaround after each (arithmetic, for tests and the benchmark)."""
    total = 0.0
    for baud in uniq([cfg.baudrate, *BAUDRATES]):
        settings = line(cfg, baud)
        line_time = line_seconds(sum(frame_bytes), settings, len(frame_bytes))
        total += line_time + turnaround(cfg, settings)
    return total


class SerialProbe:
    def __init__(self, term: Terminal, state: Probe) -> None:
        assert isinstance(term.cfg, SerialTerminal)  # probe.py: a serial terminal's probe
        self.term, self.state, self.cfg = term, state, term.cfg
        self.identifies = state.identify_actions(term.cfg.identify_action)
        self.framings = framings(term.cfg)
        self.formats = uniq(
            FrameFormat(byteorder=f["frame_byteorder"], crc=f["frame_crc"]) for f in self.framings
        )

    async def run(self) -> None:
        cfg = self.cfg
        for baud in uniq([cfg.baudrate, *BAUDRATES]):
            requests = await self.window(baud)
            try:
                async with ProbePort.open(cfg.device, line(cfg, baud), self.formats) as port:
                    if await self.at_speed(port, requests):
                        return
            except SerialOpenError as exc:
                self.state.note({"baudrate": baud}, f"cannot open the port: {exc}")
                return

    async def window(self, baud: int) -> list[Ask]:
        """Every framing × look-up at ``baud``, the entry's look-up first."""
        crypto = self.term.cfg.crypto
        return [
            await ask(self.term, self.state, s, cloud=False)
            for s in (
                {"crypto": crypto, **f, "baudrate": baud, "identify_action": i}
                for i in self.identifies
                for f in self.framings
            )
        ]

    async def at_speed(self, port: ProbePort, requests: list[Ask]) -> bool:
        """One window. True when the probe is over: found, or a framing proven and every
        crypto and look-up tried under it."""
        scheme: Scheme = requests[0].settings["crypto"]
        start = trio.current_time()
        sent = await port.send([frame_of(r) for r in requests], stop=port.any_heard)
        hit = await self.listen(port, requests, scheme)
        what = (
            f"{sent} of {len(requests)} framings × look-ups sent in "
            f"{trio.current_time() - start:.1f} s"
        )
        if hit is None:
            self.state.note(
                {"baudrate": port.settings.baudrate, "crypto": scheme}, f"{what}: no reply"
            )
            return False
        heard, request, reading = hit
        if request is not None and reading.kind == "answered":
            self.state.note(request.settings, "answered")
            self.state.answered(request.settings, reading)
            return True
        proven = _proven(port, heard, request, scheme)
        self.state.note(proven, f"{what}: {describe(reading)}")
        await self.vary(port, proven, reading)
        return True

    async def vary(self, port: ProbePort, proven: dict[str, Any], reading: Reading) -> None:
        """Under a proven framing, one request at a time: a reply that did not decrypt
        leaves the other crypto to try (each look-up); one that refused the look-up, the
        other look-ups."""
        scheme: Scheme = proven["crypto"]
        tries: list[tuple[Scheme, str]]
        if reading.kind == "refused":
            tries = [(scheme, i) for i in self.identifies if i != proven["identify_action"]]
        else:
            other: Scheme = "legacy" if scheme == "v2" else "v2"
            tries = [(other, i) for i in self.identifies]
        for crypto, identify in tries:
            settings = proven | {"crypto": crypto, "identify_action": identify}
            request = await ask(self.term, self.state, settings, cloud=False)
            await port.send([frame_of(request)])
            hit = await self.listen(port, [request], crypto)
            self.state.note(settings, "no reply" if hit is None else describe(hit[2]))
            if hit is not None and hit[1] is not None and hit[2].kind == "answered":
                self.state.answered(settings, hit[2])
                return
        if reading.kind == "refused":
            self.state.note({}, f"the terminal reads these settings, but refuses: {reading.said()}")
        else:
            self.state.note(
                {}, "the framing is proven, but nothing decrypts: is the code the one on screen?"
            )

    async def listen(self, port: ProbePort, asked: list[Ask], scheme: Scheme) -> Hit | None:
        """The replies heard within a turnaround after the last byte sent: the first that
        answers one of ``asked``, else the first one read best (decrypted before not),
        else None."""
        by_id = {r.request_id: r for r in asked}
        best: Hit | None = None
        with trio.move_on_after(turnaround(self.cfg, port.settings)):
            async for heard in port.heard:
                request, reading = await self.reading(heard, by_id, scheme)
                if request is not None and reading.kind == "answered":
                    return heard, request, reading
                if best is None or (best[1] is None and request is not None):
                    best = (heard, request, reading)
        return best

    async def reading(
        self, heard: Heard, asked: dict[str, Ask], scheme: Scheme
    ) -> tuple[Ask | None, Reading]:
        try:
            reply = Envelope.from_bytes(heard.frame.data)
        except MalformedEnvelope as exc:
            return None, Reading("unreadable", why=f"a frame that is not an envelope ({exc})")
        plain = await open_reply(self.term, self.state, scheme, reply)
        if isinstance(plain, Reading):
            return None, plain
        request = asked.get(str(response_id(plain)))
        if request is None:  # it decrypts, but answers another (an earlier) request
            return None, Reading("unreadable", why="it answers another request")
        return request, judge(plain, request)


def _proven(port: ProbePort, heard: Heard, request: Ask | None, scheme: Scheme) -> dict[str, Any]:
    """The settings a reply proves: the request it answers where it could be read, else
    its framing (the decoder that read it, the frame's cmd) at this speed."""
    if request is not None:
        return dict(request.settings)
    return {
        "crypto": scheme, "frame_crc": heard.fmt.crc, "frame_byteorder": heard.fmt.byteorder,
        "frame_cmd": heard.frame.cmd, "baudrate": port.settings.baudrate,
    }  # fmt: skip


async def probe_serial(term: Terminal, state: Probe) -> None:
    await SerialProbe(term, state).run()
