"""What every terminal of one daemon shares: identity towards the terminals, the cloud's
settings, the pairing store (and the thread its file I/O runs on), the event bus, the key
cache and the derivation workers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from ecrd.config import CloudConfig
from ecrd.events import EventBus
from ecrd.protocol import crypto
from ecrd.store.pairings import PairingStore
from ecrd.workers import Workers

T = TypeVar("T")
# (terminal id, responseID, envelope action, body)
LateReply = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


@attrs.define
class Shared:
    """What every terminal of one daemon shares."""

    client_sn: str
    cloud: CloudConfig
    pairings: PairingStore
    events: EventBus
    keys: crypto.KeyCache = attrs.field(factory=lambda: crypto.KeyCache(size=1024))
    workers: Workers = attrs.field(factory=Workers)
    # Called with (terminal id, responseID, action, body) for a reply that came after its request
    # gave up (serial): it may settle an unknown outcome (Payments.late_reply).
    late_reply: LateReply | None = None
    store_limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))
    trace_dir: Path | None = None  # STATE_DIR/trace: the wire traces (trace.py)

    async def store(self, fn: Callable[..., T], *args: Any) -> T:
        """A call to the pairing store: file I/O, on a thread, one at a time."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.store_limiter)
