"""The socket fuzz: random and mutated JSON-RPC lines, what the socket API (docs/api.md)
owes each one (``predict``), and ``run_fuzz``, which sends them over a few raw connections
and checks every reply. ``tests/test_reliability.py`` runs a few thousand lines in CI,
``bench/fuzz.py`` a hundred thousand.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from ecrd.api.methods import METHODS
from harness.daemon import PINS
from harness.raw import Raw, strict_loads

MAX_LINE = 65536  # max_line_bytes, the default

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


class FuzzConnection(Raw):
    """A raw connection that counts the replies it is owed, by id."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(path, timeout)
        self.expected: Counter[Any] = Counter()

    def send_lines(self, lines: list[Line]) -> None:
        for line in lines:
            if line.reply:
                self.expected[_key(line.id)] += 1
        self.send(b"".join(line.data + b"\n" for line in lines))

    def collect(self, stats: FuzzStats, deadline: float) -> None:
        """Read until every expected reply is in; fail on anything unexpected."""
        while sum(self.expected.values()):
            assert time.monotonic() < deadline, f"replies missing: {self.expected}"
            message = self.read()
            assert message is not None, f"ecrd closed a fuzz connection; missing {self.expected}"
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
            conn.send_lines(lines)
            stats.sent += len(lines)
        deadline = time.monotonic() + timeout
        for conn in conns:
            conn.collect(stats, deadline)
        if progress is not None:
            progress(stats.sent)
    # Nothing late: one more ping each, and it must be the only reply.
    for conn in conns:
        conn.send_lines([predict(b'{"jsonrpc":"2.0","id":"last","method":"ping"}')])
        conn.collect(stats, time.monotonic() + timeout)
