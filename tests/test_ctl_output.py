"""ecrctl's text output: whatever a terminal or a client put in a value is shown, never
obeyed (no escape sequence reaches the admin's terminal, no value fakes a line)."""

from __future__ import annotations

import argparse

import pytest

from ecrd import ctl_out

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
