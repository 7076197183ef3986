"""The journal's file: its schema, its migrations, and the connection that opens it.

Invariants:

* The schema version is ``PRAGMA user_version``. ``MIGRATIONS[i]`` brings a file from
  version ``i`` to ``i + 1``; a released entry is never edited, a change appends one, so
  every journal in the field can be upgraded (``tests/data/v*`` holds files written by
  released versions, and ``tests/test_upgrade.py`` opens them).
* A file opens migrated to ``SCHEMA_VERSION`` in one transaction, or not at all. A file
  whose version is newer than this code knows is refused, never downgraded.
* The file is created 0600 before SQLite sees it (design.md §4), and the connection is
  WAL with ``synchronous=FULL``: every commit is fsynced. A file system where WAL is not
  possible is refused at open, not discovered at the first payment.
* Every ``sqlite3.Error`` leaves this module as ``JournalError``, naming the file and
  what was being done.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Final

from ecrd.store.journal_records import JournalError

BUSY_TIMEOUT_MS: Final = 5000
# Pages in the WAL before a commit copies them back into the file (SQLite's default: 1000).
# A payment writes ~13 pages, mostly the same few index leaves again and again, so a rarer
# checkpoint copies fewer pages in all: ~0.1 ms less per sale (bench/run profile), for a
# WAL file of up to ~40 MB. Durability does not change: every commit is fsynced in the WAL.
WAL_AUTOCHECKPOINT_PAGES: Final = 10_000

# Each entry brings the schema from version i to i + 1 (PRAGMA user_version). Never edit a
# released entry: append a new one, so that every journal in the field can be upgraded.
MIGRATIONS: Final[Sequence[Sequence[str]]] = (
    (
        """
        CREATE TABLE transactions (
            seq          INTEGER PRIMARY KEY,
            reference_id TEXT NOT NULL UNIQUE,
            terminal     TEXT NOT NULL,
            action       TEXT NOT NULL CHECK (action IN ('Sale', 'PreAuth', 'Refund', 'Void')),
            params       TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed',
                                 'unknown', 'resolved_succeeded', 'resolved_failed')),
            amount       TEXT,
            currency     TEXT,
            request_id   TEXT,
            link         TEXT,
            reply        TEXT,
            error        TEXT,
            note         TEXT,
            resolved_by  TEXT,
            created_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL
        )
        """,
        "CREATE INDEX transactions_by_terminal ON transactions (terminal, created_at)",
        "CREATE INDEX transactions_by_state ON transactions (state, created_at)",
        "CREATE INDEX transactions_by_time ON transactions (created_at)",
        """
        CREATE TABLE events (
            seq          INTEGER PRIMARY KEY,
            reference_id TEXT NOT NULL REFERENCES transactions (reference_id),
            at           TEXT NOT NULL,
            from_state   TEXT,
            to_state     TEXT NOT NULL,
            who          TEXT NOT NULL,
            note         TEXT
        )
        """,
        "CREATE INDEX events_by_reference ON events (reference_id, seq)",
    ),
    # 2: the metrics' tally (terminal, action, state) reads this index alone: 0.1 s instead
    # of a 1.3 s table scan with a million records (bench/journal.py).
    ("CREATE INDEX transactions_by_outcome ON transactions (terminal, action, state)",),
    # 3 (rules of evidence): the state 'disputed' (a CHECK cannot be altered, so the table is
    # rebuilt: SQLite's documented procedure, with foreign keys off, _migrate), the amount
    # the terminal approved where it differs, the evidence each audit row keeps, and the
    # requestID a late reply names.
    (
        """
        CREATE TABLE transactions_v3 (
            seq          INTEGER PRIMARY KEY,
            reference_id TEXT NOT NULL UNIQUE,
            terminal     TEXT NOT NULL,
            action       TEXT NOT NULL CHECK (action IN ('Sale', 'PreAuth', 'Refund', 'Void')),
            params       TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed',
                                 'unknown', 'resolved_succeeded', 'resolved_failed',
                                 'disputed')),
            amount       TEXT,
            currency     TEXT,
            request_id   TEXT,
            link         TEXT,
            reply        TEXT,
            error        TEXT,
            note         TEXT,
            resolved_by  TEXT,
            created_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL,
            approved_amount TEXT
        )
        """,
        "INSERT INTO transactions_v3 (seq, reference_id, terminal, action, params, state, "
        "amount, currency, request_id, link, reply, error, note, resolved_by, created_at, "
        "updated_at) SELECT seq, reference_id, terminal, action, params, state, amount, "
        "currency, request_id, link, reply, error, note, resolved_by, created_at, updated_at "
        "FROM transactions",
        "DROP TABLE transactions",
        "ALTER TABLE transactions_v3 RENAME TO transactions",
        "CREATE INDEX transactions_by_terminal ON transactions (terminal, created_at)",
        "CREATE INDEX transactions_by_state ON transactions (state, created_at)",
        "CREATE INDEX transactions_by_time ON transactions (created_at)",
        "CREATE INDEX transactions_by_outcome ON transactions (terminal, action, state)",
        "CREATE INDEX transactions_by_request ON transactions (request_id)",
        # The refund guard's look-up of what was refunded or voided against an original.
        "CREATE INDEX transactions_by_original ON transactions "
        "(json_extract(params, '$.original_reference_id')) WHERE action IN ('Refund', 'Void')",
        "ALTER TABLE events ADD COLUMN evidence TEXT",
    ),
    # 4 (hardening, #22): the admin actions' own audit table (store/audit.py): who did
    # what, when, with what result, durable like a money record; retention's prunes too.
    (
        """
        CREATE TABLE audit (
            seq          INTEGER PRIMARY KEY,
            at           TEXT NOT NULL,
            who          TEXT NOT NULL,
            action       TEXT NOT NULL,
            terminal     TEXT,
            detail       TEXT NOT NULL,
            result       TEXT NOT NULL
        )
        """,
        "CREATE INDEX audit_by_action ON audit (action, seq)",
        "CREATE INDEX audit_by_time ON audit (at)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def open_connection(path: str) -> sqlite3.Connection:
    """Create the file if needed (0600) and connect to it; not yet set up (``prepare``).

    Transactions are explicit (``immediate``). The connection may be used from any thread;
    its user serialises the calls.
    """
    try:
        _create_private(path)
        conn = sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            check_same_thread=False,
        )
    except (OSError, sqlite3.Error) as exc:
        raise JournalError(f"cannot open the journal {path}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    return conn


def prepare(conn: sqlite3.Connection, path: str) -> None:
    """Set the connection up (WAL, FULL sync), migrate the schema, then turn foreign keys
    on (a migration may rebuild a table that another one references)."""
    _configure(conn, path)
    _migrate(conn, path)
    with sql_errors(path, "open"):
        conn.execute("PRAGMA foreign_keys = ON")


@contextmanager
def sql_errors(path: str, doing: str) -> Iterator[None]:
    """Turn a ``sqlite3.Error`` into ``JournalError``, naming the file and ``doing``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: {doing} failed: {exc}") from exc


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed if the block ends normally, else rolled back."""
    # IMMEDIATE takes the write lock up front, so a read-then-write (the duplicate check,
    # the transition check) cannot race another writer of the same file.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # SQLite has already rolled back after the errors that make ROLLBACK fail.
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _create_private(path: str) -> None:
    # Created 0600 from the start (design.md §4): SQLite would apply the umask, and the
    # -wal and -shm files it makes later copy the main file's mode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)


def _configure(conn: sqlite3.Connection, path: str) -> None:
    with sql_errors(path, "open"):
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(
                f"the journal {path} cannot use WAL mode (got {mode!r}); "
                "is it on a file system without shared memory support?"
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    with sql_errors(path, "open"), immediate(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal {path} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this ecrd understands; run the ecrd that wrote it, "
                "or a later one"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise JournalError(f"the journal {path}: {len(broken)} audit rows lost their record")
        # PRAGMA does not take parameters; SCHEMA_VERSION is our own integer.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
