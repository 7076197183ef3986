"""The cloud link: Wonder's gateway relays the envelope to the terminal (protocol.md §5).

Every call is one HTTPS POST with the headers ``x-p-business-id``, ``x-device-sn`` and a
fresh ``x-request-id``; the reply wraps the terminal's envelope::

    {"code": <number>, "message": <string>, "data": {"version", "action", "data"}}

Invariants:

* A reply that carries an envelope is the terminal's answer, whatever ``code`` says: which
  code means success is not documented, and the envelope decides (protocol.md §5). Any
  other reply is ``BadReply`` with the gateway's ``code`` and ``message`` verbatim.
* Failures are classified exactly as on the LAN (``httpx_post.post_once``, httpx for its
  proxy support): only a connection that was never made is ``NotDelivered``; one fresh
  connection per call, no keep-alive. httpx is imported when the first cloud link is
  built, not when ecrd starts.
* The v2 send-command URL is not documented, so it has no default. Using the link without
  it raises ``CloudNotConfigured`` (a ``NotDelivered``: nothing left the box) telling the
  admin which key to set.
* ``x-device-sn`` goes on every call whose terminal SN is known: commands need it (they
  are refused without it), and terminal-info carries it too — the SN from the QR code's
  ``deviceId``, the config's ``device_sn`` or the pairing. The one call that can go without
  it is a first terminal-info from a bare 6-character code on a terminal ecrd has never
  seen: its SN is what that call asks for (the gateway then finds the terminal by the code).
* The business id comes from ``[cloud].business_id``, else from the pairing (the QR's
  ``businessId``); with neither, nothing is sent (``CloudNotConfigured``).
* Nothing here picks a production host on its own: URLs come from ``cloud_urls``, which
  the config layer calls, and the tests pass loopback URLs only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

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
from ecrd.transport.http11 import HttpReply
from ecrd.transport.wrapper import Wrapped

if TYPE_CHECKING:
    import httpx

PRODUCTION_BASE_URL: Final = "https://gateway.wonder.today"
STAGING_BASE_URL: Final = "https://gateway-stg.wonder.today"
BASE_URLS: Final = {"production": PRODUCTION_BASE_URL, "staging": STAGING_BASE_URL}
TERMINAL_INFO_PATH: Final = "/svc/payment/public/api/v1/openapi/terminal/info"

log = logging.getLogger(__name__)


class CloudNotConfigured(NotDelivered):
    """The cloud link lacks a setting it needs; nothing was sent."""

    reason = "cloud_not_configured"


class CloudRefused(NotDelivered):
    """The gateway refused the call with an HTTP status the admin declared to mean "not
    relayed to the terminal" (``[cloud].refusal_statuses``, [ASSUMED], empty by default)."""

    reason = "cloud_refused"


def cloud_urls(
    environment: str = "production",
    base_url: str | None = None,
    command_url: str | None = None,
    info_url: str | None = None,
) -> tuple[str, str | None]:
    """``(info_url, command_url)`` from the ``[cloud]`` keys (design.md §5).

    An explicit ``info_url`` wins over ``base_url``, which wins over ``environment``.
    ``command_url`` has no default (protocol.md §5) and is passed through.
    """
    if environment not in BASE_URLS:
        raise ValueError(
            f"unknown cloud environment {environment!r}: expected "
            + " or ".join(repr(e) for e in BASE_URLS)
        )
    if info_url is None:
        base = base_url if base_url is not None else BASE_URLS[environment]
        info_url = base.rstrip("/") + TERMINAL_INFO_PATH
    return info_url, command_url


def unwrap(
    reply: HttpReply,
    url: str,
    refusal_statuses: frozenset[int] = frozenset(),
    wrapped: Wrapped | None = None,
) -> Envelope:
    """The terminal's envelope inside a gateway reply (``wrapped``: its body, already read
    by ``Wrapped.from_body``), else ``BadReply`` (code, message), or ``CloudRefused`` for a
    status in ``refusal_statuses``."""
    wrapped = wrapped or Wrapped.from_body(reply.body)
    if wrapped is not None and wrapped.envelope is not None:
        return wrapped.envelope
    if reply.status in refusal_statuses:
        raise CloudRefused(
            f"cloud gateway refused the call with HTTP {reply.status}: "
            f"{reply.body[:200].decode('utf-8', 'replace')}"
        )
    if wrapped is None:
        raise BadReply(f"{url} answered HTTP {reply.status}, not a JSON object", code=reply.status)
    code = reply.status if wrapped.code is None else wrapped.code
    raise BadReply(
        f"cloud gateway answered without a terminal reply: code {code!r}, "
        f"message {wrapped.message!r}",
        code=code,
        detail=wrapped.message,
    )


class CloudLink:
    """A terminal reached through Wonder's cloud relay (kind ``cloud``)."""

    kind = "cloud"

    def __init__(
        self,
        command_url: str | None,
        info_url: str,
        business_id: str | None,
        device_sn: str | None,
        connect_timeout: float = 10.0,
        ca_file: str | None = None,
        *,
        proxy: str | None = None,
        refusal_statuses: frozenset[int] = frozenset(),
    ) -> None:
        for name, url in (("command_url", command_url), ("info_url", info_url)):
            if url is not None and urlsplit(url).scheme.lower() not in ("http", "https"):
                raise ValueError(f"{name} must be an http(s) URL, not {url!r}")
        self.command_url = command_url
        self.info_url = info_url
        self.business_id = business_id
        self.device_sn = device_sn
        self._connect_timeout = connect_timeout
        self._refusal_statuses = refusal_statuses
        from ecrd.transport import httpx_post  # httpx: only once a cloud link exists

        self._post_once = httpx_post.post_once
        self._client: httpx.AsyncClient = httpx_post.http_client(ca_file=ca_file, proxy=proxy)
        self._state: LinkState = "unknown"
        self._closed = False
        self.tap: Tap | None = None  # told each call's headers and reply status (a trace)

    def __repr__(self) -> str:
        return f"<CloudLink {self.command_url} {self.device_sn} {self._state}>"

    @property
    def state(self) -> LinkState:
        return self._state

    def set_device_sn(self, device_sn: str | None) -> None:
        """The terminal's SN, learned at pairing; the gateway routes commands by it."""
        self.device_sn = device_sn

    def set_business_id(self, business_id: str | None) -> None:
        """The business id the pairing learned, where ``[cloud].business_id`` is unset."""
        self.business_id = business_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Nothing runs in the background: one HTTP request per exchange."""
        task_status.started()

    @asynccontextmanager
    async def exchange(self, request: Envelope, *, timeout: float) -> AsyncIterator[Replies]:
        """One relayed call; its reply is the only one there will be."""
        yield OneReply(await self._command(request, timeout=timeout))

    async def _command(self, request: Envelope, *, timeout: float) -> Envelope:
        await trio.lowlevel.checkpoint()  # even when refusing at once
        if self.command_url is None:
            raise CloudNotConfigured(
                "the cloud link has no send-command URL: set command_url in the [cloud] table "
                "of the config (Wonder does not publish it, protocol.md §5)"
            )
        if self.device_sn is None:
            raise CloudNotConfigured(
                "the cloud link does not know the terminal's serial number: pair the terminal "
                "or set device_sn in its [[terminal]] table"
            )
        return await self._post(self.command_url, request, timeout=timeout)

    async def terminal_info(
        self,
        envelope: Envelope,
        *,
        timeout: float,
        device_sn: str | None = None,
        business_id: str | None = None,
    ) -> Envelope:
        """Post a ConnectionInfo envelope to the terminal info endpoint; return the
        DeviceInfo envelope (SN, current IP and port; protocol.md §5). ``device_sn`` and
        ``business_id`` override the link's own (pairing: the QR code's)."""
        return await self._post(
            self.info_url, envelope, timeout=timeout, device_sn=device_sn, business_id=business_id
        )

    async def _post(
        self,
        url: str,
        envelope: Envelope,
        *,
        timeout: float,
        device_sn: str | None = None,
        business_id: str | None = None,
    ) -> Envelope:
        if self._closed:
            raise NotDelivered("the cloud link is closed")
        business_id = business_id or self.business_id
        if not business_id:
            raise CloudNotConfigured(
                "no business id for the cloud: set business_id in the [cloud] table, or pair "
                "with the terminal's QR code (it carries the business id)"
            )
        device_sn = device_sn or self.device_sn
        request_id = str(uuid.uuid4())
        headers = {"x-p-business-id": business_id, "x-request-id": request_id}
        if device_sn is not None:
            headers["x-device-sn"] = device_sn
        log.debug("cloud %s %s (x-request-id %s)", envelope.action, url, request_id)
        try:
            reply = await self._post_once(
                self._client,
                url,
                envelope.to_bytes(),
                timeout=timeout,
                connect_timeout=self._connect_timeout,
                headers=headers,
            )
            wrapped = Wrapped.from_body(reply.body)
            if self.tap is not None:
                self.tap(
                    {"request_headers": headers, "http_status": reply.status,
                     "http_headers": dict(reply.headers),
                     **({"wrapper": wrapped.said()} if wrapped else {})}
                )  # fmt: skip
            result = unwrap(reply, url, self._refusal_statuses, wrapped)
        except LinkError as exc:
            # The request id is what Wonder support asks for.
            exc.add_note(f"x-request-id: {request_id}")
            self._set_state("down", f"{exc} (x-request-id {request_id})")
            raise
        self._set_state("up")
        return result

    def _set_state(self, state: LinkState, why: str = "") -> None:
        if state == "down" and self._state != "down":
            log.warning("cloud link down: %s", why)
        elif state == "up" and self._state == "down":
            log.info("cloud link up again")
        self._state = state

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()
