"""The in-process stack of stack.py with ``[http]`` on (port 0 on 127.0.0.1), and a small
WebSocket client on wsproto over a real TCP (or TLS) connection."""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import tomli_w
import trio
from stack import Stack, config_data, make_sim
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from ecrd.config import parse
from ecrd.daemon import Daemon

ORIGIN = "http://localhost:3000"
TOKENS = {"web-pos": "sell-token-0123456789", "office": "admin-token-0123456789",
          "screen": "read-token-0123456789"}  # fmt: skip
ROLES = {"web-pos": ["sell"], "office": ["admin"], "screen": ["read"]}
SALE = {"terminal": "lan-1", "amount": "12.50", "currency": "HKD"}


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def clients() -> list[dict[str, Any]]:
    return [{"name": n, "token_sha256": sha256(t), "roles": ROLES[n]} for n, t in TOKENS.items()]


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def rpc(method: str, id_: Any = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


@attrs.define
class HttpStack:
    stack: Stack
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start_http_stack(
    nursery: trio.Nursery, tmp: Path, daemon_keys: dict[str, Any] | None = None, **http: Any
) -> HttpStack:  # fmt: skip
    """``http``: keys of ``[http]`` over the defaults (loopback, ``ORIGIN``, ``clients()``);
    ``daemon_keys``: of ``[daemon]``. The config is written to its file too (reloads)."""
    sim = make_sim(tmp)
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp)
    data["daemon"].update(daemon_keys or {})
    data["http"] = {"listen": "127.0.0.1:0", "allowed_origins": [ORIGIN], "client": clients(),
                    **http}  # fmt: skip
    cfg = parse(data, str(tmp / "ecrd.toml"))
    (tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    assert daemon.http is not None
    return HttpStack(Stack(sim, daemon, cfg.daemon.socket, desc, tmp), daemon.http.port)


class WsClient:
    """A WebSocket client: wsproto's handshake and framing on a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []

    async def open(self, host: str, headers: dict[str, str], protocols: list[str]) -> Any:
        """The handshake's answer: ``AcceptConnection`` or ``RejectConnection``."""
        extra = [(k.encode(), v.encode()) for k, v in headers.items()]
        request = Request(host=host, target="/ws", extra_headers=extra, subprotocols=protocols)
        await self.stream.send_all(self.ws.send(request))
        while True:
            for event in await self._events():
                if isinstance(event, AcceptConnection | RejectConnection):
                    return event

    async def _events(self) -> list[Any]:
        data = await self.stream.receive_some(65536)
        self.ws.receive_data(bytes(data) or None)
        return list(self.ws.events())

    async def send(self, message: Any) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=json.dumps(message))))

    async def receive(self) -> Any:
        """The next message as JSON (None once the server closed)."""
        text = ""
        while True:
            while self.pending:
                event = self.pending.pop(0)
                if isinstance(event, CloseConnection):
                    return None
                if isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        return json.loads(text)
            self.pending = await self._events()
            if not self.pending and self.ws.state.name == "CLOSED":
                return None


@contextlib.asynccontextmanager
async def open_ws(
    hs: HttpStack, headers: dict[str, str], protocols: Sequence[str] = (),
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[WsClient, Any]]:  # fmt: skip
    """A client and the server's answer to its handshake; closed on the way out."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", hs.port)
    if tls is not None:
        stream = trio.SSLStream(stream, tls, server_hostname="localhost")
    async with stream:
        client = WsClient(stream)
        yield client, await client.open(f"127.0.0.1:{hs.port}", headers, list(protocols))
