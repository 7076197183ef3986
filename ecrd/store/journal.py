"""The write-ahead transaction journal: one SQLite file, the daemon's memory of money.

design.md §3 rests on this module. The invariants it keeps:

* Write ahead (rule 1). ``begin`` returns only after the ``pending`` row is committed; with
  WAL and ``synchronous=FULL`` a commit is fsynced, so a record exists on disk before the
  first byte of the request leaves the box.
* A reference id is used once, forever (rule 2). ``begin`` on a known id raises
  ``DuplicateReference`` carrying the stored record; whether that is a replay or a
  ``duplicate_reference_mismatch`` is the caller's decision, made with ``same_params``
  over the canonical JSON of the parameters.
* Every change of a record is one SQLite transaction that updates the row and appends a
  row to ``events`` (the audit trail: who, when, from which state to which, and why). A
  crash, a full disk or an I/O error leaves the previous state, never half of the next.
* The journal is checked, not assumed. ``begin`` first confirms that the file at
  ``path`` is still the one opened (same device and inode): a journal deleted or replaced
  under a running ecrd would take every later record with it (and make a retried reference
  look new), so from then on ``begin`` raises ``JournalError`` and ``problem`` says why.
  The journal is never recreated while running.
* One choke point for every change after ``begin``: ``apply``, whose ``decide`` (the money
  package's pure ``settle``) reads the record *inside* the write transaction, so a
  decision is never made on a record another writer changed meanwhile. Which transitions
  exist is ``money/settlement.py``'s to say; this module stores them, each with its
  evidence (what the terminal or a person said) on its audit row, so no proof is ever
  dropped. ``mark_sending`` records the requestID and link of a pending record.

Errors (``journal_records``): ``JournalError`` (disk, I/O, not a database, a newer schema),
``DuplicateReference`` (``.existing``), ``TransitionRefused``, ``TransactionNotFound``.

The API is synchronous; the daemon calls it from one worker thread at a time. The
connection is opened with ``check_same_thread=False`` and every method holds a lock, so
calls from different threads are serialised rather than interleaved.

Timestamps are RFC 3339 UTC with milliseconds: fixed width, so they sort as text. This
module is the queries. What a record is, and how it maps to a row, is
``journal_records``; the file, its schema and its migrations are ``journal_schema``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import attrs

from ecrd.store import audit
from ecrd.store.journal_records import (
    CHANGEABLE,
    COLUMNS,
    DAEMON,
    INSERT,
    MONEY_ACTIONS,
    SELECT,
    STATES,
    Change,
    DuplicateReference,
    JournalError,
    TransactionNotFound,
    TransitionRefused,
    TxRecord,
    canonical_params,
    column_value,
    format_time,
    json_text,
    new_record,
    parse_time,
    record_from_row,
    same_params,
    select_reversals,
    update_sql,
)
from ecrd.store.journal_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    immediate,
    open_connection,
    prepare,
    sql_errors,
)

__all__ = [
    "DAEMON",
    "MIGRATIONS",
    "MONEY_ACTIONS",
    "SCHEMA_VERSION",
    "STATES",
    "Change",
    "DuplicateReference",
    "Journal",
    "JournalError",
    "TransactionNotFound",
    "TransitionRefused",
    "TxRecord",
    "canonical_params",
    "format_time",
    "parse_time",
    "same_params",
]

# Checks a refund or void against its original (or None) and the refunds and voids
# against it, in begin's write transaction (money/refunds.py); raises to refuse.
Guard = Callable[[TxRecord | None, Sequence[TxRecord]], None]

# The columns a change of state writes; the others are set by ``begin`` (and the link's
# two by ``mark_sending``).
_CHANGED: Final = ("state", *sorted(CHANGEABLE), "updated_at")
_SENDING: Final = ("request_id", "link", "updated_at")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Journal:
    """The transaction journal in one SQLite file. See the module docstring."""

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = open_connection(self.path)
        self._closed = False
        self._identity = self._file_identity()
        self._problem: str | None = None
        try:
            prepare(self._conn, self.path)
        except BaseException:
            self._conn.close()
            self._closed = True
            raise

    # -- access: one caller at a time, errors mapped, writes in one transaction -----------

    @contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            with sql_errors(self.path, doing), immediate(self._conn):
                yield self._conn

    @contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            with sql_errors(self.path, doing):
                yield self._conn

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    @property
    def problem(self) -> str | None:
        """Why the journal cannot take new payments, or None (checked by ``check_file``)."""
        return self._problem

    def check_file(self) -> None:
        """Raise ``JournalError`` unless the file at ``path`` is still the one this object
        opened. Once it is not, it never is again: a journal is not recreated silently."""
        if self._problem is None and self._file_identity() != self._identity:
            gone = not os.path.lexists(self.path)
            self._problem = (
                f"the journal {self.path} was {'deleted' if gone else 'replaced'} while ecrd "
                "ran; no payment is taken until ecrd is restarted (restore the file from a "
                "backup first if it was deleted by mistake)"
            )
        if self._problem is not None:
            raise JournalError(self._problem)

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.path} is closed")

    def _now(self) -> str:
        return format_time(self._clock())

    # -- writes ---------------------------------------------------------------------------

    def begin(
        self,
        *,
        reference_id: str,
        terminal: str,
        action: str,
        params: Mapping[str, Any],
        amount: str | None,
        currency: str | None,
        who: str = DAEMON,
        request_id: str | None = None,
        link: str | None = None,
        guard: Guard | None = None,
    ) -> TxRecord:
        """Journal a new money command as ``pending``, durably, before anything is sent.

        ``who`` names the requester in the audit trail (e.g. the POS peer's credentials).
        ``request_id`` and ``link``, when already known, save a separate ``mark_sending``
        (one fsync less on every payment).
        Raises ``DuplicateReference`` if ``reference_id`` was ever used before.
        ``guard`` (refund, void: ``Guard``) runs in the same write transaction, so two
        against one original are checked in turn, each seeing the other's record.
        """
        if action not in MONEY_ACTIONS:
            raise ValueError(f"not a money action: {action!r}")
        now = self._now()
        record = new_record(
            reference_id=reference_id,
            terminal=terminal,
            action=action,
            params=json.loads(canonical_params(params)),
            state="pending",
            amount=amount,
            currency=currency,
            request_id=request_id,
            link=link,
            created_at=now,
            updated_at=now,
        )
        with self._write("begin") as conn:
            self.check_file()
            existing = self._fetch(conn, reference_id)
            if existing is not None:
                raise DuplicateReference(existing)
            if guard is not None:
                original = str(params.get("original_reference_id"))
                guard(self._fetch(conn, original), select_reversals(conn, original))
            conn.execute(INSERT, [column_value(record, name) for name in COLUMNS])
            self._event(conn, reference_id, now, None, "pending", who, None)
        return record

    def mark_sending(self, reference_id: str, *, request_id: str, link: str) -> TxRecord:
        """Record the protocol requestID and the link just before the first byte leaves.

        May be called again while ``pending``: a request that provably never left on one
        link may go out on the fallback (design.md §3 rule 3); the audit trail keeps both.
        """
        with self._write("mark_sending") as conn:
            current = self._expect(conn, reference_id, {"pending"}, "mark_sending")
            now = self._now()
            record = attrs.evolve(current, request_id=request_id, link=link, updated_at=now)
            self._store(conn, record, _SENDING)
            note = f"sending on {link}, requestID {request_id}"
            self._event(conn, reference_id, now, "pending", "pending", DAEMON, note)
        return record

    def apply(
        self, reference_id: str, decide: Callable[[TxRecord], Change]
    ) -> tuple[TxRecord, TxRecord]:
        """The one way a record changes after ``begin``: ``decide`` (``money/settlement.py``)
        reads the record as it is now, inside the write transaction, and says what the
        evidence does to it; the change and its audit row are committed together.

        Returns the record before and after. Whatever ``decide`` raises (a refusal) leaves
        the record as it was.
        """
        with self._write("apply") as conn:
            current = self._fetch(conn, reference_id)
            if current is None:
                raise TransactionNotFound(f"no transaction with reference_id {reference_id!r}")
            record = self._commit(conn, current, decide(current))
        return current, record

    def audit(
        self, *, who: str, action: str, terminal: str | None, detail: dict[str, Any],
        result: str, at: str | None = None,
    ) -> int:  # fmt: skip
        """One row of the audit table (``store/audit.py``), committed: an admin action."""
        with self._write("audit") as conn:
            return audit.insert(conn, at=at or self._now(), who=who, action=action,
                                terminal=terminal, detail=detail, result=result)  # fmt: skip

    def recover(self, decide: Callable[[TxRecord], Change]) -> list[TxRecord]:
        """At start-up, ``decide`` what becomes of every ``pending`` record (design.md §3
        rule 6: the daemon stopped while it may have been sent). Returns the records changed,
        oldest first. All of them change in one transaction, or none does."""
        with self._write("recover") as conn:
            rows = conn.execute(SELECT + "WHERE state = 'pending' ORDER BY seq").fetchall()
            records = [record_from_row(row) for row in rows]
            return [self._commit(conn, record, decide(record)) for record in records]

    def by_request(self, request_id: str) -> TxRecord | None:
        """The record whose exchange used ``request_id`` (a late reply names it)."""
        with self._read("by_request") as conn:
            row = conn.execute(SELECT + "WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else record_from_row(row)

    def _commit(self, conn: sqlite3.Connection, current: TxRecord, change: Change) -> TxRecord:
        now = self._now()
        record = attrs.evolve(current, state=change.state, updated_at=now, **change.set)
        self._store(conn, record)
        evidence = json_text(change.evidence)
        self._event(conn, current.reference_id, now, current.state, record.state, change.who,
                    change.why, evidence)  # fmt: skip
        return record

    def _expect(
        self, conn: sqlite3.Connection, reference_id: str, allowed_from: set[str], doing: str
    ) -> TxRecord:
        current = self._fetch(conn, reference_id)
        if current is None:
            raise TransactionNotFound(f"no transaction with reference_id {reference_id!r}")
        if current.state not in allowed_from:
            raise TransitionRefused(
                f"cannot {doing} {reference_id!r}: it is {current.state}, "
                f"and {doing} applies only to {' or '.join(sorted(allowed_from))}"
            )
        return current

    @staticmethod
    def _store(
        conn: sqlite3.Connection, record: TxRecord, columns: Sequence[str] = _CHANGED
    ) -> None:
        conn.execute(
            update_sql(columns),
            [*(column_value(record, name) for name in columns), record.reference_id],
        )

    @staticmethod
    def _event(
        conn: sqlite3.Connection,
        reference_id: str,
        at: str,
        from_state: str | None,
        to_state: str,
        who: str,
        note: str | None,
        evidence: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO events (reference_id, at, from_state, to_state, who, note, evidence) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (reference_id, at, from_state, to_state, who, note, evidence),
        )

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    def _fetch(conn: sqlite3.Connection, reference_id: str) -> TxRecord | None:
        row = conn.execute(SELECT + "WHERE reference_id = ?", (reference_id,)).fetchone()
        return None if row is None else record_from_row(row)

    def get(self, reference_id: str) -> TxRecord | None:
        with self._read("get") as conn:
            return self._fetch(conn, reference_id)

    def unknown(self, terminal: str | None = None) -> list[TxRecord]:
        """The ``unknown`` records (of one terminal), oldest first: the order to settle them."""
        return self._in_state("unknown", terminal)

    def pending(self) -> list[TxRecord]:
        """The ``pending`` records, oldest first."""
        return self._in_state("pending", None)

    def _in_state(self, state: str, terminal: str | None) -> list[TxRecord]:
        with self._read(state) as conn:
            rows = conn.execute(
                SELECT + "WHERE state = :state AND (:terminal IS NULL OR terminal = :terminal) "
                "ORDER BY seq",
                {"state": state, "terminal": terminal},
            ).fetchall()
        return [record_from_row(row) for row in rows]

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with sql_errors(self.path, "close"):
                self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
