"""The LAN link: one HTTP POST per exchange to the terminal (protocol.md §1).

``POST http(s)://<host>:<port><path>`` with the envelope as the JSON body; the reply body is
the terminal's envelope, bare or wrapped as the cloud wraps it (``{code, message, data}``,
``wrapper.py``: the shapes cannot be mistaken for each other, so no setting chooses). A
wrapper's ``code`` and ``message`` go verbatim to the trace and, when ``data`` holds no
envelope, into the ``BadReply``. The HTTP itself is ``http11.HttpClient``'s, whose invariants say
which failure is ``NotDelivered`` and which ``MaybeDelivered``.

Invariants:

* A fresh TCP connection per exchange unless the terminal's config says ``keep_alive``:
  then "connection refused" is a clean never-delivered signal, and a stale keep-alive
  connection can never turn a good request into an unknown outcome (docs/internals.md).
* The ``timeout`` of an exchange bounds the whole exchange (connect, send, wait, read).
* Nothing here retries, and no proxy is ever used: a LAN terminal is reached directly.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio

from ecrd.protocol.envelope import Envelope
from ecrd.transport.base import (
    BadReply,
    LinkError,
    LinkState,
    NotDelivered,
    OneReply,
    Replies,
    Tap,
)
from ecrd.transport.http11 import HttpClient, HttpReply, tls_context
from ecrd.transport.wrapper import Wrapped, bare_or_wrapped, json_object

DEFAULT_PORT: Final = 8443
DEFAULT_PATH: Final = "/v2/wonder/payment/ecr"

log = logging.getLogger(__name__)


def envelope_reply(reply: HttpReply, url: str) -> tuple[Envelope | BadReply, Wrapped | None]:
    """The envelope in a 2xx reply body, bare or wrapped, else the ``BadReply`` to raise
    (with the HTTP status, or the wrapper's code and message); and the wrapper, if any."""
    obj = json_object(reply.body)
    found = bare_or_wrapped(obj) if obj is not None else None
    wrapped = found if isinstance(found, Wrapped) else None
    if not 200 <= reply.status < 300:
        return BadReply(f"{url} answered HTTP {reply.status}", code=reply.status), wrapped
    if isinstance(found, Envelope):
        return found, None
    if wrapped is None:
        why = "not a JSON object" if obj is None else "neither an envelope nor a wrapped one"
        return BadReply(f"{url} answered with no envelope: {why}", code=reply.status), None
    if wrapped.envelope is None:
        return BadReply(
            f"{url} answered without a terminal reply: code {wrapped.code!r}, "
            f"message {wrapped.message!r}",
            code=wrapped.code,
            detail=wrapped.message,
        ), wrapped
    return wrapped.envelope, wrapped


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
        keep_alive: bool = False,
    ) -> None:
        """``verify=False`` (the probe only: does the terminal speak https at all?) skips
        the certificate check; ``keep_alive`` reuses one connection (http11.py says what
        that costs in certainty)."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', not {path!r}")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be greater than zero")
        self._scheme = "https" if tls else "http"
        self._path = path
        self._client = HttpClient(
            tls=tls_context(ca_file if verify else None, verify) if tls else None,
            keep_alive=keep_alive,
            connect_timeout=connect_timeout,
        )
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
        url = f"{self._scheme}://{'[' + host + ']' if ':' in host else host}:{port}{self._path}"
        if url != self._url and self._url:
            log.info("LAN terminal moved from %s to %s", self._url, url)
            self._state = "unknown"
        self._host, self._port, self._url = host, port, url

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Nothing runs in the background: one HTTP request per exchange."""
        task_status.started()

    @asynccontextmanager
    async def exchange(self, request: Envelope, *, timeout: float) -> AsyncIterator[Replies]:
        """One POST; its response is the only reply there will be."""
        yield OneReply(await self._post(request, timeout=timeout))

    async def _post(self, request: Envelope, *, timeout: float) -> Envelope:
        if self._closed:
            await trio.lowlevel.checkpoint()
            raise NotDelivered(f"LAN link to {self._url} is closed")
        url, host, port = self._url, self._host, self._port
        try:
            reply = await self._client.post(
                host, port, self._path, request.to_bytes(), timeout=timeout
            )
            envelope, wrapped = envelope_reply(reply, url)
            if self.tap is not None:
                wire = {"http_status": reply.status, "http_headers": dict(reply.headers)}
                self.tap(wire | ({"wrapper": wrapped.said()} if wrapped else {}))
            if isinstance(envelope, BadReply):
                raise envelope
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
