"""A kept LAN connection is reused only when nothing is left unread on it (keep_alive).

The peer here answers one request with two responses: the second one is what a confused
(or hostile) terminal leaves behind. If the link reused that connection, its next
exchange would read the leftover as its own reply: a charged sale recorded as answered
by another reply. Wherever the leftover sits — in h11's buffer (both responses came in
one read), in the socket (it came a moment later), or inside TLS (a second record read
off the socket together with the first) — the next exchange must open a new connection.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import h11
import pytest
import trio

from ecrd.protocol.envelope import Envelope
from ecrd.transport.base import first_reply
from ecrd.transport.lan import LanLink

REQUEST = Envelope(action="DeviceInfo", data="cmVxdWVzdA==")


def response(data: str) -> bytes:
    body = Envelope(action="DeviceInfo", data=data).to_bytes()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class Holding(trio.abc.Stream):
    """A TCP stream whose writes wait in a buffer until ``flush``: two TLS records written
    one after the other then leave in one segment, as a fast peer's do."""

    def __init__(self, tcp: trio.SocketStream) -> None:
        self.tcp = tcp
        self.held = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.held += bytes(data)

    async def flush(self) -> None:
        held, self.held = self.held, b""
        await self.tcp.send_all(held)

    async def wait_send_all_might_not_block(self) -> None:
        await self.tcp.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await self.flush()  # the handshake: every write goes out before the peer's answer
        return await self.tcp.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.tcp.aclose()


class TwoAnswers:
    """Answers every request with ``c<connection>r<request>``, then leaves a second,
    stale response behind: ``how`` = "together" (one write), "later" (50 ms after)."""

    def __init__(self, how: str, tls: ssl.SSLContext | None = None) -> None:
        self.how = how
        self.tls = tls
        self.connections = 0
        self.port = 0

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, self._serve, listeners)

    async def _serve(self, tcp: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        holding = Holding(tcp)
        stream: trio.abc.Stream = holding
        if self.tls is not None:
            stream = trio.SSLStream(holding, self.tls, server_side=True)
        conn = h11.Connection(h11.SERVER)
        served = 0
        async with stream:
            while await self._request(stream, conn):
                served += 1
                await self._answer(stream, holding, f"c{number}r{served}")
                conn = h11.Connection(h11.SERVER)  # the stale response broke its state

    async def _request(self, stream: trio.abc.Stream, conn: h11.Connection) -> bool:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return False
                if not data:
                    return False
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.EndOfMessage):
                return True
            elif isinstance(event, h11.ConnectionClosed):
                return False

    async def _answer(self, stream: trio.abc.Stream, holding: Holding, data: str) -> None:
        await stream.send_all(response(data))
        if self.how == "later":
            await holding.flush()
            await trio.sleep(0.05)
        await stream.send_all(response("stale"))  # its own TLS record, under TLS
        await holding.flush()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A root and a certificate for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Test Root")  # fmt: skip
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext")  # fmt: skip
    return d / "ca.pem", d / "srv.pem", d / "srv.key"


@pytest.fixture
async def kept() -> AsyncIterator[list[LanLink]]:
    links: list[LanLink] = []
    yield links
    for link in links:
        await link.aclose()


async def exchange_twice(peer: TwoAnswers, link: LanLink) -> list[str]:
    first = await first_reply(link, REQUEST, timeout=5)
    await trio.sleep(0.2)  # the stale response has arrived, wherever it sits
    second = await first_reply(link, REQUEST, timeout=5)
    return [first.data, second.data]


@pytest.mark.parametrize("how", ["together", "later"])
async def test_a_kept_connection_with_anything_unread_is_never_reused(
    nursery: trio.Nursery, kept: list[LanLink], how: str
) -> None:
    peer = TwoAnswers(how)
    await peer.start(nursery)
    kept.append(link := LanLink("127.0.0.1", peer.port, keep_alive=True))
    assert await exchange_twice(peer, link) == ["c1r1", "c2r1"]
    assert peer.connections == 2


async def test_a_kept_tls_connection_with_a_record_left_inside_tls_is_never_reused(
    nursery: trio.Nursery, kept: list[LanLink], pki: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = pki
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    peer = TwoAnswers("together", tls=server)
    await peer.start(nursery)
    kept.append(link := LanLink("127.0.0.1", peer.port, tls=True, ca_file=str(ca),
                                keep_alive=True))  # fmt: skip
    assert await exchange_twice(peer, link) == ["c1r1", "c2r1"]


async def test_a_kept_connection_with_nothing_unread_is_still_reused(
    nursery: trio.Nursery, kept: list[LanLink]
) -> None:
    """The check costs keep_alive nothing where the peer behaves (one response each)."""

    class OneAnswer(TwoAnswers):
        async def _answer(self, stream: trio.abc.Stream, holding: Holding, data: str) -> None:
            await stream.send_all(response(data))
            await holding.flush()

    peer = OneAnswer("together")
    await peer.start(nursery)
    kept.append(link := LanLink("127.0.0.1", peer.port, keep_alive=True))
    assert await exchange_twice(peer, link) == ["c1r1", "c1r2"]
