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

``bench/fuzz.py`` runs the same socket fuzz with larger counts (``bench/run fuzz``).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio
from e2e import PINS, running
from stack import Stack, start_stack

from ecrd.api.methods import METHODS
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

MAX_LINE = 65536

# -- what a well-formed reply is ------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def strict_loads(data: bytes) -> Any:
    """RFC 8259 JSON in UTF-8, or ValueError: no NaN/Infinity, no number that overflows
    a double, no lone surrogate, no nesting deeper than the interpreter can take."""
    text = data.decode("utf-8")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ValueError("lone surrogate")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def check_reply(message: Any) -> None:
    """A JSON-RPC 2.0 reply (or event notification) as docs/api.md promises it."""
    assert isinstance(message, dict), message
    assert message.get("jsonrpc") == "2.0", message
    if "method" in message:  # an event notification
        assert set(message) == {"jsonrpc", "method", "params"}, message
        assert message["method"] == "event", message
        assert isinstance(message["params"], dict) and isinstance(
            message["params"].get("topic"), str
        ), message
        return
    assert set(message) in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"}), message
    id_ = message["id"]
    assert id_ is None or isinstance(id_, str) or type(id_) is int, message
    if "error" in message:
        error = message["error"]
        assert isinstance(error, dict) and set(error) == {"code", "message", "data"}, message
        assert type(error["code"]) is int, message
        assert isinstance(error["message"], str) and error["message"], message
        assert isinstance(error["data"], dict), message
        assert isinstance(error["data"].get("reason"), str), message


# -- the fuzz: requests, mutations, and what each line must get back ---------------------------

METHOD_NAMES = sorted(METHODS)
TERMINALS = ["lan-1", "serial-1", "cloud-1"]  # never paired during the fuzz
SALE_KEYS = ("customer_order_id", "payment_method", "print", "timeout_s", "extra", "wait")


@attrs.define
class Line:
    data: bytes  # without the newline
    reply: bool  # whether ecrd must answer this line
    id: Any  # the id the answer must carry


def predict(data: bytes) -> Line:
    """What the socket API (docs/api.md) owes one line: a reply or not, and with which id."""
    if len(data) > MAX_LINE:
        return Line(data, True, None)  # line_too_long
    body = data.rstrip(b"\r")
    if not body.strip():
        return Line(data, False, None)  # a blank line is ignored
    try:
        obj = strict_loads(body)
    except ValueError:
        return Line(data, True, None)  # parse_error
    if not isinstance(obj, dict):
        return Line(data, True, None)
    if "id" in obj:
        id_ = obj["id"]
        readable = id_ is None or isinstance(id_, str) or type(id_) is int
        return Line(data, True, id_ if readable else None)
    method, params = obj.get("method"), obj.get("params")
    notification = (
        obj.get("jsonrpc") == "2.0"
        and isinstance(method, str)
        and method != ""
        and (params is None or isinstance(params, dict | list))
    )
    return Line(data, not notification, None)


class Fuzzer:
    """Random and mutated requests. Money requests go only to unpaired terminals, pairing
    codes are never a simulator's PIN, and no QR code carries an address."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.serial = 0

    # random JSON values
    def text(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.3:
            return "".join(r.choice("abcXYZ019-_ .") for _ in range(r.randint(0, 12)))
        if pick < 0.45:
            return r.choice(["", " ", "HKD", "hkd", "1.00", "0.01", "10.2", "1e3", "YES", "fps"])
        if pick < 0.6:
            return "".join(chr(r.choice([0x20AC, 0x4E2D, 0x1F600, 0x7F, 0x0, 0xFEFF, 0x301]))
                           for _ in range(r.randint(1, 6)))  # fmt: skip
        if pick < 0.7:
            return "\ud800" if r.random() < 0.5 else "a\udfff"  # lone surrogates
        if pick < 0.8:
            return r.choice([*TERMINALS, "lan-2", "LAN-1", "", "x" * 200])
        return "".join(chr(r.randint(0x20, 0x2FF)) for _ in range(r.randint(0, 40)))

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        pick = r.random()
        if pick < 0.1:
            return None
        if pick < 0.18:
            return r.random() < 0.5
        if pick < 0.35:
            return r.choice([0, 1, -1, 7, 3600, 3601, 10**20, -(10**30), 2**63])
        if pick < 0.45:
            return r.choice([0.5, 1.0, 1e308, -2.5, 10.2, float("nan"), float("inf"), 1e-300])
        if pick < 0.75 or depth > 3:
            return self.text()
        if pick < 0.87:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        return {f"k{self.text()[:6]}": self.value(depth + 1) for _ in range(r.randint(0, 4))}

    def amount(self) -> Any:
        r = self.rng
        if r.random() < 0.6:
            return f"{r.randint(0, 9)}.{r.randint(0, 99):02d}"
        return r.choice(["0.00", "-1.00", "1", "1.5", "1e2", " 1.00", "99999999.99", 1.0, None])

    def code(self) -> Any:
        r = self.rng
        pick = r.random()
        if pick < 0.05:  # a well-shaped code that is never a simulator's PIN: wrong_key
            pin = f"{r.randint(0, 999999):06d}"
            return "000000" if pin in PINS else pin
        if pick < 0.5:
            return r.choice(["12345", "1234567", "abcdef", "", " ", "12 34 56", 123456, None])
        if pick < 0.7:
            return {"pairCode": r.choice(["123", 12345678, None, "abcdef"]), "deviceId": "x"}
        return self.value()

    def params(self, method: str) -> dict[str, Any]:
        r = self.rng
        self.serial += 1
        term = r.choice(TERMINALS) if r.random() < 0.85 else self.text()
        ref = f"fz-{self.serial}" if r.random() < 0.8 else self.value()
        if method in ("sale", "preauth", "refund"):
            p: dict[str, Any] = {
                "terminal": term, "amount": self.amount(), "currency": "HKD", "reference_id": ref,
            }  # fmt: skip
            for key in SALE_KEYS:
                if r.random() < 0.15:
                    p[key] = self.value()
            if method == "refund":
                p["original_reference_id"] = f"fz-{r.randint(1, self.serial)}"
            return p
        if method == "void":
            return {"terminal": term, "original_reference_id": "fz-1", "reference_id": ref}
        if method == "terminal.pair":
            return {"terminal": term, "code": self.code()}
        if method in ("terminal.info", "terminal.unpair", "abort"):
            return {"terminal": term}
        if method == "terminal.send":
            action = r.choice(["Settlement", "DeviceInfo", "Sale", "Void", "Pair", self.text()])
            return {"terminal": term, "action": action, "body": {}}
        if method in ("transaction.get", "transaction.resolve"):
            p = {"reference_id": ref}
            if method == "transaction.resolve":
                p["outcome"] = r.choice(["succeeded", "failed", "maybe"])
            return p
        if method == "transaction.list":
            choices = {
                "terminal": term,
                "state": r.choice(["unknown", "succeeded", "done"]),
                "since": r.choice(["2026-01-01T00:00:00Z", "yesterday", "2026-01-01"]),
                "limit": r.choice([1, 100, 0, 10001]),
            }
            return {k: v for k, v in choices.items() if r.random() < 0.4}
        if method == "subscribe":
            return {"topics": r.choice([["transaction.state"], ["terminal"], "x", [1]])}
        return {}

    def request(self) -> dict[str, Any]:
        r = self.rng
        method = r.choice(METHOD_NAMES)
        return {
            "jsonrpc": "2.0",
            "id": self.serial,
            "method": method,
            "params": self.params(method),
        }

    def mutate_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        r = self.rng
        params = obj["params"]
        for _ in range(r.randint(1, 3)):
            pick = r.random()
            if pick < 0.3 and params:
                params[r.choice(sorted(params))] = self.value()
            elif pick < 0.4 and params:
                del params[r.choice(sorted(params))]
            elif pick < 0.5:
                params[r.choice(["x", "amout", "Terminal", self.text()[:8]])] = self.value()
            elif pick < 0.65:
                obj["method"] = r.choice([*METHOD_NAMES, "nope", "", "PING", "sale "])
            elif pick < 0.8:
                obj["id"] = r.choice([
                    None, 0, -1, 2**70, "", "id", 1.5, True, [1], {"a": 1}, self.text(),
                ])  # fmt: skip
            elif pick < 0.85:
                obj.pop("id", None)  # a notification
            elif pick < 0.9:
                obj["jsonrpc"] = r.choice(["1.0", 2.0, None, "2.0 "])
            elif pick < 0.95:
                obj["params"] = self.value()
            else:
                obj.pop(r.choice(["jsonrpc", "method", "params"]), None)
        return obj

    def serialize(self, obj: Any) -> bytes:
        if self.rng.random() < 0.5:
            return json.dumps(obj).encode()  # ASCII: escapes everything
        text = json.dumps(obj, ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")  # lone surrogates become bad UTF-8

    def mutate_bytes(self, data: bytes) -> bytes:
        r = self.rng
        buf = bytearray(data)
        for _ in range(r.randint(1, 4)):
            if not buf:
                break
            pick = r.random()
            i = r.randrange(len(buf))
            if pick < 0.35:
                buf[i] ^= 1 << r.randrange(8)
            elif pick < 0.6:
                del buf[i : i + r.randint(1, 5)]
            elif pick < 0.8:
                buf[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 4)))
            else:
                del buf[i:]  # truncated
        return bytes(buf)

    def line(self) -> Line:
        r = self.rng
        obj = self.request()
        pick = r.random()
        if pick < 0.25:
            data = self.serialize(obj)
        elif pick < 0.65:
            data = self.serialize(self.mutate_object(obj))
        elif pick < 0.93:
            data = self.mutate_bytes(self.serialize(obj))
        elif pick < 0.96:
            data = r.choice([b"", b"   ", b"\t", b"[]", b"null", b"[" * 5000, b"{" * 5000])
        elif pick < 0.99:
            data = r.choice([b"\xff", b"\x00", b"NaN", b'"x"', b"1e999", b'{"a":Infinity}'])
        else:
            data = self.serialize(obj)[:-1] + b',"pad":"' + b"p" * MAX_LINE + b'"}'
        data = data.replace(b"\n", b" ")
        if r.random() < 0.05:
            data += b"\r"
        return predict(data)


@attrs.define
class FuzzStats:
    sent: int = 0
    replies: int = 0
    events: int = 0
    codes: Counter[str] = attrs.field(factory=Counter)


class FuzzConnection:
    def __init__(self, path: str, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.expected: Counter[Any] = Counter()

    def send(self, lines: list[Line]) -> None:
        for line in lines:
            if line.reply:
                self.expected[_key(line.id)] += 1
        self.sock.sendall(b"".join(line.data + b"\n" for line in lines))

    def collect(self, stats: FuzzStats, deadline: float) -> None:
        """Read until every expected reply is in; fail on anything unexpected."""
        while sum(self.expected.values()):
            while b"\n" not in self.buf:
                assert time.monotonic() < deadline, f"replies missing: {self.expected}"
                chunk = self.sock.recv(262144)
                assert chunk, f"ecrd closed a fuzz connection; missing {self.expected}"
                self.buf += chunk
            text, self.buf = self.buf.split(b"\n", 1)
            message = strict_loads(text)
            check_reply(message)
            if "method" in message:
                stats.events += 1
                continue
            key = _key(message["id"])
            assert self.expected[key] > 0, f"a reply nobody asked for: {message}"
            self.expected[key] -= 1
            stats.replies += 1
            if "error" in message:
                err = message["error"]
                stats.codes[f"{err['code']} {err['data']['reason']}"] += 1
            else:
                stats.codes["result"] += 1

    def close(self) -> None:
        self.sock.close()


def _key(id_: Any) -> Any:
    return ("id", type(id_).__name__, id_)


def run_fuzz(
    path: str,
    count: int,
    seed: int,
    *,
    connections: int = 3,
    batch: int = 100,
    timeout: float = 30,
    progress: Callable[[int], None] | None = None,
) -> FuzzStats:
    """Send ``count`` fuzz lines over ``connections`` connections, ``batch`` lines at a time
    on each, and check every reply. Returns what came back."""
    fuzzer = Fuzzer(random.Random(seed))
    stats = FuzzStats()
    conns: list[FuzzConnection] = []
    try:
        for _ in range(connections):
            conns.append(FuzzConnection(path, timeout))
        _fuzz(fuzzer, conns, stats, count, batch, timeout, progress)
    except (AssertionError, OSError) as exc:
        exc.add_note(f"fuzz seed {seed}, after {stats.sent} lines")
        raise
    finally:
        for conn in conns:
            conn.close()
    return stats


def _fuzz(
    fuzzer: Fuzzer,
    conns: list[FuzzConnection],
    stats: FuzzStats,
    count: int,
    batch: int,
    timeout: float,
    progress: Callable[[int], None] | None,
) -> None:
    while stats.sent < count:
        for conn in conns:
            lines = [fuzzer.line() for _ in range(min(batch, count - stats.sent))]
            conn.send(lines)
            stats.sent += len(lines)
        deadline = time.monotonic() + timeout
        for conn in conns:
            conn.collect(stats, deadline)
        if progress is not None:
            progress(stats.sent)
    # Nothing late: one more ping each, and it must be the only reply.
    for conn in conns:
        conn.send([predict(b'{"jsonrpc":"2.0","id":"last","method":"ping"}')])
        conn.collect(stats, time.monotonic() + timeout)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for row in f:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    raise AssertionError("no VmRSS")


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

    async def terminal() -> None:
        decoder = FrameDecoder()
        while True:
            for frame in decoder.feed(await peer.receive_some()):
                request = Envelope.from_bytes(frame.data)
                noise = b"".join(_noise(rng, fmt, junk) for _ in range(rng.randint(1, 6)))
                noise += bytes(64)  # lets a frame cut short be discarded
                reply = encode_frame(Envelope(request.action, request.data[::-1]).to_bytes())
                data = noise + reply
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
        stats = link.stats()
        assert stats.frames_in == 30 and stats.garbage_bytes > 0
        assert stats.bad_data_crc + stats.bad_header_crc > 0
    finally:
        await link.aclose()
        await peer.aclose()
        os.close(slave)
