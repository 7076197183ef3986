"""ecrctl's commands for operators and accountants: metrics, export, report, backup, audit.

Everything goes through the socket API, page by page (``transaction.list`` with
``before``), so memory stays flat however large the journal is.

What reaches a person is made harmless first: a CSV cell a spreadsheet would run as a
formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return: OWASP's
CSV-injection rule) gets a leading ``'``, and control characters in every cell and in
the text output are escaped (``ecrd.text.escape``): a reference id, an order id or a
terminal's reply can neither run in the accountant's spreadsheet nor drive a terminal.
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

from ecrd.client import EcrdError, TrioClient
from ecrd.ctl_out import output, table
from ecrd.text import escape

EXIT_OK: Final = 0
CSV_COLUMNS: Final = (
    "reference_id", "terminal", "action", "amount", "approved_amount", "currency", "state",
    "original_reference_id", "customer_order_id", "created_at", "updated_at",
    "rrn", "brn", "authCode", "errorCode",
)  # fmt: skip
UNRESOLVED: Final = ("unknown", "pending", "disputed")
SUCCEEDED: Final = ("succeeded", "resolved_succeeded")
# What each kind of payment does to the takings: a preauth is a hold, no money taken. A
# void undoes its original: minus what the original did (docs/api.md, "End of day").
SIGN: Final = {"Sale": 1, "PreAuth": 0, "Refund": -1}
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
AUDIT_COLUMNS: Final = ["seq", "at", "who", "action", "terminal", "result", "detail"]


async def records(client: TrioClient, **query: Any) -> AsyncIterator[dict[str, Any]]:
    """Every record matching ``query``, newest first, one page (500) at a time."""
    before: dict[str, str] = {}
    while page := await client.call("transaction.list", limit=500, **query, **before):
        for record in page:
            yield record
        before = {"before": page[-1]["reference_id"]}


def cell(value: Any) -> str:
    """One CSV cell that a spreadsheet shows and never runs: formula-leading text gets a
    leading quote, control characters are escaped."""
    text = "" if value is None else str(value)
    shown = escape(text)
    return "'" + shown if text.startswith(FORMULA_START) else shown


def csv_row(record: dict[str, Any]) -> list[str]:
    params, reply = record.get("params") or {}, record.get("reply") or {}
    merged = {**params, **{k: v for k, v in reply.items() if k in CSV_COLUMNS}, **record}
    return [cell(merged.get(c)) for c in CSV_COLUMNS]


def shown(text: str) -> str:
    """Text output, line by line: no control character but the layout's line breaks."""
    return "\n".join(map(escape, text.split("\n")))


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


def _taken(record: dict[str, Any]) -> Decimal:
    """What the terminal approved, from the journal: never a reply field."""
    return Decimal(record.get("approved_amount") or record.get("amount") or "0")


def _original(record: dict[str, Any]) -> str | None:
    return (record.get("params") or {}).get("original_reference_id")


def _line(r: dict[str, Any], originals: dict[str, dict[str, Any]]) -> tuple[str, str, Decimal]:
    """(currency, what to count it as, its effect on the net) of one succeeded record."""
    if r["action"] != "Void":
        return r.get("currency") or "", r["action"], SIGN[r["action"]] * _taken(r)
    original = originals[str(_original(r))]
    undone = SIGN[original["action"]] * _taken(original)
    return original.get("currency") or "", f"Void of {original['action']}", -undone


def summarise(
    rows: list[dict[str, Any]], originals: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Per terminal and currency: counts and sums by action, the net, counts by state.

    A void nets by what it undoes (of a sale: minus, of a refund: plus, of a preauth:
    nothing), with the original's amount from the journal (``originals``: the records the
    voids name, by reference). A void whose original this journal does not hold is listed
    as not netted."""
    known = {r["reference_id"]: r for r in rows} | (originals or {})
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"count": Counter(), "sum": defaultdict(Decimal), "net": Decimal("0"),
                 "states": Counter()}
    )  # fmt: skip
    not_netted = []
    for r in rows:
        if r["action"] == "Void" and str(_original(r)) not in known:
            not_netted.append(r)
            continue
        currency, kind, effect = _line(r, known)
        g = groups[(r["terminal"], currency)]
        g["states"][r["state"]] += 1
        if r["state"] in SUCCEEDED:
            g["count"][kind] += 1
            g["sum"][kind] += abs(effect) if r["action"] == "Void" else _taken(r)
            g["net"] += effect
    out = [
        {"terminal": terminal, "currency": currency, "net": str(g["net"]),
         "count": dict(g["count"]), "sum": {a: str(s) for a, s in g["sum"].items()},
         "states": dict(g["states"])}
        for (terminal, currency), g in sorted(groups.items())
    ]  # fmt: skip
    unresolved = [r for r in rows if r["state"] in UNRESOLVED]
    return {"unresolved": unresolved, "terminals": out, "not_netted": not_netted}


async def originals_of(client: TrioClient, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The journal's records of the originals the day's voids name but the day does not hold."""
    day = {r["reference_id"] for r in rows}
    wanted = {str(_original(r)) for r in rows if r["action"] == "Void"} - day
    found = {}
    for ref in sorted(wanted):
        try:
            found[ref] = await client.call("transaction.get", reference_id=ref)
        except EcrdError as exc:
            if exc.reason != "transaction_not_found":
                raise
    return found


async def cmd_report(args: argparse.Namespace, client: TrioClient) -> int:
    day = date.fromisoformat(args.date) if args.date else date.today()
    since, until = day_bounds(day)
    rows = [r async for r in records(client, since=since, until=until)]
    summary = summarise(rows, await originals_of(client, rows))
    report = {"date": day.isoformat(), "since": since, "until": until, **summary}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(shown(report_text(report)))
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
    for r in report.get("not_netted", []):
        lines.append(f"not netted: {r['reference_id']} voids {_original(r)}, which this "
                     "journal does not hold (taken on another box)")  # fmt: skip
    for t in report["terminals"]:
        sums = ", ".join(f"{a} {t['count'].get(a, 0)} = {s}" for a, s in sorted(t["sum"].items()))
        states = ", ".join(f"{s} {n}" for s, n in sorted(t["states"].items()))
        lines.append(f"{t['terminal']} {t['currency']}: net {t['net']}  ({sums or 'no takings'})")
        lines.append(f"    by state: {states}")
    return "\n".join(lines) if report["terminals"] else "\n".join([*lines, "no transactions"])


async def cmd_metrics(args: argparse.Namespace, client: TrioClient) -> int:
    print(shown(await client.call("metrics")), end="")
    return EXIT_OK


async def cmd_backup(args: argparse.Namespace, client: TrioClient) -> int:
    res = await client.call("journal.backup", path=args.file, with_pairings=args.with_pairings)
    if args.json:
        print(json.dumps(res))
        return EXIT_OK
    print(shown(f"journal: {res['journal']} ({res['records']} records)"))
    if "pairings" in res:
        print(shown(f"pairings: {res['pairings']} (0600: it holds PINs)"))
    return EXIT_OK


async def cmd_audit(args: argparse.Namespace, client: TrioClient) -> int:
    """The journal's audit table, newest first (``journal.audit``; admin)."""
    params: dict[str, Any] = {"limit": args.limit}
    if args.before is not None:
        params["before"] = args.before
    if args.action:
        params["action"] = args.action
    rows = await client.call("journal.audit", **params)
    lines = [{**r, "detail": json.dumps(r["detail"], ensure_ascii=False)} for r in rows]
    output(args, rows, table(lines, AUDIT_COLUMNS) if rows else "(no audit rows)")
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
    p = sub.add_parser("audit", help="who administered what, when, with what result (admin)")
    p.add_argument("--limit", type=int, default=50, help="at most 500 (one page)")
    p.add_argument("--before", type=int, metavar="SEQ", help="the rows older than SEQ")
    p.add_argument("--action", help="only this method, e.g. terminal.pair or journal.prune")


COMMANDS: Final = {
    "export": cmd_export,
    "report": cmd_report,
    "metrics": cmd_metrics,
    "backup": cmd_backup,
    "audit": cmd_audit,
}
