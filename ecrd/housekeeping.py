"""The daemon's background chores for fleets: the metrics file and journal retention.

* ``publish_metrics`` rewrites ``[daemon] metrics_file`` when a payment ends and at least
  every ``every`` seconds (15), from a fresh ``Snapshot``; a failure to write is logged once
  per cause and never stops anything else. When it is stopped (ecrd stops), it writes the
  file a last time, saying so (``ecrd_up 0``, links down): a file that still said "up,
  nothing unresolved" would be believed for as long as it stays there.
* ``prune_daily`` prunes settled records older than ``[journal] keep_days`` at start and
  then once a day (``store/retention.py``: unknown and pending records are never pruned,
  and a prune under an implausible clock is skipped: warned, counted, kept as an audit
  row).
Both read their settings through callables, so a reload applies at the next round.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final

import trio

from ecrd.events import EventBus
from ecrd.metrics import Metrics, Snapshot, write_textfile
from ecrd.store import retention

log = logging.getLogger("ecrd.housekeeping")
DAY: Final = 86400.0
STOP_WRITE_S: Final = 5.0  # the last metrics file may hold up a stop this long, no more
TOPICS: Final = frozenset({"transaction.state"})


def _write(path: str, render: Callable[[], bytes]) -> None:
    write_textfile(path, render())


async def publish_metrics(
    metrics: Metrics,
    events: EventBus,
    snapshot: Callable[[], Awaitable[Snapshot]],
    path: Callable[[], str | None],
    every: float = 15.0,
) -> None:
    """Keep ``metrics`` fed from the bus (a watcher: no task wakes per event), and rewrite
    the metrics file when a payment ends and at least every ``every`` seconds."""
    ended = [trio.Event()]

    def watch(event: dict[str, Any]) -> None:
        if metrics.observe(event) and path() is not None:
            ended[0].set()

    unwatch = events.watch(TOPICS, watch)
    last_error = ""
    try:
        while True:
            with trio.move_on_after(every):
                await ended[0].wait()
            ended[0] = trio.Event()
            target = path()
            if target is None:
                continue
            render = metrics.renderer(await snapshot())
            try:
                await trio.to_thread.run_sync(_write, target, render)
                last_error = ""
            except OSError as exc:
                if str(exc) != last_error:
                    log.error("cannot write the metrics file %s: %s", target, exc)
                last_error = str(exc)
    finally:
        unwatch()
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_WRITE_S):
            await _say_stopped(metrics, snapshot, path())


async def _say_stopped(
    metrics: Metrics, snapshot: Callable[[], Awaitable[Snapshot]], target: str | None
) -> None:
    """The last file: ecrd is down. Its journal's counts if they can still be read."""
    if target is None:
        return
    try:
        last = await snapshot()
    except Exception as exc:  # the journal failed: say "down" all the same
        log.error("metrics: the last snapshot failed (%s); writing ecrd_up 0 alone", exc)
        last = Snapshot()
    try:
        await trio.to_thread.run_sync(_write, target, metrics.renderer(last.stopped()))
    except OSError as exc:
        log.error("cannot write the metrics file %s as ecrd stops: %s", target, exc)


async def prune_daily(
    journal_path: str,
    keep_days: Callable[[], int],
    clock: Callable[[], datetime],
    skipped: Callable[[], None] = lambda: None,
) -> None:
    """``skipped`` is told of each prune the clock made implausible (a metric counts it)."""
    while True:
        try:
            pruned = await trio.to_thread.run_sync(
                retention.prune, journal_path, keep_days(), clock()
            )
            if pruned.skipped is not None:
                skipped()
                log.warning("journal retention SKIPPED, nothing pruned: %s (fix the clock; "
                            "the records are kept)", pruned.skipped)  # fmt: skip
            elif pruned.removed:
                log.info("journal: pruned %d settled record(s) older than %d days",
                         pruned.removed, keep_days())  # fmt: skip
        except Exception as exc:  # a chore: logged, retried tomorrow, never fatal
            log.error("journal retention failed: %s", exc)
        await trio.sleep(DAY)
