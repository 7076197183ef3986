"""The transaction journal (design.md §3 money safety, §4 state on disk).

Every test uses a real SQLite file under ``tmp_path``. Crashes are real: a child Python
process is killed with ``os._exit`` at the chosen moment, and this process reopens the file.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ecrd.store.journal import (
    MONEY_ACTIONS,
    SCHEMA_VERSION,
    STATES,
    Change,
    DuplicateReference,
    Journal,
    JournalError,
    TransactionNotFound,
    TransitionRefused,
    TxRecord,
    parse_time,
    same_params,
)
from ecrd.store.journal_records import COLUMNS
from ecrd.store.journal_view import JournalView

REPO = Path(__file__).resolve().parents[1]
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")


class Clock:
    """A clock the test moves by hand, so ordering and ``since`` are exact."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite3"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(path: Path, clock: Clock) -> Iterator[Journal]:
    with Journal(path, clock=clock) as j:
        yield j


def sale(journal: Journal, reference_id: str = "R1", **overrides: Any) -> TxRecord:
    args: dict[str, Any] = {
        "reference_id": reference_id,
        "terminal": "counter-1",
        "action": "Sale",
        "params": {"amount": "10.20", "currency": "HKD", "print": True},
        "amount": "10.20",
        "currency": "HKD",
    }
    args.update(overrides)
    return journal.begin(**args)


def finish(journal: Journal, reference_id: str, state: str, **columns: Any) -> TxRecord:
    """Store ``state`` and ``columns`` as a change (what the money package decides is
    proved in tests/test_settlement.py; here, that the journal stores it)."""
    _, after = journal.apply(reference_id, lambda _: Change(state, "test", set=columns))
    return after


def trail(journal: Journal, reference_id: str = "R1") -> list[dict[str, Any]]:
    """The record's audit trail as the API reads it (``transaction.get``'s history)."""
    view = JournalView(journal.path)
    try:
        return view.history(reference_id)
    finally:
        view.close()


def counts(journal: Journal) -> dict[str, int]:
    view = JournalView(journal.path)
    try:
        return view.counts()
    finally:
        view.close()


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A second, independent connection: it sees only what was committed."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def connection(journal: Journal) -> sqlite3.Connection:
    # Per-connection settings (synchronous, max_page_count) can only be seen or changed on
    # the journal's own connection.
    return journal._conn


def run_child(path: Path, script: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(script)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# -- opening the file --------------------------------------------------------------------


def test_uses_wal_and_full_synchronous(journal: Journal) -> None:
    conn = connection(journal)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_file_is_created_private_whatever_the_umask(path: Path) -> None:
    old = os.umask(0)
    try:
        with Journal(path) as j:
            sale(j)
            for name in (path, Path(f"{path}-wal")):
                assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
    finally:
        os.umask(old)


def test_schema_version_is_recorded(journal: Journal, path: Path) -> None:
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopening_keeps_the_records(path: Path) -> None:
    with Journal(path) as j:
        sale(j)
    with Journal(path) as j:
        record = j.get("R1")
    assert record is not None
    assert record.state == "pending"


def test_a_newer_schema_is_refused(path: Path) -> None:
    Journal(path).close()
    with raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match="newer") as caught:
        Journal(path)
    assert caught.value.reason == "journal_error"
    assert str(SCHEMA_VERSION + 1) in str(caught.value)


def test_a_file_that_is_not_a_database_is_reported(path: Path) -> None:
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(JournalError, match=re.escape(str(path))):
        Journal(path)


def test_a_path_that_cannot_be_opened_is_reported(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot open"):
        Journal(tmp_path)  # a directory


# -- begin: write ahead, once per reference id ------------------------------------------


def test_begin_records_a_pending_transaction(journal: Journal) -> None:
    record = sale(journal)
    assert record.state == "pending"
    assert (record.amount, record.currency, record.terminal) == ("10.20", "HKD", "counter-1")
    assert record.created_at == record.updated_at
    assert RFC3339_UTC.match(record.created_at)
    assert journal.get("R1") == record


def test_the_api_shows_every_column_once(journal: Journal) -> None:
    assert sorted(sale(journal).to_api()) == sorted(COLUMNS)


def test_begin_is_committed_before_it_returns(journal: Journal, path: Path) -> None:
    sale(journal)
    with raw(path) as conn:
        row = conn.execute("SELECT state FROM transactions WHERE reference_id = 'R1'").fetchone()
    assert row == ("pending",)


def test_begin_survives_the_process_dying_right_after(path: Path) -> None:
    child = run_child(
        path,
        """
        import os, sys
        from ecrd.store.journal import Journal
        j = Journal(sys.argv[1])
        j.begin(reference_id="R1", terminal="counter-1", action="Sale",
                params={"amount": "1.00"}, amount="1.00", currency="HKD")
        os._exit(0)  # no close, no checkpoint: only what begin committed remains
        """,
    )
    assert child.returncode == 0, child.stderr
    with Journal(path) as j:
        record = j.get("R1")
    assert record is not None
    assert record.state == "pending"


CRASH_ON_COMMIT = """
    import os, sys
    from ecrd.store.journal import Change, Journal
    j = Journal(sys.argv[1])
    {before}
    # Die the moment COMMIT is about to run: the transaction's rows are written, not committed.
    j._conn.set_trace_callback(lambda sql: os._exit(17) if sql == "COMMIT" else None)
    {crashing}
    os._exit(0)
"""


def test_a_crash_inside_begin_leaves_no_record(path: Path) -> None:
    child = run_child(
        path,
        CRASH_ON_COMMIT.format(
            before="pass",
            crashing='j.begin(reference_id="R1", terminal="counter-1", action="Sale", '
            'params={}, amount="1.00", currency="HKD")',
        ),
    )
    assert child.returncode == 17, child.stderr
    with Journal(path) as j:
        assert j.get("R1") is None
        assert trail(j) == []
        assert counts(j)["pending"] == 0


def test_a_crash_inside_apply_leaves_the_previous_state(path: Path) -> None:
    child = run_child(
        path,
        CRASH_ON_COMMIT.format(
            before='j.begin(reference_id="R1", terminal="counter-1", action="Sale", '
            'params={}, amount="1.00", currency="HKD")',
            crashing='j.apply("R1", lambda r: Change("succeeded", "t", set={"reply": {}}))',
        ),
    )
    assert child.returncode == 17, child.stderr
    with Journal(path) as j:
        record = j.get("R1")
        assert record is not None
        assert (record.state, record.reply) == ("pending", None)
        assert [e["to"] for e in trail(j)] == ["pending"]


def test_a_reference_id_is_used_once(journal: Journal) -> None:
    first = sale(journal)
    finish(journal, "R1", "succeeded", reply={"status": "SUCCESS"})
    with pytest.raises(DuplicateReference) as caught:
        sale(journal, params={"amount": "99.00"}, amount="99.00")
    existing = caught.value.existing
    assert existing.state == "succeeded"
    assert existing.params == first.params
    assert counts(journal)["succeeded"] == 1
    assert len(trail(journal)) == 2


def test_begin_refuses_an_action_that_is_not_money(journal: Journal) -> None:
    with pytest.raises(ValueError, match="money"):
        sale(journal, action="DeviceInfo")
    assert journal.get("R1") is None


def test_amounts_are_strings_never_floats(journal: Journal) -> None:
    with pytest.raises(TypeError, match="amount"):
        sale(journal, amount=10.2)
    assert journal.get("R1") is None


def test_begin_names_the_requester_in_the_audit_trail(journal: Journal) -> None:
    sale(journal, who="uid=1000 pid=4242")
    assert trail(journal)[0]["who"] == "uid=1000 pid=4242"


@pytest.mark.parametrize("action", MONEY_ACTIONS)
def test_every_money_action_can_be_journalled(journal: Journal, action: str) -> None:
    assert sale(journal, action=action).action == action


# -- parameters ----------------------------------------------------------------------------


def test_same_params_ignores_key_order() -> None:
    a = {"amount": "10.20", "currency": "HKD", "extra": {"b": 1, "a": 2}}
    b = {"extra": {"a": 2, "b": 1}, "currency": "HKD", "amount": "10.20"}
    assert same_params(a, b)


@pytest.mark.parametrize(
    "other",
    [
        {"amount": "10.21", "currency": "HKD"},
        {"amount": "10.20", "currency": "HKD", "print": False},
        {"amount": "10.20"},
    ],
)
def test_same_params_sees_any_difference(other: dict[str, Any]) -> None:
    assert not same_params({"amount": "10.20", "currency": "HKD"}, other)


def test_same_params_is_strict_about_json_types() -> None:
    assert not same_params({"print": True}, {"print": 1})
    assert not same_params({"n": 1}, {"n": 1.0})


def test_stored_params_compare_equal_to_the_request(journal: Journal) -> None:
    params = {"currency": "HKD", "amount": "10.20", "extra": {"z": [1, 2], "a": None}}
    sale(journal, params=params)
    stored = journal.get("R1")
    assert stored is not None
    assert same_params(stored.params, params)


# -- changes: what the money package decides, stored ---------------------------------------


def test_apply_stores_the_change_and_its_evidence_on_one_audit_row(
    journal: Journal, clock: Clock
) -> None:
    sale(journal)
    clock.advance()
    said = {"kind": "reply", "action": "Sale", "body": {"status": "Success"}}
    change = Change("succeeded", "the terminal's reply", evidence=said,
                    set={"reply": {"status": "Success"}, "approved_amount": "12.20"})  # fmt: skip
    before, after = journal.apply("R1", lambda current: change)
    assert (before.state, after.state, after.approved_amount) == ("pending", "succeeded", "12.20")
    assert after.reply == {"status": "Success"} and after.updated_at > after.created_at
    assert journal.get("R1") == after
    last = trail(journal)[-1]
    assert (last["from"], last["to"], last["who"], last["why"]) == (
        "pending", "succeeded", "ecrd", "the terminal's reply",
    )  # fmt: skip
    assert last["evidence"] == said


def test_decide_reads_the_record_inside_the_write_transaction(journal: Journal) -> None:
    sale(journal)
    finish(journal, "R1", "unknown", note="first")
    seen: list[TxRecord] = []

    def decide(current: TxRecord) -> Change:
        seen.append(current)
        return Change(current.state, "kept")

    journal.apply("R1", decide)
    assert [(r.state, r.note) for r in seen] == [("unknown", "first")]


def test_evidence_that_changes_nothing_is_kept_all_the_same(journal: Journal) -> None:
    sale(journal)
    finish(journal, "R1", "succeeded", reply={"rrn": "1"})
    said = {"kind": "late_reply", "body": {"status": "Success", "rrn": "1"}}
    journal.apply("R1", lambda r: Change("succeeded", "kept", evidence=said))
    record = journal.get("R1")
    assert record is not None and record.reply == {"rrn": "1"}
    assert [e["evidence"] for e in trail(journal)][-1] == said


def test_a_refusal_raised_by_decide_changes_nothing(journal: Journal) -> None:
    sale(journal)

    def refuse(current: TxRecord) -> Change:
        raise TransitionRefused("no")

    with pytest.raises(TransitionRefused):
        journal.apply("R1", refuse)
    assert isinstance(TransitionRefused("x"), ValueError)
    assert len(trail(journal)) == 1


def test_a_change_sets_only_what_evidence_may_change() -> None:
    with pytest.raises(ValueError, match="amount"):
        Change("succeeded", "x", set={"amount": "0.01"})
    with pytest.raises(ValueError, match="reason"):
        Change("failed", "x", set={"error": {"message": "refused"}})
    with pytest.raises(ValueError):
        Change("bogus", "x")


def test_changing_a_missing_transaction_is_not_found(journal: Journal) -> None:
    with pytest.raises(TransactionNotFound):
        finish(journal, "nope", "failed")


def test_mark_sending_records_request_id_and_link(journal: Journal) -> None:
    sale(journal)
    journal.mark_sending("R1", request_id="req-lan", link="lan")
    record = journal.mark_sending("R1", request_id="req-cloud", link="cloud")
    assert (record.request_id, record.link, record.state) == ("req-cloud", "cloud", "pending")
    assert journal.get("R1") == record
    notes = [e["why"] for e in trail(journal)[1:]]
    assert notes == ["sending on lan, requestID req-lan", "sending on cloud, requestID req-cloud"]
    assert journal.by_request("req-cloud") == record
    assert journal.by_request("req-lan") is None


def test_mark_sending_refuses_a_finished_transaction(journal: Journal) -> None:
    sale(journal)
    finish(journal, "R1", "failed", reply={"errorCode": "51"})
    with pytest.raises(TransitionRefused):
        journal.mark_sending("R1", request_id="req", link="lan")


def test_the_audit_trail_names_who_and_why(journal: Journal) -> None:
    sale(journal)
    finish(journal, "R1", "unknown")
    who = "uid=1000 pid=4242"
    change = Change("resolved_failed", "declined on screen", who=who,
                    set={"note": "declined on screen", "resolved_by": who})  # fmt: skip
    _, record = journal.apply("R1", lambda r: change)
    assert trail(journal)[-1] == {
        "at": record.updated_at,
        "from": "unknown",
        "to": "resolved_failed",
        "who": "uid=1000 pid=4242",
        "why": "declined on screen",
        "evidence": None,
    }


# -- recovery ------------------------------------------------------------------------------


def test_recover_decides_for_every_pending_record_and_leaves_the_rest(journal: Journal) -> None:
    sale(journal, "P1")
    sale(journal, "P2", terminal="counter-2")
    sale(journal, "S1")
    finish(journal, "S1", "succeeded", reply={})
    sale(journal, "U1")
    finish(journal, "U1", "unknown", note="earlier")
    asked: list[str] = []

    def decide(record: TxRecord) -> Change:
        asked.append(record.reference_id)
        return Change("unknown", "restarted", set={"note": "Check the terminal."})

    recovered = journal.recover(decide)

    assert asked == ["P1", "P2"]
    assert [r.reference_id for r in recovered] == ["P1", "P2"]
    for ref in ("P1", "P2"):
        record = journal.get(ref)
        assert record is not None and record in recovered
        assert (record.state, record.note) == ("unknown", "Check the terminal.")
    unknown_u1 = journal.get("U1")
    assert unknown_u1 is not None and unknown_u1.note == "earlier"
    assert journal.recover(decide) == []


def test_pending_and_unknown_lists(journal: Journal) -> None:
    sale(journal, "A")
    sale(journal, "B", terminal="counter-2")
    sale(journal, "C")
    finish(journal, "B", "unknown")
    finish(journal, "C", "unknown")
    assert [r.reference_id for r in journal.pending()] == ["A"]
    assert [r.reference_id for r in journal.unknown()] == ["B", "C"]
    assert [r.reference_id for r in journal.unknown("counter-1")] == ["C"]
    assert journal.unknown("counter-9") == []


# -- reading -------------------------------------------------------------------------------


def refs(journal: Journal, **filters: Any) -> list[str]:
    """The references of one page of ``transaction.list`` (the API's reader)."""
    view = JournalView(journal.path)
    try:
        return [r.reference_id for r in view.page(**filters)]
    finally:
        view.close()


def test_a_page_is_newest_first_and_filters(journal: Journal, clock: Clock) -> None:
    for i, terminal in enumerate(["counter-1", "counter-2", "counter-1", "counter-1"]):
        sale(journal, f"R{i}", terminal=terminal)
        clock.advance(60)
    finish(journal, "R2", "failed", reply={"errorCode": "51"})

    assert refs(journal) == ["R3", "R2", "R1", "R0"]
    assert refs(journal, limit=2) == ["R3", "R2"]
    assert refs(journal, terminal="counter-1") == ["R3", "R2", "R0"]
    assert refs(journal, state="failed") == ["R2"]
    assert refs(journal, terminal="counter-2", state="failed") == []
    assert refs(journal, since=parse_time("2026-03-01T12:02:00Z")) == ["R3", "R2"]
    # Any offset is understood, and compared as the instant it names.
    assert refs(journal, since=parse_time("2026-03-01T20:01:00+08:00")) == ["R3", "R2", "R1"]


def test_a_page_orders_records_of_the_same_millisecond_by_arrival(journal: Journal) -> None:
    for ref in ("first", "second", "third"):
        sale(journal, ref)  # the clock is not moved
    assert refs(journal) == ["third", "second", "first"]


def test_a_page_refuses_an_unknown_state(journal: Journal) -> None:
    with pytest.raises(ValueError):
        refs(journal, state="done")


@pytest.mark.parametrize("since", ["yesterday", "2026-03-01T12:00:00"])  # no offset: not RFC 3339
def test_since_must_be_rfc3339(since: str) -> None:
    with pytest.raises(ValueError):
        parse_time(since)


def test_counts_cover_every_state(journal: Journal) -> None:
    assert counts(journal) == dict.fromkeys(STATES, 0)
    sale(journal, "A")
    sale(journal, "B")
    sale(journal, "C")
    finish(journal, "B", "unknown")
    finish(journal, "C", "disputed")
    assert counts(journal) == {
        "pending": 1,
        "succeeded": 0,
        "failed": 0,
        "unknown": 1,
        "resolved_succeeded": 0,
        "resolved_failed": 0,
        "disputed": 1,
    }


def test_get_of_a_missing_reference_is_none(journal: Journal) -> None:
    assert journal.get("missing") is None


def test_to_api_shape(journal: Journal) -> None:
    sale(journal)
    journal.mark_sending("R1", request_id="req-1", link="serial")
    record = finish(journal, "R1", "failed", reply={"errorCode": "51"})
    api = record.to_api()
    assert api == {
        "reference_id": "R1",
        "terminal": "counter-1",
        "action": "Sale",
        "amount": "10.20",
        "approved_amount": None,
        "currency": "HKD",
        "state": "failed",
        "reply": {"errorCode": "51"},
        "error": None,
        "note": None,
        "resolved_by": None,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "link": "serial",
        "request_id": "req-1",
        "params": {"amount": "10.20", "currency": "HKD", "print": True},
    }
    api["reply"]["errorCode"] = "changed"
    assert record.reply == {"errorCode": "51"}


# -- failures ------------------------------------------------------------------------------


def fill_the_disk(journal: Journal) -> None:
    # SQLite answers SQLITE_FULL ("database or disk is full") once the file would grow
    # past max_page_count: the same error a full file system gives.
    conn = connection(journal)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def free_the_disk(journal: Journal) -> None:
    connection(journal).execute("PRAGMA max_page_count = 1073741823")


def test_disk_full_in_begin_is_reported_and_writes_nothing(journal: Journal) -> None:
    fill_the_disk(journal)
    with pytest.raises(JournalError, match="full") as caught:
        sale(journal, params={"extra": {"blob": "x" * 200_000}})
    assert caught.value.reason == "journal_error"
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    free_the_disk(journal)
    assert journal.get("R1") is None
    assert trail(journal) == []
    assert sale(journal).state == "pending"  # the journal is usable again


def test_disk_full_in_apply_keeps_the_previous_state(journal: Journal) -> None:
    sale(journal)
    fill_the_disk(journal)
    with pytest.raises(JournalError, match="full"):
        finish(journal, "R1", "succeeded", reply={"receipt": "x" * 200_000})
    free_the_disk(journal)
    record = journal.get("R1")
    assert record is not None
    assert (record.state, record.reply) == ("pending", None)
    assert len(trail(journal)) == 1
    assert finish(journal, "R1", "succeeded", reply={}).state == "succeeded"


def test_a_closed_journal_says_so(path: Path) -> None:
    j = Journal(path)
    j.close()
    j.close()  # closing twice is harmless
    with pytest.raises(JournalError, match="closed"):
        j.get("R1")


def test_calls_from_different_threads_in_turn(journal: Journal) -> None:
    errors: list[BaseException] = []

    def in_worker() -> None:
        try:
            sale(journal)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=in_worker)
    worker.start()
    worker.join()
    assert errors == []
    assert finish(journal, "R1", "succeeded", reply={}).state == "succeeded"
