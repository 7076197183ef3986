"""In-process publish/subscribe for progress and state changes.

Publishing never blocks and never fails: each subscriber has a bounded queue, and a
subscriber that falls behind is marked overflowed and dropped by its owner (design.md §2:
a slow client never blocks others, nor a payment).
"""

from __future__ import annotations

import time
from typing import Any

import trio


class Subscription:
    def __init__(self, bus: EventBus, topics: frozenset[str] | None, size: int) -> None:
        self._bus = bus
        self.topics = topics
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](size)
        self.overflowed = False

    def close(self) -> None:
        self._bus._subs.discard(self)
        self.send.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def subscribe(self, topics: frozenset[str] | None = None, size: int = 256) -> Subscription:
        sub = Subscription(self, topics, size)
        self._subs.add(sub)
        return sub

    def publish(self, topic: str, **payload: Any) -> None:
        event = {"topic": topic, "at": round(time.time(), 3), **payload}
        for sub in list(self._subs):
            if sub.topics is not None and topic not in sub.topics:
                continue
            try:
                sub.send.send_nowait(event)
            except trio.WouldBlock:
                sub.overflowed = True
                sub.close()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                sub.close()
