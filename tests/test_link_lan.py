"""LAN link against a tiny HTTP/1.1 terminal on loopback (h11, no simulator).

The peer supports keep-alive on purpose: if the link ever reused a connection, the peer
would see two requests on one connection and the one-connection-per-exchange test fails.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import h11
import pytest
import trio

from ecrd.protocol.envelope import Envelope
from ecrd.transport.base import BadReply, MaybeDelivered, NotDelivered, ReplyTimeout, first_reply
from ecrd.transport.http11 import MAX_REPLY_BYTES
from ecrd.transport.lan import LanLink

SALE = Envelope(action="Sale", data="c2VhbGVk")


@attrs.frozen
class Seen:
    connection: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


# What the peer does with a request: (status, body), or None to hang up without a reply.
Respond = Callable[[Seen], Awaitable[tuple[int, bytes] | None]]


async def echo_envelope(seen: Seen) -> tuple[int, bytes]:
    request = Envelope.from_bytes(seen.body)
    return 200, Envelope(action=request.action, data="cmVwbHk=").to_bytes()


class HttpPeer:
    """Just enough HTTP/1.1 to play a terminal or a gateway; records what it saw."""

    def __init__(self, respond: Respond, ssl_context: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.ssl_context = ssl_context
        self.connections = 0
        self.seen: list[Seen] = []
        self.port = 0
        self.close_after_reply = False  # a terminal that never keeps a connection open

    async def start(self, nursery: trio.Nursery) -> int:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, self._serve, listeners)
        return self.port

    async def _serve(self, tcp: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        stream: trio.abc.Stream = tcp
        if self.ssl_context is not None:
            stream = trio.SSLStream(tcp, self.ssl_context, server_side=True)
        conn = h11.Connection(h11.SERVER)
        async with stream:
            # The client may go away, or fail its TLS handshake, at any point.
            with contextlib.suppress(trio.BrokenResourceError, h11.RemoteProtocolError):
                await self._serve_requests(stream, conn, number)

    async def _serve_requests(self, stream: trio.abc.Stream, conn: h11.Connection, n: int) -> None:
        while True:
            seen = await self._read_request(stream, conn, n)
            if seen is None:
                return
            self.seen.append(seen)
            reply = await self.respond(seen)
            if reply is None:
                return
            status, body = reply
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body)):
                await stream.send_all(conn.send(event) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            if self.close_after_reply:
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _read_request(
        self, stream: trio.abc.Stream, conn: h11.Connection, number: int
    ) -> Seen | None:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                return Seen(number, request.method.decode(), request.target.decode(), headers, body)
            elif isinstance(event, h11.ConnectionClosed):
                return None


@pytest.fixture
async def link() -> AsyncIterator[LanLink]:
    lan = LanLink("127.0.0.1", 1, connect_timeout=2.0)
    yield lan
    await lan.aclose()


async def start_peer(nursery: trio.Nursery, link: LanLink, respond: Respond) -> HttpPeer:
    peer = HttpPeer(respond)
    link.set_address("127.0.0.1", await peer.start(nursery))
    return peer


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_exchange_posts_the_envelope_and_returns_the_reply(
    nursery: trio.Nursery, link: LanLink
) -> None:
    peer = await start_peer(nursery, link, echo_envelope)
    assert link.state == "unknown"

    reply = await first_reply(link, SALE, timeout=5)

    assert reply == Envelope(action="Sale", data="cmVwbHk=")
    assert link.state == "up"
    [seen] = peer.seen
    assert (seen.method, seen.target) == ("POST", "/v2/wonder/payment/ecr")
    assert Envelope.from_bytes(seen.body) == SALE
    assert seen.headers["content-type"] == "application/json"


async def test_each_exchange_opens_its_own_connection(nursery: trio.Nursery, link: LanLink) -> None:
    peer = await start_peer(nursery, link, echo_envelope)

    for _ in range(3):
        await first_reply(link, SALE, timeout=5)

    assert peer.connections == 3
    assert [s.connection for s in peer.seen] == [1, 2, 3]
    assert all(s.headers["connection"] == "close" for s in peer.seen)


@pytest.fixture
async def kept() -> AsyncIterator[LanLink]:
    lan = LanLink("127.0.0.1", 1, connect_timeout=2.0, keep_alive=True)
    yield lan
    await lan.aclose()


async def test_keep_alive_reuses_one_connection(nursery: trio.Nursery, kept: LanLink) -> None:
    peer = await start_peer(nursery, kept, echo_envelope)

    for _ in range(3):
        assert await first_reply(kept, SALE, timeout=5) == Envelope(action="Sale", data="cmVwbHk=")

    assert [s.connection for s in peer.seen] == [1, 1, 1]
    assert all("connection" not in s.headers for s in peer.seen)


async def test_keep_alive_opens_a_new_connection_when_the_terminal_closed_the_old(
    nursery: trio.Nursery, kept: LanLink
) -> None:
    peer = await start_peer(nursery, kept, echo_envelope)
    peer.close_after_reply = True

    await first_reply(kept, SALE, timeout=5)
    await trio.sleep(0.05)  # the terminal's end of stream reaches the idle connection
    await first_reply(kept, SALE, timeout=5)

    assert [s.connection for s in peer.seen] == [1, 2]


async def test_a_kept_connection_that_breaks_after_sending_may_have_delivered(
    nursery: trio.Nursery, kept: LanLink
) -> None:
    """Reusing a connection never turns "sent, then hung up" into "never sent": the
    terminal read the request on the kept connection, then went away."""
    answered = 0

    async def answer_once(seen: Seen) -> tuple[int, bytes] | None:
        nonlocal answered
        answered += 1
        return await echo_envelope(seen) if answered == 1 else None

    peer = await start_peer(nursery, kept, answer_once)
    await first_reply(kept, SALE, timeout=5)

    with pytest.raises(MaybeDelivered) as caught:
        await first_reply(kept, SALE, timeout=5)

    assert type(caught.value) is MaybeDelivered
    assert [s.connection for s in peer.seen] == [1, 1]


async def test_refused_connection_is_not_delivered(link: LanLink) -> None:
    link.set_address("127.0.0.1", unused_port())

    with pytest.raises(NotDelivered) as caught:
        await first_reply(link, SALE, timeout=5)

    assert not isinstance(caught.value, MaybeDelivered)
    assert link.state == "down"


async def test_hangup_without_reply_may_have_delivered(
    nursery: trio.Nursery, link: LanLink
) -> None:
    async def hang_up(seen: Seen) -> None:
        return None

    peer = await start_peer(nursery, link, hang_up)

    with pytest.raises(MaybeDelivered) as caught:
        await first_reply(link, SALE, timeout=5)

    assert type(caught.value) is MaybeDelivered
    assert len(peer.seen) == 1
    assert link.state == "down"


async def test_silent_terminal_times_out_within_the_deadline(
    nursery: trio.Nursery, link: LanLink
) -> None:
    async def never(seen: Seen) -> None:
        await trio.sleep_forever()

    await start_peer(nursery, link, never)

    start = trio.current_time()
    with pytest.raises(ReplyTimeout):
        await first_reply(link, SALE, timeout=0.3)

    assert 0.3 <= trio.current_time() - start < 1.0
    assert link.state == "down"


async def test_http_error_status_is_a_bad_reply(nursery: trio.Nursery, link: LanLink) -> None:
    async def fail(seen: Seen) -> tuple[int, bytes]:
        return 500, b"internal error"

    await start_peer(nursery, link, fail)

    with pytest.raises(BadReply) as caught:
        await first_reply(link, SALE, timeout=5)

    assert caught.value.code == 500


async def test_body_that_is_not_an_envelope_is_a_bad_reply(
    nursery: trio.Nursery, link: LanLink
) -> None:
    async def html(seen: Seen) -> tuple[int, bytes]:
        return 200, b"<html>router login</html>"

    await start_peer(nursery, link, html)

    with pytest.raises(BadReply) as caught:
        await first_reply(link, SALE, timeout=5)

    assert caught.value.code == 200


async def test_a_reply_wrapped_as_the_cloud_wraps_it_is_unwrapped_and_traced(
    nursery: trio.Nursery, link: LanLink
) -> None:
    """The vendor's LAN section may be read as "the cloud's response": the envelope inside
    ``{code, message, data}``. Both shapes are taken; the wrapper's words reach the trace."""

    async def wrapped(seen: Seen) -> tuple[int, bytes]:
        inner = (await echo_envelope(seen))[1]
        return 200, b'{"code":0,"message":"success","data":' + inner + b"}"

    wire: list[dict[str, object]] = []
    link.tap = wire.append
    await start_peer(nursery, link, wrapped)

    assert await first_reply(link, SALE, timeout=5) == Envelope(action="Sale", data="cmVwbHk=")
    assert wire[-1]["wrapper"] == {"code": 0, "message": "success"}
    link.set_address("127.0.0.1", (await start_peer(nursery, link, echo_envelope)).port)
    assert await first_reply(link, SALE, timeout=5) == Envelope(action="Sale", data="cmVwbHk=")
    assert "wrapper" not in wire[-1]  # a bare envelope, as before


async def test_a_wrapper_without_an_envelope_is_a_bad_reply_with_its_code_and_message(
    nursery: trio.Nursery, link: LanLink
) -> None:
    async def busy(seen: Seen) -> tuple[int, bytes]:
        return 200, b'{"code": 50001, "message": "Terminal busy, try later", "data": null}'

    wire: list[dict[str, object]] = []
    link.tap = wire.append
    await start_peer(nursery, link, busy)

    with pytest.raises(BadReply) as caught:
        await first_reply(link, SALE, timeout=5)

    assert isinstance(caught.value, MaybeDelivered)  # a sale sent so is of unknown outcome
    assert caught.value.code == 50001 and caught.value.detail == "Terminal busy, try later"
    assert "50001" in str(caught.value) and "Terminal busy, try later" in str(caught.value)
    assert wire[-1]["wrapper"] == {"code": 50001, "message": "Terminal busy, try later"}


def fill_backlog(port: int) -> list[socket.socket]:
    """Connect until the kernel stops completing handshakes for ``port``."""
    fillers = []
    for _ in range(8):
        try:
            fillers.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
        except TimeoutError:
            return fillers
    raise AssertionError("the listen backlog never filled up")


async def test_a_connect_that_hangs_is_not_delivered(link: LanLink) -> None:
    # A listener that never accepts, with its backlog full: the kernel drops further SYNs,
    # so the next connect hangs exactly like an unreachable host would.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = fill_backlog(port)
        try:
            link.set_address("127.0.0.1", port)
            with pytest.raises(NotDelivered) as caught:
                await first_reply(link, SALE, timeout=0.3)
        finally:
            for s in fillers:
                s.close()

    assert not isinstance(caught.value, MaybeDelivered)


async def test_set_address_moves_the_link(nursery: trio.Nursery, link: LanLink) -> None:
    link.set_address("127.0.0.1", unused_port())
    with pytest.raises(NotDelivered):
        await first_reply(link, SALE, timeout=5)

    peer = await start_peer(nursery, link, echo_envelope)

    assert link.address == (link.host, link.port) == ("127.0.0.1", peer.port)
    assert link.state == "unknown"
    await first_reply(link, SALE, timeout=5)
    assert link.state == "up"


async def test_closed_link_refuses_at_once() -> None:
    lan = LanLink("127.0.0.1", unused_port())
    await lan.aclose()

    with pytest.raises(NotDelivered):
        await first_reply(lan, SALE, timeout=5)


@pytest.fixture(scope="module")
def wonder_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A self-signed root and a server certificate for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Test Wonder Root")  # fmt: skip
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext")  # fmt: skip
    return d / "ca.pem", d / "srv.pem", d / "srv.key"


async def tls_peer(nursery: trio.Nursery, pki: tuple[Path, Path, Path]) -> HttpPeer:
    _, cert, key = pki
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    peer = HttpPeer(echo_envelope, ssl_context=ctx)
    await peer.start(nursery)
    return peer


async def test_tls_verifies_against_the_configured_root(
    nursery: trio.Nursery, wonder_root: tuple[Path, Path, Path]
) -> None:
    peer = await tls_peer(nursery, wonder_root)
    lan = LanLink("127.0.0.1", peer.port, tls=True, ca_file=str(wonder_root[0]))
    try:
        reply = await first_reply(lan, SALE, timeout=5)
    finally:
        await lan.aclose()

    assert reply.action == "Sale"
    assert lan.url.startswith("https://")


async def test_tls_with_an_untrusted_certificate_is_not_delivered(
    nursery: trio.Nursery, wonder_root: tuple[Path, Path, Path]
) -> None:
    peer = await tls_peer(nursery, wonder_root)
    lan = LanLink("127.0.0.1", peer.port, tls=True)
    try:
        with pytest.raises(NotDelivered) as caught:
            await first_reply(lan, SALE, timeout=5)
    finally:
        await lan.aclose()

    assert not isinstance(caught.value, MaybeDelivered)
    assert peer.seen == []


async def test_a_reply_larger_than_a_terminal_sends_is_a_bad_reply(
    nursery: trio.Nursery, link: LanLink
) -> None:
    async def flood(seen: Seen) -> tuple[int, bytes]:
        return 200, b"x" * (MAX_REPLY_BYTES + 1)

    await start_peer(nursery, link, flood)

    with pytest.raises(BadReply) as caught:
        await first_reply(link, SALE, timeout=10)
    assert "exceeds" in str(caught.value)


async def test_a_host_name_is_resolved_and_its_addresses_tried_in_turn(
    nursery: trio.Nursery,
) -> None:
    """``localhost`` may resolve to ::1 first, where nobody listens: the next address
    (127.0.0.1) takes the request."""
    lan = LanLink("localhost", 1, connect_timeout=2.0)
    try:
        peer = await start_peer(nursery, lan, echo_envelope)
        lan.set_address("localhost", peer.port)
        assert await first_reply(lan, SALE, timeout=5) == Envelope(action="Sale", data="cmVwbHk=")
        assert len(peer.seen) == 1
    finally:
        await lan.aclose()
