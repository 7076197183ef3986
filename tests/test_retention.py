"""Retention refuses an implausible clock: a prune under a clock that went back, or one
that jumped ahead far enough to remove records written since the last prune, removes
nothing, says so (a warning, a metric, a ``journal.prune`` audit row), and the next prune
under a plausible clock goes on. A pruned settled record is also rule 2's memory of its
``reference_id``: with the clock 401 days ahead, the old code pruned every one of them."""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from stack import start_stack

from ecrd.client import open_trio_client
from ecrd.store import retention
from ecrd.store.journal import Change, Journal

T = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def sell(journal: Journal, clock: list[datetime], ref: str, at: datetime) -> None:
    clock[0] = at
    journal.begin(reference_id=ref, terminal="t", action="Sale", params={}, amount="1.00",
                  currency="HKD")  # fmt: skip
    journal.apply(ref, lambda r: Change("succeeded", "test"))


def journal_of(tmp_path: Path) -> tuple[Path, Journal, list[datetime]]:
    clock = [T]
    path = tmp_path / "journal.sqlite3"
    return path, Journal(path, clock=lambda: clock[0]), clock


def refs(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {r for (r,) in conn.execute("SELECT reference_id FROM transactions")}


def prunes(path: Path) -> list[tuple[str, dict[str, object]]]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT result, detail FROM audit WHERE action = 'journal.prune' ORDER BY seq"
        ).fetchall()
    return [(result, json.loads(detail)) for result, detail in rows]


def test_a_clock_before_the_newest_record_prunes_nothing(tmp_path: Path) -> None:
    path, journal, clock = journal_of(tmp_path)
    with journal:
        sell(journal, clock, "old", T - timedelta(days=500))
        sell(journal, clock, "today", T)
    pruned = retention.prune(str(path), 400, T - timedelta(days=3))  # the clock went back
    assert pruned.removed == 0 and pruned.skipped is not None
    assert "before the newest record" in pruned.skipped
    assert refs(path) == {"old", "today"}
    assert prunes(path)[0][0] == "skipped"


def test_a_clock_401_days_ahead_never_prunes_records_written_since_the_last_prune(
    tmp_path: Path,
) -> None:
    """The issue's repro, after a good prune: the next day's prune runs with the clock 401
    days ahead, which would make every record of the last 400 days prunable."""
    path, journal, clock = journal_of(tmp_path)
    with journal:
        sell(journal, clock, "ancient", T - timedelta(days=450))
        for day in range(30, 0, -1):
            sell(journal, clock, f"d-{day}", T - timedelta(days=day))
    first = retention.prune(str(path), 400, T)
    assert (first.removed, first.skipped) == (1, None)  # "ancient": 450 days old
    with Journal(path, clock=lambda: clock[0]) as journal:
        sell(journal, clock, "after-the-prune", T + timedelta(hours=20))
    ahead = retention.prune(str(path), 400, T + timedelta(days=402))
    assert ahead.removed == 0 and ahead.skipped is not None
    assert "written since the last prune" in ahead.skipped
    assert len(refs(path)) == 31  # every one kept: their reference ids still replay
    right = retention.prune(str(path), 400, T + timedelta(days=1))  # the clock is fixed
    assert (right.removed, right.skipped) == (0, None)
    assert [result for result, _ in prunes(path)] == ["ok", "skipped"]  # a no-op says nothing
    assert prunes(path)[0][1]["removed"] == 1 and "high_seq" in prunes(path)[0][1]


def test_before_any_prune_a_clock_past_the_newest_record_prunes_nothing(tmp_path: Path) -> None:
    """A journal never pruned (an upgrade, a new box): the newest record stands for what
    was written since."""
    path, journal, clock = journal_of(tmp_path)
    with journal:
        for day in (300, 200, 1):
            sell(journal, clock, f"d-{day}", T - timedelta(days=day))
    pruned = retention.prune(str(path), 400, T + timedelta(days=401))
    assert pruned.removed == 0 and pruned.skipped is not None
    assert len(refs(path)) == 3
    assert retention.prune(str(path), 250, T).removed == 1  # plausible: d-300 goes


async def test_a_skipped_prune_is_warned_counted_and_listed(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At start, ecrd prunes: its journal holds a record from tomorrow (the clock went
    back meanwhile), so the prune is skipped, warned, counted in the metrics."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    clock = [datetime.now(UTC) + timedelta(days=1)]
    with Journal(state / "journal.sqlite3", clock=lambda: clock[0]) as journal:
        sell(journal, clock, "tomorrow", clock[0])
    caplog.set_level(logging.WARNING, logger="ecrd.housekeeping")
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        with trio.fail_after(5):
            while not (rows := await c.call("journal.audit", action="journal.prune")):
                await trio.sleep(0.05)
        text = await c.call("metrics")
    assert rows[0]["result"] == "skipped" and rows[0]["who"] == "ecrd"
    assert any("retention SKIPPED" in r.getMessage() for r in caplog.records)
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["ecrd_retention_skipped_total"] == 1
