"""``terminal.probe`` with ``status`` (``ecrctl probe TERMINAL --status``): on a paired
terminal, read-only candidates about references never used, each compared with an action
that cannot exist; what the terminal says is reported verbatim; never a money action."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from stack import PIN1, Stack, call_error, pair, start_stack, wait_link_up

from ecrd.client import open_trio_client
from ecrd.protocol.actions import money_like
from ecrd.terminal.probe_status import CANDIDATES, CONTROL

TIDS = {"lan": "lan-1", "serial": "serial-1", "cloud": "cloud-1"}


def test_no_candidate_nor_the_control_may_move_money_pair_or_cancel() -> None:
    assert [a for a in (*CANDIDATES, CONTROL) if money_like(a) is not False] == []
    assert "TransactionStatus" in CANDIDATES  # protocol 1.0's name comes first


def test_the_docs_name_every_candidate() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "first-contact.md").read_text()
    assert [name for name in CANDIDATES if name not in text] == []


async def paired_stack(nursery: trio.Nursery, tmp: Path, **sim: Any) -> Stack:
    stack = await start_stack(nursery, tmp, sim_kw=sim)
    async with open_trio_client(stack.socket) as c:
        await wait_link_up(c, "serial-1")
        for link in TIDS:
            await pair(c, stack, link)
    return stack


async def test_a_terminal_with_a_status_action_is_told_apart_on_every_link(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await paired_stack(nursery, tmp_path, status_action="QueryTransaction")
    async with open_trio_client(stack.socket) as c:
        for link, tid in TIDS.items():
            result = await c.call("terminal.probe", terminal=tid, status=True)
            assert result["recognised"] == ["QueryTransaction"], (link, result)
            control = result["control"]["answer"]
            assert control["errorCode"] == "UNSUPPORTED_ACTION"
            [known] = [a for a in result["status_actions"] if a["recognised"]]
            # Verbatim: the code a reference the terminal never saw gets.
            assert known["answer"]["status"] == "Failed"
            assert known["answer"]["errorCode"] == "NOT_FOUND"
            assert known["reference_id"] in known["answer"]["errorMessage"]
            refs = [a["reference_id"] for a in result["status_actions"]]
            assert len(set(refs)) == len(refs) == len(CANDIDATES)
            assert all(r.startswith("probe-") for r in refs)
            sim = stack.terminal(link)
            assert sim.payments.ledger == [] and sim.pairing_state == "paired"
        row = next(r for r in await c.call("terminal.list") if r["id"] == "lan-1")
    assert not row["busy"]


async def test_a_terminal_without_one_recognises_none_and_ecrctl_says_so(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await paired_stack(nursery, tmp_path)
    ctl = [str(Path(sys.executable).parent / "ecrctl"), "--socket", stack.socket, "probe"]
    done = await trio.run_process(
        [*ctl, "lan-1", "--status"], capture_stdout=True, capture_stderr=True, check=False
    )
    assert done.returncode == 5
    assert "knows none of them" in done.stdout.decode()
    progress = done.stderr.decode()
    assert all(f"status_action={name}" in progress for name in CANDIDATES)


async def test_ecrctl_probe_status_prints_the_lines_to_paste(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await paired_stack(nursery, tmp_path, status_action="TransactionStatus")
    ctl = [str(Path(sys.executable).parent / "ecrctl"), "--socket", stack.socket]
    done = await trio.run_process(
        [*ctl, "probe", "serial-1", "--status"], capture_stdout=True, capture_stderr=True
    )
    text = done.stdout.decode()
    assert 'status_action = "TransactionStatus"' in text
    assert '# not_charged_codes = ["NOT_FOUND"]' in text
    as_json = await trio.run_process(
        [*ctl, "--json", "probe", "serial-1", "--status"], capture_stdout=True
    )
    assert json.loads(as_json.stdout)["recognised"] == ["TransactionStatus"]


async def test_the_status_probe_needs_a_paired_terminal_and_not_a_code(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        err = await call_error(c, "terminal.probe", terminal="lan-1", status=True)
        assert err.reason == "not_paired"
        both = await call_error(
            c, "terminal.probe", terminal="lan-1", status=True, code=PIN1["lan"]
        )
        assert both.reason == "invalid_params"
        neither = await call_error(c, "terminal.probe", terminal="lan-1")
        assert neither.reason == "invalid_params"
    assert stack.terminal("lan").stats.requests == 0


@pytest.mark.parametrize("name", ["PreAuthCompletion", "Pair", "Abort", "ConnectionInfo", "Sale"])
def test_the_guard_refuses_what_may_move_money(name: str) -> None:
    from ecrd.terminal.probe_status import _read_only

    with pytest.raises(RuntimeError):
        _read_only(name)
