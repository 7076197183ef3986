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
* Only these transitions exist; any other raises ``TransitionRefused``::

                   begin
                     │
                     ▼
                  pending ──┐ mark_sending: records the requestID and
                     │  ▲   │ the link, stays pending
                     │  └───┘
       ┌─────────────┼───────────────┬────────────────────┐
       │ finish      │ finish        │ finish             │ recover (at start-up)
       ▼             ▼               ▼                    │
   succeeded       failed         unknown ◄───────────────┘
       ▲             ▲             │   │
       └── settle ───┴─────────────┘   │ resolve (an operator: who, note)
        (the status action answered)   ▼
                         resolved_succeeded | resolved_failed

  The ``succeeded``, ``failed`` and ``resolved_*`` states are final.

Errors::

    JournalError          the journal cannot be read or written: disk full, I/O error, not
                          a database, a schema newer than this code (reason "journal_error")
    DuplicateReference    the reference id is already journalled; ``.existing`` is its record
    TransitionRefused     (ValueError) the record's state does not allow that change
    TransactionNotFound   (LookupError) no record has that reference id

The API is synchronous. The daemon calls it from one worker thread at a time
(``trio.to_thread.run_sync`` with a limiter of one); the connection is opened with
``check_same_thread=False`` and every method holds a lock, so calls from different threads
are serialised rather than interleaved.

Timestamps are RFC 3339 UTC with milliseconds (``2026-11-26T04:50:42.123Z``): fixed width,
so they sort as text.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import attrs

STATES: Final = (
    "pending",
    "succeeded",
    "failed",
    "unknown",
    "resolved_succeeded",
    "resolved_failed",
)
MONEY_ACTIONS: Final = ("Sale", "PreAuth", "Refund", "Void")

# Who the audit trail names when the daemon itself changes a record.
DAEMON: Final = "ecrd"

_FINISH_STATES: Final = frozenset({"succeeded", "failed", "unknown"})
_SETTLE_STATES: Final = frozenset({"succeeded", "failed"})
_BUSY_TIMEOUT_MS: Final = 5000

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
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class JournalError(Exception):
    """The journal could not be read or written; the command it served must fail."""

    reason = "journal_error"


class DuplicateReference(Exception):
    """``begin`` was given a reference id the journal already holds."""

    reason = "duplicate_reference"

    def __init__(self, existing: TxRecord) -> None:
        super().__init__(
            f"reference_id {existing.reference_id!r} is already journalled "
            f"({existing.action} on {existing.terminal}, {existing.state})"
        )
        self.existing = existing


class TransitionRefused(ValueError):
    """The record is not in a state from which the requested change is allowed."""

    reason = "invalid_transition"


class TransactionNotFound(LookupError):
    reason = "transaction_not_found"


def _optional_str(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string or None, not {type(value).__name__}")


@attrs.frozen
class TxRecord:
    """One money command as the journal knows it. ``amount`` is a decimal string."""

    reference_id: str
    terminal: str
    action: str = attrs.field(validator=attrs.validators.in_(MONEY_ACTIONS))
    params: dict[str, Any]
    state: str = attrs.field(validator=attrs.validators.in_(STATES))
    amount: str | None = attrs.field(validator=_optional_str)
    currency: str | None = attrs.field(validator=_optional_str)
    request_id: str | None
    link: str | None
    reply: dict[str, Any] | None
    error: dict[str, Any] | None
    note: str | None
    resolved_by: str | None
    created_at: str
    updated_at: str

    def to_api(self) -> dict[str, Any]:
        """The record as the socket API returns it (design.md §2)."""
        return {
            "reference_id": self.reference_id,
            "terminal": self.terminal,
            "action": self.action,
            "amount": self.amount,
            "currency": self.currency,
            "state": self.state,
            "reply": _copy(self.reply),
            "error": _copy(self.error),
            "note": self.note,
            "resolved_by": self.resolved_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "link": self.link,
            "request_id": self.request_id,
            "params": _copy(self.params),
        }


@attrs.frozen
class Event:
    """One row of the audit trail. ``from_state`` is None for the row ``begin`` writes."""

    reference_id: str
    at: str
    from_state: str | None
    to_state: str
    who: str
    note: str | None


def canonical_params(params: Mapping[str, Any]) -> str:
    """The one JSON text for a set of request parameters: sorted keys, no spaces.

    Strict on purpose: ``1`` and ``1.0``, ``True`` and ``1`` are different parameters, and
    NaN is refused. Callers drop or fill optional parameters before they get here.
    """
    return json.dumps(
        params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two requests with one reference id are the same request (design.md §3 rule 2)."""
    return canonical_params(a) == canonical_params(b)


def format_time(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC with milliseconds. A naive datetime is refused."""
    if moment.tzinfo is None:
        raise ValueError("a timestamp needs a time zone")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def parse_time(text: str) -> str:
    """Normalise an RFC 3339 timestamp a caller gave into the journal's own format."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"an RFC 3339 timestamp needs an offset or 'Z': {text!r}")
    return format_time(moment)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _copy(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # A frozen record still holds mutable dicts; callers get a copy they may change.
    return None if value is None else json.loads(json.dumps(value))


def _dumps(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False)


def _loads(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    assert isinstance(value, dict), "the journal stores JSON objects only"
    return value


def _check_error(error: Mapping[str, Any] | None) -> None:
    if error is not None and not isinstance(error.get("reason"), str):
        raise ValueError('error must be {"reason": <str>, "message": ...}')


_SELECT: Final = (
    "SELECT reference_id, terminal, action, params, state, amount, currency, request_id, link, "
    "reply, error, note, resolved_by, created_at, updated_at FROM transactions "
)


def _record(row: sqlite3.Row) -> TxRecord:
    params = _loads(row["params"])
    assert params is not None
    return TxRecord(
        reference_id=row["reference_id"],
        terminal=row["terminal"],
        action=row["action"],
        params=params,
        state=row["state"],
        amount=row["amount"],
        currency=row["currency"],
        request_id=row["request_id"],
        link=row["link"],
        reply=_loads(row["reply"]),
        error=_loads(row["error"]),
        note=row["note"],
        resolved_by=row["resolved_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _create_private(path: str) -> None:
    # Created 0600 from the start (design.md §4): SQLite would apply the umask, and the
    # -wal and -shm files it makes later copy the main file's mode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)


class Journal:
    """The transaction journal in one SQLite file. See the module docstring."""

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            _create_private(self.path)
            self._conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._closed = False
        self._identity = self._file_identity()
        self._problem: str | None = None
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._conn.close()
            self._closed = True
            raise

    # -- connection set-up ----------------------------------------------------------------

    def _configure(self) -> None:
        with self._errors("open"):
            self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(
                    f"the journal {self.path} cannot use WAL mode (got {mode!r}); "
                    "is it on a file system without shared memory support?"
                )
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        with self._errors("open"), self._transaction():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal {self.path} has schema version {version}, newer than the "
                    f"{SCHEMA_VERSION} this ecrd understands; run the ecrd that wrote it, "
                    "or a later one"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    self._conn.execute(statement)
            # PRAGMA does not take parameters; SCHEMA_VERSION is our own integer.
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    # -- transactions and error mapping ---------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {doing} failed: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so a read-then-write (the duplicate check,
        # the transition check) cannot race another writer of the same file.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                # SQLite has already rolled back after the errors that make ROLLBACK fail.
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            with self._errors(doing), self._transaction():
                yield self._conn

    @contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            with self._errors(doing):
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
    ) -> TxRecord:
        """Journal a new money command as ``pending``, durably, before anything is sent.

        ``who`` names the requester in the audit trail (e.g. the POS peer's credentials).
        ``request_id`` and ``link``, when already known, save a separate ``mark_sending``
        (one fsync less on every payment).
        Raises ``DuplicateReference`` if ``reference_id`` was ever used before.
        """
        if action not in MONEY_ACTIONS:
            raise ValueError(f"not a money action: {action!r}")
        canonical = canonical_params(params)
        now = self._now()
        record = TxRecord(
            reference_id=reference_id,
            terminal=terminal,
            action=action,
            params=json.loads(canonical),
            state="pending",
            amount=amount,
            currency=currency,
            request_id=request_id,
            link=link,
            reply=None,
            error=None,
            note=None,
            resolved_by=None,
            created_at=now,
            updated_at=now,
        )
        with self._write("begin") as conn:
            self.check_file()
            existing = self._fetch(conn, reference_id)
            if existing is not None:
                raise DuplicateReference(existing)
            conn.execute(
                "INSERT INTO transactions (reference_id, terminal, action, params, state, "
                "amount, currency, request_id, link, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    reference_id,
                    terminal,
                    action,
                    canonical,
                    "pending",
                    amount,
                    currency,
                    request_id,
                    link,
                    now,
                    now,
                ),
            )
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
            conn.execute(
                "UPDATE transactions SET request_id = ?, link = ?, updated_at = ? "
                "WHERE reference_id = ?",
                (request_id, link, now, reference_id),
            )
            note = f"sending on {link}, requestID {request_id}"
            self._event(conn, reference_id, now, "pending", "pending", DAEMON, note)
        return attrs.evolve(current, request_id=request_id, link=link, updated_at=now)

    def finish(
        self,
        reference_id: str,
        *,
        state: str,
        reply: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> TxRecord:
        """End a ``pending`` command: ``succeeded``, ``failed`` or ``unknown``.

        ``reply`` is the terminal's decrypted reply body, verbatim; ``error`` is
        ``{"reason", "message"}`` when no usable reply came; for ``unknown``, ``note`` is the
        sentence that tells the cashier what to check.
        """
        if state not in _FINISH_STATES:
            raise ValueError(f"finish goes to succeeded, failed or unknown, not {state!r}")
        _check_error(error)
        changes = {
            "state": state,
            "reply": None if reply is None else dict(reply),
            "error": None if error is None else dict(error),
            "note": note,
        }
        return self._change(reference_id, "finish", {"pending"}, changes, DAEMON, note)

    def settle(
        self,
        reference_id: str,
        *,
        state: str,
        reply: Mapping[str, Any],
        note: str | None = None,
    ) -> TxRecord:
        """Settle an ``unknown`` command from the terminal's answer to the status action.

        The record takes the status reply; its error and its what-to-check note no longer
        apply and are cleared (the audit trail keeps them).
        """
        if state not in _SETTLE_STATES:
            raise ValueError(f"settle goes to succeeded or failed, not {state!r}")
        changes = {"state": state, "reply": dict(reply), "error": None, "note": None}
        why = note or "settled by the terminal's answer to the status action"
        return self._change(reference_id, "settle", {"unknown"}, changes, DAEMON, why)

    def resolve(self, reference_id: str, *, outcome: str, note: str, who: str) -> TxRecord:
        """An operator settles an ``unknown`` command (``ecrctl resolve``, design.md §3 rule 4).

        ``outcome`` is ``succeeded`` or ``failed``; ``who`` and ``note`` are kept on the
        record and in the audit trail.
        """
        if outcome not in _SETTLE_STATES:
            raise ValueError(f"outcome must be 'succeeded' or 'failed', not {outcome!r}")
        changes = {"state": f"resolved_{outcome}", "note": note, "resolved_by": who}
        return self._change(reference_id, "resolve", {"unknown"}, changes, who, note)

    def recover(self, note: str) -> list[TxRecord]:
        """At start-up, turn every ``pending`` record into ``unknown`` (design.md §3 rule 6).

        A pending record means the daemon stopped while the command may have been sent, so
        its outcome is unknown. ``note`` tells the cashier what to check. Returns the records
        changed, oldest first. All of them change in one transaction, or none does.
        """
        error = {
            "reason": "daemon_restarted",
            "message": "ecrd stopped before the terminal's reply was recorded",
        }
        with self._write("recover") as conn:
            rows = conn.execute(_SELECT + "WHERE state = 'pending' ORDER BY seq").fetchall()
            now = self._now()
            changed = []
            for row in rows:
                record = attrs.evolve(
                    _record(row), state="unknown", error=error, note=note, updated_at=now
                )
                self._store(conn, record)
                self._event(conn, record.reference_id, now, "pending", "unknown", DAEMON, note)
                changed.append(record)
        return changed

    def _change(
        self,
        reference_id: str,
        doing: str,
        allowed_from: set[str],
        changes: dict[str, Any],
        who: str,
        why: str | None,
    ) -> TxRecord:
        with self._write(doing) as conn:
            current = self._expect(conn, reference_id, allowed_from, doing)
            now = self._now()
            record = attrs.evolve(current, updated_at=now, **changes)
            self._store(conn, record)
            self._event(conn, reference_id, now, current.state, record.state, who, why)
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

    def _store(self, conn: sqlite3.Connection, record: TxRecord) -> None:
        conn.execute(
            "UPDATE transactions SET state = ?, reply = ?, error = ?, note = ?, "
            "resolved_by = ?, updated_at = ? WHERE reference_id = ?",
            (
                record.state,
                _dumps(record.reply),
                _dumps(record.error),
                record.note,
                record.resolved_by,
                record.updated_at,
                record.reference_id,
            ),
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
    ) -> None:
        conn.execute(
            "INSERT INTO events (reference_id, at, from_state, to_state, who, note) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (reference_id, at, from_state, to_state, who, note),
        )

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    def _fetch(conn: sqlite3.Connection, reference_id: str) -> TxRecord | None:
        row = conn.execute(_SELECT + "WHERE reference_id = ?", (reference_id,)).fetchone()
        return None if row is None else _record(row)

    def get(self, reference_id: str) -> TxRecord | None:
        with self._read("get") as conn:
            return self._fetch(conn, reference_id)

    def list(
        self,
        *,
        terminal: str | None = None,
        state: str | None = None,
        since: str | None = None,
        limit: int = 100,
    ) -> builtins.list[TxRecord]:
        """Records newest first. ``since`` (RFC 3339) keeps those created at or after it."""
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        after = None if since is None else parse_time(since)
        with self._read("list") as conn:
            rows = conn.execute(
                _SELECT + "WHERE (:terminal IS NULL OR terminal = :terminal) "
                "AND (:state IS NULL OR state = :state) "
                "AND (:since IS NULL OR created_at >= :since) "
                "ORDER BY created_at DESC, seq DESC LIMIT :limit",
                {"terminal": terminal, "state": state, "since": after, "limit": limit},
            ).fetchall()
        return [_record(row) for row in rows]

    def unknown(self, terminal: str | None = None) -> builtins.list[TxRecord]:
        """The ``unknown`` records (of one terminal), oldest first: the order to settle them."""
        return self._in_state("unknown", terminal)

    def pending(self) -> builtins.list[TxRecord]:
        """The ``pending`` records, oldest first."""
        return self._in_state("pending", None)

    def _in_state(self, state: str, terminal: str | None) -> builtins.list[TxRecord]:
        with self._read(state) as conn:
            rows = conn.execute(
                _SELECT + "WHERE state = :state AND (:terminal IS NULL OR terminal = :terminal) "
                "ORDER BY seq",
                {"state": state, "terminal": terminal},
            ).fetchall()
        return [_record(row) for row in rows]

    def events(self, reference_id: str) -> builtins.list[Event]:
        """The audit trail of one record, oldest first."""
        with self._read("events") as conn:
            rows = conn.execute(
                "SELECT reference_id, at, from_state, to_state, who, note FROM events "
                "WHERE reference_id = ? ORDER BY seq",
                (reference_id,),
            ).fetchall()
        return [Event(**dict(row)) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many records are in each state; every state is present, zero or not."""
        with self._read("counts") as conn:
            rows = conn.execute("SELECT state, count(*) FROM transactions GROUP BY state")
            found = {state: count for state, count in rows}
        return {state: found.get(state, 0) for state in STATES}

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self._errors("close"):
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
