"""``GET /ws`` (api/websocket.py): the socket's JSON-RPC as WebSocket messages, with a
real wsproto client on a real TCP connection to the endpoint of the in-process stack."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from http_stack import ORIGIN, SALE, TOKENS, HttpStack, bearer, open_ws, rpc, start_http_stack
from stack import pair
from wsproto.events import AcceptConnection, RejectConnection

from ecrd.client import open_trio_client


@pytest.fixture
async def hs(nursery: trio.Nursery, tmp_path: Path) -> HttpStack:
    return await start_http_stack(nursery, tmp_path)


async def test_after_subscribe_a_websocket_gets_the_events_of_a_sale_it_makes(
    hs: HttpStack,
) -> None:
    async with open_trio_client(hs.stack.socket) as c:
        await pair(c, hs.stack, "lan")
    async with open_ws(hs, bearer("web-pos")) as (ws, answer):
        assert isinstance(answer, AcceptConnection)
        await ws.send(rpc("subscribe", "s", topics=["transaction.state"]))
        assert "result" in await ws.receive()
        await ws.send(rpc("sale", "p", **SALE, reference_id="w1"))
        states, reply = [], None
        with trio.fail_after(10):
            while reply is None:
                message = await ws.receive()
                if message.get("method") == "event":
                    states.append(message["params"]["state"])
                elif message.get("id") == "p":
                    reply = message
        assert reply["result"]["state"] == "succeeded"
        assert "pending" in states and hs.stack.charges("lan", "w1") == 1


async def test_a_browser_gives_its_token_as_a_subprotocol_and_gets_ecrd_jsonrpc(
    hs: HttpStack,
) -> None:
    protocols = ["ecrd.jsonrpc", f"ecrd.bearer.{TOKENS['screen']}"]
    async with open_ws(hs, {"Origin": ORIGIN}, protocols) as (ws, answer):
        assert isinstance(answer, AcceptConnection)
        assert answer.subprotocol == "ecrd.jsonrpc"
        await ws.send([rpc("ping", 1), rpc("ping", 2)])  # a batch: one message back
        assert sorted(m["id"] for m in await ws.receive()) == [1, 2]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer nope"}, 401),
     ({**bearer("screen"), "Origin": "http://evil.example"}, 403)],
    ids=["no-token", "wrong-token", "bad-origin"],
)  # fmt: skip
async def test_a_websocket_without_a_token_or_from_a_bad_origin_is_refused(
    hs: HttpStack, headers: dict[str, str], status: int
) -> None:
    async with open_ws(hs, headers) as (_, answer):
        assert isinstance(answer, RejectConnection)
        assert answer.status_code == status


async def test_roles_hold_on_a_websocket_too(hs: HttpStack) -> None:
    async with open_ws(hs, bearer("screen")) as (ws, _):
        await ws.send(rpc("sale", "s", **SALE, reference_id="w2"))
        reply = await ws.receive()
        assert reply["error"]["data"]["reason"] == "permission_denied"
        assert hs.stack.requests("lan", "w2") == 0


async def test_a_message_over_max_line_bytes_is_line_too_long_and_the_socket_goes_on(
    hs: HttpStack,
) -> None:
    cap = hs.stack.daemon.config.daemon.max_line_bytes
    async with open_ws(hs, bearer("screen")) as (ws, _):
        await ws.send(rpc("ping", "big", pad="x" * cap))
        assert (await ws.receive())["error"]["data"]["reason"] == "line_too_long"
        await ws.send(rpc("ping", "small"))
        assert (await ws.receive())["id"] == "small"
