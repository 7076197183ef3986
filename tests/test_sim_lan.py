"""The simulator over its LAN link: real HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from ecrd.protocol.crypto import KeyCache
from ecrd.sim import SimTerminal, serve_lan
from ecrd.sim.probe import Probe, call, lan_exchange, pair, post_lan

KEYS = KeyCache()
PIN1, PIN2 = "111111", "222222"


@pytest.fixture
async def terminal() -> SimTerminal:
    return SimTerminal(pin1=PIN1, pin2=PIN2, keys=KEYS, reply_salt_reuse=True)


@pytest.fixture
async def url(nursery: trio.Nursery, terminal: SimTerminal) -> AsyncIterator[str]:
    port = await nursery.start(serve_lan, terminal)
    yield f"http://127.0.0.1:{port}/v2/wonder/payment/ecr"


@pytest.fixture
async def probe(url: str) -> Probe:
    return await pair(lan_exchange(url), PIN1, keys=KEYS)


def sale(ref: str, amount: str = "10.20") -> dict[str, Any]:
    return {"referenceID": ref, "amount": amount, "currency": "HKD"}


async def test_pairing_and_sale_over_http(url: str, terminal: SimTerminal) -> None:
    probe = await pair(lan_exchange(url), PIN1, keys=KEYS)
    body = await call(lan_exchange(url), probe, "Sale", sale("r-1"))
    assert body["status"] == "Success"
    assert terminal.payments.charges("r-1") == 1


async def test_device_info_advertises_the_bound_port(url: str, terminal: SimTerminal) -> None:
    body = await call(lan_exchange(url), Probe(PIN1, keys=KEYS), "DeviceInfo")
    assert url.startswith(f"http://{body['ip']}:{body['port']}/")
    assert terminal.qr()["port"] == int(body["port"])


async def test_reply_is_a_json_envelope(url: str) -> None:
    sent = await Probe(PIN1, keys=KEYS).seal("DeviceInfo")
    async with httpx.AsyncClient() as client:
        response = await client.post(url, json=sent.envelope.to_obj())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"version", "action", "data"}


async def test_abort_on_a_second_connection_while_the_sale_waits(
    url: str, terminal: SimTerminal, probe: Probe
) -> None:
    terminal.arm("delay", params={"seconds": 30})
    results: list[Any] = []

    async def sell() -> None:
        results.append(await call(lan_exchange(url), probe, "Sale", sale("r-ab")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sell)
        await _until(lambda: terminal.payments.busy)
        aborted = await call(lan_exchange(url), probe, "Abort", {"referenceID": "r-ab"})
    assert aborted["status"] == "Success"
    assert results[0]["errorCode"] == "ABORTED"
    assert terminal.payments.charges("r-ab") == 0


async def test_drop_closes_the_connection_after_charging(
    url: str, terminal: SimTerminal, probe: Probe
) -> None:
    terminal.arm("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        await call(lan_exchange(url), probe, "Sale", sale("r-drop"))
    assert terminal.payments.charges("r-drop") == 1


async def test_client_hanging_up_cancels_a_held_sale(
    url: str, terminal: SimTerminal, probe: Probe
) -> None:
    terminal.arm("never_answer")
    with pytest.raises(httpx.ReadTimeout):
        await call(lan_exchange(url, timeout=0.2), probe, "Sale", sale("r-held"))
    await _until(lambda: not terminal.payments.busy)
    (entry,) = [e for e in terminal.payments.ledger if e["referenceID"] == "r-held"]
    assert entry["errorCode"] == "CONNECTION_CLOSED" and not entry["charged"]
    assert (await call(lan_exchange(url), probe, "Sale", sale("r-next")))["status"] == "Success"


async def test_dribble_writes_the_reply_slowly(
    url: str, terminal: SimTerminal, probe: Probe
) -> None:
    terminal.arm("dribble", params={"bytes_per_s": 4000.0})
    start = trio.current_time()
    body = await call(lan_exchange(url), probe, "DeviceInfo")
    # a DeviceInfo reply is well over 400 bytes with its HTTP head
    assert trio.current_time() - start >= 0.1
    assert body["deviceSn"] == terminal.sn


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/elsewhere", b"{}", 404),
        ("GET", "/v2/wonder/payment/ecr", b"", 405),
        ("POST", "/v2/wonder/payment/ecr", b"not json", 400),
        ("POST", "/v2/wonder/payment/ecr", b'{"version": "2.0"}', 400),
    ],
)
async def test_http_errors_are_plain_json(
    url: str, method: str, path: str, body: bytes, status: int
) -> None:
    base = url.removesuffix("/v2/wonder/payment/ecr")
    async with httpx.AsyncClient() as client:
        response = await client.request(method, base + path, content=body)
    assert response.status_code == status
    assert "error" in response.json()


async def test_path_is_configurable(nursery: trio.Nursery) -> None:
    t = SimTerminal(pin1=PIN1, keys=KEYS, reply_salt_reuse=True)
    port = await nursery.start(
        lambda task_status: serve_lan(t, path="/wonder-terminal", task_status=task_status)
    )
    sent = await Probe(PIN1, keys=KEYS).seal("DeviceInfo")
    reply = await post_lan(f"http://127.0.0.1:{port}/wonder-terminal", sent.envelope)
    assert reply.action == "DeviceInfo"


async def test_keep_alive_connection_serves_several_requests(url: str) -> None:
    probe = Probe(PIN1, keys=KEYS)
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            sent = await probe.seal("DeviceInfo")
            response = await client.post(url, json=sent.envelope.to_obj())
            assert response.status_code == 200


async def _until(predicate: Any) -> None:
    with trio.fail_after(5):
        while not predicate():
            await trio.sleep(0.001)


async def _two_requests_on_one_connection(url: str) -> list[bytes]:
    """Two POSTs on one connection (HTTP/1.1 keeps it by default): what came back on it."""
    port = int(url.split(":")[2].split("/")[0])
    body = (await Probe(PIN1, keys=KEYS).seal("DeviceInfo")).envelope.to_bytes()
    request = (
        f"POST /v2/wonder/payment/ecr HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    answers: list[bytes] = []
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        for _ in range(2):
            try:
                await stream.send_all(request)
                with trio.fail_after(5):
                    answers.append(bytes(await stream.receive_some(65536)))
            except trio.BrokenResourceError:  # closed, or reset: it had our unread request
                break
    return answers


async def test_keep_alive_off_closes_every_connection_after_its_reply(
    url: str, terminal: SimTerminal
) -> None:
    terminal.keep_alive = False
    first, *rest = await _two_requests_on_one_connection(url)
    assert first.startswith(b"HTTP/1.1 200") and b"Connection: close" in first
    assert rest in ([], [b""])  # the second request met a closed connection


async def test_keep_alive_on_answers_a_second_request_on_the_same_connection(url: str) -> None:
    answers = await _two_requests_on_one_connection(url)
    assert [a[:12] for a in answers] == [b"HTTP/1.1 200"] * 2
    assert all(b"Connection: close" not in a for a in answers)
