"""The fake cloud gateway: terminal info by pairing code, commands by SN, refusals."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from ecrd.protocol.crypto import KeyCache
from ecrd.protocol.envelope import Envelope
from ecrd.sim import COMMAND_PATH, INFO_PATH, SimTerminal, serve_cloud
from ecrd.sim.probe import Probe, call, pair, post_cloud

KEYS = KeyCache()
BUSINESS = "411d6207-1470-4d35-a557-54852463844d"
OTHER_BUSINESS = "ff467f02-5b69-45f3-81aa-bffcca55fe8f"


@pytest.fixture
async def terminals() -> list[SimTerminal]:
    def make(n: int, pin1: str, business: str = BUSINESS) -> SimTerminal:
        return SimTerminal(
            f"PAX-A930-117027094{n}",
            business_id=business,
            pin1=pin1,
            pin2=f"{n}{n}{n}{n}{n}9",
            keys=KEYS,
            reply_salt_reuse=True,
        )

    return [make(1, "111111"), make(2, "222222"), make(3, "333333", OTHER_BUSINESS)]


@pytest.fixture
async def base(nursery: trio.Nursery, terminals: list[SimTerminal]) -> str:
    async def serve(task_status: trio.TaskStatus[int]) -> None:
        await serve_cloud(terminals, timeout=0.5, task_status=task_status)

    port = await nursery.start(serve)
    return f"http://127.0.0.1:{port}"


def command(base: str, sn: str) -> Callable[[Envelope], Awaitable[Envelope]]:
    async def exchange(envelope: Envelope) -> Envelope:
        response = await post_cloud(
            base + COMMAND_PATH, envelope, business_id=BUSINESS, device_sn=sn
        )
        assert response.status_code == 200, response.text
        reply = response.json()
        assert (reply["code"], reply["message"]) == (0, "success")
        return Envelope.from_obj(reply["data"])

    return exchange


async def test_terminal_info_finds_the_terminal_by_its_pairing_code(
    base: str, terminals: list[SimTerminal]
) -> None:
    probe = Probe("222222", keys=KEYS)
    sent = await probe.seal("ConnectionInfo", {"businessID": BUSINESS})
    response = await post_cloud(
        base + INFO_PATH, sent.envelope, business_id=BUSINESS, device_sn=None
    )
    assert response.status_code == 200
    reply = response.json()
    assert reply["code"] == 0 and reply["data"]["action"] == "DeviceInfo"
    body = await probe.open(Envelope.from_obj(reply["data"]), sent)
    assert body["deviceSn"] == terminals[1].sn and body["businessID"] == BUSINESS
    assert isinstance(body["port"], str) and body["ip"]


async def test_terminal_info_with_an_unknown_code_is_404(base: str) -> None:
    sent = await Probe("999999", keys=KEYS).seal("ConnectionInfo", {"businessID": BUSINESS})
    response = await post_cloud(
        base + INFO_PATH, sent.envelope, business_id=BUSINESS, device_sn=None
    )
    assert response.status_code == 404
    assert response.json() == {
        "code": 40401,
        "message": "no terminal of this business accepts this pairing code",
        "data": None,
    }


async def test_terminal_info_only_relays_connection_info(base: str) -> None:
    sent = await Probe("111111", keys=KEYS).seal("Sale", {})
    response = await post_cloud(
        base + INFO_PATH, sent.envelope, business_id=BUSINESS, device_sn=None
    )
    assert response.status_code == 400 and response.json()["code"] == 40003


async def test_pairing_and_sale_through_the_gateway(
    base: str, terminals: list[SimTerminal]
) -> None:
    ex = command(base, terminals[0].sn)
    probe = await pair(ex, "111111", keys=KEYS)
    body = await call(
        ex, probe, "Sale", {"referenceID": "c-1", "amount": "3.00", "currency": "HKD"}
    )
    assert body["status"] == "Success"
    assert terminals[0].payments.charges("c-1") == 1


@pytest.mark.parametrize("missing", ["x-p-business-id", "x-device-sn", "x-request-id"])
async def test_command_needs_every_header(base: str, missing: str) -> None:
    sent = await Probe("111111", keys=KEYS).seal("DeviceInfo")
    headers = {
        "x-p-business-id": BUSINESS,
        "x-device-sn": "PAX-A930-1170270941",
        "x-request-id": str(uuid.uuid4()),
    }
    del headers[missing]
    async with httpx.AsyncClient() as client:
        response = await client.post(
            base + COMMAND_PATH, json=sent.envelope.to_obj(), headers=headers
        )
    assert response.status_code == 400
    assert response.json()["code"] == 40001 and missing in response.json()["message"]
    assert response.json()["data"] is None


async def _post(base: str, sn: str, business: str = BUSINESS, **kw: Any) -> httpx.Response:
    sent = await Probe("111111", keys=KEYS).seal("DeviceInfo")
    return await post_cloud(
        base + COMMAND_PATH, sent.envelope, business_id=business, device_sn=sn, **kw
    )


async def test_unknown_device_is_404(base: str) -> None:
    response = await _post(base, "NEXGO-N96-0000000000")
    assert response.status_code == 404 and response.json()["code"] == 40401


async def test_device_of_another_business_is_refused(
    base: str, terminals: list[SimTerminal]
) -> None:
    response = await _post(base, terminals[2].sn)
    assert response.status_code == 403 and response.json()["code"] == 40301


async def test_business_mismatch_fault_refuses_once(
    base: str, terminals: list[SimTerminal]
) -> None:
    terminals[0].arm("business_mismatch")
    assert (await _post(base, terminals[0].sn)).status_code == 403
    assert (await _post(base, terminals[0].sn)).status_code == 200


async def test_repeated_request_id_is_refused(base: str, terminals: list[SimTerminal]) -> None:
    request_id = str(uuid.uuid4())
    assert (await _post(base, terminals[0].sn, request_id=request_id)).status_code == 200
    again = await _post(base, terminals[0].sn, request_id=request_id)
    assert again.status_code == 409 and again.json()["code"] == 40901
    assert terminals[0].stats.requests == 1


async def test_drop_after_charging_is_502(base: str, terminals: list[SimTerminal]) -> None:
    ex = command(base, terminals[0].sn)
    probe = await pair(ex, "111111", keys=KEYS)
    terminals[0].arm("drop")
    sent = await probe.seal("Sale", {"referenceID": "c-drop", "amount": "1.00", "currency": "HKD"})
    response = await post_cloud(
        base + COMMAND_PATH, sent.envelope, business_id=BUSINESS, device_sn=terminals[0].sn
    )
    assert response.status_code == 502 and response.json()["code"] == 50201
    assert terminals[0].payments.charges("c-drop") == 1


async def test_gateway_timeout_is_504_and_not_charged(
    base: str, terminals: list[SimTerminal]
) -> None:
    ex = command(base, terminals[0].sn)
    probe = await pair(ex, "111111", keys=KEYS)
    terminals[0].arm("never_answer")
    sent = await probe.seal("Sale", {"referenceID": "c-slow", "amount": "1.00", "currency": "HKD"})
    response = await post_cloud(
        base + COMMAND_PATH, sent.envelope, business_id=BUSINESS, device_sn=terminals[0].sn
    )
    assert response.status_code == 504 and response.json()["code"] == 50401
    assert terminals[0].payments.charges("c-slow") == 0
    assert not terminals[0].payments.busy


async def test_unknown_path_and_method(base: str) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.post(base + "/nope")).json()["code"] == 40400
        assert (await client.get(base + COMMAND_PATH)).status_code == 405


async def test_abort_through_the_gateway_while_the_sale_waits(
    base: str, terminals: list[SimTerminal]
) -> None:
    ex = command(base, terminals[0].sn)
    probe = await pair(ex, "111111", keys=KEYS)
    terminals[0].arm("delay", params={"seconds": 0.4})  # under the gateway's 0.5 s timeout
    results: list[Any] = []

    async def sell() -> None:
        body = {"referenceID": "c-ab", "amount": "2.00", "currency": "HKD"}
        results.append(await call(ex, probe, "Sale", body))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sell)
        with trio.fail_after(5):
            while not terminals[0].payments.busy:
                await trio.sleep(0.001)
        assert (await call(ex, probe, "Abort", {}))["status"] == "Success"
    assert results[0]["errorCode"] == "ABORTED"
    assert terminals[0].payments.charges("c-ab") == 0
