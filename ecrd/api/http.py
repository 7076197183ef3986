"""The local HTTP endpoint (``[http]``): the socket's JSON-RPC for browsers and other
languages, on h11 over Trio (and wsproto for ``GET /ws``: api/websocket.py).

* ``POST /rpc``: one JSON-RPC request or batch; the reply is the socket's, byte for byte;
  a notification (or a batch of them) is answered 204.
* ``GET /ws``: a WebSocket carrying the socket's lines as messages, both ways.
* ``GET /openrpc.json``: the API's OpenRPC document, if ecrd has one (404 otherwise).
* ``OPTIONS``: a CORS preflight, answered for an allowed ``Origin`` only.

Invariants:

* Every check of ``http_rules`` runs on the request's head, before its body is read;
  403 for a wrong ``Host`` or ``Origin``, 401 without a known bearer token (or, in store
  mode, a certificate that names no ``[[http.client]]``). The TLS handshake itself
  refuses a client without a certificate signed by ``client_ca``.
* A request is run by the socket's own ``server.Connection``, given the body as its one
  line: the same parser, methods, roles, refusals, audit, batch rules and money rules
  (a money command outlives its HTTP client: design.md §3 rule 7). Its caller is the
  ``[[http.client]]`` (``http:NAME``: api/caller.py).
* The socket's limits: a body over ``max_line_bytes`` is 413 with the socket's
  ``line_too_long`` error (and the connection closed: its body is never read); each
  request and each WebSocket holds one place of ``sharing.Admission``, per client name,
  or gets 429 ``too_many_clients``.
* At most ``MAX_CONNECTIONS`` TCP connections at once; a request head must arrive within
  ``HEAD_TIMEOUT_S`` and its body within ``BODY_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import select
import socket
import ssl
from collections.abc import Iterator
from typing import Any, Final

import attrs
import h11
import trio

from ecrd import ownership
from ecrd.api import http_rules, jsonrpc
from ecrd.api.caller import Caller
from ecrd.api.refusals import RefusalLog
from ecrd.api.server import Connection
from ecrd.api.service import Service
from ecrd.api.sharing import Admission, Refused
from ecrd.http_config import HttpClient, HttpConfig

log = logging.getLogger("ecrd.http")

MAX_CONNECTIONS: Final = 256
HEAD_TIMEOUT_S: Final = 30.0
BODY_TIMEOUT_S: Final = 30.0
MAX_HEAD_BYTES: Final = 16 * 1024
SERVER: Final = b"ecrd"
ROUTES: Final = {"/rpc": "POST", "/ws": "GET", "/openrpc.json": "GET"}


@attrs.frozen
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


def _json(status: int, obj: Any, **kw: Any) -> Reply:
    return Reply(status, jsonrpc.encode(obj), **kw)


def _rpc_error(status: int, code: int, message: str, reason: str, **kw: Any) -> Reply:
    return _json(status, jsonrpc.error(None, code, message, reason), **kw)


def tls_server_context(cfg: HttpConfig) -> ssl.SSLContext | None:
    """Store mode: our certificate, and only clients with one ``client_ca`` signed."""
    if not cfg.store_mode:
        return None
    assert cfg.tls_cert and cfg.tls_key and cfg.client_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cfg.client_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Exchange(trio.abc.Stream):
    """One request's body as the one line a ``Connection`` reads, and its reply kept. A
    newline in the body becomes a tab: the same JSON (both are whitespace between tokens,
    both invalid inside a string), on one line."""

    def __init__(self, body: bytes) -> None:
        self._line: bytes | None = body.replace(b"\n", b"\t") + b"\n"
        self.reply = bytearray()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        line, self._line = self._line, None
        return line or b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.reply += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def still_there(raw: trio.SocketStream) -> bool:
    """Whether the TCP peer has not closed or reset its connection (no checkpoint)."""
    poller = select.poll()
    poller.register(raw.socket.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    try:
        return not poller.poll(0)
    except OSError:
        return False


class Endpoint:
    """What every connection of the endpoint shares."""

    def __init__(self, daemon: Service, connections: set[Connection], port: int) -> None:
        self.daemon = daemon
        self.connections = connections
        self.port = port  # the bound one
        self.admission = Admission(lambda: daemon.config.daemon)
        self.refusals = RefusalLog(log)
        self.open = 0

    @property
    def cfg(self) -> HttpConfig:
        cfg = self.daemon.config.http
        assert cfg is not None  # a reload that removes [http] keeps it until a restart
        return cfg

    @contextlib.contextmanager
    def admitted(self, caller: Caller) -> Iterator[None]:
        ticket = self.admission.admit(caller.key, caller.held(self.daemon.config))
        try:
            yield
        finally:
            self.admission.release(ticket)

    async def run_line(self, caller: Caller, body: bytes, raw: trio.SocketStream) -> bytes:
        exchange = _Exchange(body)
        conn = Connection(self.daemon, exchange, caller, self.connections, self.refusals,
                          present=lambda: still_there(raw))  # fmt: skip
        await conn.serve()
        return bytes(exchange.reply)

    def refuse(self, caller: Caller, exc: Refused) -> Reply:
        self.refusals.refused(caller.key, caller.label, "request (too many clients)",
                              f"client {caller.label} refused: {exc}")  # fmt: skip
        self.daemon.count("too_many_clients")
        return _rpc_error(429, -32000, str(exc), "too_many_clients")


class HttpConnection:
    """One TCP (or TLS) connection: requests one after another (keep-alive)."""

    def __init__(
        self, endpoint: Endpoint, stream: trio.abc.Stream, raw: trio.SocketStream,
        cert: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.stream = stream
        self.raw = raw
        self.cert = cert
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def run(self) -> None:
        try:
            while True:
                head = await self._head()
                if head is None:
                    return
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in head.headers}
                reply = await self._respond(head, headers)
                if reply is None:  # the connection is a WebSocket now, and it is over
                    return
                await self._send(reply, headers)
                if not reply.close and self.h11.their_state is h11.SEND_BODY:
                    await self._body(0)  # a GET's or OPTIONS' end of message
                if reply.close or self.h11.their_state is not h11.DONE:
                    return  # (a body left unread is never taken for the next request)
                self.h11.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(h11.LocalProtocolError):
                error = Reply(exc.error_status_hint, f"{exc}\n".encode(), close=True)
                await self._send(error, {})
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass

    async def _next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = bytes(await self.stream.receive_some(65536))
            self.h11.receive_data(data)

    async def _head(self) -> h11.Request | None:
        with trio.fail_after(HEAD_TIMEOUT_S):
            event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request)
        return event

    async def _body(self, cap: int) -> bytes | None:
        """The whole body, or None past ``cap`` bytes (not read further)."""
        body = bytearray()
        with trio.fail_after(BODY_TIMEOUT_S):
            while True:
                event = await self._next_event()
                if isinstance(event, h11.EndOfMessage):
                    return bytes(body)
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > cap:
                        return None

    async def _respond(self, head: h11.Request, headers: dict[str, str]) -> Reply | None:
        cfg = self.endpoint.cfg
        path = head.target.decode("latin-1").partition("?")[0]
        method = head.method.decode("latin-1")
        origin = headers.get("origin")
        if not http_rules.host_ok(headers.get("host"), cfg, self.endpoint.port):
            return Reply(403, b"Host is not this endpoint's address\n", close=True)
        if not http_rules.origin_ok(origin, cfg):
            return Reply(403, b"Origin not allowed ([http].allowed_origins)\n", close=True)
        if path not in ROUTES:
            return Reply(404, b"no such path: /rpc, /ws and /openrpc.json\n", close=True)
        if method == "OPTIONS" and origin is not None:
            return Reply(204, headers=tuple(http_rules.preflight_headers(origin)))
        if method != ROUTES[path]:
            allow = (("allow", f"{ROUTES[path]}, OPTIONS"),)
            return Reply(405, b"method not allowed\n", headers=allow, close=True)
        if path == "/openrpc.json":
            return _openrpc()
        client = self._client(headers)
        if client is None:
            challenge = (("www-authenticate", 'Bearer realm="ecrd"'),)
            return Reply(401, b"a known bearer token is needed\n", headers=challenge, close=True)
        how = "token" if self.cert is None else "certificate"
        caller = Caller.of_http(client.name, how)
        if path == "/ws":
            await self._websocket(caller, headers)
            return None
        return await self._rpc(caller, headers)

    def _client(self, headers: dict[str, str]) -> HttpClient | None:
        token = http_rules.token_of(headers)
        if self.cert is not None:
            return http_rules.client_by_certificate(self.cert, token, self.endpoint.cfg)
        return http_rules.client_by_token(token, self.endpoint.cfg)

    async def _rpc(self, caller: Caller, headers: dict[str, str]) -> Reply:
        cap = self.endpoint.daemon.config.daemon.max_line_bytes
        length = headers.get("content-length", "")
        body = None if length.isdigit() and int(length) > cap else await self._body(cap)
        if body is None:
            return _rpc_error(413, jsonrpc.INVALID_REQUEST,
                              f"request body longer than {cap} bytes (max_line_bytes)",
                              "line_too_long", close=True)  # fmt: skip
        try:
            with self.endpoint.admitted(caller):
                reply = await self.endpoint.run_line(caller, body, self.raw)
        except Refused as exc:
            return self.endpoint.refuse(caller, exc)
        if not reply:
            return Reply(204)
        return Reply(200, reply)

    async def _websocket(self, caller: Caller, headers: dict[str, str]) -> None:
        from ecrd.api import websocket  # wsproto: loaded by the first GET /ws, not every start

        problem = websocket.handshake_problem(headers)
        if problem is not None:
            await self._send(Reply(400, f"{problem}\n".encode(), close=True), headers)
            return
        await self._body(0)  # a GET's (empty) end of message: h11 may switch now
        try:
            with self.endpoint.admitted(caller):
                await self._switch(headers)
                e = self.endpoint
                await websocket.serve(e.daemon, e.connections, e.refusals, caller, self.stream,
                                      self.h11.trailing_data[0])  # fmt: skip
        except Refused as exc:
            await self._send(self.endpoint.refuse(caller, exc), headers)

    async def _switch(self, headers: dict[str, str]) -> None:
        from ecrd.api import websocket

        response = h11.InformationalResponse(
            status_code=101, headers=websocket.accept_headers(headers)
        )
        await self.stream.send_all(self.h11.send(response) or b"")

    async def _send(self, reply: Reply, headers: dict[str, str]) -> None:
        origin = headers.get("origin")
        own = any(k == "access-control-allow-origin" for k, _ in reply.headers)
        cors = http_rules.cors_headers(origin, self.endpoint.cfg) if origin and not own else []
        out = [
            ("server", SERVER.decode()),
            ("content-length", str(len(reply.body))),
            ("cache-control", "no-store"),
            *cors,
            *reply.headers,
        ]
        if reply.body:
            kind = "application/json" if reply.body.startswith((b"{", b"[")) else "text/plain"
            out.append(("content-type", kind))
        if reply.close:
            out.append(("connection", "close"))
        data = self.h11.send(h11.Response(status_code=reply.status, headers=out)) or b""
        if reply.body:
            data += self.h11.send(h11.Data(data=reply.body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)


def _openrpc() -> Reply:
    """The document ``ecrd.api.openrpc.document()`` makes, where that module exists."""
    try:
        module = importlib.import_module("ecrd.api.openrpc")
    except ModuleNotFoundError:
        return Reply(404, b"no OpenRPC document in this version of ecrd\n")
    document = module.document()
    return Reply(200, json.dumps(document, separators=(",", ":")).encode())


async def _connection(
    endpoint: Endpoint, raw: trio.SocketStream, tls: ssl.SSLContext | None
) -> None:
    if endpoint.open >= MAX_CONNECTIONS:
        await trio.aclose_forcefully(raw)
        return
    endpoint.open += 1
    stream: trio.abc.Stream = raw
    cert = None
    try:
        if tls is not None:
            stream = trio.SSLStream(raw, tls, server_side=True)
            try:
                with trio.fail_after(HEAD_TIMEOUT_S):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                log.info("an HTTP client failed the TLS handshake (no valid certificate?)")
                return
            cert = stream.getpeercert()
        await HttpConnection(endpoint, stream, raw, cert).run()
    except Exception:
        log.exception("HTTP connection failed; closing it")  # never the whole endpoint
    finally:
        endpoint.open -= 1
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


@attrs.frozen
class Bound:
    """The endpoint's listening socket and TLS context, made before anything is served."""

    cfg: HttpConfig
    listener: trio.SocketListener
    tls: ssl.SSLContext | None

    @property
    def port(self) -> int:
        return int(self.listener.socket.getsockname()[1])


def bind(cfg: HttpConfig | None) -> Bound | None:
    """Listen on ``[http]``'s address (None without it). A certificate or key that cannot
    be loaded, or an address in use, is ``CannotStart`` (one line, exit status 2)."""
    if cfg is None:
        return None
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    try:
        tls = tls_server_context(cfg)
        raw = socket.create_server((cfg.host, cfg.port), family=family, backlog=128)
    except (OSError, ssl.SSLError) as exc:
        raise ownership.CannotStart(
            f"[http] cannot listen on {cfg.host}:{cfg.port}: {exc}"
        ) from exc
    return Bound(cfg, trio.SocketListener(trio.socket.from_stdlib_socket(raw)), tls)


async def serve(
    daemon: Service,
    connections: set[Connection],
    bound: Bound | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``[http]`` on ``bound`` (nothing without it) until cancelled."""
    if bound is None:
        task_status.started()
        return
    endpoint = Endpoint(daemon, connections, bound.port)
    scheme = "https" if bound.tls else "http"
    log.info("HTTP endpoint on %s://%s:%d", scheme, bound.cfg.host, bound.port)

    async def handle(raw: trio.SocketStream) -> None:
        await _connection(endpoint, raw, bound.tls)

    async with bound.listener, trio.open_nursery() as nursery:
        nursery.start_soon(endpoint.refusals.run)
        task_status.started()
        await trio.serve_listeners(handle, [bound.listener])
