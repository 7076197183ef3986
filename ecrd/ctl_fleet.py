"""ecrctl's commands for operators and accountants: metrics, export, report, backup.

Everything goes through the socket API, page by page (``transaction.list`` with
``before``), so memory stays flat however large the journal is.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

from ecrd.client import TrioClient

EXIT_OK: Final = 0
CSV_COLUMNS: Final = (
    "reference_id", "terminal", "action", "amount", "currency", "state",
    "original_reference_id", "customer_order_id", "created_at", "updated_at",
    "rrn", "brn", "authCode", "errorCode",
)  # fmt: skip
UNRESOLVED: Final = ("unknown", "pending")
SIGN: Final = {"Sale": 1, "PreAuth": 0, "Refund": -1, "Void": -1}


async def records(client: TrioClient, **query: Any) -> AsyncIterator[dict[str, Any]]:
    """Every record matching ``query``, newest first, one page (500) at a time."""
    before: dict[str, str] = {}
    while page := await client.call("transaction.list", limit=500, **query, **before):
        for record in page:
            yield record
        before = {"before": page[-1]["reference_id"]}


def csv_row(record: dict[str, Any]) -> list[str]:
    params, reply = record.get("params") or {}, record.get("reply") or {}
    merged = {**params, **{k: v for k, v in reply.items() if k in CSV_COLUMNS}, **record}
    return ["" if merged.get(c) is None else str(merged[c]) for c in CSV_COLUMNS]


async def cmd_export(args: argparse.Namespace, client: TrioClient) -> int:
    query = {k: getattr(args, k) for k in ("since", "until", "terminal", "state")}
    query = {k: v for k, v in query.items() if v is not None}
    writer = csv.writer(sys.stdout, lineterminator="\n")
    if args.format == "csv":
        writer.writerow(CSV_COLUMNS)
    async for record in records(client, **query):
        if args.format == "csv":
            writer.writerow(csv_row(record))
        else:
            print(json.dumps(record, ensure_ascii=True))
    return EXIT_OK


def day_bounds(day: date) -> tuple[str, str]:
    """The local day as [since, until) with the local UTC offset."""
    start = datetime.combine(day, time()).astimezone()
    end = datetime.combine(day + timedelta(days=1), time()).astimezone()
    return start.isoformat(timespec="seconds"), end.isoformat(timespec="seconds")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per terminal and currency: counts and sums by action, the net, counts by state."""
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"count": Counter(), "sum": defaultdict(Decimal), "states": Counter()}
    )
    for r in rows:
        # A void carries no amount or currency of its own: the terminal's reply names the
        # original's.
        reply = r.get("reply") or {}
        g = groups[(r["terminal"], r.get("currency") or reply.get("currency") or "")]
        g["states"][r["state"]] += 1
        if r["state"] in ("succeeded", "resolved_succeeded"):
            g["count"][r["action"]] += 1
            g["sum"][r["action"]] += Decimal(r.get("amount") or reply.get("amount") or "0")
    out = []
    for (terminal, currency), g in sorted(groups.items()):
        net = sum((SIGN[a] * s for a, s in g["sum"].items()), Decimal("0"))
        out.append({
            "terminal": terminal, "currency": currency, "net": str(net),
            "count": dict(g["count"]), "sum": {a: str(s) for a, s in g["sum"].items()},
            "states": dict(g["states"]),
        })  # fmt: skip
    unresolved = [r for r in rows if r["state"] in UNRESOLVED]
    return {"unresolved": unresolved, "terminals": out}


async def cmd_report(args: argparse.Namespace, client: TrioClient) -> int:
    day = date.fromisoformat(args.date) if args.date else date.today()
    since, until = day_bounds(day)
    rows = [r async for r in records(client, since=since, until=until)]
    report = {"date": day.isoformat(), "since": since, "until": until, **summarise(rows)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(report_text(report))
    return EXIT_OK


def report_text(report: dict[str, Any]) -> str:
    lines = [f"End of day {report['date']} ({report['since']} .. {report['until']})", ""]
    if report["unresolved"]:
        lines.append(f"UNRESOLVED: {len(report['unresolved'])} transaction(s) — check each on "
                     "its terminal, then `ecrctl resolve REF succeeded|failed`:")  # fmt: skip
        lines += [f"  {r['reference_id']}  {r['terminal']}  {r['action']} "
                  f"{r.get('amount') or ''} {r.get('currency') or ''}  {r['state']}"
                  for r in report["unresolved"]]  # fmt: skip
        lines.append("")
    for t in report["terminals"]:
        sums = ", ".join(f"{a} {t['count'].get(a, 0)} = {s}" for a, s in sorted(t["sum"].items()))
        states = ", ".join(f"{s} {n}" for s, n in sorted(t["states"].items()))
        lines.append(f"{t['terminal']} {t['currency']}: net {t['net']}  ({sums or 'no takings'})")
        lines.append(f"    by state: {states}")
    return "\n".join(lines) if report["terminals"] else "\n".join([*lines, "no transactions"])


async def cmd_metrics(args: argparse.Namespace, client: TrioClient) -> int:
    print(await client.call("metrics"), end="")
    return EXIT_OK


async def cmd_backup(args: argparse.Namespace, client: TrioClient) -> int:
    res = await client.call("journal.backup", path=args.file, with_pairings=args.with_pairings)
    if args.json:
        print(json.dumps(res))
        return EXIT_OK
    print(f"journal: {res['journal']} ({res['records']} records)")
    if "pairings" in res:
        print(f"pairings: {res['pairings']} (0600: it holds PINs)")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("export", help="transactions as CSV or JSON lines, for reconciliation")
    p.add_argument("--since", help="RFC 3339 time with offset (created at or after)")
    p.add_argument("--until", help="RFC 3339 time with offset (created before)")
    p.add_argument("--terminal")
    p.add_argument("--state")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p = sub.add_parser("report", help="end-of-day report (local time zone)")
    p.add_argument("--date", help="YYYY-MM-DD (default: today)")
    sub.add_parser("metrics", help="the Prometheus metrics text")
    p = sub.add_parser("backup", help="consistent online copy of the journal (0600)")
    # Absolute: ecrd writes it, from its own working directory.
    p.add_argument(
        "file", type=os.path.abspath, help="a new file ecrd can write (never overwritten)"
    )
    p.add_argument("--with-pairings", action="store_true", help="also copy pairings.toml")


COMMANDS: Final = {
    "export": cmd_export,
    "report": cmd_report,
    "metrics": cmd_metrics,
    "backup": cmd_backup,
}
