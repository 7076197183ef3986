"""The one interface every link offers, and the errors that drive money safety.

A link sends one envelope and returns the next envelope the terminal sends back, under a
deadline. It does not decrypt and does not retry: whether a failure may be retried is
decided above it, from the one fact only the link knows (design.md §3 rule 3):

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

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import trio

from ecrd.errors import Reasoned
from ecrd.protocol.envelope import Envelope

LinkState = Literal["up", "down", "unknown"]
# Decides whether a reply answers the request in flight (the terminal decrypts and checks
# it). A link that may carry several replies (serial) waits for one it takes; a link with
# one reply per request (LAN, cloud) raises ``StaleResponse`` when that one is refused.
Accept = Callable[[Envelope], Awaitable[bool]]
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

    async def exchange(self, request: Envelope, *, timeout: float, accept: Accept) -> Envelope:
        """Send ``request`` and return the reply that ``accept`` takes.

        Raises ``NotDelivered`` or ``MaybeDelivered`` (never a bare OSError/httpx error).
        Cancellation after the first byte went out must be treated by the caller like
        ``MaybeDelivered``.
        """
        ...

    async def aclose(self) -> None: ...
