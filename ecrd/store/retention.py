"""Retention: settled journal records older than ``[journal] keep_days`` are pruned.

Invariants:

* Only final, settled states are pruned: ``succeeded``, ``failed``, ``resolved_*``. A
  ``pending`` or ``unknown`` record is never pruned, however old: it is money someone still
  has to settle (design.md §3 rule 4).
* A record goes with its audit trail, in one SQLite transaction (``BEGIN IMMEDIATE``): the
  journal never holds events without their record, nor the reverse. The audit table's rows
  of the same age go too, and a prune that removed records, or was skipped, is itself an
  audit row (``journal.prune``).
* Age is measured from the record's creation and its last change (both older than the
  cutoff), against a clock the caller passes, so tests need not wait 400 days.
* The clock is not trusted blindly: a pruned record is also rule 2's memory of a used
  ``reference_id``, so a clock far ahead (a dead RTC battery, a bad NTP answer) would
  delete the proof that an order was already charged. A prune is skipped (nothing
  removed; the reason returned, and kept as a ``journal.prune`` audit row) when it is
  implausible:

  - *now* is before the newest thing the journal holds (a record's creation, the last
    change of one): the clock went back (records written meanwhile under a clock that
    was ahead keep retention waiting until real time passes them: kept, never lost);
  - a record written since the last prune (``seq`` above the mark the last prune that
    removed records left, ``audit.last_prune_seq``; before any, the newest record) would
    be older than the cutoff: records do not age ``keep_days`` between two prunes, so the
    clock jumped ahead. (A box switched off for longer than ``keep_days`` looks the
    same: its records are then kept, which costs disk space, never money.)
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from typing import Final

import attrs

from ecrd.store import audit
from ecrd.store.journal import DAEMON, JournalError, format_time

SETTLED: Final = ("succeeded", "failed", "resolved_succeeded", "resolved_failed")
# created_at narrows the rows through the (state, created_at) index, so the write lock is
# held for milliseconds, not a table scan; updated_at keeps a record settled recently.
_PRUNE_EVENTS: Final = (
    "DELETE FROM events WHERE reference_id IN (SELECT reference_id FROM transactions "
    "WHERE state IN ('succeeded', 'failed', 'resolved_succeeded', 'resolved_failed') "
    "AND created_at < :cutoff AND updated_at < :cutoff)"
)
_PRUNE_RECORDS: Final = (
    "DELETE FROM transactions WHERE state IN "
    "('succeeded', 'failed', 'resolved_succeeded', 'resolved_failed') "
    "AND created_at < :cutoff AND updated_at < :cutoff"
)
_PRUNE_AUDIT: Final = "DELETE FROM audit WHERE at < :cutoff"
# Each an index's end or a primary key's: no table scan under the write lock. Not the
# audit table: a skipped prune's own row carries the clock it did not believe.
_NEWEST: Final = (
    "SELECT max(ifnull((SELECT max(created_at) FROM transactions), ''), "
    "ifnull((SELECT at FROM events ORDER BY seq DESC LIMIT 1), ''))"
)
_WRITTEN_SINCE: Final = (
    "SELECT count(*) FROM transactions WHERE seq > :mark AND created_at < :cutoff"
)


@attrs.frozen
class Pruned:
    removed: int = 0
    skipped: str | None = None  # why the clock was not believed (nothing was removed)


def prune(path: str, keep_days: int, now: datetime) -> Pruned:
    """Delete settled records older than ``keep_days`` (0: none), unless ``now`` is
    implausible (module docstring); the prune, done or skipped, is an audit row."""
    if keep_days <= 0:
        return Pruned()
    stamp, cutoff = format_time(now), format_time(now - timedelta(days=keep_days))
    try:
        with closing(sqlite3.connect(path, timeout=5, isolation_level=None)) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcome = _prune(conn, stamp, cutoff)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: pruning failed: {exc}") from exc
    return outcome


def _prune(conn: sqlite3.Connection, now: str, cutoff: str) -> Pruned:
    high_seq = int(conn.execute("SELECT ifnull(max(seq), 0) FROM transactions").fetchone()[0])
    detail: dict[str, object] = {"cutoff": cutoff, "now": now}
    why = implausible(conn, now, cutoff, high_seq)
    if why is not None:
        _said(conn, now, {**detail, "why": why}, "skipped")
        return Pruned(skipped=why)
    conn.execute(_PRUNE_EVENTS, {"cutoff": cutoff})
    removed = int(conn.execute(_PRUNE_RECORDS, {"cutoff": cutoff}).rowcount)
    conn.execute(_PRUNE_AUDIT, {"cutoff": cutoff})
    if removed:  # the daily prune that finds nothing says nothing
        _said(conn, now, {**detail, "removed": removed, "high_seq": high_seq}, "ok")
    return Pruned(removed=removed)


def implausible(conn: sqlite3.Connection, now: str, cutoff: str, high_seq: int) -> str | None:
    """Why ``now`` cannot be believed for a prune, or None (module docstring)."""
    newest = str(conn.execute(_NEWEST).fetchone()[0])
    if newest and now < newest:
        return f"the clock ({now}) is before the newest record or event ({newest})"
    mark = audit.last_prune_seq(conn)
    since = high_seq - 1 if mark is None else mark  # before any prune: the newest record
    young = int(conn.execute(_WRITTEN_SINCE, {"mark": since, "cutoff": cutoff}).fetchone()[0])
    if young:
        return (
            f"{young} record(s) written since the last prune would be older than the cutoff "
            f"({cutoff}): the clock ({now}) looks ahead"
        )
    return None


def _said(conn: sqlite3.Connection, now: str, detail: dict[str, object], result: str) -> None:
    audit.insert(conn, at=now, who=DAEMON, action=audit.PRUNE, terminal=None, detail=detail,
                 result=result)  # fmt: skip
