"""The LAN link: one HTTP POST per exchange to the terminal (protocol.md §1).

``POST http(s)://<host>:<port><path>`` with the envelope as the JSON body; the reply body is
the terminal's envelope. The functions at the top (``http_client``, ``post_once``) are shared
with the cloud link, which classifies failures the same way.

Invariants:

* A fresh TCP connection per exchange, never a pooled one: the client keeps no idle
  connections and every request says ``Connection: close``. So "connection refused" is a
  clean never-delivered signal, and a stale keep-alive connection can never turn a good
  request into an unknown outcome (docs/internals.md).
* ``NotDelivered`` only when httpx says the connection was never made (refused, no route,
  DNS, TLS handshake, connect timeout) or the overall deadline passed while httpcore was
  still connecting. Everything after that is ``MaybeDelivered``; when in doubt it is
  ``MaybeDelivered`` too, because a false "never delivered" could charge a card twice
  (design.md §3 rule 3).
* The ``timeout`` of an exchange bounds the whole exchange (connect, send, wait, read).
* Nothing here retries, and httpx never sees proxy settings from the environment: a LAN
  terminal is always reached directly.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Mapping
from typing import Any, Final

import attrs
import httpx
import trio

from ecrd.protocol.envelope import Envelope, MalformedEnvelope, StaleResponse
from ecrd.transport.base import (
    Accept,
    BadReply,
    LinkError,
    LinkState,
    MaybeDelivered,
    NotDelivered,
    ReplyTimeout,
    Tap,
)

DEFAULT_PORT: Final = 8443
DEFAULT_PATH: Final = "/v2/wonder/payment/ecr"
# A terminal's reply is a few KiB; anything this large is not a terminal talking.
MAX_REPLY_BYTES: Final = 1 << 20

log = logging.getLogger(__name__)


@attrs.frozen
class HttpReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@functools.lru_cache(maxsize=16)
def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext | bool:
    """One TLS context per CA file, shared by every link: building one loads the whole CA
    store (~36 ms and ~0.7 MB each), which 100 terminals must not pay 100 times.
    ``tls_context.cache_clear()`` re-reads the files (config reload)."""
    if ca_file is not None:
        # A self-signed Wonder root (protocol.md §1): trust exactly this file.
        return ssl.create_default_context(cafile=ca_file)
    return httpx.create_ssl_context() if verify else False


def http_client(
    *, ca_file: str | None = None, verify: bool = True, proxy: str | None = None
) -> httpx.AsyncClient:
    """A client that never keeps a connection alive and ignores proxy variables."""
    tls = tls_context(ca_file, verify)
    return httpx.AsyncClient(
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"Connection": "close"},
        verify=tls,
        proxy=proxy,
        trust_env=False,
        follow_redirects=False,
    )


class _Progress:
    """How far one request got, from httpcore's trace hook.

    ``connecting`` is set only by connection events seen before any HTTP event, so a
    renamed or missing event leaves us at ``idle``/``sent`` — both read as maybe delivered.
    """

    def __init__(self) -> None:
        self.phase = "idle"

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event.startswith("connection."):
            if self.phase == "idle":
                self.phase = "connecting"
        else:
            self.phase = "sent"


async def post_once(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    timeout: float,
    connect_timeout: float,
    headers: Mapping[str, str] | None = None,
) -> HttpReply:
    """POST ``body`` once and return the reply, whatever its status.

    Raises ``NotDelivered`` or ``MaybeDelivered``/``ReplyTimeout`` as the module docstring
    says; never an httpx error.
    """
    progress = _Progress()
    request = client.build_request(
        "POST",
        url,
        content=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
        extensions={"trace": progress.trace},
    )
    with trio.move_on_after(timeout):
        try:
            return await _send(client, request)
        except httpx.HTTPError as exc:
            raise _classify(exc, url) from exc
    if progress.phase == "connecting":
        raise NotDelivered(f"could not connect to {url} within {timeout:g} s")
    raise ReplyTimeout(f"no reply from {url} within {timeout:g} s")


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> HttpReply:
    response = await client.send(request, stream=True)
    try:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_REPLY_BYTES:
                raise BadReply(
                    f"reply from {request.url} exceeds {MAX_REPLY_BYTES} bytes",
                    code=response.status_code,
                )
    finally:
        # Shielded: a deadline landing here must not throw away a reply already read.
        with trio.CancelScope(shield=True):
            await response.aclose()
    return HttpReply(response.status_code, bytes(body), tuple(response.headers.items()))


def _classify(exc: httpx.HTTPError, url: str) -> LinkError:
    # ConnectTimeout is a TimeoutException: test the never-delivered cases first.
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return NotDelivered(f"cannot connect to {url}: {str(exc) or type(exc).__name__}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return NotDelivered(f"cannot use {url}: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return ReplyTimeout(f"{url} stopped answering: {type(exc).__name__}")
    return MaybeDelivered(
        f"exchange with {url} broke after the request may have been sent: "
        f"{type(exc).__name__}: {exc}"
    )


def envelope_reply(reply: HttpReply, url: str) -> Envelope:
    """The envelope in a 2xx reply body, else ``BadReply`` carrying the HTTP status."""
    if not 200 <= reply.status < 300:
        raise BadReply(f"{url} answered HTTP {reply.status}", code=reply.status)
    try:
        return Envelope.from_bytes(reply.body)
    except MalformedEnvelope as exc:
        raise BadReply(f"{url} answered with no envelope: {exc}", code=reply.status) from exc


class LanLink:
    """A terminal reached over HTTP on the local network (kind ``lan``)."""

    kind = "lan"

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        path: str = DEFAULT_PATH,
        tls: bool = False,
        ca_file: str | None = None,
        connect_timeout: float = 5.0,
        *,
        verify: bool = True,
    ) -> None:
        """``verify=False`` (the probe only: does the terminal speak https at all?) skips
        the certificate check."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', not {path!r}")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be greater than zero")
        self._scheme = "https" if tls else "http"
        self._path = path
        self._connect_timeout = connect_timeout
        self._client = http_client(ca_file=ca_file if verify else None, verify=verify)
        self._state: LinkState = "unknown"
        self._closed = False
        self.tap: Tap | None = None  # told each reply's status and headers (a trace)
        self._host = host
        self._port = port
        self._url = ""
        self.set_address(host, port)

    def __repr__(self) -> str:
        return f"<LanLink {self._url} {self._state}>"

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def url(self) -> str:
        return self._url

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return self._host, self._port

    def set_address(self, host: str, port: int) -> None:
        """Point the link at a new address (cloud terminal info reports the current IP).

        An exchange already running keeps the address it started with.
        """
        if not host:
            raise ValueError("host must not be empty")
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535, not {port!r}")
        url = str(httpx.URL(scheme=self._scheme, host=host, port=port, path=self._path))
        if url != self._url and self._url:
            log.info("LAN terminal moved from %s to %s", self._url, url)
            self._state = "unknown"
        self._host, self._port, self._url = host, port, url

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Nothing runs in the background: one HTTP request per exchange."""
        task_status.started()

    async def exchange(
        self, request: Envelope, *, timeout: float, accept: Accept | None = None
    ) -> Envelope:
        """One POST; its response is the only reply there will be (``StaleResponse`` when
        ``accept`` refuses it)."""
        reply = await self._post(request, timeout=timeout)
        if accept is not None and not await accept(reply):
            raise StaleResponse("the terminal's reply answers another request")
        return reply

    async def _post(self, request: Envelope, *, timeout: float) -> Envelope:
        if self._closed:
            await trio.lowlevel.checkpoint()
            raise NotDelivered(f"LAN link to {self._url} is closed")
        url = self._url
        try:
            reply = await post_once(
                self._client,
                url,
                request.to_bytes(),
                timeout=timeout,
                connect_timeout=self._connect_timeout,
            )
            if self.tap is not None:
                self.tap({"http_status": reply.status, "http_headers": dict(reply.headers)})
            envelope = envelope_reply(reply, url)
        except LinkError as exc:
            self._set_state("down", exc)
            raise
        self._set_state("up")
        return envelope

    def _set_state(self, state: LinkState, why: LinkError | None = None) -> None:
        # Log transitions only, so a dead terminal does not flood the journal.
        if state == "down" and self._state != "down":
            log.warning("LAN link down: %s", why)
        elif state == "up" and self._state == "down":
            log.info("LAN link to %s up again", self._url)
        self._state = state

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()
