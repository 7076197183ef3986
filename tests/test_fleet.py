"""Fleet operations: metrics that match the journal, exports and end-of-day reports an
accountant can use, online backups that are consistent, retention that never drops money
someone still has to settle."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
from e2e import pair, running
from prometheus_client.parser import text_string_to_metric_families
from stack import Stack, call_error, config_data, make_sim
from stack import pair as stack_pair

from ecrd.client import TrioClient, open_trio_client
from ecrd.config import parse
from ecrd.daemon import Daemon
from ecrd.store import retention
from ecrd.store.journal import Change, Journal
from ecrd.store.journal_view import JournalView

ECRCTL = str(Path(sys.executable).parent / "ecrctl")


async def start(nursery: trio.Nursery, tmp: Path, **daemon_extra: Any) -> Stack:
    sim = make_sim(tmp)
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp)
    data["daemon"].update(daemon_extra)
    cfg = parse(data, str(tmp / "ecrd.toml"))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    return Stack(sim, daemon, cfg.daemon.socket, desc, tmp)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, parsed by prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def mixed_day(c: TrioClient, stack: Stack) -> None:
    """Sales, a refund, a decline and an unknown on the LAN terminal."""
    await stack_pair(c, stack, "lan")
    sale = {"terminal": "lan-1", "currency": "HKD"}
    await c.call("sale", **sale, amount="10.00", reference_id="s1")
    await c.call("sale", **sale, amount="20.00", reference_id="s2")
    await c.call("refund", **sale, amount="5.00", reference_id="r1", original_reference_id="s1")
    await c.call("sale", **sale, amount="3.91", reference_id="d1")  # magic .91: declined
    await call_error(c, "sale", **sale, amount="4.94", reference_id="u1")  # .94: no reply


async def test_metrics_counters_match_the_journal_and_the_file_parses(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    prom = tmp_path / "textfile" / "ecrd.prom"
    prom.parent.mkdir()
    stack = await start(nursery, tmp_path, metrics_file=str(prom))
    async with open_trio_client(stack.socket) as c:
        await mixed_day(c, stack)
        text = await c.call("metrics")
        journal = await c.call("transaction.list", limit=500)
    got = samples(text)
    for record in journal:
        key = (record["terminal"], record["action"], record["state"])
        expected = sum(1 for r in journal if (r["terminal"], r["action"], r["state"]) == key)
        labels = tuple(sorted({"terminal": key[0], "action": key[1], "state": key[2]}.items()))
        assert got[("ecrd_transactions_total", labels)] == expected
    assert got[("ecrd_unresolved_transactions", (("terminal", "lan-1"),))] == 1
    assert got[("ecrd_terminal_paired", (("terminal", "lan-1"),))] == 1
    assert got[("ecrd_terminal_paired", (("terminal", "serial-1"),))] == 0
    assert got[("ecrd_journal_records", ())] == len(journal) == 5
    assert got[("ecrd_build_info", (("version", "0.1.0"),))] == 1
    sales = (("action", "Sale"), ("terminal", "lan-1"))
    assert got[("ecrd_transaction_duration_seconds_count", sales)] == 4
    with trio.fail_after(20):  # written when a payment ends (and every 15 s)
        while not prom.exists():
            await trio.sleep(0.05)
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert ("ecrd_transactions_total", (("action", "Refund"), ("state", "succeeded"),
            ("terminal", "lan-1"))) in samples(prom.read_text())  # fmt: skip


async def test_a_backup_taken_while_selling_is_consistent_and_holds_every_earlier_record(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start(nursery, tmp_path)
    done: list[str] = []
    async with open_trio_client(stack.socket) as c, open_trio_client(stack.socket) as seller:
        await stack_pair(c, stack, "lan")

        async def sell() -> None:
            for i in range(40):
                ref = f"b{i}"
                await seller.call("sale", terminal="lan-1", amount="1.00", currency="HKD",
                                  reference_id=ref)  # fmt: skip
                done.append(ref)

        async with trio.open_nursery() as n:
            n.start_soon(sell)
            while len(done) < 5:
                await trio.sleep(0.01)
            before = list(done)
            result = await c.call("journal.backup", path=str(tmp_path / "copy.sqlite3"),
                                  with_pairings=True)  # fmt: skip
        err = await call_error(c, "journal.backup", path=str(tmp_path / "copy.sqlite3"))
    copy = Path(result["journal"])
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(result["pairings"]).stat().st_mode) == 0o600
    with closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        saved = {r for (r,) in conn.execute("SELECT reference_id FROM transactions")}
    assert set(before) <= saved
    assert err.reason == "invalid_params"  # a backup never overwrites


def test_retention_prunes_old_settled_records_and_never_unknown_ones(tmp_path: Path) -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    clock = [now - timedelta(days=500)]
    path = tmp_path / "journal.sqlite3"
    with Journal(path, clock=lambda: clock[0]) as j:
        for ref, state in (("old-ok", "succeeded"), ("old-no", "failed"), ("old-?", "unknown")):
            j.begin(reference_id=ref, terminal="t", action="Sale", params={}, amount="1.00",
                    currency="HKD")  # fmt: skip
            j.apply(ref, lambda r, state=state: Change(state, "test"))
        j.begin(reference_id="old-pending", terminal="t", action="Sale", params={},
                amount="1.00", currency="HKD")  # fmt: skip
        j.begin(reference_id="old-resolved", terminal="t", action="Sale", params={},
                amount="1.00", currency="HKD")  # fmt: skip
        j.apply("old-resolved", lambda r: Change("unknown", "test"))
        clock[0] = now - timedelta(days=10)
        j.apply("old-resolved", lambda r: Change("resolved_succeeded", "checked"))
        j.begin(reference_id="new-ok", terminal="t", action="Sale", params={}, amount="1.00",
                currency="HKD")  # fmt: skip
        j.apply("new-ok", lambda r: Change("succeeded", "test"))
    assert retention.prune(str(path), 400, now).removed == 2
    assert retention.prune(str(path), 0, now).removed == 0  # 0 keeps everything
    with Journal(path), closing(JournalView(str(path))) as view:
        kept = {r.reference_id for r in view.page(limit=100)}
        # Settled only 10 days ago: kept, however old its creation.
        assert kept == {"old-?", "old-pending", "old-resolved", "new-ok"}
        assert view.history("old-ok") == []  # the audit trail went with its record
        assert view.history("old-?") != []


def ecrctl(daemon_socket: str, *args: str) -> str:
    out = subprocess.run(
        [ECRCTL, "--socket", daemon_socket, *args], capture_output=True, text=True, check=True
    )
    return out.stdout


def test_export_and_report_end_to_end(tmp_path: Path) -> None:
    with running(tmp_path) as (sim, daemon):
        pair(daemon, sim, "lan")
        common = {"terminal": "lan-1", "currency": "HKD"}
        daemon.call("sale", **common, amount="10.00", reference_id="x1", customer_order_id="o1")
        daemon.call("sale", **common, amount="7.50", reference_id="x2")
        daemon.call("refund", **common, amount="2.50", reference_id="x3",
                    original_reference_id="x1")  # fmt: skip
        daemon.call("sale", **common, amount="1.91", reference_id="x4")  # declined
        daemon.call("sale", **common, amount="3.00", reference_id="x5")
        daemon.call("void", terminal="lan-1", reference_id="x6", original_reference_id="x5")
        rows = list(csv.DictReader(io.StringIO(ecrctl(daemon.socket, "export"))))
        lines = ecrctl(daemon.socket, "export", "--format", "jsonl").splitlines()
        only_x1 = ecrctl(daemon.socket, "export", "--state", "failed")
        report = json.loads(ecrctl(daemon.socket, "--json", "report"))
        text = ecrctl(daemon.socket, "report")
    assert {r["reference_id"] for r in rows} == {"x1", "x2", "x3", "x4", "x5", "x6"}
    x1 = next(r for r in rows if r["reference_id"] == "x1")
    assert (x1["customer_order_id"], x1["amount"], x1["state"]) == ("o1", "10.00", "succeeded")
    assert len(x1["rrn"]) == 12  # the terminal's own reference, from its reply
    assert next(r for r in rows if r["reference_id"] == "x3")["original_reference_id"] == "x1"
    assert len({json.loads(line)["reference_id"] for line in lines}) == 6
    assert "x4" in only_x1 and "x1" not in only_x1
    (lan,) = report["terminals"]
    assert lan["net"] == "15.00"  # 10.00 + 7.50 - 2.50, and 3.00 sold then voided
    assert lan["count"] == {"Sale": 3, "Refund": 1, "Void of Sale": 1}
    assert lan["states"] == {"succeeded": 5, "failed": 1}
    assert report["unresolved"] == []
    assert "net 15.00" in text


def test_export_cells_never_run_as_formulas_in_the_accountants_spreadsheet(
    tmp_path: Path,
) -> None:
    with running(tmp_path) as (sim, daemon):
        pair(daemon, sim, "lan")
        for i, order in enumerate(("=1+2", "+cmd", "-2+3", "@SUM(A1:A9)")):
            daemon.call("sale", terminal="lan-1", currency="HKD", amount="1.00",
                        reference_id=f"{order[0]}ref-{i}", customer_order_id=order)  # fmt: skip
        rows = list(csv.DictReader(io.StringIO(ecrctl(daemon.socket, "export"))))
    assert sorted(r["customer_order_id"] for r in rows) == [
        "'+cmd",
        "'-2+3",
        "'=1+2",
        "'@SUM(A1:A9)",
    ]
    assert all(r["reference_id"].startswith("'") for r in rows)
    assert {r["amount"] for r in rows} == {"1.00"}
