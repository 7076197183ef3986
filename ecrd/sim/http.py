"""A tiny HTTP/1.1 server (h11 over Trio) shared by the LAN, cloud and control endpoints.

Shaped like h11's ``examples/trio-server.py``: one task per connection, keep-alive, and
all timeouts and error policy here at the edge, none inside h11.

Invariants:

* A handler sees a whole request (headers and a body of at most ``MAX_BODY`` bytes).
* While a handler runs, the connection is watched: if the client closes it (or resets
  it), the handler is cancelled. This is how a held request ("never answer") ends when
  the client gives up, and how the terminal learns not to charge for it.
* ``HttpResponse.drop`` closes the connection without a response; ``bytes_per_s`` writes
  the response slowly. Both are simulator faults, never used for ordinary errors.
* A bug in a handler is logged and answered 500; it never takes the server down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs
import h11
import trio

from ecrd.sim.pacing import write_paced

log = logging.getLogger("ecrd.sim.http")

MAX_BODY: Final = 1 << 20
IDLE_TIMEOUT: Final = 60.0  # seconds a keep-alive connection may sit between requests
READ_TIMEOUT: Final = 30.0  # seconds to receive the rest of a request once it started
SERVER: Final = b"ecrd-sim"


@attrs.frozen
class HttpRequest:
    method: str
    path: str  # the target without its query string
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        """The body as JSON (``None`` for an empty body); raises ValueError otherwise."""
        if not self.body.strip():
            return None
        return json.loads(self.body.decode("utf-8"))


@attrs.frozen
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    bytes_per_s: float | None = None
    drop: bool = False
    close: bool = False  # say "Connection: close" and close after it (no keep-alive)


def json_response(status: int, obj: object, **kwargs: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(obj).encode("utf-8"), **kwargs)


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    *,
    name: str,
    tls: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``host:port`` (0: any free port); reports the bound port.
    With ``tls``, https: a client that does not complete the handshake is dropped."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("%s listening on %s://%s:%d", name, "https" if tls else "http", host, bound)
    task_status.started(bound)

    async def connection(raw: trio.SocketStream) -> None:
        stream: trio.abc.Stream = raw
        if tls is not None:
            stream = trio.SSLStream(raw, tls, server_side=True)
            try:
                with trio.fail_after(READ_TIMEOUT):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                log.info("%s: a client failed the TLS handshake", name)
                await trio.aclose_forcefully(raw)
                return
        await _Connection(stream, handler, name).run()

    await trio.serve_listeners(connection, listeners)


class _Connection:
    def __init__(self, stream: trio.abc.Stream, handler: Handler, name: str) -> None:
        self.stream = stream
        self.handler = handler
        self.name = name
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)

    async def run(self) -> None:
        try:
            while True:
                request = await self._read_request()
                if request is None:
                    return
                response = await self._respond_watching(request)
                if response is None or response.drop:
                    return  # the peer went away, or the fault says: close, say nothing
                await self._send(response)
                if response.close or self.conn.our_state is h11.MUST_CLOSE:
                    return
                self.conn.start_next_cycle()
        except _BadRequest as exc:
            await self._send_error(exc.status, str(exc))
        except h11.RemoteProtocolError as exc:
            await self._send_error(exc.error_status_hint, str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception:
            log.exception("%s: handler failed", self.name)
            await self._send_error(500, "internal error")
        finally:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _receive(self) -> None:
        data = bytes(await self.stream.receive_some(65536))
        self.conn.receive_data(data)

    async def _read_request(self) -> HttpRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        with trio.fail_after(IDLE_TIMEOUT):
            event = await self._next_event()
        while True:
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _BadRequest(413, "request body too large")
            elif isinstance(event, h11.EndOfMessage):
                break
            with trio.fail_after(READ_TIMEOUT):
                event = await self._next_event()
        assert head is not None  # h11 yields Request before Data/EndOfMessage
        target = head.target.decode("latin-1")
        path, _, query = target.partition("?")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
        return HttpRequest(head.method.decode("ascii"), path, query, headers, bytes(body))

    async def _next_event(self) -> h11.Event:
        event = self.conn.next_event()
        while event is h11.NEED_DATA:
            await self._receive()
            event = self.conn.next_event()
        # PAUSED cannot happen here: every cycle is finished before the next read.
        assert isinstance(event, h11.Event)
        return event

    async def _respond_watching(self, request: HttpRequest) -> HttpResponse | None:
        response: HttpResponse | None = None
        async with trio.open_nursery() as nursery:

            async def watch_peer() -> None:
                # Anything the client sends now is pipelined and left to h11; an end of
                # stream (or a reset) means nobody is waiting for our answer any more.
                try:
                    while True:
                        data = bytes(await self.stream.receive_some(65536))
                        self.conn.receive_data(data)
                        if not data:
                            break
                except (trio.BrokenResourceError, h11.RemoteProtocolError):
                    pass
                log.info("%s: client closed the connection before the reply", self.name)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_peer)
            response = await self.handler(request)
            nursery.cancel_scope.cancel()
        return response

    async def _send(self, response: HttpResponse) -> None:
        headers = [
            (b"Content-Type", response.content_type.encode()),
            (b"Content-Length", str(len(response.body)).encode()),
            (b"Server", SERVER),
        ]
        if response.close:
            headers.append((b"Connection", b"close"))
        events = (
            h11.Response(status_code=response.status, headers=headers),
            h11.Data(data=response.body),
            h11.EndOfMessage(),
        )
        data = b"".join(self.conn.send(event) or b"" for event in events)
        await write_paced(self.stream.send_all, data, response.bytes_per_s)

    async def _send_error(self, status: int, message: str) -> None:
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = json.dumps({"error": message}).encode()
        with contextlib.suppress(
            h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            await self._send(HttpResponse(status, body))


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
