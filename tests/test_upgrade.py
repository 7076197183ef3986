"""Upgrades keep the records: state written by an older ecrd opens in this one, unchanged.

``tests/data/v<version>/`` holds a ``journal.sqlite3`` and a ``pairings.toml`` written by
that version (each directory's ``generate.py`` says how). Every test works on a copy, so
the fixtures stay as the old version left them. Every schema or format change adds a
directory (docs/internals.md, "State on disk").
"""

from __future__ import annotations

import shutil
import sqlite3
import tomllib
from contextlib import closing
from pathlib import Path

import pytest

from ecrd.money.evidence import LateReply, Resolved, Stopped, to_obj
from ecrd.money.notes import NOTE_RESTARTED
from ecrd.money.settlement import settle
from ecrd.store.journal import SCHEMA_VERSION, Journal, TxRecord
from ecrd.store.journal_view import JournalView
from ecrd.store.pairings import Pairing, PairingStore

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = sorted(p for p in DATA.glob("v*") if (p / "journal.sqlite3").is_file())
ROOT_NOTE = "checked the terminal: {} 已核對"


def unknown_note(ref: str) -> str:
    return (
        "The request reached (or may have reached) the terminal but no usable reply came "
        "back, so the customer may have been charged. Check the terminal's last transactions "
        f"for reference {ref}, then settle it with `ecrctl resolve {ref} succeeded|failed`."
    )


def timeout(ref: str) -> dict[str, str]:
    return {"reason": "timeout", "message": f"no reply to req-{ref} within 60 s"}


def reply(ref: str, status: str, **more: str) -> dict[str, str]:
    return {"requestID": f"req-{ref}", "referenceID": ref, "status": status, **more}


# reference_id: (terminal, action, state, amount, currency, link)
V010_RECORDS = {
    "order-1001": ("counter-1", "Sale", "succeeded", "10.20", "HKD", "lan"),
    "order-1002": ("counter-1", "Sale", "failed", "99.00", "HKD", "lan"),
    "order-1003": ("counter-2", "Sale", "unknown", "5.00", "HKD", "serial"),
    "order-1004": ("counter-2", "Sale", "resolved_succeeded", "7.50", "HKD", "serial"),
    "order-1005": ("counter-2", "Sale", "resolved_failed", "7.50", "HKD", "serial"),
    "order-1006": ("counter-1", "Sale", "succeeded", "3.30", "HKD", "lan"),
    "refund-1001": ("counter-1", "Refund", "succeeded", "10.20", "HKD", "lan"),
    "void-1002": ("counter-1", "Void", "failed", None, None, "cloud"),
    "order-1007": ("counter-3", "Sale", "pending", "42.00", "HKD", "cloud"),
}

# reference_id: (request_id, created_at, updated_at), all on 2026-11-20 at 09:00 UTC
V010_STAMPS = {
    "order-1001": ("req-order-1001", "01.250", "02.500"),
    "order-1002": ("req-order-1002", "03.750", "05.000"),
    "order-1003": ("req-order-1003", "06.250", "07.500"),
    "order-1004": ("req-order-1004", "08.750", "11.250"),
    "order-1005": ("req-order-1005", "12.500", "15.000"),
    "order-1006": ("req-order-1006", "16.250", "18.750"),
    "refund-1001": ("req-refund-1001", "20.000", "21.250"),
    "void-1002": ("req-void-1002-cloud", "22.500", "25.000"),
    "order-1007": ("req-order-1007", "26.250", "27.500"),
}

# reference_id: (params, reply, error, note, resolved_by)
V010_DETAILS = {
    "order-1001": (
        {"amount": "10.20", "currency": "HKD", "print": "YES"},
        reply("order-1001", "Success", rrn="1"),
        None,
        None,
        None,
    ),
    "order-1002": (
        {"amount": "99.00", "currency": "HKD", "payment_method": "card"},
        reply("order-1002", "Failed", errorCode="51", errorMessage="Declined"),
        None,
        None,
        None,
    ),
    "order-1003": (
        {"amount": "5.00", "currency": "HKD"},
        None,
        timeout("order-1003"),
        unknown_note("order-1003"),
        None,
    ),
    "order-1004": (
        {"amount": "7.50", "currency": "HKD"},
        None,
        timeout("order-1004"),
        ROOT_NOTE.format("succeeded"),
        "uid=0 (root)",
    ),
    "order-1005": (
        {"amount": "7.50", "currency": "HKD"},
        None,
        timeout("order-1005"),
        ROOT_NOTE.format("failed"),
        "uid=0 (root)",
    ),
    "order-1006": (
        {"amount": "3.30", "currency": "HKD"},
        reply("order-1006", "Success"),
        None,
        None,
        None,
    ),
    "refund-1001": (
        {"amount": "10.20", "currency": "HKD", "original_reference_id": "order-1001"},
        reply("refund-1001", "Success"),
        None,
        None,
        None,
    ),
    "void-1002": (
        {"original_reference_id": "order-1002"},
        None,
        {"reason": "link_down", "message": "cloud relay unreachable"},
        "The request never reached the terminal; nothing was charged.",
        None,
    ),
    "order-1007": (
        {"amount": "42.00", "currency": "HKD", "customer_order_id": "T12-7"},
        None,
        None,
        None,
        None,
    ),
}

# reference_id: the audit trail's (from_state, to_state, who)
POS, ECRD, ROOT = "uid=1001 pid=4242", "ecrd", "uid=0 (root)"
V010_TRAILS = {
    "order-1001": [(None, "pending", POS), ("pending", "succeeded", ECRD)],
    "order-1002": [(None, "pending", POS), ("pending", "failed", ECRD)],
    "order-1003": [(None, "pending", POS), ("pending", "unknown", ECRD)],
    "order-1004": [
        (None, "pending", POS),
        ("pending", "unknown", ECRD),
        ("unknown", "resolved_succeeded", ROOT),
    ],
    "order-1005": [
        (None, "pending", POS),
        ("pending", "unknown", ECRD),
        ("unknown", "resolved_failed", ROOT),
    ],
    "order-1006": [
        (None, "pending", POS),
        ("pending", "unknown", ECRD),
        ("unknown", "succeeded", ECRD),
    ],
    "refund-1001": [(None, "pending", POS), ("pending", "succeeded", ECRD)],
    "void-1002": [
        (None, "pending", POS),
        ("pending", "pending", ECRD),
        ("pending", "failed", ECRD),
    ],
    "order-1007": [(None, "pending", POS), ("pending", "pending", ECRD)],
}

V010_PAIRINGS = {
    "counter-1": Pairing(
        terminal_id="counter-1",
        device_sn="NEXGO-N96-1170270945",
        pin="654321",
        scheme="v2",
        host="192.168.1.50",
        port=8443,
        paired_at="2026-11-12T10:11:04+00:00",
    ),
    "counter-2": Pairing(
        terminal_id="counter-2",
        device_sn="PAX-A920-0042",
        pin="112233",
        scheme="legacy",
        paired_at="2026-11-13T08:00:00+00:00",
    ),
    "counter-3": Pairing(
        terminal_id="counter-3",
        device_sn="NEXGO-N86-77",
        pin="908172",
        scheme="v2",
        paired_at="2026-11-14T17:45:30+08:00",
    ),
}


def copy_state(version_dir: Path, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    shutil.copytree(version_dir, state, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return state


def raw_counts(journal: Path) -> tuple[int, int, int]:
    conn = sqlite3.connect(journal)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        records = conn.execute("SELECT count(*) FROM transactions").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    return version, records, events


@pytest.fixture
def v010(tmp_path: Path) -> Path:
    return copy_state(DATA / "v0.1.0", tmp_path)


def view_of(state: Path) -> JournalView:
    """The API's reader of the journal in ``state``."""
    return JournalView(str(state / "journal.sqlite3"))


def every_record(view: JournalView) -> list[TxRecord]:
    """Every record, page after page, as ``transaction.list`` reads them."""
    found: list[TxRecord] = []
    while page := view.page(limit=500, before=found[-1].reference_id if found else None):
        found += page
    return found


def test_every_release_fixture_is_found() -> None:
    assert [p.name for p in FIXTURES][:1] == ["v0.1.0"]


@pytest.mark.parametrize("version_dir", FIXTURES, ids=[p.name for p in FIXTURES])
def test_old_state_opens_migrated_with_nothing_lost(version_dir: Path, tmp_path: Path) -> None:
    state = copy_state(version_dir, tmp_path)
    version, records, events = raw_counts(state / "journal.sqlite3")
    assert version <= SCHEMA_VERSION
    with Journal(state / "journal.sqlite3"), closing(view_of(state)) as view:
        assert sum(view.counts().values()) == records
        assert len(every_record(view)) == records
    assert raw_counts(state / "journal.sqlite3") == (SCHEMA_VERSION, records, events)
    terminals = tomllib.loads((state / "pairings.toml").read_text())["terminals"]
    assert sorted(PairingStore(state / "pairings.toml").load()) == sorted(terminals)


def test_v010_journal_was_written_by_schema_1(v010: Path) -> None:
    assert raw_counts(v010 / "journal.sqlite3") == (1, 9, 22)


def test_v010_journal_keeps_every_record(v010: Path) -> None:
    with Journal(v010 / "journal.sqlite3"), closing(view_of(v010)) as view:
        records = {r.reference_id: r for r in every_record(view)}
    assert sorted(records) == sorted(V010_RECORDS)
    for ref, expected in V010_RECORDS.items():
        r = records[ref]
        assert (r.terminal, r.action, r.state, r.amount, r.currency, r.link) == expected
        request_id, created, updated = V010_STAMPS[ref]
        assert r.request_id == request_id
        assert r.created_at == f"2026-11-20T09:00:{created}Z"
        assert r.updated_at == f"2026-11-20T09:00:{updated}Z"
        assert (r.params, r.reply, r.error, r.note, r.resolved_by) == V010_DETAILS[ref]


def test_v010_journal_keeps_every_audit_trail(v010: Path) -> None:
    with Journal(v010 / "journal.sqlite3"), closing(view_of(v010)) as view:
        trails = {ref: view.history(ref) for ref in V010_TRAILS}
    for ref, expected in V010_TRAILS.items():
        assert [(e["from"], e["to"], e["who"]) for e in trails[ref]] == expected
    assert trails["void-1002"][1]["why"] == "sending on cloud, requestID req-void-1002-cloud"
    assert trails["order-1004"][2]["why"] == ROOT_NOTE.format("succeeded")


def test_v010_journal_works_on_after_the_upgrade(v010: Path) -> None:
    with Journal(v010 / "journal.sqlite3") as journal, closing(view_of(v010)) as view:
        # What the daemon does first at start: the payment in flight becomes unknown.
        stopped = Stopped("daemon_restarted", "ecrd stopped")
        [recovered] = journal.recover(lambda r: settle(r, stopped))
        assert (recovered.reference_id, recovered.state) == ("order-1007", "unknown")
        assert recovered.note == NOTE_RESTARTED.format(ref="order-1007")
        assert [r.reference_id for r in journal.unknown()] == ["order-1003", "order-1007"]
        assert view.counts() == {
            "pending": 0,
            "succeeded": 3,
            "failed": 2,
            "unknown": 2,
            "resolved_succeeded": 1,
            "resolved_failed": 1,
            "disputed": 0,
        }
        said = Resolved("failed", "declined", ROOT)
        _, resolved = journal.apply("order-1003", lambda r: settle(r, said))
        assert resolved.state == "resolved_failed"
        # Schema 3: a settled record the terminal contradicts becomes disputed, and the
        # contradicting word is kept on its audit row.
        late = LateReply("Sale", {"status": "Failed", "referenceID": "order-1001"})
        _, disputed = journal.apply("order-1001", lambda r: settle(r, late))
        assert disputed.state == "disputed"
        assert view.history("order-1001")[-1]["evidence"] == to_obj(late)


def test_v010_journal_gains_an_empty_audit_table_that_takes_rows(v010: Path) -> None:
    """Schema 4 (#22): the admin actions' audit table, empty after the upgrade, and the
    records and their trails as they were."""
    with Journal(v010 / "journal.sqlite3") as journal, closing(view_of(v010)) as view:
        seq = journal.audit(who=ROOT, action="terminal.unpair", terminal="counter-3",
                            detail={"terminal": "counter-3"}, result="ok")  # fmt: skip
        assert view.history("order-1004")[2]["why"] == ROOT_NOTE.format("succeeded")
    assert seq == 1
    assert raw_counts(v010 / "journal.sqlite3") == (SCHEMA_VERSION, 9, 22)
    view = JournalView(str(v010 / "journal.sqlite3"))
    try:
        [row] = view.audit()
    finally:
        view.close()
    assert (row["who"], row["action"], row["terminal"], row["result"]) == (
        ROOT, "terminal.unpair", "counter-3", "ok")  # fmt: skip
    assert row["detail"] == {"terminal": "counter-3"} and row["at"].endswith("Z")


def test_v010_pairings_keep_every_terminal(v010: Path) -> None:
    store = PairingStore(v010 / "pairings.toml")
    assert store.load() == V010_PAIRINGS
    # The first write in the current format keeps the others as they were.
    store.remove("counter-3")
    assert store.load() == {k: v for k, v in V010_PAIRINGS.items() if k != "counter-3"}
