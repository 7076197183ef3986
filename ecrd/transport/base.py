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

from typing import Literal, Protocol

from ecrd.protocol.envelope import Envelope

LinkState = Literal["up", "down", "unknown"]


class LinkError(Exception):
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
    """What the terminal actor needs from a link. Implementations: lan, serial, cloud."""

    kind: str

    @property
    def state(self) -> LinkState:
        """``up`` after a good exchange or open, ``down`` after a failure, else ``unknown``."""
        ...

    async def exchange(self, request: Envelope, *, timeout: float) -> Envelope:
        """Send ``request`` and return the terminal's reply envelope.

        Raises ``NotDelivered`` or ``MaybeDelivered`` (never a bare OSError/httpx error).
        Cancellation after the first byte went out must be treated by the caller like
        ``MaybeDelivered``.
        """
        ...

    async def aclose(self) -> None: ...
