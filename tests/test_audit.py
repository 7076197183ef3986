"""Admin actions are journaled in the audit table (who, what, when, result), durable and
never limited; refusals are logged per peer at most a few an interval, then summed up.

Against the simulator over real links and the real socket, the daemon in this process;
the audit table is also read straight from the journal's file, as an auditor would."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import Daemon, Sim, write_config
from stack import PIN1, Stack, call_error, pair, start_stack

from ecrd.api import refusals
from ecrd.api.refusals import RefusalLog
from ecrd.client import open_trio_client

ECRCTL = str(Path(sys.executable).parent / "ecrctl")


def audit_rows(stack: Stack) -> list[dict[str, Any]]:
    """The audit table as it is on disk, oldest first."""
    with closing(sqlite3.connect(stack.tmp / "state" / "journal.sqlite3")) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]


async def test_every_admin_action_is_journaled_with_who_what_when_and_result(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    backup = tmp_path / "backups"
    backup.mkdir(mode=0o700)
    async with open_trio_client(stack.socket) as c:
        await call_error(c, "terminal.pair", terminal="lan-1", code="999999")  # a wrong code
        await pair(c, stack, "lan")
        await c.call("terminal.trace", terminal="lan-1", on=True)
        await c.call("terminal.send", terminal="lan-1", action="DeviceInfo", body={"k": "v"})
        await call_error(c, "transaction.resolve", reference_id="nope", outcome="failed")
        await c.call("abort", terminal="lan-1")
        await c.call("terminal.probe", terminal="lan-1", code=PIN1["lan"], timeout_s=30)
        await call_error(c, "config.reload")  # the stack has no config file to read
        await c.call("journal.backup", path=str(backup / "j.sqlite3"))
        await c.call("terminal.unpair", terminal="lan-1")
        await c.call("ping")
        await c.call("terminal.list")  # reads are not admin actions
        listed = await c.call("journal.audit", limit=500)
    rows = audit_rows(stack)
    assert [(r["action"], r["result"]) for r in rows] == [
        ("terminal.pair", "wrong_key"), ("terminal.pair", "ok"), ("terminal.trace", "ok"),
        ("terminal.send", "ok"), ("transaction.resolve", "transaction_not_found"),
        ("abort", "ok"), ("terminal.probe", "ok"), ("config.reload", "config_error"),
        ("journal.backup", "ok"), ("terminal.unpair", "ok"),
    ]  # fmt: skip
    assert all(r["who"].startswith(f"uid={os.getuid()} ") and "exe=" in r["who"] for r in rows)
    assert all(r["at"] <= rows[-1]["at"] and r["at"].endswith("Z") for r in rows)
    assert rows[0]["terminal"] == "lan-1" and json.loads(rows[3]["detail"]) == {
        "terminal": "lan-1", "action": "DeviceInfo"}  # fmt: skip
    assert json.loads(rows[8]["detail"]) == {"path": str(backup / "j.sqlite3")}
    text = json.dumps(rows)
    for code in ("999999", PIN1["lan"], stack.terminal("lan").pin2):
        assert code not in text, "a pairing code in the audit table"
    assert [r["seq"] for r in listed] == [r["seq"] for r in reversed(rows)]  # newest first
    assert listed[0]["detail"] == {"terminal": "lan-1"}


async def test_ecrctl_audit_shows_the_table_escaped_and_pages_with_before(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        for i in range(3):
            await call_error(c, "transaction.resolve", reference_id=f"r{i}", outcome="failed",
                             note=f"note {i}")  # fmt: skip
    ctl = [ECRCTL, "--socket", stack.socket, "audit"]
    out = (await trio.run_process([*ctl, "--limit", "2"], capture_stdout=True)).stdout.decode()
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["SEQ", "AT", "WHO", "ACTION"] and len(lines) == 3
    assert '"reference_id": "r2"' in lines[1] and '"reference_id": "r1"' in lines[2]
    seq = int(lines[2].split()[0])
    older = await trio.run_process([*ctl, "--before", str(seq), "--json"], capture_stdout=True)
    assert [r["detail"]["reference_id"] for r in json.loads(older.stdout)] == ["r0"]


async def test_a_flood_of_refusals_is_logged_a_few_lines_an_interval_and_admin_actions_all_land(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The refusals here are money sent as notifications (no role setup needed, and one
    socket user): 400 of them, 5 logged, the rest in one summary line at the interval's
    end; meanwhile 20 admin actions, every one in the audit table."""
    monkeypatch.setattr(refusals, "INTERVAL_S", 1.0)
    stack = await start_stack(nursery, tmp_path)
    caplog.set_level(logging.INFO, logger="ecrd.api")
    sale = {"terminal": "lan-1", "amount": "1.00", "currency": "HKD"}
    flood = [{"jsonrpc": "2.0", "method": "sale", "params": {**sale, "reference_id": f"n{i}"}}
             for i in range(400)]  # fmt: skip
    async with open_trio_client(stack.socket) as c:
        for chunk in range(4):
            stream = await trio.open_unix_socket(stack.socket)
            async with stream:
                lines = flood[chunk * 100 : (chunk + 1) * 100]
                await stream.send_all("".join(json.dumps(x) + "\n" for x in lines).encode())
                for i in range(5):
                    await c.call("terminal.trace", terminal="lan-1", on=i % 2 == 0)
        await trio.sleep(1.5)  # the interval ends: the summary
    said = [r.getMessage() for r in caplog.records if "notification" in r.getMessage()]
    assert len(said) == 6, said
    assert said[-1].endswith("not logged one by one: sale notification x395")
    assert [r["action"] for r in audit_rows(stack)] == ["terminal.trace"] * 20


def test_the_refusal_log_says_the_first_few_per_peer_then_one_summary() -> None:
    now = [0.0]
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test.refusals")
    log.addHandler(keep := Keep())
    try:
        limiter = RefusalLog(log, first=3, interval_s=10, clock=lambda: now[0])
        for i in range(50):
            limiter.refused(1000, "uid=1000 user=a", "sale (no sell role)", f"refused {i}")
        for i in range(2):
            limiter.refused(1001, "uid=1001 user=b", "status (no read role)", f"b refused {i}")
        assert lines == ["refused 0", "refused 1", "refused 2", "b refused 0", "b refused 1"]
        now[0] = 10.5
        limiter.refused(1000, "uid=1000 user=a", "sale (no sell role)", "refused again")
        assert lines[5:] == [
            "client uid=1000 user=a: 47 more refusal(s) in 10s not logged one by one: "
            "sale (no sell role) x47",
            "refused again",
        ]
        limiter.flush()  # b's window is over too, with nothing held: no line
        now[0] = 30
        limiter.flush()
        assert len(lines) == 7
    finally:
        log.removeHandler(keep)


def test_a_reload_by_sighup_is_audited_too(tmp_path: Path) -> None:
    """``systemctl reload`` is a signal: who sent it the kernel does not say, so the row
    says the signal, with the result of that reload."""
    sim = Sim(tmp_path, "--lan", "1")
    config = write_config(tmp_path, sim)
    daemon = Daemon(tmp_path, config)
    try:
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        good = config.read_text()
        deadline = time.monotonic() + 10
        while not daemon.call("journal.audit"):
            assert time.monotonic() < deadline, "the SIGHUP reload was not audited"
            time.sleep(0.05)
        config.write_text(good + "\n[[terminal]]\nid = 'broken'\ntransport = 'lan'\n")
        daemon.proc.send_signal(signal.SIGHUP)
        while len(rows := daemon.call("journal.audit")) < 2:
            assert time.monotonic() < deadline + 10, "the second reload was not audited"
            time.sleep(0.05)
    finally:
        daemon.stop(sim)
        sim.stop()
    assert [(r["who"], r["action"], r["result"]) for r in rows] == [
        ("signal SIGHUP", "config.reload", "config_error"),
        ("signal SIGHUP", "config.reload", "ok"),
    ]
