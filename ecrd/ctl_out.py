"""What ``ecrctl`` prints and returns: its exit codes, its text, its JSON.

Exit codes scripts can trust, one per class (``EXIT_CODES``; the README's table and
``ecrctl --help`` are made from it, and every code is produced by a test):

   0  done; a payment: approved            6  interrupted (Ctrl-C, SIGTERM): a payment sent
   1  declined, or the terminal said           goes on; look it up before charging again
      Failed                               7  permission denied: a role is missing
   2  bad usage or bad parameters          8  not found: no such terminal or transaction
   3  outcome UNKNOWN: check the           9  busy or blocked: the terminal is busy, or
      terminal, then resolve                  blocked by an unresolved payment
   4  ecrd not reachable                  10  refused by a money rule: nothing was sent
   5  any other error (not paired, link down, the terminal's reply unusable...)

Under ``--json`` every error is one JSON object on stderr (``code``, ``reason``,
``message``, ``data``) and nothing else is printed there. Text output escapes control
characters in every value (``ecrd.text.escape``): a terminal's reply or a reference id can
never move the cursor, clear the screen or fake a line here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any, Final

from ecrd.text import escape

EXIT_OK, EXIT_DECLINED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_UNREACHABLE, EXIT_ERROR = range(6)
EXIT_INTERRUPTED, EXIT_PERMISSION, EXIT_NOT_FOUND, EXIT_BUSY, EXIT_REFUSED = range(6, 11)
EXIT_CODES: Final[Mapping[int, str]] = {
    EXIT_OK: "done; a payment: approved",
    EXIT_DECLINED: "declined, or the terminal answered Failed",
    EXIT_USAGE: "bad usage or bad parameters",
    EXIT_UNKNOWN: "outcome UNKNOWN: check the terminal, then `ecrctl resolve`",
    EXIT_UNREACHABLE: "ecrd not reachable (not running, or no access to its socket)",
    EXIT_ERROR: "any other error (not paired, link down, the terminal's reply unusable...)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM): a payment sent goes on",
    EXIT_PERMISSION: "permission denied: a role is missing ([access])",
    EXIT_NOT_FOUND: "not found: no such terminal or transaction",
    EXIT_BUSY: "busy or blocked: the terminal is busy, or has an unresolved payment",
    EXIT_REFUSED: "refused by a money rule (a refund's guard, a reused reference...): "
    "nothing was sent",
}
# The stable reasons (docs/api.md, "Errors") of each class; any other reason is EXIT_ERROR.
REASON_EXITS: Final[Mapping[str, int]] = {
    "timeout_outcome_unknown": EXIT_UNKNOWN,
    "invalid_params": EXIT_USAGE,
    "method_not_found": EXIT_USAGE,
    "permission_denied": EXIT_PERMISSION,
    "terminal_not_found": EXIT_NOT_FOUND,
    "transaction_not_found": EXIT_NOT_FOUND,
    "terminal_busy": EXIT_BUSY,
    "unresolved_transaction": EXIT_BUSY,
    "too_many_clients": EXIT_BUSY,
    "duplicate_reference_mismatch": EXIT_REFUSED,
    "original_not_found": EXIT_REFUSED,
    "original_not_refundable": EXIT_REFUSED,
    "currency_mismatch": EXIT_REFUSED,
    "refund_exceeds_original": EXIT_REFUSED,
    "invalid_state": EXIT_REFUSED,
    "action_not_allowed": EXIT_REFUSED,
}
EPILOG: Final = "exit codes:\n" + "\n".join(f"  {c:>2}  {what}" for c, what in EXIT_CODES.items())


def exit_for(reason: str) -> int:
    return REASON_EXITS.get(reason, EXIT_ERROR)


def error(args: argparse.Namespace, reason: str, message: str, code: object = None,
          data: Mapping[str, Any] | None = None, hint: str = "") -> None:  # fmt: skip
    """Say an error: one JSON object on stderr under ``--json``, else a line (and a hint)."""
    if getattr(args, "json", False):
        said = {"code": code, "reason": reason, "message": message, "data": dict(data or {})}
        print(json.dumps(said, ensure_ascii=True), file=sys.stderr)
        return
    print(f"ecrctl: {show(message)} [{show(reason)}]" + (f"\n  {hint}" if hint else ""),
          file=sys.stderr)  # fmt: skip


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
