"""Read-only access to the journal, on its own SQLite connection and its own thread.

WAL lets readers and the writer run at the same time, so the API's listings and lookups
(``transaction.get``, ``transaction.list``, ``status``) never wait behind a payment's
fsynced write, and a payment never waits behind a client's long listing. The writer
(``Journal``, driven by ``money/authority.py``) keeps its own connection and its own
thread (a ``Workers`` of one, ``workers.py``).

The connection is opened ``mode=ro``: nothing here can change the journal. Listings are
paged: at most ``MAX_PAGE`` records and about ``PAGE_BYTES`` of them (never less than one
record), newest first, and ``before`` (a reference id from the previous page) continues
where that page ended. Rows are read one by one and the page ends as soon as the next row
would pass the byte budget, so a page of large records is never read whole into memory.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from functools import partial
from typing import Any, Final, TypeVar

import trio

from ecrd import ownership
from ecrd.store import audit
from ecrd.store.journal import STATES, JournalError, TxRecord
from ecrd.store.journal_records import SELECT as _SELECT
from ecrd.store.journal_records import record_from_row as _record

T = TypeVar("T")
MAX_PAGE: Final = 500
PAGE_BYTES: Final = 1 << 20
# What a record's API form adds to the text of its columns (keys, quotes, punctuation).
_RECORD_OVERHEAD: Final = 400
_EXCLUSIVE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PAGE: Final = (
    _SELECT + "WHERE (:terminal IS NULL OR terminal = :terminal) "  # noqa: S608 - constants
    "AND (:state IS NULL OR state = :state "
    "OR reference_id IN (SELECT value FROM json_each(:also))) "
    "AND (:since IS NULL OR created_at >= :since) "
    "AND (:until IS NULL OR created_at < :until) "
    "AND (:at IS NULL OR (created_at, seq) < (:at, :seq)) "
    "ORDER BY created_at DESC, seq DESC LIMIT :limit"
)


class UnknownCursor(LookupError):
    """``before`` names no journaled transaction."""


def _within(rows: sqlite3.Cursor, max_bytes: int) -> list[TxRecord]:
    """The records of ``rows``, read one at a time, up to about ``max_bytes`` of them
    (UTF-8 text of their columns and the API form's overhead), and at least one."""
    page: list[TxRecord] = []
    size = 0
    try:
        for row in rows:
            row_size = _RECORD_OVERHEAD + sum(len(v.encode()) for v in row if isinstance(v, str))
            if page and size + row_size > max_bytes:
                break
            page.append(_record(row))
            size += row_size
    finally:
        rows.close()  # ends the read now, not when the cursor is collected
    return page


class JournalView:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(1)
        self._conn: sqlite3.Connection | None = None

    @contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                if self._conn is None:
                    # Opened on first use: the writer has created the file and its WAL.
                    uri = "file:" + urllib.parse.quote(self.path) + "?mode=ro"
                    self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
                    self._conn.row_factory = sqlite3.Row
                    self._conn.execute("PRAGMA busy_timeout = 5000")
                yield self._conn
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path}: {doing} failed: {exc}") from exc

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` on the reader thread (one read at a time, never queued with writes)."""
        return await trio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self._limiter)

    def get(self, reference_id: str) -> TxRecord | None:
        with self._read("get") as conn:
            row = conn.execute(_SELECT + "WHERE reference_id = ?", (reference_id,)).fetchone()
        return None if row is None else _record(row)

    def started_by(self, reference_id: str) -> str | None:
        """Who journaled the record (the audit trail's first event: ``uid=… user=… pid=…``)."""
        with self._read("started_by") as conn:
            row = conn.execute(
                "SELECT who FROM events WHERE reference_id = ? AND from_state IS NULL "
                "ORDER BY seq LIMIT 1",
                (reference_id,),
            ).fetchone()
        return None if row is None else str(row[0])

    def page(
        self,
        *,
        terminal: str | None = None,
        state: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: str | None = None,
        limit: int = 100,
        also: Sequence[str] = (),
        max_bytes: int = PAGE_BYTES,
    ) -> list[TxRecord]:
        """Records newest first, created at or after ``since`` and before ``until`` (journal
        format), older than the record ``before`` names; at most ``limit`` (≤ ``MAX_PAGE``)
        and about ``max_bytes`` of them (at least one). ``also``: references listed
        whatever their ``state`` (the unknowns not yet journaled as such,
        ``Authority.seen``)."""
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        limit = max(1, min(limit, MAX_PAGE))
        with self._read("list") as conn:
            cursor = (None, None)
            if before is not None:
                found = conn.execute(
                    "SELECT created_at, seq FROM transactions WHERE reference_id = ?", (before,)
                ).fetchone()
                if found is None:
                    raise UnknownCursor(before)
                cursor = (found[0], found[1])
            rows = conn.execute(
                _PAGE,
                {"terminal": terminal, "state": state, "since": since, "until": until,
                 "at": cursor[0], "seq": cursor[1], "limit": limit, "also": json.dumps(also)},
            )  # fmt: skip
            return _within(rows, max_bytes)

    def history(self, reference_id: str) -> list[dict[str, Any]]:
        """The record's audit trail, oldest first: every change and every piece of evidence
        (what the terminal or a person said), with who and why."""
        with self._read("history") as conn:
            rows = conn.execute(
                "SELECT at, from_state, to_state, who, note, evidence FROM events "
                "WHERE reference_id = ? ORDER BY seq",
                (reference_id,),
            ).fetchall()
        return [
            {"at": at, "from": was, "to": to, "who": who, "why": why,
             "evidence": None if evidence is None else json.loads(evidence)}
            for at, was, to, who, why, evidence in rows
        ]  # fmt: skip

    def audit(
        self,
        *,
        limit: int = 100,
        before: int | None = None,
        action: str | None = None,
        max_bytes: int = PAGE_BYTES,
    ) -> list[dict[str, Any]]:
        """The audit table's rows (admin actions, prunes), newest first (store/audit.py),
        paged like the records: at most ``limit`` and about ``max_bytes``."""
        with self._read("audit") as conn:
            return audit.page(conn, limit=max(1, min(limit, MAX_PAGE)), before=before,
                              action=action, max_bytes=max_bytes)  # fmt: skip

    def counts(self) -> dict[str, int]:
        with self._read("counts") as conn:
            rows = conn.execute("SELECT state, count(*) FROM transactions GROUP BY state")
            found = {state: count for state, count in rows}
        return {state: found.get(state, 0) for state in STATES}

    def tally(self) -> list[tuple[str, str, str, int]]:
        """``(terminal, action, state, count)`` for every combination in the journal."""
        with self._read("tally") as conn:
            rows = conn.execute(
                "SELECT terminal, action, state, count(*) FROM transactions "
                "GROUP BY terminal, action, state"
            ).fetchall()
        return [(str(t), str(a), str(s), int(n)) for t, a, s, n in rows]

    def size_bytes(self) -> int:
        """The journal's size on disk: the database and its write-ahead log."""
        return sum(
            os.stat(self.path + suffix).st_size
            for suffix in ("", "-wal")
            if os.path.exists(self.path + suffix)
        )

    def backup(self, dest: str) -> int:
        """A consistent copy of the journal at ``dest``, made with SQLite's online backup
        while payments go on; returns its record count.

        ``dest``'s directory must be one only root and ecrd can change (no symbolic link on
        the way, ``ownership.open_trusted_directory``). In it, a fresh file of a random name
        is created exclusively (0600) and SQLite writes that file and nothing else (no
        rollback journal: ``journal_mode = OFF``); that SQLite's file is the one created is
        checked by inode before and after. Only the finished, fsynced copy gets ``dest``'s
        name, by a hard link, which fails if the name exists: a backup never overwrites, and
        a half-written copy never carries a backup's name. Raises ``FileExistsError``,
        ``ownership.UntrustedDirectory`` or another ``OSError``."""
        directory, name = os.path.split(os.path.abspath(dest))
        dir_fd = ownership.open_trusted_directory(directory)
        try:
            if os.path.lexists(os.path.join(directory, name)):
                raise FileExistsError(errno.EEXIST, f"{dest} exists")
            temp = f".{name}.{secrets.token_hex(8)}.tmp"
            fd = os.open(temp, _EXCLUSIVE, 0o600, dir_fd=dir_fd)
            try:
                records = self._copy_into(os.path.join(directory, temp), fd, dir_fd)
                os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                os.fsync(dir_fd)
            finally:
                os.close(fd)
                os.unlink(temp, dir_fd=dir_fd)
            return records
        finally:
            os.close(dir_fd)

    def _copy_into(self, path: str, fd: int, dir_fd: int) -> int:
        """The backup into the empty file ``fd`` (named ``path``), fsynced; its records."""
        mine = os.fstat(fd)

        def still_mine() -> None:
            st = os.stat(os.path.basename(path), dir_fd=dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
                raise OSError(errno.EEXIST, f"{path} was replaced while ecrd wrote it")

        with self._read("backup") as conn, closing(sqlite3.connect(path)) as target:
            target.execute("PRAGMA journal_mode = OFF")  # the copy's file, and no other
            still_mine()
            conn.backup(target)
            records = int(target.execute("SELECT count(*) FROM transactions").fetchone()[0])
        still_mine()
        os.fsync(fd)
        return records

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
