"""Cloud link against a fake gateway on loopback; the real Wonder hosts are never contacted."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
import trio

# The h11 peer of the LAN tests plays the gateway here too.
from test_link_lan import HttpPeer, Respond, Seen, unused_port

from ecrd.protocol.envelope import Envelope
from ecrd.transport.base import BadReply, MaybeDelivered, NotDelivered, first_reply
from ecrd.transport.cloud import (
    PRODUCTION_BASE_URL,
    STAGING_BASE_URL,
    TERMINAL_INFO_PATH,
    CloudLink,
    CloudNotConfigured,
    cloud_urls,
)

BUSINESS = "411d6207-1470-4d35-a557-54852463844d"
SN = "NEXGO-N96-1170270945"
SALE = Envelope(action="Sale", data="c2VhbGVk")
REPLY = Envelope(action="Sale", data="cmVwbHk=")


async def relay(seen: Seen) -> tuple[int, bytes]:
    body = {"code": 200, "message": "ok", "data": REPLY.to_obj()}
    return 200, json.dumps(body).encode()


async def gateway(nursery: trio.Nursery, respond: Respond = relay) -> tuple[HttpPeer, str]:
    peer = HttpPeer(respond)
    port = await peer.start(nursery)
    return peer, f"http://127.0.0.1:{port}"


@pytest.fixture
async def links() -> AsyncIterator[list[CloudLink]]:
    made: list[CloudLink] = []
    yield made
    for link in made:
        await link.aclose()


def cloud(
    links: list[CloudLink], base: str, *, device_sn: str | None = SN, command: bool = True
) -> CloudLink:
    link = CloudLink(
        f"{base}/ecr/command" if command else None,
        f"{base}{TERMINAL_INFO_PATH}",
        BUSINESS,
        device_sn,
    )
    links.append(link)
    return link


async def test_exchange_sends_the_headers_and_unwraps_the_envelope(
    nursery: trio.Nursery, links: list[CloudLink]
) -> None:
    peer, base = await gateway(nursery)
    link = cloud(links, base)

    reply = await first_reply(link, SALE, timeout=5)

    assert reply == REPLY
    assert link.state == "up"
    [seen] = peer.seen
    assert (seen.method, seen.target) == ("POST", "/ecr/command")
    assert Envelope.from_bytes(seen.body) == SALE
    assert seen.headers["x-p-business-id"] == BUSINESS
    assert seen.headers["x-device-sn"] == SN
    uuid.UUID(seen.headers["x-request-id"])


async def test_every_call_has_a_fresh_request_id(
    nursery: trio.Nursery, links: list[CloudLink]
) -> None:
    peer, base = await gateway(nursery)
    link = cloud(links, base)

    for _ in range(3):
        await first_reply(link, SALE, timeout=5)

    assert len({s.headers["x-request-id"] for s in peer.seen}) == 3
    assert peer.connections == 3


async def test_an_envelope_is_the_answer_whatever_the_code(
    nursery: trio.Nursery, links: list[CloudLink]
) -> None:
    async def odd_code(seen: Seen) -> tuple[int, bytes]:
        return 200, json.dumps({"code": 1, "message": "", "data": REPLY.to_obj()}).encode()

    _, base = await gateway(nursery, odd_code)

    assert await first_reply(cloud(links, base), SALE, timeout=5) == REPLY


async def test_a_reply_without_envelope_is_a_bad_reply_with_code_and_message(
    nursery: trio.Nursery, links: list[CloudLink]
) -> None:
    async def offline(seen: Seen) -> tuple[int, bytes]:
        body = {"code": 40401, "message": "Device is offline", "data": None}
        return 200, json.dumps(body).encode()

    _, base = await gateway(nursery, offline)
    link = cloud(links, base)
    wire: list[dict[str, object]] = []
    link.tap = wire.append

    with pytest.raises(BadReply) as caught:
        await first_reply(link, SALE, timeout=5)

    assert caught.value.code == 40401
    assert caught.value.detail == "Device is offline"
    assert link.state == "down"
    assert wire[-1]["wrapper"] == {"code": 40401, "message": "Device is offline"}


async def test_a_non_json_error_page_is_a_bad_reply_with_the_http_status(
    nursery: trio.Nursery, links: list[CloudLink]
) -> None:
    async def bad_gateway(seen: Seen) -> tuple[int, bytes]:
        return 502, b"<html>502 Bad Gateway</html>"

    _, base = await gateway(nursery, bad_gateway)

    with pytest.raises(BadReply) as caught:
        await first_reply(cloud(links, base), SALE, timeout=5)

    assert caught.value.code == 502


async def test_without_command_url_the_link_says_what_to_configure(links: list[CloudLink]) -> None:
    link = cloud(links, f"http://127.0.0.1:{unused_port()}", command=False)

    with pytest.raises(CloudNotConfigured, match=r"command_url.*\[cloud\]") as caught:
        await first_reply(link, SALE, timeout=5)

    assert isinstance(caught.value, NotDelivered)
    assert not isinstance(caught.value, MaybeDelivered)
    assert caught.value.reason == "cloud_not_configured"


async def test_without_device_sn_exchange_is_not_configured(links: list[CloudLink]) -> None:
    link = cloud(links, f"http://127.0.0.1:{unused_port()}", device_sn=None)

    with pytest.raises(CloudNotConfigured, match="serial number"):
        await first_reply(link, SALE, timeout=5)


async def test_terminal_info_posts_to_the_info_url(
    nursery: trio.Nursery, links: list[CloudLink]
) -> None:
    async def device_info(seen: Seen) -> tuple[int, bytes]:
        reply = Envelope(action="DeviceInfo", data="aW5mbw==")
        return 200, json.dumps({"code": 200, "message": "ok", "data": reply.to_obj()}).encode()

    peer, base = await gateway(nursery, device_info)
    link = cloud(links, base, device_sn=None, command=False)

    reply = await link.terminal_info(Envelope(action="ConnectionInfo", data="cGluMQ=="), timeout=5)

    assert reply.action == "DeviceInfo"
    [seen] = peer.seen
    assert seen.target == TERMINAL_INFO_PATH
    assert seen.headers["x-p-business-id"] == BUSINESS
    assert "x-device-sn" not in seen.headers
    uuid.UUID(seen.headers["x-request-id"])


async def test_unreachable_gateway_is_not_delivered(links: list[CloudLink]) -> None:
    link = cloud(links, f"http://127.0.0.1:{unused_port()}")

    with pytest.raises(NotDelivered) as caught:
        await first_reply(link, SALE, timeout=5)

    assert not isinstance(caught.value, MaybeDelivered)
    assert link.state == "down"


async def test_gateway_that_hangs_up_may_have_delivered(
    nursery: trio.Nursery, links: list[CloudLink]
) -> None:
    async def hang_up(seen: Seen) -> None:
        return None

    _, base = await gateway(nursery, hang_up)

    with pytest.raises(MaybeDelivered):
        await first_reply(cloud(links, base), SALE, timeout=5)


def test_cloud_urls_follow_the_environment() -> None:
    info, command = cloud_urls()
    assert info == PRODUCTION_BASE_URL + TERMINAL_INFO_PATH
    assert command is None
    assert cloud_urls("staging")[0] == STAGING_BASE_URL + TERMINAL_INFO_PATH
    assert (
        cloud_urls(base_url="http://127.0.0.1:9/")[0] == "http://127.0.0.1:9" + TERMINAL_INFO_PATH
    )
    assert cloud_urls(info_url="http://x/i", command_url="http://x/c") == (
        "http://x/i",
        "http://x/c",
    )
    with pytest.raises(ValueError, match="staging"):
        cloud_urls("prod")
