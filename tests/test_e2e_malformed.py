"""Malformed input over the raw socket, against ``ecrd`` as a real subprocess.

Every kind of bad line or bad request in ``CASES`` is written with a plain Unix socket (not
the client library), each on a connection of its own, and must get exactly the JSON-RPC
error of docs/api.md (code and ``data.reason``; ``data.field`` where the table names one).
After each case a ``ping`` proves the connection is still usable; then the whole table on
ONE connection, after which it runs a real sale on a paired terminal, charged exactly once.
One daemon serves the module; no test depends on another having run, nor on the order.

Separate connections check what a misbehaving client must not do to the others: a half
line that never ends, a client that never reads its replies (it stops being read, and
loses nothing), a client that only shuts down its sending side, and more clients than
``max_clients``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import tomli_w
from e2e import Daemon, Sim, pair, write_config

from ecrd.api.sharing import RESERVE
from harness.raw import Raw

# One worker takes the whole module (--dist loadgroup): one daemon serves it.
pytestmark = pytest.mark.xdist_group("malformed")

MAX_LINE = 65536  # max_line_bytes, the default
MAX_CLIENTS = 8  # set low so that "too many clients" is cheap to reach

# (code, reason) of docs/api.md
PARSE = (-32700, "parse_error")
INVALID = (-32600, "invalid_request")
TOO_LONG = (-32600, "line_too_long")
NO_METHOD = (-32601, "method_not_found")
PARAMS = (-32602, "invalid_params")
NO_TERMINAL = (-32001, "terminal_not_found")
NO_TX = (-32002, "transaction_not_found")
NOT_PAIRED = (-32003, "not_paired")
BAD_STATE = (-32007, "invalid_state")
REFUSED = (-32008, "action_not_allowed")
WRONG_KEY = (-32012, "wrong_key")
OK = None  # a result, not an error

Err = tuple[int, str] | None


@dataclass(frozen=True)
class Expect:
    id: Any
    error: Err
    field: str | None = None


@dataclass
class Case:
    name: str
    writes: list[bytes]  # each one a separate write on the socket
    expect: list[Expect] = field(default_factory=list)


def enc(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


_NO = object()


def request(name: str, method: Any = "ping", params: Any = _NO, **envelope: Any) -> bytes:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "id": name, "method": method}
    if params is not _NO:
        obj["params"] = params
    obj.update(envelope)
    return enc(obj) + b"\n"


def raw(name: str, data: bytes | list[bytes], *expect: Expect) -> Case:
    return Case(name, data if isinstance(data, list) else [data], list(expect))


def line(name: str, data: bytes, error: Err, id_: Any = None) -> Case:
    """One bad line whose id the daemon cannot (or must not) read."""
    return Case(name, [data + b"\n"], [Expect(id_, error)])


def call(name: str, method: Any, params: Any, error: Err, fld: str | None = None) -> Case:
    return Case(name, [request(name, method, params)], [Expect(name, error, fld)])


def env(name: str, obj: dict[str, Any], error: Err, id_: Any = None) -> Case:
    """A request object with something wrong in its envelope."""
    return Case(name, [enc(obj) + b"\n"], [Expect(id_, error)])


# Parameter checks run on serial-1, which is never paired: if a bad value were ever taken
# for a good one, the answer would be not_paired and no money could move.
SALE = {"terminal": "serial-1", "amount": "1.00", "currency": "HKD"}


def sale(name: str, error: Err, fld: str | None, method: str = "sale", **change: Any) -> Case:
    params = {**SALE, "reference_id": f"ref-{name}", **change}
    params = {k: v for k, v in params.items() if v is not _NO}
    return call(name, method, params, error, fld)


PING = {"jsonrpc": "2.0", "method": "ping"}
BIG = b'{"jsonrpc":"2.0","id":"big","method":"ping","params":{"pad":"' + b"a" * 70000 + b'"}}'


def padded_ping(name: str, size: int) -> bytes:
    """A ping line of exactly ``size`` bytes (without its newline)."""
    head = b'{"jsonrpc":"2.0","id":"' + name.encode() + b'","method":"ping"'
    return head + b" " * (size - len(head) - 1) + b"}"


CASES: list[Case] = [
    # -- not JSON: -32700, id null ---------------------------------------------------------
    line("truncated-object", b'{"jsonrpc":"2.0","id":"t","method":"ping"', PARSE),
    line("truncated-string", b'{"jsonrpc":"2.0","id":"t","method":"pi', PARSE),
    line("truncated-after-colon", b'{"jsonrpc":', PARSE),
    line("lone-brace", b"{", PARSE),
    line("trailing-comma", b'{"jsonrpc":"2.0","id":"t","method":"ping",}', PARSE),
    line("single-quotes", b"{'jsonrpc':'2.0','id':'t','method':'ping'}", PARSE),
    line("trailing-garbage", b'{"jsonrpc":"2.0","id":"t","method":"ping"} x', PARSE),
    line("two-objects-one-line", b'{"jsonrpc":"2.0","id":1,"method":"ping"}{"a":1}', PARSE),
    line("plain-text", b"hello ecrd", PARSE),
    line("nul-byte", b'{"jsonrpc":"2.0",\x00"id":"t","method":"ping"}', PARSE),
    line("not-utf8", b"\xff\xfe\xfd", PARSE),
    line("bad-utf8-in-string", b'{"jsonrpc":"2.0","id":"t","method":"p\xc3\x28ng"}', PARSE),
    line("overlong-utf8", b'{"jsonrpc":"2.0","id":"t","method":"\xc0\xafping"}', PARSE),
    line("latin1-id", b'{"jsonrpc":"2.0","id":"caf\xe9","method":"ping"}', PARSE),
    line("utf8-bom", b'\xef\xbb\xbf{"jsonrpc":"2.0","id":"t","method":"ping"}', PARSE),
    line("lone-surrogate-id", b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', PARSE),
    line(
        "lone-surrogate-param",
        b'{"jsonrpc":"2.0","id":"t","method":"transaction.get",'
        b'"params":{"reference_id":"a\\udfffb"}}',
        PARSE,
    ),
    line("nan", b'{"jsonrpc":"2.0","id":"t","method":"ping","params":{"x":NaN}}', PARSE),
    line("infinity", b'{"jsonrpc":"2.0","id":-Infinity,"method":"ping"}', PARSE),
    line(
        "float-overflow", b'{"jsonrpc":"2.0","id":"t","method":"ping","params":{"x":1e999}}', PARSE
    ),
    line("huge-integer", b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}', PARSE),
    line("deep-array", b"[" * 60000, PARSE),
    line("deep-object", b'{"a":' * 10000, PARSE),
    # -- JSON, but not a request object: -32600 ---------------------------------------------
    line("empty-array", b"[]", INVALID),  # a batch of nothing (batches: test_batch.py)
    line("number", b"42", INVALID),
    line("string", b'"ping"', INVALID),
    line("null", b"null", INVALID),
    line("true", b"true", INVALID),
    line("empty-object", b"{}", INVALID),
    # -- lines longer than max_line_bytes: -32600 line_too_long, id null --------------------
    raw("huge-line", BIG + b"\n", Expect(None, TOO_LONG)),
    raw(
        "huge-line-in-many-writes",
        [BIG[i : i + 997] for i in range(0, len(BIG), 997)] + [b"\n"],
        Expect(None, TOO_LONG),
    ),
    raw(
        "huge-line-then-a-request-in-one-write",
        BIG + b"\n" + request("after-big"),
        Expect(None, TOO_LONG),
        Expect("after-big", OK),
    ),
    raw("line-of-cap-plus-one", padded_ping("cap1", MAX_LINE + 1) + b"\n", Expect(None, TOO_LONG)),
    raw("line-of-exactly-cap", padded_ping("cap", MAX_LINE) + b"\n", Expect("cap", OK)),
    raw("huge-blank-line", b" " * (MAX_LINE + 10) + b"\n", Expect(None, TOO_LONG)),
    # -- the envelope ---------------------------------------------------------------------------
    env("no-jsonrpc", {"id": "no-jsonrpc", "method": "ping"}, INVALID, "no-jsonrpc"),
    env("jsonrpc-1.0", {**PING, "jsonrpc": "1.0", "id": "v1"}, INVALID, "v1"),
    env("jsonrpc-number", {**PING, "jsonrpc": 2.0, "id": "v2n"}, INVALID, "v2n"),
    env("jsonrpc-null", {**PING, "jsonrpc": None, "id": "vnull"}, INVALID, "vnull"),
    env("jsonrpc-padded", {**PING, "jsonrpc": "2.0 ", "id": "vpad"}, INVALID, "vpad"),
    env("no-method", {"jsonrpc": "2.0", "id": "nometh"}, INVALID, "nometh"),
    env("method-null", {**PING, "method": None, "id": "mnull"}, INVALID, "mnull"),
    env("method-number", {**PING, "method": 1, "id": "mnum"}, INVALID, "mnum"),
    env("method-empty", {**PING, "method": "", "id": "mempty"}, INVALID, "mempty"),
    env("method-list", {**PING, "method": ["ping"], "id": "mlist"}, INVALID, "mlist"),
    env("method-object", {**PING, "method": {"name": "ping"}, "id": "mobj"}, INVALID, "mobj"),
    env("id-object", {**PING, "id": {"a": 1}}, INVALID),
    env("id-array", {**PING, "id": [1]}, INVALID),
    env("id-true", {**PING, "id": True}, INVALID),
    env("id-false", {**PING, "id": False}, INVALID),
    env("id-float", {**PING, "id": 1.5}, INVALID),
    env("id-integral-float", {**PING, "id": 2.0}, INVALID),
    env("id-object-and-no-method", {"jsonrpc": "2.0", "id": {}}, INVALID),
    call("params-array", "ping", [1, 2], PARAMS),
    call("params-string", "ping", "x", PARAMS),
    call("params-number", "ping", 7, PARAMS),
    call("params-true", "ping", True, PARAMS),
    call("params-null-is-no-params", "ping", None, OK),
    call("params-empty-object", "ping", {}, OK),
    # ids the daemon must accept and echo verbatim
    env("id-null-is-answered", {**PING, "id": None}, OK),
    env("id-negative", {**PING, "id": -7}, OK, -7),
    env("id-big-int", {**PING, "id": 2**70}, OK, 2**70),
    env("id-empty-string", {**PING, "id": ""}, OK, ""),
    env("id-emoji-pair", {**PING, "id": "\U0001f600"}, OK, "\U0001f600"),
    # -- methods ------------------------------------------------------------------------------
    call("unknown-method", "nope", {}, NO_METHOD),
    call("method-wrong-case", "PING", {}, NO_METHOD),
    call("method-padded", " ping", {}, NO_METHOD),
    call("method-dunder", "__class__", {}, NO_METHOD),
    call("method-python-name", "terminal_list", {}, NO_METHOD),
    call("method-unicode", "p\u00efng", {}, NO_METHOD),
    # -- unknown and missing parameters ---------------------------------------------------------
    call("unknown-param-ping", "ping", {"x": 1}, PARAMS, "x"),
    call("unknown-param-status", "status", {"verbose": True}, PARAMS, "verbose"),
    call("unknown-param-reload", "config.reload", {"path": "/etc/passwd"}, PARAMS, "path"),
    sale("unknown-param-sale-typo", PARAMS, "amout", amout="1.00"),
    sale("unknown-param-sale-case", PARAMS, "Amount", Amount="1.00"),
    call(
        "void-takes-no-amount",
        "void",
        {"terminal": "serial-1", "original_reference_id": "x", "amount": "1.00"},
        PARAMS,
        "amount",
    ),
    sale("sale-missing-terminal", PARAMS, "terminal", terminal=_NO),
    sale("sale-missing-amount", PARAMS, "amount", amount=_NO),
    sale("sale-missing-currency", PARAMS, "currency", currency=_NO),
    call("refund-missing-original", "refund", SALE, PARAMS, "original_reference_id"),
    call(
        "void-missing-original", "void", {"terminal": "serial-1"}, PARAMS, "original_reference_id"
    ),
    call("unpair-missing-terminal", "terminal.unpair", {}, PARAMS, "terminal"),
    call("info-missing-terminal", "terminal.info", {}, PARAMS, "terminal"),
    call("abort-missing-terminal", "abort", {}, PARAMS, "terminal"),
    # -- wrong types and values, one sale parameter at a time -----------------------------------
    sale("terminal-number", PARAMS, "terminal", terminal=1),
    sale("terminal-empty", PARAMS, "terminal", terminal=""),
    sale("terminal-too-long", PARAMS, "terminal", terminal="t" * 129),
    sale("terminal-list", PARAMS, "terminal", terminal=["serial-1"]),
    sale("amount-float", PARAMS, "amount", amount=10.2),
    sale("amount-int", PARAMS, "amount", amount=10),
    sale("amount-bool", PARAMS, "amount", amount=True),
    sale("amount-null", PARAMS, "amount", amount=None),
    sale("amount-object", PARAMS, "amount", amount={"value": "1.00"}),
    sale("amount-empty", PARAMS, "amount", amount=""),
    sale("amount-one-decimal", PARAMS, "amount", amount="10.2"),
    sale("amount-no-decimals", PARAMS, "amount", amount="10"),
    sale("amount-too-precise", PARAMS, "amount", amount="10.201"),
    sale("amount-zero", PARAMS, "amount", amount="0.00"),
    sale("amount-negative", PARAMS, "amount", amount="-1.00"),
    sale("amount-plus-sign", PARAMS, "amount", amount="+1.00"),
    sale("amount-exponent", PARAMS, "amount", amount="1e3"),
    sale("amount-exponent-decimal", PARAMS, "amount", amount="1.00e2"),
    sale("amount-leading-space", PARAMS, "amount", amount=" 1.00"),
    sale("amount-trailing-space", PARAMS, "amount", amount="1.00 "),
    sale("amount-trailing-newline", PARAMS, "amount", amount="1.00\n"),
    sale("amount-leading-zero", PARAMS, "amount", amount="01.00"),
    sale("amount-comma", PARAMS, "amount", amount="1,00"),
    sale("amount-nan-string", PARAMS, "amount", amount="NaN"),
    sale("amount-huge", PARAMS, "amount", amount="100000000.00"),
    sale("amount-fullwidth-digits", PARAMS, "amount", amount="\uff11.\uff10\uff10"),
    sale("amount-arabic-digits", PARAMS, "amount", amount="\u0661.\u0660\u0660"),
    sale("preauth-amount-float", PARAMS, "amount", method="preauth", amount=5.0),
    sale("currency-lowercase", PARAMS, "currency", currency="hkd"),
    sale("currency-two-letters", PARAMS, "currency", currency="HK"),
    sale("currency-four-letters", PARAMS, "currency", currency="HKDD"),
    sale("currency-number", PARAMS, "currency", currency=344),
    sale("currency-digit", PARAMS, "currency", currency="H1D"),
    sale("currency-null", PARAMS, "currency", currency=None),
    sale("currency-says-amount", PARAMS, "currency", currency="amount"),
    sale("currency-no-currency", PARAMS, "currency", currency="XXX"),
    sale("currency-not-iso-4217", PARAMS, "currency", currency="ABC"),
    sale("ref-with-newline", PARAMS, "reference_id", reference_id="r\nCRITICAL forged"),
    sale("order-id-with-escape", PARAMS, "customer_order_id", customer_order_id="\x1b[2J"),
    sale("extra-with-control", PARAMS, "extra.memo", extra={"memo": "a\rb"}),
    call(
        "note-with-bell",
        "transaction.resolve",
        {"reference_id": "done-1", "outcome": "failed", "note": "\x07"},
        PARAMS,
        "note",
    ),
    sale("payment-method-unknown", PARAMS, "payment_method", payment_method="cash"),
    sale("payment-method-case", PARAMS, "payment_method", payment_method="FPS"),
    sale("payment-method-number", PARAMS, "payment_method", payment_method=1),
    sale("print-lowercase", PARAMS, "print", print="yes"),
    sale("print-bool", PARAMS, "print", print=True),
    sale("reference-empty", PARAMS, "reference_id", reference_id=""),
    sale("reference-too-long", PARAMS, "reference_id", reference_id="r" * 129),
    sale("reference-number", PARAMS, "reference_id", reference_id=42),
    sale("customer-order-too-long", PARAMS, "customer_order_id", customer_order_id="c" * 129),
    sale("timeout-zero", PARAMS, "timeout_s", timeout_s=0),
    sale("timeout-below-one", PARAMS, "timeout_s", timeout_s=0.5),
    sale("timeout-above-3600", PARAMS, "timeout_s", timeout_s=3601),
    sale("timeout-negative", PARAMS, "timeout_s", timeout_s=-1),
    sale("timeout-string", PARAMS, "timeout_s", timeout_s="10"),
    sale("timeout-bool", PARAMS, "timeout_s", timeout_s=True),
    sale("wait-string", PARAMS, "wait", wait="yes"),
    sale("wait-number", PARAMS, "wait", wait=1),
    sale("extra-list", PARAMS, "extra", extra=[1]),
    sale("extra-string", PARAMS, "extra", extra="x"),
    sale(
        "refund-original-empty", PARAMS, "original_reference_id", "refund", original_reference_id=""
    ),
    # -- terminals --------------------------------------------------------------------------------
    sale("unknown-terminal", NO_TERMINAL, None, terminal="counter-9"),
    call("unknown-terminal-info", "terminal.info", {"terminal": "nope"}, NO_TERMINAL),
    call("unknown-terminal-abort", "abort", {"terminal": "nope"}, NO_TERMINAL),
    call(
        "unknown-terminal-pair",
        "terminal.pair",
        {"terminal": "nope", "code": "123456"},
        NO_TERMINAL,
    ),
    sale("sale-not-paired", NOT_PAIRED, None),
    sale("refund-not-paired", NOT_PAIRED, None, "refund", original_reference_id="x"),
    call(
        "void-not-paired",
        "void",
        {"terminal": "serial-1", "original_reference_id": "x"},
        NOT_PAIRED,
    ),
    call("info-not-paired", "terminal.info", {"terminal": "serial-1"}, NOT_PAIRED),
    call("abort-not-paired", "abort", {"terminal": "serial-1"}, NOT_PAIRED),
    call(
        "send-not-paired",
        "terminal.send",
        {"terminal": "serial-1", "action": "DeviceInfo"},
        NOT_PAIRED,
    ),
    # -- pairing codes ----------------------------------------------------------------------------
    *(
        call(
            f"pair-code-{kind}",
            "terminal.pair",
            {"terminal": "serial-1", "code": code},
            PARAMS,
            "code",
        )
        for kind, code in [
            ("five-digits", "12345"),
            ("seven-digits", "1234567"),
            ("punctuation", "AB-12C"),  # letters are fine (six of A-Z, 0-9), a dash is not
            ("non-ascii", "ÄBCDEF"),
            ("empty", ""),
            ("number", 123456),
            ("list", ["123456"]),
            ("bool", True),
            ("empty-object", {}),
            ("qr-without-paircode", '{"deviceId": "x"}'),
            ("qr-short-paircode", {"pairCode": "123"}),
            ("qr-paircode-number-too-long", {"pairCode": 12345678}),
            ("not-json", "{not json"),
        ]
    ),
    call("pair-code-missing", "terminal.pair", {"terminal": "serial-1"}, PARAMS, "code"),
    call("pair-wrong-code", "terminal.pair", {"terminal": "serial-1", "code": "000000"}, WRONG_KEY),
    # -- transactions -----------------------------------------------------------------------------
    call("get-unknown-ref", "transaction.get", {"reference_id": "never-seen"}, NO_TX),
    call("get-missing-ref", "transaction.get", {}, PARAMS, "reference_id"),
    call("get-ref-number", "transaction.get", {"reference_id": 1}, PARAMS, "reference_id"),
    call(
        "resolve-bad-outcome",
        "transaction.resolve",
        {"reference_id": "done-1", "outcome": "maybe"},
        PARAMS,
        "outcome",
    ),
    call(
        "resolve-no-outcome", "transaction.resolve", {"reference_id": "done-1"}, PARAMS, "outcome"
    ),
    call(
        "resolve-note-too-long",
        "transaction.resolve",
        {"reference_id": "done-1", "outcome": "failed", "note": "n" * 1001},
        PARAMS,
        "note",
    ),
    call(
        "resolve-unknown-ref",
        "transaction.resolve",
        {"reference_id": "never-seen", "outcome": "failed"},
        NO_TX,
    ),
    call(
        "resolve-a-succeeded-one",
        "transaction.resolve",
        {"reference_id": "done-1", "outcome": "failed"},
        BAD_STATE,
    ),
    call("list-since-words", "transaction.list", {"since": "yesterday"}, PARAMS, "since"),
    call(
        "list-since-no-offset",
        "transaction.list",
        {"since": "2026-01-01T00:00:00"},
        PARAMS,
        "since",
    ),
    call("list-since-number", "transaction.list", {"since": 1795687200}, PARAMS, "since"),
    call("list-since-too-long", "transaction.list", {"since": "2" * 41}, PARAMS, "since"),
    call("list-bad-state", "transaction.list", {"state": "done"}, PARAMS, "state"),
    call("list-limit-zero", "transaction.list", {"limit": 0}, PARAMS, "limit"),
    call("list-limit-negative", "transaction.list", {"limit": -5}, PARAMS, "limit"),
    call("list-limit-too-big", "transaction.list", {"limit": 10001}, PARAMS, "limit"),
    call("list-limit-over-a-page", "transaction.list", {"limit": 501}, PARAMS, "limit"),
    call(
        "list-since-overflows",
        "transaction.list",
        {"since": "9999-12-31T23:59:59-23:59"},
        PARAMS,
        "since",
    ),
    call("list-before-unknown", "transaction.list", {"before": "never-seen"}, PARAMS, "before"),
    call("list-limit-string", "transaction.list", {"limit": "10"}, PARAMS, "limit"),
    call("list-limit-bool", "transaction.list", {"limit": True}, PARAMS, "limit"),
    # -- terminal.send and subscribe --------------------------------------------------------------
    *(
        call(f"send-{action}", "terminal.send", {"terminal": "lan-1", "action": action}, REFUSED)
        for action in ("Sale", "PreAuth", "Refund", "Void", "Pair", "ConnectionInfo")
    ),
    call("send-no-action", "terminal.send", {"terminal": "lan-1"}, PARAMS, "action"),
    call(
        "send-action-number", "terminal.send", {"terminal": "lan-1", "action": 5}, PARAMS, "action"
    ),
    call(
        "send-body-list",
        "terminal.send",
        {"terminal": "lan-1", "action": "Settlement", "body": [1]},
        PARAMS,
        "body",
    ),
    call("subscribe-topics-string", "subscribe", {"topics": "transaction.state"}, PARAMS, "topics"),
    call("subscribe-topics-numbers", "subscribe", {"topics": [1, 2]}, PARAMS, "topics"),
    call("subscribe-topics-object", "subscribe", {"topics": {"a": 1}}, PARAMS, "topics"),
    call("subscribe-topics-bool", "subscribe", {"topics": True}, PARAMS, "topics"),
    call("subscribe-topic-unknown", "subscribe", {"topics": ["sales"]}, PARAMS, "topics"),
    # -- notifications: no id, no reply (even when the method fails) ------------------------------
    raw("notification-ping", enc(PING) + b"\n"),
    raw("notification-unknown-method", enc({**PING, "method": "nope"}) + b"\n"),
    raw("notification-bad-sale", enc({**PING, "method": "sale", "params": {"x": 1}}) + b"\n"),
    raw(
        "notification-not-paired",
        enc({**PING, "method": "terminal.info", "params": {"terminal": "serial-1"}}) + b"\n",
    ),
    # ... but a request that is not a valid notification is answered, with id null
    env("notification-without-jsonrpc", {"method": "ping"}, INVALID),
    # -- framing that must be accepted ------------------------------------------------------------
    raw("crlf", request("crlf").replace(b"\n", b"\r\n"), Expect("crlf", OK)),
    raw("blank-lines", b"\n\n   \n\t\r\n\r\n"),
    raw("surrounding-whitespace", b"  \t" + request("ws").strip() + b"  \r\n", Expect("ws", OK)),
    raw(
        "two-requests-one-write",
        request("two-a") + request("two-b"),
        Expect("two-a", OK),
        Expect("two-b", OK),
    ),
    raw(
        "one-byte-per-write",
        [bytes([b]) for b in request("bytewise")],
        Expect("bytewise", OK),
    ),
    raw(
        "bad-then-good-in-one-write",
        b"{oops\n" + request("good-after-bad"),
        Expect(None, PARSE),
        Expect("good-after-bad", OK),
    ),
]

KINDS = len(CASES)


def test_the_table_is_big_and_its_names_unique() -> None:
    assert KINDS >= 50
    assert len({c.name for c in CASES}) == KINDS


# -- one daemon for the module, one raw connection for the table ---------------------------


@dataclass
class Served:
    sim: Sim
    daemon: Daemon


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("malformed")
    sim = Sim(tmp)
    daemon: Daemon | None = None
    try:
        config = write_config(tmp, sim)
        data = tomllib.loads(config.read_text())
        data["daemon"]["max_clients"] = MAX_CLIENTS
        config.write_text(tomli_w.dumps(data))
        daemon = Daemon(tmp, config)
        pair(daemon, sim, "lan")
        done = daemon.call(
            "sale", terminal="lan-1", amount="1.00", currency="HKD", reference_id="done-1"
        )
        assert done["state"] == "succeeded"
        yield Served(sim, daemon)
    finally:
        try:
            if daemon is not None:
                daemon.stop(sim)
        finally:
            sim.stop()


_sentinels = itertools.count()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_line_gets_its_documented_error(served: Served, case: Case) -> None:
    """Each case on a connection of its own: it passes alone and in any order."""
    conn = Raw(served.daemon.socket)
    try:
        answers_as_documented(conn, case)
    finally:
        conn.close()


def answers_as_documented(conn: Raw, case: Case) -> None:
    """``case`` written on ``conn``, then a ping: exactly its documented errors, and the
    connection still serves."""
    sentinel = f"sentinel-{next(_sentinels)}"
    conn.send(*case.writes, request(sentinel))
    got: list[dict[str, Any]] = []
    seen_sentinel = False
    # Replies may come in any order; read until the sentinel and every expected one are in.
    while not seen_sentinel or len(got) < len(case.expect):
        message = conn.reply()
        if message["id"] == sentinel:
            assert "result" in message, message
            seen_sentinel = True
        else:
            got.append(message)
    assert len(got) == len(case.expect), got
    for want in case.expect:
        match = next((m for m in got if m["id"] == want.id and _kind(m) == want.error), None)
        assert match is not None, f"expected {want} among {got}"
        got.remove(match)
        if want.field is not None:
            assert match["error"]["data"].get("field") == want.field, match


def _kind(message: dict[str, Any]) -> Err:
    if "result" in message:
        return None
    error = message["error"]
    return (error["code"], error["data"]["reason"])


def test_after_all_of_them_the_same_connection_serves_ping_and_a_sale(served: Served) -> None:
    """The whole table on one connection (not relying on the cases above having run, nor
    on their order), then a ping and a real sale on it."""
    conn = Raw(served.daemon.socket)
    try:
        for case in CASES:
            answers_as_documented(conn, case)
        still_serves_a_sale(conn, served)
    finally:
        conn.close()


def still_serves_a_sale(conn: Raw, served: Served) -> None:
    assert conn.call("ping", "final-ping")["result"]["protocol"] == 1
    tx = conn.call(
        "sale", "final-sale", terminal="lan-1", amount="2.00", currency="HKD",
        reference_id="after-malformed",
    )["result"]  # fmt: skip
    assert tx["state"] == "succeeded"
    assert served.sim.charges("lan", "after-malformed") == 1
    # Nothing else the table sent reached a terminal as money: the only sales on the line
    # are this module's own good ones, whichever of them ran before this test (any order).
    sold = {"done-1", "after-malformed", "beside-a-half-line"}
    assert {e["referenceID"] for e in served.sim.ledger("lan")} <= sold
    assert served.sim.ledger("serial") == [] and served.sim.ledger("cloud") == []
    assert "internal error" not in served.daemon.log_text()


def test_a_half_line_does_not_block_another_clients_sale(served: Served) -> None:
    half = Raw(served.daemon.socket)
    other = Raw(served.daemon.socket)
    try:
        whole = request("half")
        half.send(whole[:20])
        tx = other.call(
            "sale", "other-sale", terminal="lan-1", amount="3.00", currency="HKD",
            reference_id="beside-a-half-line",
        )["result"]  # fmt: skip
        assert tx["state"] == "succeeded"
        assert served.sim.charges("lan", "beside-a-half-line") == 1
        # The half line was kept, not lost: its end completes it.
        half.send(whole[20:])
        assert half.reply() == {
            "jsonrpc": "2.0",
            "id": "half",
            "result": {"version": "0.1.0", "protocol": 1},
        }
    finally:
        half.close()
        other.close()


def test_a_client_that_never_reads_stops_being_read_while_others_are_served(
    served: Served,
) -> None:
    greedy = Raw(served.daemon.socket, timeout=3)
    other = Raw(served.daemon.socket)
    try:
        batch = b"".join(request(f"flood-{i}") for i in range(500))
        sent = 0
        blocked = False
        for _ in range(200):  # at most 100 000 pings; back-pressure stops it long before
            try:
                greedy.send(batch)
            except TimeoutError:
                blocked = True  # ecrd stopped reading it: its replies are not being read
                break
            sent += 500
            assert other.call("ping", f"other-{sent}")["result"]["protocol"] == 1
        assert blocked
        assert other.call("transaction.get", "other-tx", reference_id="done-1")["result"][
            "state"
        ] == ("succeeded")
        # Nothing was lost: once it reads, every complete line it sent has its reply.
        greedy.sock.shutdown(socket.SHUT_WR)
        greedy.sock.settimeout(20)
        replies = [m for m in iter(greedy.read, None) if "result" in m]
        assert len(replies) >= sent
    finally:
        greedy.close()
        other.close()


def test_a_client_that_shuts_down_its_sending_side_still_gets_its_replies(
    served: Served,
) -> None:
    # What `echo REQUEST | socat - UNIX-CONNECT:ecrd.sock` does.
    conn = Raw(served.daemon.socket)
    try:
        conn.send(
            request("shut-1"),
            request("shut-2", "transaction.get", {"reference_id": "done-1"}),
            request("shut-3", "transaction.get", {"reference_id": "never-seen"}),
        )
        conn.sock.shutdown(socket.SHUT_WR)
        replies = {m["id"]: m for m in iter(conn.read, None)}
    finally:
        conn.close()
    assert set(replies) == {"shut-1", "shut-2", "shut-3"}
    assert replies["shut-2"]["result"]["state"] == "succeeded"
    assert replies["shut-3"]["error"]["data"]["reason"] == "transaction_not_found"


def test_more_clients_than_max_clients_are_refused_and_do_not_stop_the_daemon(
    served: Served,
) -> None:
    opened: list[Raw] = []
    try:
        refused = None
        # The tests run as ecrd's own user, which gets RESERVE connections over the limit.
        for i in range(MAX_CLIENTS + RESERVE + 1):
            conn = Raw(served.daemon.socket, timeout=10)
            opened.append(conn)
            # A refused client may be closed before its ping is written: the refusal waits
            # in its socket all the same.
            with contextlib.suppress(BrokenPipeError):
                conn.send(request(f"admit-{i}"))
            message = conn.read()
            assert message is not None
            if "error" in message:
                refused = message
                # ... and closed (reset, as the ping it sent was never read)
                with contextlib.suppress(ConnectionResetError):
                    assert conn.read() is None
                break
        assert refused is not None, "max_clients was never reached"
        assert refused["id"] is None
        assert _kind(refused) == (-32000, "too_many_clients")
        # While full: clients that connect and vanish at once must not take the server down.
        for _ in range(50):
            gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            gone.connect(served.daemon.socket)
            gone.close()
        assert opened[0].call("ping", "still-up")["result"]["protocol"] == 1
    finally:
        for conn in opened:
            conn.close()
    assert served.daemon.proc is not None and served.daemon.proc.poll() is None
    deadline = time.monotonic() + 10
    while True:  # the slots free up as the daemon sees the closes
        try:
            with served.daemon.client(timeout=5) as c:
                assert c.call("ping")["protocol"] == 1
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.05)
