"""Retention: settled journal records older than ``[journal] keep_days`` are pruned.

Invariants:

* Only final, settled states are pruned: ``succeeded``, ``failed``, ``resolved_*``. A
  ``pending`` or ``unknown`` record is never pruned, however old: it is money someone still
  has to settle (design.md §3 rule 4).
* A record goes with its audit trail, in one SQLite transaction (``BEGIN IMMEDIATE``): the
  journal never holds events without their record, nor the reverse.
* Age is measured from the record's creation and its last change (both older than the
  cutoff), against a clock the caller passes, so tests need not wait 400 days.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from typing import Final

from ecrd.store.journal import JournalError, format_time

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


def prune(path: str, keep_days: int, now: datetime) -> int:
    """Delete settled records older than ``keep_days`` (0: none); return how many."""
    if keep_days <= 0:
        return 0
    cutoff = {"cutoff": format_time(now - timedelta(days=keep_days))}
    try:
        with closing(sqlite3.connect(path, timeout=5, isolation_level=None)) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_PRUNE_EVENTS, cutoff)
                pruned = conn.execute(_PRUNE_RECORDS, cutoff).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: pruning failed: {exc}") from exc
    return int(pruned)
