"""The audit table: who administered what, when, with what result, in the journal's file.

Every admin action on the socket (pairing, unpairing, probe, trace, send, abort, resolve,
reload, backup: ``api/audit.py`` says which, and which of its parameters are kept) and
every prune of the journal (``retention.py``) is one row, committed (fsynced) like a money
record. Unlike a log line it cannot be dropped by a full log queue, journald's rate limit
or the refusal limiter: nothing limits these rows but the admins' own calls.

Rows are appended here and read by ``journal_view``; the only ones ever deleted are those
older than ``[journal] keep_days``, by retention, with the records of the same age. The
row of a prune that removed records also carries, in ``detail.high_seq``, the newest
record it saw: ``last_prune_seq`` is how retention knows which records were written since
(its clock check, retention.py).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

PRUNE: Final = "journal.prune"
_COLUMNS: Final = ("seq", "at", "who", "action", "terminal", "detail", "result")
_PAGE: Final = (
    f"SELECT {', '.join(_COLUMNS)} FROM audit "  # noqa: S608 - constants
    "WHERE (:before IS NULL OR seq < :before) AND (:action IS NULL OR action = :action) "
    "ORDER BY seq DESC LIMIT :limit"
)


def insert(
    conn: sqlite3.Connection,
    *,
    at: str,
    who: str,
    action: str,
    terminal: str | None,
    detail: dict[str, Any],
    result: str,
) -> int:
    """One row, in the caller's write transaction; its ``seq``."""
    cursor = conn.execute(
        "INSERT INTO audit (at, who, action, terminal, detail, result) VALUES (?, ?, ?, ?, ?, ?)",
        (at, who, action, terminal, json.dumps(detail, ensure_ascii=False), result),
    )
    return int(cursor.lastrowid or 0)


def page(
    conn: sqlite3.Connection,
    *,
    limit: int,
    before: int | None,
    action: str | None,
    max_bytes: int,
) -> list[dict[str, Any]]:
    """Rows newest first, older than ``before`` (a ``seq``), of one ``action`` if given;
    at most ``limit`` and about ``max_bytes`` of them (at least one)."""
    out: list[dict[str, Any]] = []
    size = 0
    rows = conn.execute(_PAGE, {"before": before, "action": action, "limit": limit})
    try:
        for row in rows:
            size += 100 + sum(len(v.encode()) for v in row if isinstance(v, str))
            if out and size > max_bytes:
                break
            out.append({**dict(zip(_COLUMNS, row, strict=True)), "detail": json.loads(row[5])})
    finally:
        rows.close()
    return out


def last_prune_seq(conn: sqlite3.Connection) -> int | None:
    """The newest record's ``seq`` when a prune last removed records, or None (never)."""
    row = conn.execute(
        "SELECT json_extract(detail, '$.high_seq') FROM audit WHERE action = ? "
        "AND result = 'ok' ORDER BY seq DESC LIMIT 1",
        (PRUNE,),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])
