"""The event bus: watchers see every event of their topics, synchronously, and a failing
one never stops a publication (a payment publishes its states through it)."""

from __future__ import annotations

from typing import Any

import pytest

from ecrd.events import EventBus


async def test_a_watcher_sees_every_event_of_its_topics_and_nothing_else() -> None:
    bus, seen = EventBus(), []
    stop = bus.watch(frozenset({"transaction.state"}), lambda e: seen.append(e["state"]))
    for state in ("pending", "waiting_for_customer", "succeeded"):
        bus.publish("transaction.state", state=state)
    bus.publish("terminal", state="up")
    stop()
    bus.publish("transaction.state", state="pending")
    assert seen == ["pending", "waiting_for_customer", "succeeded"]


async def test_a_failing_watcher_neither_stops_the_publication_nor_the_subscribers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    sub = bus.subscribe()

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("bug in a watcher")

    bus.watch(frozenset({"transaction.state"}), broken)
    bus.publish("transaction.state", state="succeeded")
    assert sub.receive.receive_nowait()["state"] == "succeeded"
    assert "bug in a watcher" in caplog.text
