"""``GET /ws``: a WebSocket (RFC 6455, on wsproto) that carries the socket's lines.

Each text (or binary) message is one line: a request or a batch in; a reply, a batch's
replies or an ``event`` notification out. ``WebSocketLines`` turns the messages into the
byte stream a ``server.Connection`` reads and writes, so a WebSocket is a socket
connection in every rule: concurrent requests, back-pressure, batches, ``subscribe``'s
events, the idle timeout, and money commands that outlive it (design.md §3 rule 7).

Invariants:

* A message is at most ``max_line_bytes`` (the socket's line): a longer one is answered
  ``line_too_long`` and dropped, never held past that size.
* A newline inside a message becomes a tab: the same JSON, on one line.
* Pings are answered, a close is answered and ends the connection; a protocol error
  (bad UTF-8 in a text message, a bad frame) ends it too.
"""

from __future__ import annotations

import contextlib
from typing import Final

import trio
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from ecrd.api import http_rules
from ecrd.api.caller import Caller
from ecrd.api.refusals import RefusalLog
from ecrd.api.server import Connection
from ecrd.api.service import Service

_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError)


def handshake_problem(headers: dict[str, str]) -> str | None:
    """Why these are not a WebSocket opening handshake's headers (RFC 6455 §4.2.1)."""
    if "websocket" not in headers.get("upgrade", "").lower():
        return "GET /ws is a WebSocket: Upgrade: websocket is needed"
    if "upgrade" not in headers.get("connection", "").lower():
        return "Connection: Upgrade is needed"
    if headers.get("sec-websocket-version") != "13":
        return "Sec-WebSocket-Version: 13 is needed"
    if not headers.get("sec-websocket-key"):
        return "Sec-WebSocket-Key is needed"
    return None


def accept_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    out = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", accept_token(headers["sec-websocket-key"])),
    ]
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    if http_rules.WS_PROTOCOL in offered:
        out.append(("sec-websocket-protocol", http_rules.WS_PROTOCOL))
    return out


def accept_token(key: str) -> str:
    token: bytes | str = generate_accept_token(key.encode())
    return token.decode() if isinstance(token, bytes) else token


class WebSocketLines(trio.abc.Stream):
    def __init__(self, transport: trio.abc.Stream, trailing: bytes, cap: int) -> None:
        self._transport = transport
        self._ws = WsConnection(ConnectionType.SERVER, trailing_data=trailing)
        self._cap = cap
        self._lines: list[bytes] = []
        self._partial = bytearray()
        self._sending = trio.Lock()
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._lines and not self.closed:
            try:
                data = bytes(await self._transport.receive_some(65536))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self._ws.receive_data(data or None)
            self.closed = self.closed or not data
            try:
                for event in self._ws.events():
                    await self._take(event)
            except (RemoteProtocolError, LocalProtocolError):
                self.closed = True
        if self._lines:
            return self._lines.pop(0)
        await trio.lowlevel.checkpoint()
        return b""

    async def _take(self, event: Event) -> None:
        if isinstance(event, TextMessage | BytesMessage):
            data = event.data.encode() if isinstance(event.data, str) else event.data
            if len(self._partial) <= self._cap:  # past the cap: only "too long" is kept
                self._partial += data[: self._cap + 1 - len(self._partial)]
            if event.message_finished:
                self._lines.append(bytes(self._partial).replace(b"\n", b"\t") + b"\n")
                self._partial.clear()
        elif isinstance(event, Ping):
            await self._send(event.response())
        elif isinstance(event, CloseConnection):
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                await self._send(event.response())
            self.closed = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        for line in bytes(data).splitlines():
            await self._send(TextMessage(data=line.decode("utf-8", "replace")))

    async def _send(self, event: Event) -> None:
        async with self._sending:
            await self._transport.send_all(self._ws.send(event))

    async def wait_send_all_might_not_block(self) -> None:
        await self._transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        if self._ws.state is ConnectionState.OPEN:
            with trio.move_on_after(1), contextlib.suppress(*_GONE):
                await self._send(CloseConnection(code=1000))
        await trio.aclose_forcefully(self._transport)


async def serve(
    daemon: Service, connections: set[Connection], refusals: RefusalLog, caller: Caller,
    transport: trio.abc.Stream, trailing: bytes,
) -> None:  # fmt: skip
    """The WebSocket of ``caller``, once the 101 went out, until either side closes it."""
    lines = WebSocketLines(transport, trailing, daemon.config.daemon.max_line_bytes)
    conn = Connection(daemon, lines, caller, connections, refusals,
                      present=lambda: not lines.closed)  # fmt: skip
    await conn.serve()
