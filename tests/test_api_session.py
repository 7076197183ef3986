"""docs/api.md is a session that runs: its examples, in the order written, against one
daemon and one simulated terminal, each reply compared with the documented one.

The document's convention (stated at its top): a session example is a fenced block of
``→`` lines (a request, sent as written, as one line) and ``←`` lines (what comes
back: a reply or an event notification, wrapped for reading on indented lines). A ``→`` is
sent once every ``←`` above it in its block has arrived; replies are matched by id (they
come in any order), notifications in their order. After each block a ping proves nothing
else arrived. Values the document elides match by the markers of ``matches``. An HTML
comment ``<!-- sim: ... -->`` or ``<!-- setup: ... -->`` before a block is a precondition
that is not an API call (``SETUPS``).

The session runs as ecrd's own user (who holds every role) in a temporary directory that
stands for ``/`` in the document's paths (``/var/lib/ecrd``, ``/etc/ecrd``, ``/run/ecrd``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import tomli_w
import trio
from stack import BUSINESS, SIM_KEYS

from ecrd.api.methods import METHODS, TOPICS
from ecrd.config import load
from ecrd.daemon import Daemon
from ecrd.sim.lan import serve_lan
from ecrd.sim.terminal import SimTerminal

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "api.md"
DOC = DOC_PATH.read_text()
ROOTS = ("/var/lib/ecrd", "/etc/ecrd", "/run/ecrd")  # the paths the document names
SN = "NEXGO-N96-1170270945"
CODE = "672633"  # the code the terminal's pairing page shows at first
TIMEOUT_S = 20.0

# -- the document ---------------------------------------------------------------------------


@attrs.define
class Block:
    line: int  # where it starts in api.md, for the failure message
    setups: list[str]
    steps: list[tuple[str, str]]  # ("→", request line) or ("←", JSON text)


def session(doc: str) -> list[Block]:
    """Every session block of the document, in order, with the setups before it."""
    blocks: list[Block] = []
    setups: list[str] = []
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        text = lines[i]
        if found := re.fullmatch(r"<!-- ((?:sim|setup): .*) -->", text.strip()):
            setups.append(found[1])
        elif text.startswith("```"):
            end = lines.index("```", i + 1)
            body = lines[i + 1 : end]
            if body and body[0].startswith("→ "):
                blocks.append(Block(i + 1, setups, steps(body, i + 2)))
                setups = []
            i = end
        i += 1
    assert not setups, f"setups {setups} before no session block"
    sent = sum(kind == "→" for block in blocks for kind, _ in block.steps)
    assert sent == sum(text.startswith("→ ") for text in lines), "a → outside a session block"
    return blocks


def steps(body: list[str], first: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for n, text in enumerate(body, first):
        if text.startswith(("→ ", "← ")):
            out.append((text[0], text[2:]))
        elif text.startswith(" ") and out and out[-1][0] == "←":
            out[-1] = ("←", out[-1][1] + "\n" + text)
        else:
            raise AssertionError(f"api.md:{n}: neither → nor ← nor a reply's continuation")
    return out


# -- matching -------------------------------------------------------------------------------

ANY = "…"
TYPED: dict[str, Callable[[Any], bool]] = {
    "<int>": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "<number>": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "<time>": lambda v: isinstance(v, str) and bool(re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", v)),
    "<uuid>": lambda v: isinstance(v, str) and bool(re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", v)),
}  # fmt: skip


def matches(expected: Any, actual: Any, where: str = "") -> list[str]:
    """What differs, as ``where: why`` lines. The markers: the string ``"…"`` stands for
    any value; ``…`` inside a string for any run of characters; ``"<int>"``,
    ``"<number>"``, ``"<time>"`` (RFC 3339) and ``"<uuid>"`` for any such value; a key
    ``"…"`` for the object's other keys; a last list item ``"…"`` for further items."""
    if expected == ANY:
        return []
    if isinstance(expected, str) and expected in TYPED:
        return [] if TYPED[expected](actual) else [f"{where}: {actual!r} is not {expected}"]
    if isinstance(expected, str) and ANY in expected and isinstance(actual, str):
        pattern = ".*".join(map(re.escape, expected.split(ANY)))
        return [] if re.fullmatch(pattern, actual, re.DOTALL) else [f"{where}: {actual!r}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        return _objects(expected, actual, where)
    if isinstance(expected, list) and isinstance(actual, list):
        return _lists(expected, actual, where)
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: {actual!r}, documented {expected!r}"]
    return []


def _objects(expected: dict[str, Any], actual: dict[str, Any], where: str) -> list[str]:
    named = {k: v for k, v in expected.items() if k != ANY}
    out = [f"{where}.{k}: missing" for k in named if k not in actual]
    if ANY not in expected:
        out += [f"{where}.{k}: not documented" for k in actual if k not in named]
    for k, v in named.items():
        if k in actual:
            out += matches(v, actual[k], f"{where}.{k}")
    return out


def _lists(expected: list[Any], actual: list[Any], where: str) -> list[str]:
    more = bool(expected) and expected[-1] == ANY
    if more:
        expected = expected[:-1]
    if len(actual) < len(expected) or (not more and len(actual) != len(expected)):
        return [f"{where}: {len(actual)} items, documented {len(expected)}: {actual!r}"]
    out: list[str] = []
    for n, (e, a) in enumerate(zip(expected, actual, strict=False)):
        out += matches(e, a, f"{where}[{n}]")
    return out


def test_the_markers_match_what_they_promise() -> None:
    assert matches({"a": "…", "b": [1, "…"], "…": "…"}, {"a": None, "b": [1, 2], "c": 3}) == []
    assert matches({"s": "uid=… pid=…"}, {"s": "uid=0 user=root pid=7"}) == []
    assert matches({"n": "<int>", "t": "<time>"}, {"n": 1, "t": "2026-11-27T16:20:01.5Z"}) == []
    assert matches({"a": 1}, {"a": 1, "b": 2}) == [".b: not documented"]
    assert matches({"a": 1, "b": 2}, {"a": 1}) == [".b: missing"]
    assert matches({"a": [1]}, {"a": [1, 2]}) != []
    assert matches({"n": "<int>"}, {"n": True}) != []
    assert matches(1, 1.0) != []


# -- the session ----------------------------------------------------------------------------


@attrs.define
class Session:
    stream: trio.SocketStream
    tmp: Path
    terminal: SimTerminal
    sent: set[str] = attrs.Factory(set)
    answered: set[str] = attrs.Factory(set)
    problems: list[str] = attrs.Factory(list)
    buf: bytes = b""

    async def send(self, line: str) -> None:
        for root in ROOTS:
            line = line.replace(f'"{root}', f'"{self.tmp}{root}')
        await self.stream.send_all(line.encode() + b"\n")

    async def receive(self) -> Any:
        while b"\n" not in self.buf:
            data = await self.stream.receive_some(1 << 20)
            assert data, "the daemon closed the connection"
            self.buf += data
        raw, self.buf = self.buf.split(b"\n", 1)
        return json.loads(raw.decode().replace(str(self.tmp), ""))

    async def run(self, block: Block) -> None:
        for setup in block.setups:
            verb, *args = setup.split()[1:]
            assert verb in SETUPS, f"api.md:{block.line}: no such setup {setup!r}"
            await SETUPS[verb](self, args)
        waiting: list[str] = []
        for kind, text in block.steps:
            if kind == "←":
                waiting.append(text)
                continue
            await self.arrive(block, waiting)
            waiting = []
            self.sent |= set(ids(json.loads(text)))
            await self.send(text)
        await self.arrive(block, waiting)
        await self.nothing_else(block)

    async def arrive(self, block: Block, documented: list[str]) -> None:
        expected = [json.loads(text) for text in documented]
        got: list[Any] = []
        with trio.move_on_after(TIMEOUT_S):
            while len(got) < len(expected):
                got.append(await self.receive())
        assert len(got) == len(expected), f"api.md:{block.line}: came only {got}"
        want, have = keyed(expected), keyed(got)
        self.answered |= {i for message in got for i in ids(message)}
        if want.keys() != have.keys():
            self.problems.append(f"api.md:{block.line}: documented {sorted(want)}, got {got}")
            return
        for key, message in want.items():
            if found := matches(message, have[key]):
                self.problems.append(f"api.md:{block.line} {key}: {found}; got {have[key]}")

    async def nothing_else(self, block: Block) -> None:
        """A ping sent now is answered next: nothing undocumented came before it."""
        await self.send(json.dumps({"jsonrpc": "2.0", "id": "end", "method": "ping"}))
        with trio.fail_after(TIMEOUT_S):
            while (message := await self.receive()).get("id") != "end":
                self.problems.append(f"api.md:{block.line}: undocumented {message}")


def ids(message: Any) -> list[str]:
    """The ids of a request, a reply or a batch of either (as JSON text)."""
    members = message if isinstance(message, list) else [message]
    return [json.dumps(m["id"]) for m in members if isinstance(m, dict) and "id" in m]


def keyed(messages: list[Any]) -> dict[str, Any]:
    """Replies by id (a batch's by its ids, its members in id order); notifications by
    their place among the notifications."""
    out: dict[str, Any] = {}
    for message in messages:
        if isinstance(message, list):
            members = sorted(message, key=lambda m: json.dumps(m.get("id")))
            out["batch " + " ".join(sorted(ids(message)))] = members
        elif "id" in message:
            out["reply " + json.dumps(message["id"])] = message
        else:
            out[f"notification {sum(k.startswith('notification') for k in out)}"] = message
    return out


async def _fault(s: Session, args: list[str]) -> None:
    s.terminal.arm(args[0])


async def _pairing_page(s: Session, args: list[str]) -> None:
    s.terminal.show_pairing_page(args[0])


async def _wait(s: Session, args: list[str]) -> None:
    assert args == ["busy"], args
    with trio.fail_after(TIMEOUT_S):
        while not s.terminal.payments.busy:
            await trio.sleep(0.01)


async def _install(s: Session, args: list[str]) -> None:
    flags, mode, where = args[:2], args[2], args[3]
    assert flags == ["-d", "-m"] and where.startswith(ROOTS), args
    path = Path(f"{s.tmp}{where}")
    path.mkdir(parents=True)
    path.chmod(int(mode, 8))


# What a setup line may say, after "sim:" or "setup:".
SETUPS: dict[str, Callable[[Session, list[str]], Awaitable[None]]] = {
    "fault": _fault,  # sim: fault NAME — arm a one-shot fault (docs/simulator.md, Faults)
    "pairing-page": _pairing_page,  # sim: pairing-page CODE — show the pairing page again
    "wait": _wait,  # sim: wait busy — until the terminal has a payment with the customer
    "install": _install,  # setup: install -d -m MODE PATH — a directory, as root makes it
}


async def start(nursery: trio.Nursery, tmp: Path) -> tuple[SimTerminal, str]:
    """The document's terminal (counter-1 on LAN, as its pairing page shows it) and ecrd
    with a config of that one terminal at /etc/ecrd/ecrd.toml; returns the socket."""
    term = SimTerminal(
        SN, business_id=BUSINESS, pin1=CODE, keys=SIM_KEYS, reply_salt_reuse=True,
        ip="192.168.1.50", port=8443, status_action="TransactionStatus", magic_amounts=False,
    )  # fmt: skip
    port = await nursery.start(serve_lan, term)
    socket = f"{tmp}/run/ecrd/ecrd.sock"
    config = {
        "daemon": {"socket": socket, "state_dir": f"{tmp}/var/lib/ecrd",
                   "client_device_sn": "POS-0001", "shutdown_grace_s": 2},
        "terminal": [{"id": "counter-1", "transport": "lan", "host": "127.0.0.1",
                      "port": port, "timeout_s": 10, "info_timeout_s": 10,
                      "probe_interval_s": 0, "send_actions": ["Settlement"]}],
    }  # fmt: skip
    path = tmp / "etc" / "ecrd" / "ecrd.toml"
    path.parent.mkdir(parents=True)
    path.write_text(tomli_w.dumps(config))
    await nursery.start(Daemon(load(path)).run)
    return term, socket


async def test_every_example_runs_in_order_and_is_answered_as_documented(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    term, socket = await start(nursery, tmp_path)
    events: list[dict[str, Any]] = []
    await nursery.start(watch, socket, events)
    s = Session(await trio.open_unix_socket(socket), tmp_path, term)
    async with s.stream:
        for block in session(DOC):
            await s.run(block)
    assert not s.problems, "\n".join(s.problems)
    assert s.sent == s.answered, "requests sent that the document never shows answered"
    await events_documented(events)


def test_every_request_id_in_the_examples_is_unique() -> None:
    sent = [i for b in session(DOC) for kind, text in b.steps if kind == "→"
            for i in ids(json.loads(text))]  # fmt: skip
    assert sorted(sent) == sorted(set(sent)), "an id used twice"


def test_the_examples_call_every_method() -> None:
    called = set()
    for block in session(DOC):
        for kind, text in block.steps:
            message = json.loads(text)
            called |= {m["method"] for m in (message if isinstance(message, list) else [message])
                       if kind == "→"}  # fmt: skip
    assert called >= set(METHODS), set(METHODS) - called


# -- the Events table -----------------------------------------------------------------------


def events_table() -> dict[str, str]:
    """The Events table: topic -> its params cell."""
    section = DOC.split("\n## Events\n", 1)[1]
    return dict(re.findall(r"^\| `([a-z.]+)` \| (.*?) \|", section, flags=re.MULTILINE))


def test_the_events_table_has_every_topic_subscribe_takes() -> None:
    assert list(events_table()) == list(TOPICS)


async def watch(socket: str, events: list[dict[str, Any]], *, task_status: Any) -> None:
    """Every event of every topic, on a connection of its own, into ``events``."""
    stream = await trio.open_unix_socket(socket)
    async with stream:
        await stream.send_all(b'{"jsonrpc":"2.0","id":"watch","method":"subscribe"}\n')
        buf = b""
        while data := await stream.receive_some(1 << 20):
            *lines, buf = (buf + data).split(b"\n")
            for message in map(json.loads, lines):
                if message.get("id") == "watch":
                    task_status.started()
                elif message.get("method") == "event":
                    events.append(message["params"])


TERMINAL_KINDS = ("link", "paired", "probe")  # the kinds of `terminal` event the examples make


async def events_documented(events: list[dict[str, Any]]) -> None:
    """Every event the examples made is in the Events table with the params its row names
    (a ``transaction.state`` one with a state the row lists), and they made every kind of
    ``terminal`` event, the last of them by ``terminal.unpair``."""
    with trio.fail_after(TIMEOUT_S):
        while not any(e.get("paired") is False for e in events):
            await trio.sleep(0.01)
    table = events_table()
    for event in events:
        row = table.get(event["topic"], "")
        named = set(re.findall(r"`([a-z_]+)", row))
        assert set(event) - {"topic", "at"} <= named, (event, row)
        if event["topic"] == "transaction.state":
            assert event["state"] in named or event["state"].startswith("resolved_"), event
    made = {k for e in events if e["topic"] == "terminal" for k in TERMINAL_KINDS if k in e}
    assert made == set(TERMINAL_KINDS), made


def test_the_record_shown_has_the_keys_of_a_sale_s_result() -> None:
    shown = DOC.split("## The transaction record", 1)[1].split("```json\n", 1)[1]
    record = json.loads(shown.split("\n```", 1)[0])
    sale = next(json.loads(text) for b in session(DOC) for kind, text in b.steps
                if kind == "←" and '"action":"Sale"' in text and '"result"' in text)  # fmt: skip
    assert record.keys() == sale["result"].keys()
