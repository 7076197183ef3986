"""The strict simulator refuses what the vendor's document marks required (Y) and leaves
the lenient one as it was: each required item, missing, gets its clear refusal."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from ecrd.protocol import crypto
from ecrd.protocol.crypto import KeyCache
from ecrd.protocol.envelope import Envelope, request_message
from ecrd.sim.cloud import INFO_PATH, serve_cloud
from ecrd.sim.lan import LAN_PATH, serve_lan
from ecrd.sim.strict import MISSING_FIELD
from ecrd.sim.terminal import SimTerminal

KEYS = KeyCache()
PIN1 = "260880"
BUSINESS = "ff467f02-5b69-45f3-81aa-bffcca55fe8f"
SN = "NEXGO-N96-1170270945"


def terminal(*, strict: bool) -> SimTerminal:
    return SimTerminal(
        SN, business_id=BUSINESS, pin1=PIN1, keys=KEYS, reply_salt_reuse=True, strict=strict
    )


def sealed(action: str, message: dict[str, Any]) -> Envelope:
    return Envelope(action, crypto.seal_legacy(crypto.dumps(message), PIN1))


async def answer(t: SimTerminal, envelope: Envelope) -> dict[str, Any]:
    reply = await t.handle(envelope, "lan")
    assert reply.envelope is not None
    body: dict[str, Any] = crypto.open_(reply.envelope.data, PIN1, "legacy")["body"]
    return body


def legacy(*, strict: bool) -> SimTerminal:
    t = terminal(strict=strict)
    t.scheme = "legacy"  # sealing stays cheap: no key derivation per test
    return t


def without(field: str, value: object = None) -> dict[str, Any]:
    message = request_message(None, "POS-0001")
    if value is None:
        del message["header"][field]
    else:
        message["header"][field] = value
    return message


@pytest.mark.parametrize(
    ("field", "value"),
    [("clientDeviceSN", ""), ("requestID", ""), ("timestamp", "yesterday"),
     ("timestamp", "2025-11-12T10:11:04")],
)  # fmt: skip
async def test_a_request_header_without_a_required_field_is_refused_naming_it(
    field: str, value: str
) -> None:
    message = without(field, value)
    strict_body = await answer(legacy(strict=True), sealed("DeviceInfo", message))
    lenient_body = await answer(legacy(strict=False), sealed("DeviceInfo", message))
    assert strict_body["status"] == "Failed" and strict_body["errorCode"] == MISSING_FIELD
    assert f"header.{field}" in strict_body["errorMessage"]
    assert lenient_body["deviceSn"] == SN  # the lenient one answers as before


async def test_connection_info_needs_its_business_id_when_strict() -> None:
    bare = request_message({}, "POS-0001")
    full = request_message({"businessID": BUSINESS}, "POS-0001")
    strict_t = legacy(strict=True)
    refused = await answer(strict_t, sealed("ConnectionInfo", bare))
    assert refused["errorCode"] == MISSING_FIELD and "businessID" in refused["errorMessage"]
    assert (await answer(strict_t, sealed("ConnectionInfo", full)))["deviceSn"] == SN
    assert (await answer(legacy(strict=False), sealed("ConnectionInfo", bare)))["deviceSn"] == SN


async def test_the_envelope_fields_must_not_be_empty_when_strict(nursery: trio.Nursery) -> None:
    strict_t = legacy(strict=True)
    port = await nursery.start(serve_lan, strict_t)
    async with httpx.AsyncClient(trust_env=False) as client:
        url = f"http://127.0.0.1:{port}{LAN_PATH}"
        good = sealed("DeviceInfo", request_message(None, "POS-0001")).to_obj()
        response = await client.post(url, json={**good, "version": ""})
        assert response.status_code == 400 and "version" in response.json()["error"]
        assert (await client.post(url, json=good)).status_code == 200
    assert legacy(strict=False).check_envelope(Envelope("DeviceInfo", "x", "")) is None


async def test_a_strict_gateway_wants_every_header_on_terminal_info(nursery: trio.Nursery) -> None:
    terminals = [legacy(strict=False)]
    envelope = sealed("ConnectionInfo", request_message({"businessID": BUSINESS}, "POS-0001"))
    for strict, status in ((True, 400), (False, 200)):
        port = await nursery.start(partial(serve_cloud, terminals, strict=strict))
        headers = {"x-p-business-id": BUSINESS, "x-request-id": str(uuid.uuid4())}
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(
                f"http://127.0.0.1:{port}{INFO_PATH}", json=envelope.to_obj(), headers=headers
            )
        assert response.status_code == status, response.text
        if strict:
            assert response.json()["code"] == 40001
            assert "x-device-sn" in response.json()["message"]
