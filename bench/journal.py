"""The journal at fleet scale: one million records (issue: fleet operations).

A journal of ``ECRD_JOURNAL_RECORDS`` (default 1 000 000) settled sales over 399 days, plus
a few unknown ones, is written straight into a fresh journal file (the schema ecrd
creates), then ``ecrd run`` serves it as a real subprocess. Measured in this run:

* admission's journal lookup (``Payments._facts``: the record for a reference, the
  terminal's unknown and pending ones) on the big journal vs the same on a journal of
  1 000 records (base): it must not grow with the journal's size (indexes);
* export rate through the socket API (``transaction.list``, 500 per page, as ``ecrctl
  export`` pages) and ecrd's RSS during it (flat: pages, not the whole journal);
* the end-of-day report of one busy day (``ecrctl report --json``);
* ecrd's RSS with the big journal.

Acceptance lines: lookup ≤ 3x the small journal's; RSS ≤ 120 MB during the export.

Run: ``bench/run journal`` (or ``python -m bench.journal``). Exit status 1 on a FAIL.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._procs import BIN, Daemon, Procs, lan_terminal, vm_rss_mb, write_config
from bench._table import Row, mb, ms, per_s, render
from ecrd.client import Client
from ecrd.store.journal import Journal, format_time
from ecrd.store.journal_records import COLUMNS, INSERT
from ecrd.store.journal_view import JournalView

RECORDS = int(os.environ.get("ECRD_JOURNAL_RECORDS", "1000000"))
EXPORT_PAGES = 200  # 100 000 records: enough for a steady rate, bounded in time


def fill(path: Path, count: int, now: datetime) -> list[str]:
    """``count`` settled sales spread over 399 days (inside the default retention), 3 unknown;
    returns some references."""
    Journal(path).close()  # the schema, exactly as ecrd creates it
    step = timedelta(days=399) / max(count, 1)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        rows = []
        for i in range(count):
            at = format_time(now - timedelta(days=399) + step * i)
            state = "unknown" if i in (10, count // 2, count - 5) else "succeeded"
            values = {
                "reference_id": f"order-{i:07d}", "terminal": f"t-{i % 8}", "action": "Sale",
                "params": '{"amount":"12.30","currency":"HKD"}', "state": state,
                "amount": "12.30", "currency": "HKD", "request_id": None, "link": "lan",
                "reply": None, "error": None, "note": None, "resolved_by": None,
                "created_at": at, "updated_at": at,
            }  # fmt: skip
            rows.append(tuple(values[c] for c in COLUMNS))
            if len(rows) == 50_000:
                conn.executemany(INSERT, rows)
                rows.clear()
        conn.executemany(INSERT, rows)
        conn.commit()
    return [f"order-{i:07d}" for i in range(0, count, max(count // 50, 1))]


def lookup_times(path: Path, refs: list[str]) -> list[float]:
    """Admission's journal read (Payments._facts) for each reference."""
    times = []
    with Journal(path) as j:
        for ref in refs * 4:
            t0 = time.perf_counter()
            j.get(ref)
            [r for r in j.pending() if r.terminal == "t-1"]
            j.unknown("t-1")
            times.append(time.perf_counter() - t0)
    return times


def time_tally(path: Path) -> float:
    """What a metrics snapshot reads from the journal (on the reader thread)."""
    view = JournalView(str(path))
    try:
        t0 = time.perf_counter()
        view.tally()
        return time.perf_counter() - t0
    finally:
        view.close()


def export(socket: str, pid: int) -> tuple[float, float, int]:
    """Records/s through the API, peak RSS, records read."""
    peak, count, before = 0.0, 0, {}
    t0 = time.perf_counter()
    with Client(socket, timeout=60) as c:
        for _ in range(EXPORT_PAGES):
            page = c.call("transaction.list", limit=500, **before)
            if not page:
                break
            count += len(page)
            before = {"before": page[-1]["reference_id"]}
            peak = max(peak, vm_rss_mb(pid))
    return count / (time.perf_counter() - t0), peak, count


def main() -> int:
    now = datetime.now(UTC)
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="ecrd-journal-") as tmp_name, closing(procs):
        tmp = Path(tmp_name)
        config = write_config(tmp, "ecrd", [lan_terminal("t-1", "127.0.0.1", 9)])
        state = tmp / "ecrd" / "state"
        state.mkdir(mode=0o700)
        t0 = time.perf_counter()
        refs = fill(state / "journal.sqlite3", RECORDS, now)
        print(f"wrote {RECORDS} records in {time.perf_counter() - t0:.1f} s")
        small = tmp / "small.sqlite3"
        small_refs = fill(small, 1000, now)
        base = lookup_times(small, small_refs)
        big = lookup_times(state / "journal.sqlite3", refs)
        tally_s = time_tally(state / "journal.sqlite3")
        daemon = Daemon(procs, config)
        rss_idle = vm_rss_mb(daemon.pid)
        rate, rss_peak, exported = export(daemon.socket, daemon.pid)
        t0 = time.perf_counter()
        day = (now - timedelta(days=1)).astimezone().date().isoformat()
        subprocess.run([str(BIN / "ecrctl"), "--socket", daemon.socket, "--json", "report",
                        "--date", day], check=True, capture_output=True)  # fmt: skip
        report_s = time.perf_counter() - t0
    ratio = statistics.median(big) / statistics.median(base)
    rows = [
        Row("admission lookup, 1 000 records (base)", ms(statistics.median(base))),
        Row(f"admission lookup, {RECORDS} records", ms(statistics.median(big)),
            ms(max(big)), f"{ratio:.2f}x", "<= 3x", ratio <= 3),
        Row(f"export through the API ({exported} records)", per_s(rate)),
        Row("metrics: the journal's tally (each 15 s with metrics_file)", ms(tally_s)),
        Row("ecrd RSS, idle with the big journal", mb(rss_idle)),
        Row("ecrd RSS, peak during the export", mb(rss_peak), limit="<= 120 MB",
            ok=rss_peak <= 120),
        Row(f"end-of-day report of one day (~{RECORDS // 400} records)", ms(report_s)),
    ]  # fmt: skip
    print(render(rows))
    failed = [r.name for r in rows if r.ok is False]
    print("FAIL: " + "; ".join(failed) if failed else "all acceptance lines PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
