"""In-process publish/subscribe for progress and state changes.

Publishing never blocks and never fails: each subscriber has a bounded queue, and a
subscriber that falls behind is marked overflowed and dropped by its owner (design.md §2:
a slow client never blocks others, nor a payment). A watcher (``watch``) is a plain
function called in ``publish`` itself, for in-process bookkeeping that must see every
event and costs less than a task woken per event (the metrics); it must not block, and
an exception it raises is logged and dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import trio

# The events a subscriber may fall behind before it is dropped (docs/api.md, "Events").
SUBSCRIBER_QUEUE: Final = 256


class Subscription:
    def __init__(self, bus: EventBus, topics: frozenset[str] | None, size: int) -> None:
        self._bus = bus
        self.topics = topics
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](size)
        self.overflowed = False

    def close(self) -> None:
        self._bus._subs.discard(self)
        self.send.close()


log = logging.getLogger("ecrd.events")
Watcher = Callable[[dict[str, Any]], None]


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._watchers: dict[Watcher, frozenset[str]] = {}

    def watch(self, topics: frozenset[str], fn: Watcher) -> Callable[[], None]:
        """Call ``fn(event)`` on every event of ``topics``; returns the function that stops it."""
        self._watchers[fn] = topics

        def stop() -> None:
            self._watchers.pop(fn, None)

        return stop

    def subscribe(
        self, topics: frozenset[str] | None = None, size: int = SUBSCRIBER_QUEUE
    ) -> Subscription:
        sub = Subscription(self, topics, size)
        self._subs.add(sub)
        return sub

    def publish(self, topic: str, **payload: Any) -> None:
        event = {"topic": topic, "at": round(time.time(), 3), **payload}
        for fn, topics in list(self._watchers.items()):
            if topic in topics:
                try:
                    fn(event)
                except Exception:
                    log.exception("event watcher %r failed", fn)
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
