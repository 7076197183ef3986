"""Reliability: socket fuzz, the simulator's fault matrix, serial decoding amid noise.

* **Socket fuzz**: thousands of random and mutated requests over a few raw connections to
  ``ecrd`` as a subprocess. The daemon stays up, every reply is well-formed JSON-RPC 2.0,
  every line that deserves a reply gets exactly one with the right id, none is an
  ``internal_error``, and the daemon's memory stays bounded. No terminal is paired during
  the fuzz, so no money request can reach one (the ledgers stay empty).
* **Fault matrix**: every simulator fault on every link it applies to (and a few where it
  does not), each ending in its documented result, cross-checked with the simulator's
  ledger: ``succeeded`` ⇔ charged once, ``failed`` ⇒ not charged, nothing sent twice.
* **Serial noise**: ``FrameDecoder`` recovers every valid frame exactly once from noise in
  any chunking, and a ``SerialLink`` on a real pty gets its replies through noise.

The fuzz itself is ``harness/fuzz.py``; ``bench/fuzz.py`` runs it with larger counts
(``bench/run fuzz``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import trio
from e2e import running
from stack import Stack, start_stack

from ecrd.backoff import Backoff
from ecrd.client import EcrdError, TrioClient, open_trio_client
from ecrd.protocol.envelope import Envelope
from ecrd.protocol.frames import (
    MAX_PAYLOAD,
    START,
    TYPE,
    FrameDecoder,
    FrameFormat,
    encode_frame,
)
from ecrd.transport.base import first_reply
from ecrd.transport.serial import SerialLink
from harness.daemon import rss_kib
from harness.fuzz import Line, predict, run_fuzz


def test_the_oracle_agrees_with_the_documented_cases() -> None:
    assert predict(b'{"jsonrpc":"2.0","method":"ping"}') == Line(
        b'{"jsonrpc":"2.0","method":"ping"}', False, None
    )
    assert predict(b'{"jsonrpc":"2.0","id":{},"method":"ping"}').id is None
    assert predict(b'{"method":"ping"}').reply  # not a valid notification: answered
    assert predict(b" \t\r").reply is False
    assert predict(b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}').id is None
    assert predict(b'{"jsonrpc":"2.0","id":7,"method":"x","params":[1]}').id == 7


def test_socket_fuzz_keeps_the_daemon_up_and_every_reply_well_formed(tmp_path: Path) -> None:
    seed = int(os.environ.get("ECRD_FUZZ_SEED", "20261126"))
    with running(tmp_path) as (sim, daemon):
        assert daemon.proc is not None
        pid = daemon.proc.pid
        run_fuzz(daemon.socket, 600, seed)  # warm up: imports, caches, first allocations
        before = rss_kib(pid)
        stats = run_fuzz(daemon.socket, 4000, seed + 1)
        after = rss_kib(pid)
        assert daemon.proc.poll() is None, "ecrd died"
        assert "-32603 internal_error" not in stats.codes, stats.codes
        assert stats.replies >= 3000, stats
        # The fuzz reached the methods, not only the parser.
        assert stats.codes["result"] > 0 and stats.codes["-32003 not_paired"] > 0, stats.codes
        assert stats.codes["-32602 invalid_params"] > 0 and stats.codes["-32700 parse_error"] > 0
        assert after - before < 8 * 1024, f"VmRSS grew from {before} to {after} KiB"
        # No money moved, nothing was journaled, and the daemon still does real work.
        for link in ("lan", "serial", "cloud"):
            assert sim.ledger(link) == [], link
        assert daemon.call("transaction.list") == []
        log = daemon.log_text()
        assert "internal error" not in log and "Traceback" not in log
        daemon.call("terminal.pair", terminal="lan-1", code=sim.terminal("lan")["pin1"])
        tx = daemon.call("sale", terminal="lan-1", amount="1.00", currency="HKD", reference_id="z")
        assert tx["state"] == "succeeded" and sim.charges("lan", "z") == 1


# -- the fault matrix ---------------------------------------------------------------------------


@attrs.frozen
class FaultCase:
    name: str  # the simulator's fault, or a variant of it
    fault: str
    params: dict[str, Any] = attrs.field(factory=dict)
    state: str = "succeeded"  # the record's state
    charged: bool | None = True  # None: either (an unknown outcome may be either)
    cause: str | None = None  # data.cause of timeout_outcome_unknown
    error_code: str | None = None  # the terminal's errorCode for a failed one
    abort: bool = False
    reaches_terminal: bool = True  # False: the gateway refuses it before the terminal


DELAY = FaultCase("delay", "delay", {"seconds": 0.3})
DECLINE = FaultCase("decline", "decline", state="failed", charged=False, error_code="DECLINED")
ABORTED = FaultCase(
    "never_answer+abort", "never_answer", state="failed", charged=False,
    error_code="ABORTED", abort=True,
)  # fmt: skip
# Charged, then no reply: LAN closes the connection, serial stays silent until the
# timeout, the gateway answers 502 without an envelope.
DROP = {
    link: FaultCase("drop", "drop", state="unknown", charged=True, cause=cause)
    for link, cause in (("lan", "no_reply"), ("serial", "timeout"), ("cloud", "bad_reply"))
}
WRONG_KEY = FaultCase("wrong_key", "wrong_key", state="unknown", cause="wrong_key")
STALE = FaultCase("stale_response", "stale_response", state="unknown", cause="stale_response")
# On a serial line a reply to another request is dropped and the exchange waits on for its
# own (a late reply may still come), so only the deadline ends it.
STALE_SERIAL = attrs.evolve(STALE, cause="timeout")
DRIBBLE = FaultCase("dribble", "dribble", {"bytes_per_s": 4000})
GARBAGE = FaultCase("garbage", "garbage", {"bytes": 300})
BAD_CRC = FaultCase("bad_crc", "bad_crc", state="unknown", cause="timeout")
# The LAN terminal gives up on the customer when the daemon closes the connection.
NEVER_LAN = FaultCase(
    "never_answer+timeout", "never_answer", state="unknown", charged=False, cause="timeout"
)
# The gateway refuses with 403/40301 and no envelope. The daemon cannot tell that the
# terminal never saw the request (an HTTP answer came back, docs/api.md: only a connection
# never made is "never delivered"), so the payment is unknown, and the ledger shows that
# nothing was charged.
MISMATCH = FaultCase(
    "business_mismatch", "business_mismatch", state="unknown", charged=False,
    cause="bad_reply", reaches_terminal=False,
)  # fmt: skip


def inert(fault: str, **params: Any) -> FaultCase:
    """A fault armed on a link it does not apply to: it must not fire there."""
    return FaultCase(f"{fault}-does-not-apply", fault, params)


MATRIX: dict[str, list[FaultCase]] = {
    "lan": [DELAY, DECLINE, ABORTED, DROP["lan"], WRONG_KEY, STALE, DRIBBLE, NEVER_LAN,
            inert("garbage"), inert("bad_crc"), inert("business_mismatch")],
    "serial": [DELAY, DECLINE, ABORTED, DROP["serial"], WRONG_KEY, STALE_SERIAL, DRIBBLE,
               GARBAGE, BAD_CRC, inert("business_mismatch")],
    "cloud": [DELAY, DECLINE, ABORTED, DROP["cloud"], WRONG_KEY, STALE, MISMATCH,
              inert("garbage"), inert("bad_crc"), inert("dribble")],
}  # fmt: skip


async def _run_case(
    stack: Stack, client: TrioClient, aborter: TrioClient, link: str, case: FaultCase
) -> dict[str, Any]:
    tid, ref = f"{link}-1", f"{link}-{case.name}"
    term = stack.terminal(link)
    term.faults.clear()
    term.arm(case.fault, params=case.params)
    outcome: dict[str, Any] = {}

    async def sale() -> None:
        try:
            outcome["tx"] = await client.call(
                "sale", terminal=tid, amount="1.00", currency="HKD", reference_id=ref
            )
        except EcrdError as exc:
            outcome["error"] = exc

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sale)
            if case.abort:
                while not term.payments.busy:
                    await trio.sleep(0.01)
                await aborter.call("abort", terminal=tid)
        # The terminal is done with the customer before the next case.
        while term.payments.busy:
            await trio.sleep(0.01)
    if case.state == "unknown":
        err = outcome.get("error")
        assert isinstance(err, EcrdError), (case, outcome)
        assert err.reason == "timeout_outcome_unknown", (case, err)
        if case.cause is not None:
            assert err.data["cause"] == case.cause, (case, err.data)
        tx: dict[str, Any] = err.data["transaction"]
    else:
        assert "tx" in outcome, (case, outcome)
        tx = outcome["tx"]
    assert tx["state"] == case.state, (case, tx)
    if case.error_code is not None:
        assert tx["reply"]["errorCode"] == case.error_code, (case, tx)
    charges = stack.charges(link, ref)
    # Sent once, never resent (and the gateway's refusal never reached the terminal).
    assert stack.requests(link, ref) == int(case.reaches_terminal), case
    if case.charged is not None:
        assert charges == int(case.charged), (case, charges)
    # The journal agrees with what the POS was told.
    stored = await client.call("transaction.get", reference_id=ref)
    assert stored["state"] == tx["state"]
    if tx["state"] == "unknown":  # a person checks the terminal and settles it
        outcome_ = "succeeded" if charges else "failed"
        await client.call(
            "transaction.resolve", reference_id=ref, outcome=outcome_, note="checked the ledger"
        )
    assert not term.faults.armed() or case.name.endswith("-does-not-apply"), term.faults.armed()
    term.faults.clear()
    return tx


async def test_fault_matrix_on_every_link_ends_as_documented_and_loses_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path, timeout_s=2)
    results: dict[str, list[dict[str, Any]]] = {}

    async def one_link(link: str) -> None:
        async with open_trio_client(stack.socket) as c, open_trio_client(stack.socket) as a:
            await c.call("terminal.pair", terminal=f"{link}-1", code=stack.terminal(link).pin1)
            results[link] = [await _run_case(stack, c, a, link, case) for case in MATRIX[link]]

    with trio.fail_after(45):
        async with trio.open_nursery() as links:
            for link in MATRIX:
                links.start_soon(one_link, link)

    # Nothing lost: every terminal ledger entry is a journaled payment whose final state
    # matches the money that moved, and no payment is left unknown.
    async with open_trio_client(stack.socket) as c:
        listed, before = [], {}
        while page := await c.call("transaction.list", limit=500, **before):
            listed += page
            before = {"before": page[-1]["reference_id"]}  # docs/api.md, "Paging"
        records = {r["reference_id"]: r for r in listed}
    assert len(records) == sum(len(cases) for cases in MATRIX.values())
    for link in MATRIX:
        for entry in stack.terminal(link).payments.ledger:
            assert entry["referenceID"] in records, entry
        for case in MATRIX[link]:
            ref = f"{link}-{case.name}"
            state = records[ref]["state"]
            charged = stack.charges(link, ref) == 1
            assert state in ("succeeded", "failed", "resolved_succeeded", "resolved_failed")
            assert charged == (state in ("succeeded", "resolved_succeeded")), (ref, state)


# -- serial decoding amid noise ------------------------------------------------------------------

FORMATS = [
    FrameFormat(),
    FrameFormat(byteorder="little"),
    FrameFormat(cmd=0x1234, crc="crc32c"),
]


def _noise(rng: random.Random, fmt: FrameFormat, payloads: Iterator[bytes]) -> bytes:
    """Bytes that must never decode to a frame: random bytes, false starts, frames with a
    broken CRC or cut short (with a small size, so that the next real frame is not held
    back for long)."""
    pick = rng.random()
    if pick < 0.3:
        return rng.randbytes(rng.randint(1, 300))
    if pick < 0.5:  # false starts and type bytes
        return bytes(
            rng.choice([START, TYPE, START, 0x00, 0xFF]) for _ in range(rng.randint(1, 40))
        )
    frame = bytearray(encode_frame(next(payloads)[:40], fmt))
    if pick < 0.7:  # one byte of the data or its CRC changed
        i = rng.randrange(10, len(frame))
        frame[i] ^= 1 << rng.randrange(8)
        return bytes(frame)
    if pick < 0.85:  # the header CRC broken
        frame[rng.randrange(6, 10)] ^= 0xFF
        return bytes(frame)
    return bytes(frame[: rng.randrange(1, len(frame) - 1)])  # cut short


def test_frame_decoder_recovers_every_frame_once_from_noise_in_any_chunking() -> None:
    rng = random.Random(7)
    junk = (f"noise {i}".encode() for i in range(10**9))
    total_frames = 0
    for round_ in range(60):
        fmt = FORMATS[round_ % len(FORMATS)]
        frames: list[bytes] = []
        stream = bytearray()
        for i in range(rng.randint(5, 25)):
            if rng.random() < 0.8:
                stream += _noise(rng, fmt, junk)
            size = rng.choice([0, 1, 30, 400, 2000]) if round_ % 3 != 2 else rng.randint(0, 64)
            payload = f"{round_}:{i}:".encode() + rng.randbytes(size)
            frames.append(payload)
            stream += encode_frame(payload, fmt)
        stream += _noise(rng, fmt, junk)
        # A frame cut short may claim up to 40 bytes: this much noise lets it be discarded.
        stream += bytes(rng.choice([0x00, 0xFF, 0x41]) for _ in range(64))
        decoder = FrameDecoder(fmt)
        got: list[bytes] = []
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 2, 3, 7, 64, 500, 4096, 65536])
            for frame in decoder.feed(bytes(stream[pos : pos + step])):
                assert frame.cmd == fmt.cmd
                got.append(frame.data)
            pos += step
        assert got == frames, f"round {round_}: {len(got)} of {len(frames)} frames"
        assert decoder.buffered <= MAX_PAYLOAD + 14
        total_frames += len(frames)
    assert total_frames > 500


def test_pure_noise_never_yields_a_frame() -> None:
    rng = random.Random(11)
    decoder = FrameDecoder()
    for _ in range(200):
        chunk = bytes(rng.choice([START, TYPE, 0x00, rng.randrange(256)]) for _ in range(2000))
        assert decoder.feed(chunk) == []
    assert decoder.garbage_bytes > 0


async def test_a_serial_link_on_a_pty_gets_its_replies_through_noise() -> None:
    rng = random.Random(5)
    master, slave = os.openpty()
    peer = trio.lowlevel.FdStream(master)
    link = SerialLink(os.ttyname(slave), backoff=Backoff(initial=0.01, cap=0.05),
                      path_check_interval=0.05)  # fmt: skip
    junk = (f"noise {i}".encode() for i in range(10**9))
    fmt = FrameFormat()
    written: list[bytes] = []

    async def terminal() -> None:
        decoder = FrameDecoder()
        while True:
            for frame in decoder.feed(await peer.receive_some()):
                request = Envelope.from_bytes(frame.data)
                noise = b"".join(_noise(rng, fmt, junk) for _ in range(rng.randint(1, 6)))
                noise += bytes(64)  # lets a frame cut short be discarded
                reply = encode_frame(Envelope(request.action, request.data[::-1]).to_bytes())
                data = noise + reply
                written.append(data)
                # Written in random pieces, like a real UART delivers it.
                while data:
                    step = rng.randint(1, 256)
                    await peer.send_all(data[:step])
                    data = data[step:]

    try:
        async with trio.open_nursery() as inner:
            await inner.start(link.run)
            inner.start_soon(terminal)
            for i in range(30):
                body = f"cmVxdWVzdA{i:04d}"
                with trio.fail_after(5):
                    reply = await first_reply(link, Envelope("Sale", body), timeout=5)
                assert reply == Envelope("Sale", body[::-1])
            inner.cancel_scope.cancel()
        # The noise was noise: the same bytes hold the 30 replies and no other frame, and
        # garbage and bad checksums (the decoder's verdict does not depend on the chunking).
        check = FrameDecoder()
        assert len(list(check.feed(b"".join(written)))) == 30 and check.garbage_bytes > 0
        assert check.bad_data_crc + check.bad_header_crc > 0
    finally:
        await link.aclose()
        await peer.aclose()
        os.close(slave)
