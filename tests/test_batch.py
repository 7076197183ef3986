"""JSON-RPC 2.0 batches (the specification's section 6), with the specification's own
examples (section 7) sent as they are written, through the daemon's real socket. Members
run like lines of their own: money rules and roles per member."""

from __future__ import annotations

import json
from typing import Any

import trio
from stack import Stack, pair

from ecrd.api.jsonrpc import MAX_BATCH
from ecrd.client import open_trio_client

SENTINEL = b'{"jsonrpc":"2.0","id":"sentinel","method":"ping"}\n'


async def exchange(stack: Stack, line: bytes, expect: int = 0) -> list[Any]:
    """Everything the line gets back: a ping sent after it is answered (replies come in
    any order), at least ``expect`` messages came, and then nothing more for a while."""
    stream = await trio.open_unix_socket(stack.socket)
    async with stream:
        await stream.send_all(line + b"\n" + SENTINEL)
        buf, got, sentinel = b"", [], False
        while True:
            with trio.move_on_after(0.3 if sentinel and len(got) >= expect else 10):
                buf += await stream.receive_some(65536)
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    message = json.loads(raw)
                    if isinstance(message, dict) and message.get("id") == "sentinel":
                        sentinel = True
                    else:
                        got.append(message)
                continue
            assert sentinel, "no reply to the ping"
            return got


def codes(replies: list[dict[str, Any]]) -> dict[Any, int | None]:
    return {r["id"]: (r["error"]["code"] if "error" in r else None) for r in replies}


INVALID = {"code": -32600, "reason": "invalid_request"}


def invalid(reply: dict[str, Any]) -> bool:
    error = reply["error"]
    return reply["id"] is None and {"code": error["code"], "reason": error["data"]["reason"]} == (
        INVALID
    )


async def test_spec_a_batch_with_invalid_json_is_one_parse_error(stack: Stack) -> None:
    line = (b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
            b'{"jsonrpc": "2.0", "method"]')  # fmt: skip
    [reply] = await exchange(stack, line)
    assert reply["id"] is None and reply["error"]["code"] == -32700


async def test_spec_an_empty_array_is_one_invalid_request_not_an_array(stack: Stack) -> None:
    [reply] = await exchange(stack, b"[]")
    assert isinstance(reply, dict) and invalid(reply)


async def test_spec_each_non_object_member_gets_its_own_invalid_request(stack: Stack) -> None:
    [replies] = await exchange(stack, b"[1]")
    assert len(replies) == 1 and invalid(replies[0])
    [replies] = await exchange(stack, b"[1,2,3]")
    assert len(replies) == 3 and all(invalid(r) for r in replies)


async def test_spec_a_mixed_batch_answers_every_request_but_the_notification(
    stack: Stack,
) -> None:
    line = (
        b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},'
        b'{"foo": "boo"},'
        b'{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
        b'{"jsonrpc": "2.0", "method": "get_data", "id": "9"}]'
    )
    [replies] = await exchange(stack, line)
    # ecrd takes params by name only, and has none of these methods: the same replies the
    # specification shows, as errors; the notification gets none.
    assert codes(replies) == {"1": -32602, "2": -32602, None: -32600, "5": -32601, "9": -32601}


async def test_spec_a_batch_of_notifications_gets_nothing_at_all(stack: Stack) -> None:
    line = (b'[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
            b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]')  # fmt: skip
    assert await exchange(stack, line) == []
    ping = b'{"jsonrpc":"2.0","method":"ping"}'
    assert await exchange(stack, b"[" + ping + b"," + ping + b"]") == []


async def test_a_batch_of_ecrd_requests_gets_their_results(stack: Stack) -> None:
    line = json.dumps([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": "list", "method": "terminal.list"},
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "id": 3, "method": "transaction.get",
         "params": {"reference_id": "none"}},
    ]).encode()  # fmt: skip
    [replies] = await exchange(stack, line)
    by_id = {r["id"]: r for r in replies}
    assert set(by_id) == {1, "list", 3}
    assert by_id[1]["result"]["protocol"] == 1
    assert len(by_id["list"]["result"]) == 3
    assert by_id[3]["error"]["data"]["reason"] == "transaction_not_found"


async def test_money_rules_apply_per_member(stack: Stack) -> None:
    """Two sales on one terminal in one batch are two payments on one terminal at once:
    one goes through, the other is terminal_busy, exactly as on two lines."""
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
    sale = {"terminal": "lan-1", "amount": "1.00", "currency": "HKD"}
    line = json.dumps([
        {"jsonrpc": "2.0", "id": "a", "method": "sale", "params": {**sale, "reference_id": "a"}},
        {"jsonrpc": "2.0", "id": "b", "method": "sale", "params": {**sale, "reference_id": "b"}},
    ]).encode()  # fmt: skip
    [replies] = await exchange(stack, line, expect=1)
    outcomes = sorted(r["result"]["state"] if "result" in r else r["error"]["data"]["reason"]
                      for r in replies)  # fmt: skip
    assert outcomes == ["succeeded", "terminal_busy"]
    assert stack.charges("lan", "a") + stack.charges("lan", "b") == 1


async def test_a_batch_larger_than_the_running_limit_is_refused_whole(stack: Stack) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    [replies] = await exchange(stack, json.dumps([ping] * MAX_BATCH).encode())
    assert len(replies) == MAX_BATCH
    [reply] = await exchange(stack, json.dumps([ping] * (MAX_BATCH + 1)).encode())
    assert invalid(reply) and str(MAX_BATCH) in reply["error"]["message"]
