"""One HTTP/1.1 POST to one address, on h11 and a trio stream: the LAN link's client.

A LAN terminal needs one POST to one address (protocol.md §1). A general client (httpx,
which the cloud link keeps for its proxies) spent about 1.7 ms of the loop's CPU per
request on pools, URL handling and hooks; this module does the one thing, and knows
exactly how far each request got without asking a trace hook.

Invariants:

* ``NotDelivered`` only while the request cannot have left: on a *new* connection whose
  TCP connect (refused, no route, name not found, connect timeout) or TLS handshake
  failed. From the first byte written on, a failure is ``MaybeDelivered`` (the connection
  broke, or the peer answered something that is not HTTP) or ``ReplyTimeout`` (the
  deadline passed); a false "never delivered" could charge a card twice (design.md §3).
* ``timeout`` bounds the whole exchange: connect, send, wait, read.
* A reply body is at most ``MAX_REPLY_BYTES`` (``BadReply`` beyond that).
* Keep-alive is opt-in (``keep_alive``): without it every request says
  ``Connection: close`` on a connection of its own, so "refused" always means "never
  sent". With it, one idle connection is kept and reused only if the peer left it open
  and left nothing unread (h11 ends the cycle with no trailing data, TLS holds no bytes,
  nothing is readable on it); a reused connection that breaks
  once the request went out is ``MaybeDelivered`` like any other: the terminal may have
  closed it just as the request arrived, or may have read it.
* Nothing retries, redirects or reads proxy settings.
"""

from __future__ import annotations

import functools
import select
import socket
import ssl
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from ecrd import __version__
from ecrd.transport.base import BadReply, MaybeDelivered, NotDelivered, ReplyTimeout

if TYPE_CHECKING:
    import h11

# h11 is imported where it is used (a local ``import h11``: a dictionary lookup once it is
# loaded), so that starting ecrd does not wait for it; the daemon loads it on a thread
# once it is ready (``daemon.warm_up``).

# A terminal's reply is a few KiB; anything this large is not a terminal talking.
MAX_REPLY_BYTES: Final = 1 << 20
MAX_HEAD_BYTES: Final = 64 * 1024
READ_CHUNK: Final = 65536
USER_AGENT: Final = f"ecrd/{__version__}".encode()


@attrs.frozen
class HttpReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@functools.lru_cache(maxsize=16)
def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """One TLS context per CA file, shared by every link: building one loads the whole CA
    store (~36 ms and ~0.7 MB each), which 100 terminals must not pay 100 times.
    ``tls_context.cache_clear()`` re-reads the files (config reload)."""
    if not verify:  # the probe only: does the terminal speak https at all?
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file is not None:
        # A self-signed Wonder root (protocol.md §1): trust exactly this file.
        return ssl.create_default_context(cafile=ca_file)
    import certifi  # the CA bundle httpx trusts (the cloud link's client): the same roots

    return ssl.create_default_context(cafile=certifi.where())


def host_header(host: str, port: int) -> bytes:
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("idna")


class _Connection:
    """One TCP (or TLS) connection and its h11 state."""

    def __init__(self, stream: trio.abc.Stream, address: tuple[str, int]) -> None:
        import h11

        self.stream = stream
        self.address = address
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)

    def reusable_for(self, address: tuple[str, int]) -> bool:
        """Same peer, a finished cycle, and nothing unread anywhere: a peer that closed an
        idle connection has left an end of stream on it, and a peer that sent more than
        one response has left the rest in h11's buffer or in the socket. The next exchange
        would read that as its own reply (a charged sale recorded as answered by another
        reply), so such a connection is closed, never reused."""
        import h11

        if address != self.address or self.h11.our_state is not h11.IDLE:
            return False
        unread, closed = self.h11.trailing_data
        if unread or closed:
            return False
        if isinstance(self.stream, trio.SSLStream) and _tls_holds_bytes(self.stream):
            return False
        tcp = self._tcp()
        if tcp is None:
            return False
        poller = select.poll()  # not select(): a descriptor may be over FD_SETSIZE
        poller.register(tcp.socket.fileno(), select.POLLIN)
        return not poller.poll(0)

    def close(self) -> None:
        """At once, without a TLS goodbye (nothing is waiting for one), so a deadline
        can never leave the socket open."""
        tcp = self._tcp()
        if tcp is not None:
            tcp.socket.close()

    def _tcp(self) -> trio.SocketStream | None:
        """The TCP stream under TLS, if any."""
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        return stream if isinstance(stream, trio.SocketStream) else None


def _tls_holds_bytes(stream: trio.SSLStream[Any]) -> bool:
    """Whether TLS already read bytes off the socket that nobody has taken yet (decrypted,
    or a record still to decrypt): poll() cannot see them. trio keeps them in its
    ``SSLObject`` and incoming ``MemoryBIO``; if those ever move, say "holds bytes"."""
    ssl_object = getattr(stream, "_ssl_object", None)
    incoming = getattr(stream, "_incoming", None)
    if not isinstance(ssl_object, ssl.SSLObject) or not isinstance(incoming, ssl.MemoryBIO):
        return True
    return bool(ssl_object.pending() or incoming.pending)


class HttpClient:
    """POSTs to one terminal. Exchanges may overlap (a status query beside a probe): each
    takes a connection of its own, and at most one idle connection is kept."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        keep_alive: bool = False,
        connect_timeout: float = 5.0,
    ) -> None:
        self._tls = tls
        self._keep_alive = keep_alive
        self._connect_timeout = connect_timeout
        self._idle: _Connection | None = None

    async def post(
        self,
        host: str,
        port: int,
        path: str,
        body: bytes,
        *,
        timeout: float,
    ) -> HttpReply:
        """POST ``body`` once and return the reply, whatever its status (see the module's
        invariants for what is raised)."""
        connecting = True
        with trio.move_on_after(timeout):
            conn = await self._connection((host, port), min(self._connect_timeout, timeout))
            connecting = False
            try:
                reply = await self._exchange(conn, host, port, path, body)
            except BaseException:
                conn.close()
                raise
            self._done_with(conn)
            return reply
        if connecting:
            raise NotDelivered(f"could not connect to {host}:{port} within {timeout:g} s")
        raise ReplyTimeout(f"no reply from {host}:{port} within {timeout:g} s")

    async def _connection(self, address: tuple[str, int], connect_timeout: float) -> _Connection:
        idle, self._idle = self._idle, None
        if idle is not None:
            if idle.reusable_for(address):
                return idle
            idle.close()
        host, port = address
        with trio.move_on_after(connect_timeout):
            try:
                tcp = await _open_tcp(host, port)
            except OSError as exc:
                raise NotDelivered(f"cannot connect to {host}:{port}: {exc}") from exc
            stream: trio.abc.Stream = tcp
            if self._tls is not None:
                stream = await _handshake(tcp, self._tls, host)
            return _Connection(stream, address)
        raise NotDelivered(f"cannot connect to {host}:{port}: no answer in {connect_timeout:g} s")

    async def _exchange(
        self,
        conn: _Connection,
        host: str,
        port: int,
        path: str,
        body: bytes,
    ) -> HttpReply:
        import h11

        head = [
            (b"Host", host_header(host, port)),
            (b"User-Agent", USER_AGENT),
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(body)).encode()),
        ]
        if not self._keep_alive:
            head.append((b"Connection", b"close"))
        request = h11.Request(method=b"POST", target=path.encode("ascii"), headers=head)
        data = conn.h11.send(request) or b""
        data += conn.h11.send(h11.Data(data=body)) or b""
        data += conn.h11.send(h11.EndOfMessage()) or b""
        try:
            await conn.stream.send_all(data)
            return await _read_reply(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise MaybeDelivered(
                f"exchange with {host}:{port} broke after the request may have been sent: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except h11.ProtocolError as exc:
            raise MaybeDelivered(
                f"{host}:{port} answered something that is not HTTP: {exc}"
            ) from exc

    def _done_with(self, conn: _Connection) -> None:
        import h11

        if self._keep_alive and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            if self._idle is None:  # another exchange may have parked one meanwhile
                self._idle = conn
                return
        conn.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None:
            idle.close()
        await trio.lowlevel.checkpoint()


async def _open_tcp(host: str, port: int) -> trio.SocketStream:
    """A TCP connection to the first of ``host``'s addresses that takes it, tried in turn.
    (``trio.open_tcp_stream`` races addresses in tasks of its own, "happy eyeballs": a
    terminal on the LAN has one address, and that machinery cost ~0.3 ms per request.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    addresses: list[tuple[socket.AddressFamily, Any]] = [(family, (host, port))]
    try:
        socket.inet_pton(family, host)
    except OSError:  # a name, not an address literal: resolve it (in a thread)
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [(family, addr) for family, _, _, _, addr in infos]
    failure: OSError | None = None
    for family, addr in addresses:
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            await sock.connect(addr)
        except OSError as exc:
            sock.close()
            failure = failure or exc
            continue
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)
    raise failure or OSError(f"{host} has no address")


async def _handshake(
    tcp: trio.SocketStream, context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.SocketStream]:
    tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        tcp.socket.close()
        raise NotDelivered(f"TLS handshake with {host} failed: {exc.__cause__ or exc}") from exc
    except BaseException:
        tcp.socket.close()
        raise
    return tls


async def _read_reply(conn: _Connection) -> HttpReply:
    """The response to the request just sent, read to its end."""
    import h11

    response: h11.Response | None = None
    body = bytearray()
    while True:
        event = conn.h11.next_event()
        if event is h11.NEED_DATA:
            conn.h11.receive_data(bytes(await conn.stream.receive_some(READ_CHUNK)))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_REPLY_BYTES:
                status = response.status_code if response else 0
                raise BadReply(f"reply exceeds {MAX_REPLY_BYTES} bytes", code=status)
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None  # h11 yields the response head first
            headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers)
            return HttpReply(response.status_code, bytes(body), headers)
        elif isinstance(event, h11.ConnectionClosed):
            raise trio.BrokenResourceError("the peer closed the connection without a reply")
        # h11.InformationalResponse (100 Continue): the real answer follows.
