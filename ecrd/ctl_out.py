"""What ``ecrctl`` prints and returns: its exit codes, its text, its JSON.

Exit codes scripts can trust:
  0  done (a payment: approved)          4  ecrd not reachable (socket missing, permission)
  1  payment declined / failed           5  any other error (not paired, link down, busy...)
  2  bad usage or bad parameters         6  interrupted (Ctrl-C, SIGTERM): a payment sent
  3  outcome UNKNOWN: check the             goes on without ecrctl; look it up by its
     terminal, then resolve                 reference before charging again

Text output escapes control characters in every value (``ecrd.text.escape``): a terminal's
reply or a reference id can never move the cursor, clear the screen or fake a line here.
``--json`` output is JSON, where they are escaped anyway.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from ecrd.text import escape

EXIT_OK, EXIT_DECLINED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_UNREACHABLE, EXIT_ERROR = range(6)
EXIT_INTERRUPTED: Final = 6
EPILOG: Final = (
    "exit codes: 0 ok/approved, 1 declined, 2 usage, 3 outcome UNKNOWN, 4 ecrd unreachable, "
    "5 other error, 6 interrupted (a payment sent goes on)"
)


def show(value: Any) -> str:
    """One value for the text output, control characters escaped."""
    return escape("" if value is None else str(value))


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("-" if r.get(c) is None else show(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def tx_text(tx: dict[str, Any]) -> str:
    reply = {k: show(v) for k, v in (tx.get("reply") or {}).items()}
    tx = {k: (v if isinstance(v, dict) or v is None else show(v)) for k, v in tx.items()}
    lines = [
        f"reference  {tx['reference_id']}",
        f"terminal   {tx['terminal']}  ({tx.get('link') or '-'})",
        f"action     {tx['action']}  {tx.get('amount') or ''} {tx.get('currency') or ''}".rstrip(),
        f"state      {tx['state'].upper()}",
    ]
    if tx.get("approved_amount"):
        lines.append(f"approved   {tx['approved_amount']} (asked {tx.get('amount')})")
    if reply.get("errorCode") or reply.get("errorMessage"):
        lines.append(f"terminal   {reply.get('errorCode', '')} {reply.get('errorMessage', '')}")
    for key in ("paymentMethod", "rrn", "transactionType"):
        if reply.get(key):
            lines.append(f"{key:<10} {reply[key]}")
    if tx.get("note"):
        lines.append(f"note       {tx['note']}")
    return "\n".join(lines)


def output(args: argparse.Namespace, value: Any, text: str) -> None:
    # Line by line as well: no control character but the line breaks of the layout.
    print(json.dumps(value, indent=2) if args.json else "\n".join(map(escape, text.split("\n"))))


def json_object(text: str) -> dict[str, Any]:
    """``--extra`` / ``--body``: a JSON object on the command line."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('a JSON object, e.g. \'{"memo": "x"}\'')
    return value
