"""ecrctl's text output: whatever a terminal or a client put in a value is shown, never
obeyed (no escape sequence reaches the admin's terminal, no value fakes a line)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from ecrd import ctl_fleet, ctl_out

HOSTILE = "ok\x1b[2J\x1b]0;pwned\x07\nSTATE      SUCCEEDED"


def test_a_transaction_shown_as_text_escapes_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tx = {"reference_id": "r1", "terminal": "lan-1", "action": "Sale", "amount": "1.00",
          "currency": "HKD", "state": "failed", "link": "lan", "note": HOSTILE,
          "reply": {"errorCode": "E1", "errorMessage": HOSTILE, "rrn": HOSTILE}}  # fmt: skip
    ctl_out.output(argparse.Namespace(json=False), tx, ctl_out.tx_text(tx))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "STATE      SUCCEEDED" not in out.splitlines()
    assert "\\x1b[2J" in out


def test_a_table_escapes_control_characters() -> None:
    text = ctl_out.table([{"reference_id": HOSTILE, "state": "failed"}], ["reference_id", "state"])
    assert "\x1b" not in text and len(text.splitlines()) == 2


# -- export and report (ctl_fleet.py): the accountant's spreadsheet and the admin's terminal


def record(**fields: Any) -> dict[str, Any]:
    base = {"reference_id": "r1", "terminal": "lan-1", "action": "Sale", "amount": "1.00",
            "currency": "HKD", "state": "succeeded", "created_at": "2026-11-27T10:00:00.000Z",
            "updated_at": "2026-11-27T10:00:01.000Z", "params": {}, "reply": {}}  # fmt: skip
    return {**base, **fields}


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r"])
def test_export_cells_a_spreadsheet_would_run_as_a_formula_start_with_a_quote(lead: str) -> None:
    formula = f'{lead}HYPERLINK("http://x","pay")'
    row = ctl_fleet.csv_row(record(
        reference_id=formula, params={"customer_order_id": formula}, reply={"rrn": formula},
    ))  # fmt: skip
    by_column = dict(zip(ctl_fleet.CSV_COLUMNS, row, strict=True))
    for column in ("reference_id", "customer_order_id", "rrn"):
        assert by_column[column].startswith("'"), column
        assert not by_column[column].startswith(("'\t", "'\r"))  # and the tab/CR escaped
    assert by_column["amount"] == "1.00"  # an ordinary cell is left alone


def test_export_cells_escape_control_characters() -> None:
    row = ctl_fleet.csv_row(record(reply={"errorCode": HOSTILE, "authCode": "A1\x00"}))
    text = "".join(row)
    assert "\x1b" not in text and "\x07" not in text and "\n" not in text and "\x00" not in text
    assert "ok\\x1b[2J" in text


class Listing:
    """Enough of a client for the report: one page of records, then none."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.pages = [rows, []]

    async def call(self, method: str, **params: Any) -> Any:
        assert method == "transaction.list"
        return self.pages.pop(0)


async def test_the_report_as_text_escapes_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [record(reference_id=HOSTILE, state="unknown")]
    args = argparse.Namespace(date="2026-11-27", json=False)
    await ctl_fleet.cmd_report(args, Listing(rows))  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "STATE      SUCCEEDED" not in out.splitlines()
