"""The HTTP endpoint (``[http]``, api/http.py): a real server on 127.0.0.1 and httpx, the
in-process stack behind it. Tokens, origins, hosts, preflights, roles, batches,
notifications and sizes; the WebSocket and TLS are in test_http_ws.py and
test_http_tls.py."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
import trio
from http_stack import (
    ORIGIN,
    SALE,
    TOKENS,
    HttpStack,
    bearer,
    open_ws,
    rpc,
    sha256,
    start_http_stack,
)  # fmt: skip
from stack import pair
from wsproto.events import AcceptConnection

from ecrd.client import EcrdError, open_trio_client


@pytest.fixture
async def hs(nursery: trio.Nursery, tmp_path: Path) -> HttpStack:
    return await start_http_stack(nursery, tmp_path)


async def post(hs: HttpStack, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient() as client:
        return await client.post(f"{hs.url}/rpc", content=content, headers=headers or {})


async def paired(hs: HttpStack) -> None:
    async with open_trio_client(hs.stack.socket) as c:  # root on the socket: every role
        await pair(c, hs.stack, "lan")


async def test_a_sell_token_sells_over_post_and_the_sale_is_journaled_under_its_name(
    hs: HttpStack,
) -> None:
    await paired(hs)
    r = await post(hs, rpc("sale", **SALE, reference_id="h1"), bearer("web-pos"))
    assert r.status_code == 200, r.text
    assert r.json()["result"]["state"] == "succeeded"
    assert hs.stack.charges("lan", "h1") == 1
    r = await post(hs, rpc("transaction.get", reference_id="h1"), bearer("web-pos"))
    assert r.json()["result"]["started_by"] == "http client=web-pos (token)"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {TOKENS['office']}"}],
    ids=["none", "wrong", "not-bearer"],
)  # fmt: skip
async def test_without_a_known_bearer_token_is_401(hs: HttpStack, headers: dict[str, str]) -> None:
    r = await post(hs, rpc("ping"), headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKENS["office"] not in r.text


async def test_an_origin_not_allowed_is_403_an_allowed_one_gets_cors_headers(
    hs: HttpStack,
) -> None:
    r = await post(hs, rpc("ping"), {**bearer("screen"), "Origin": "http://evil.example"})
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers
    r = await post(hs, rpc("ping"), {**bearer("screen"), "Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1"])
async def test_a_host_not_the_listen_address_is_403(hs: HttpStack, host: str) -> None:
    headers = {**bearer("screen"), "Host": host.format(port=hs.port)}
    assert (await post(hs, rpc("ping"), headers)).status_code == 403


async def test_localhost_and_the_listen_address_are_this_endpoint(hs: HttpStack) -> None:
    for host in (f"localhost:{hs.port}", f"127.0.0.1:{hs.port}"):
        r = await post(hs, rpc("ping"), {**bearer("screen"), "Host": host})
        assert r.status_code == 200


async def test_a_preflight_is_answered_only_for_an_allowed_origin(hs: HttpStack) -> None:
    ask = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    async with httpx.AsyncClient() as client:
        good = await client.options(f"{hs.url}/rpc", headers={**ask, "Origin": ORIGIN})
        bad = await client.options(f"{hs.url}/rpc", headers={**ask, "Origin": "http://x.example"})
    assert good.status_code == 204
    assert good.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in good.headers["access-control-allow-headers"]
    assert bad.status_code == 403
    assert "access-control-allow-origin" not in bad.headers


async def test_a_sell_token_cannot_administer_nor_refund_a_read_token_cannot_sell(
    hs: HttpStack,
) -> None:
    await paired(hs)
    for name, method, params in [
        ("web-pos", "config.reload", {}),
        ("web-pos", "refund", {**SALE, "original_reference_id": "x"}),
        ("screen", "sale", {**SALE, "reference_id": "h2"}),
    ]:
        r = await post(hs, rpc(method, **params), bearer(name))
        error = r.json()["error"]
        assert error["data"]["reason"] == "permission_denied", (name, method)
        assert f"HTTP client '{name}'" in error["message"]
    assert hs.stack.requests("lan", "h2") == 0
    r = await post(hs, rpc("terminal.list"), bearer("web-pos"))  # sell includes read
    assert "lan-1" in {t["id"] for t in r.json()["result"]}


async def test_a_batch_gets_its_replies_together_and_a_notification_none(hs: HttpStack) -> None:
    batch = [rpc("ping", "a"), rpc("terminal.list", "b"), {"jsonrpc": "2.0", "method": "ping"}]
    r = await post(hs, batch, bearer("screen"))
    assert r.status_code == 200
    assert sorted(m["id"] for m in r.json()) == ["a", "b"]


async def test_a_notification_is_answered_204_and_a_money_one_is_not_executed(
    hs: HttpStack,
) -> None:
    await paired(hs)
    r = await post(hs, {"jsonrpc": "2.0", "method": "ping"}, bearer("screen"))
    assert (r.status_code, r.content) == (204, b"")
    money = {"jsonrpc": "2.0", "method": "sale", "params": {**SALE, "reference_id": "n1"}}
    r = await post(hs, [money], bearer("web-pos"))
    assert r.status_code == 204
    assert hs.stack.requests("lan", "n1") == 0


async def test_a_body_over_max_line_bytes_is_413_with_the_sockets_error(hs: HttpStack) -> None:
    cap = hs.stack.daemon.config.daemon.max_line_bytes
    big = json.dumps(rpc("ping", pad="x" * cap)).encode()
    r = await post(hs, big, bearer("screen"))
    assert r.status_code == 413
    assert r.json()["error"]["data"]["reason"] == "line_too_long"
    r = await post(hs, b"{not json", bearer("screen"))  # and the endpoint goes on
    assert r.json()["error"]["data"]["reason"] == "parse_error"


async def test_a_pretty_printed_request_is_the_same_request(hs: HttpStack) -> None:
    body = json.dumps(rpc("ping", "p"), indent=2).encode()
    r = await post(hs, body, bearer("screen"))
    assert r.json()["id"] == "p" and "version" in r.json()["result"]


async def test_an_admin_action_over_http_is_audited_under_the_clients_name(hs: HttpStack) -> None:
    await paired(hs)
    r = await post(hs, rpc("terminal.trace", terminal="lan-1", on=False), bearer("office"))
    assert "result" in r.json(), r.text
    r = await post(hs, rpc("journal.audit"), bearer("office"))
    rows = r.json()["result"]
    assert any(
        row["who"] == "http client=office (token)" and row["action"] == "terminal.trace"
        for row in rows
    )


async def test_unknown_paths_and_methods_are_refused(hs: HttpStack) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{hs.url}/", headers=bearer("screen"))).status_code == 404
        assert (await client.get(f"{hs.url}/rpc", headers=bearer("screen"))).status_code == 405
        openrpc = await client.get(f"{hs.url}/openrpc.json")
    assert openrpc.status_code in (200, 404)


async def test_a_sale_outlives_its_http_client_and_is_charged_once(hs: HttpStack) -> None:
    """design.md §3 rule 7: the client goes away once its sale is in flight (x.92: the
    simulator answers late); the sale goes on, and its outcome is journaled."""
    await paired(hs)
    body = json.dumps(rpc("sale", **{**SALE, "amount": "10.92"}, reference_id="gone")).encode()
    async with open_trio_client(hs.stack.socket) as c:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, hs, body, bearer("web-pos"))
            await state_of(c, "gone", lambda s: s is not None)  # journaled: in flight
            nursery.cancel_scope.cancel()  # the HTTP client goes away
        settled = ("succeeded", "failed", "unknown")
        assert await state_of(c, "gone", lambda s: s in settled) == "succeeded"
    assert hs.stack.charges("lan", "gone") == 1


async def state_of(c: Any, ref: str, done: Any) -> str | None:
    """The transaction's state once ``done(state)`` (None: not journaled yet)."""
    with trio.fail_after(20):
        while True:
            try:
                state = (await c.call("transaction.get", reference_id=ref))["state"]
            except EcrdError:
                state = None
            if done(state):
                return state
            await trio.sleep(0.02)


async def test_a_client_over_its_share_of_places_gets_429(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    hs = await start_http_stack(nursery, tmp_path, {"max_clients_per_user": 1})
    async with open_ws(hs, bearer("screen")) as (_, answer):  # its one place
        assert isinstance(answer, AcceptConnection)
        r = await post(hs, rpc("ping"), bearer("screen"))
        assert r.status_code == 429
        assert r.json()["error"]["data"]["reason"] == "too_many_clients"
        assert (await post(hs, rpc("ping"), bearer("web-pos"))).status_code == 200  # another
    assert (await post(hs, rpc("ping"), bearer("screen"))).status_code == 200


async def test_a_reload_applies_new_clients_and_roles_to_the_next_requests(hs: HttpStack) -> None:
    path = hs.stack.tmp / "ecrd.toml"
    data = tomllib.loads(path.read_text())
    data["http"]["client"] = [
        {"name": "new", "token_sha256": sha256("a-new-token"), "roles": ["admin"]}
    ]
    path.write_text(tomli_w.dumps(data))
    report = await hs.stack.daemon.reload()
    assert "http" in report["applied"] and "http" not in report["needs_restart"]
    assert (await post(hs, rpc("ping"), bearer("screen"))).status_code == 401  # removed
    r = await post(hs, rpc("journal.audit"), {"Authorization": "Bearer a-new-token"})
    assert "result" in r.json(), r.text


async def test_one_connection_carries_a_preflight_then_the_requests(hs: HttpStack) -> None:
    """Keep-alive: a browser's preflight and its POSTs share one connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", hs.port)
    head = f"Host: 127.0.0.1:{hs.port}\r\nOrigin: {ORIGIN}\r\n"
    body = json.dumps(rpc("ping")).encode()
    post_ = (f"POST /rpc HTTP/1.1\r\n{head}Authorization: Bearer {TOKENS['screen']}\r\n"
             f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    async with stream:
        await stream.send_all(f"OPTIONS /rpc HTTP/1.1\r\n{head}\r\n".encode() + post_ + post_)
        got = b""
        with trio.fail_after(10):
            while got.count(b"HTTP/1.1 ") < 3:
                got += await stream.receive_some(65536)
    assert got.count(b"HTTP/1.1 204") == 1 and got.count(b"HTTP/1.1 200") == 2
