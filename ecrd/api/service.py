"""What the socket API needs from the rest of ecrd, and from its own connections.

The API depends on these two small interfaces, not on the daemon: ``daemon.py`` (the
composition root) provides a ``Service``, ``server.Connection`` is a ``Client``. So
``api/`` imports nothing from ``daemon.py``, and ``methods.py`` nothing from ``server.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ecrd.config import Config
from ecrd.events import EventBus
from ecrd.money.payments import Payments
from ecrd.store.journal_view import JournalView
from ecrd.terminal.terminal import Terminal

T = TypeVar("T")


class Service(Protocol):
    @property
    def config(self) -> Config: ...

    @property
    def terminals(self) -> Mapping[str, Terminal]: ...

    @property
    def payments(self) -> Payments: ...

    @property
    def journal_view(self) -> JournalView: ...

    @property
    def events(self) -> EventBus: ...

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A journal read on the read-only connection (never queued with payments)."""
        ...

    async def status(self) -> dict[str, Any]: ...

    async def reload(self) -> dict[str, Any]: ...

    async def metrics_text(self) -> str: ...

    async def backup(self, path: str, with_pairings: bool) -> dict[str, Any]: ...

    def log_peer(self, what: str, terminal: str, peer: str, ref: str = "-") -> None: ...

    async def audit(
        self,
        *,
        who: str,
        action: str,
        terminal: str | None,
        detail: dict[str, Any],
        result: str,
        started: datetime,
    ) -> None:
        """One admin action into the audit table (store/audit.py), committed; a failure to
        write it is logged with the whole row, never raised."""
        ...

    def count(self, refusal: str) -> None:
        """Count a refusal the metrics show (``ecrd_refusals_total{kind}``)."""
        ...


class Client(Protocol):
    """The connection a request came on."""

    @property
    def peer(self) -> str:
        """``uid=… user=… pid=… exe=…`` of the peer (SO_PEERCRED), for the logs and the
        audit trail."""
        ...

    def connected(self) -> bool:
        """Whether the client is still there to read a reply (no checkpoint)."""
        ...

    def reading(self) -> AbstractAsyncContextManager[int]:
        """Hold for a journal read: one at a time, once the client's replies are out. Gives
        the bytes a listing's page may take (``journal_view.PAGE_BYTES`` or less)."""
        ...

    def subscribe(self, topics: frozenset[str] | None) -> None: ...
