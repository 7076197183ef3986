"""The one interface every link offers, and the errors that drive money safety.

A link sends one envelope and hands up the envelopes the terminal sends back for it, under a
deadline. It does not decrypt, does not decide which reply is the right one, and does not
retry: data runs one way, up. Whether a failure may be retried is decided above it, from
the one fact only the link knows (design.md §3 rule 3):

    LinkError
    ├── NotDelivered     the request provably never left this box: connection refused,
    │                    no route, device not open. Safe to try another link.
    └── MaybeDelivered   the request may have reached the terminal, and no usable reply
        │                came back. A money command is then of unknown outcome.
        ├── ReplyTimeout the deadline passed while waiting for the reply
        └── BadReply     something came back that is not an envelope (HTTP error status,
                         non-JSON body, a cloud reply without an envelope)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

import trio

from ecrd.errors import Reasoned
from ecrd.protocol.envelope import Envelope

LinkState = Literal["up", "down", "unknown"]
# The envelopes the terminal sent back for one request, in order (Link.exchange).
Replies = AsyncIterator[Envelope]
# Told what an HTTP exchange looked like on the wire (status, headers), for a trace.
Tap = Callable[[dict[str, Any]], None]


class LinkError(Reasoned):
    reason = "link_error"


class NotDelivered(LinkError):
    reason = "link_down"


class MaybeDelivered(LinkError):
    reason = "no_reply"


class ReplyTimeout(MaybeDelivered):
    reason = "timeout"


class BadReply(MaybeDelivered):
    reason = "bad_reply"

    def __init__(self, message: str, *, code: object = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.code = code  # e.g. the HTTP status or the cloud reply's ``code``, verbatim
        self.detail = detail  # e.g. the cloud reply's ``message``, verbatim


class Link(Protocol):
    """What the terminal actor needs from a link; lan, serial and cloud implement all of
    it, so the terminal never asks which one it holds. Built by ``terminal/links.py``."""

    kind: str

    @property
    def state(self) -> LinkState:
        """``up`` after a good exchange or open, ``down`` after a failure, else ``unknown``."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The link's background work for as long as it lives (serial: open and reopen
        the port, read frames); a link that has none is started and returns."""
        ...

    def exchange(
        self, request: Envelope, *, timeout: float
    ) -> AbstractAsyncContextManager[Replies]:
        """Send ``request``; inside the block, the envelopes the terminal sends back for it,
        in order, until ``timeout`` (counted from the start) has passed.

        Entering raises ``NotDelivered`` or ``MaybeDelivered`` (never a bare OSError or
        httpx error). A link with one reply per request (LAN, cloud) yields it and ends; one
        that may carry several (serial) yields each one routed to this request and raises
        ``ReplyTimeout`` at the deadline. The caller decides which reply answers it.
        Cancellation after the first byte went out must be treated like ``MaybeDelivered``.
        """
        ...

    async def aclose(self) -> None: ...


class OneReply:
    """The replies of a link with one reply per request: that one, then the end."""

    def __init__(self, reply: Envelope) -> None:
        self._reply: Envelope | None = reply

    def __aiter__(self) -> OneReply:
        return self

    async def __anext__(self) -> Envelope:
        if self._reply is None:
            raise StopAsyncIteration
        reply, self._reply = self._reply, None
        return reply


async def first_reply(link: Link, request: Envelope, *, timeout: float) -> Envelope:
    """Send ``request`` and return the first envelope the terminal sends back for it,
    whatever it says (the probe examines every reply; tests)."""
    async with link.exchange(request, timeout=timeout) as replies:
        async for reply in replies:
            return reply
    raise BadReply("the link ended without a reply")
