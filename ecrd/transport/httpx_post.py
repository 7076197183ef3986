"""One HTTPS POST through httpx: the cloud link's client (it may need a proxy; the LAN
link has its own, ``http11.py``). Imported only when a cloud link is built, so a daemon
with LAN and serial terminals never pays for importing httpx.

Invariants (the same as ``http11.py``'s, told by httpcore's trace hook instead):

* A fresh TCP connection per call, never a pooled one: the client keeps no idle
  connections and every request says ``Connection: close``.
* ``NotDelivered`` only when httpx says the connection was never made (refused, no route,
  DNS, TLS handshake, connect timeout) or the overall deadline passed while httpcore was
  still connecting. Everything after that is ``MaybeDelivered``; when in doubt it is
  ``MaybeDelivered`` too, because a false "never delivered" could charge a card twice
  (design.md §3 rule 3).
* The ``timeout`` of a call bounds the whole call (connect, send, wait, read).
* httpx never sees proxy settings from the environment; only the configured proxy is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import trio

from ecrd.transport.base import BadReply, LinkError, MaybeDelivered, NotDelivered, ReplyTimeout
from ecrd.transport.http11 import MAX_REPLY_BYTES, HttpReply, tls_context


def http_client(*, ca_file: str | None = None, proxy: str | None = None) -> httpx.AsyncClient:
    """A client that never keeps a connection alive and ignores proxy variables."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"Connection": "close"},
        verify=tls_context(ca_file, True),
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
