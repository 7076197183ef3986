"""ecrctl's exit codes are a contract for scripts (ecrd/ctl_out.py, README "Troubleshooting"):
each class of outcome has one code, every code is produced here by the real ``ecrctl``
against the daemon and the simulator, and under ``--json`` (anywhere on the line) every
error is one JSON object on stderr."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from stack import Stack, pair, start_stack, until

from ecrd import ctl_out
from ecrd.client import open_trio_client

ROOT = Path(__file__).resolve().parents[1]
ECRCTL = str(Path(sys.executable).parent / "ecrctl")


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
    return stack


async def ecrctl(socket: str, *args: str) -> tuple[int, str, str]:
    done = await trio.run_process([ECRCTL, "--socket", socket, *args], capture_stdout=True,
                                  capture_stderr=True, check=False)  # fmt: skip
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def json_error(err: str) -> dict[str, Any]:
    """Under --json, stderr holds exactly one JSON object."""
    said: dict[str, Any] = json.loads(err)
    assert set(said) == {"code", "reason", "message", "data"}
    return said


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("sale", "lan-1", "10.00"), ctl_out.EXIT_OK),
        (("sale", "lan-1", "10.91"), ctl_out.EXIT_DECLINED),  # the simulator declines .91
        (("sale", "lan-1", "ten"), ctl_out.EXIT_USAGE),
        (("sale", "lan-1", "10.94"), ctl_out.EXIT_UNKNOWN),  # charged, then no reply
        (("sale", "serial-1", "10.00"), ctl_out.EXIT_ERROR),  # not paired
        (("tx", "no-such-payment"), ctl_out.EXIT_NOT_FOUND),
        (("refund", "lan-1", "1.00", "--original", "never"), ctl_out.EXIT_REFUSED),
        (("abort", "lan-1"), ctl_out.EXIT_DECLINED),  # the terminal: nothing in progress
    ],
)
async def test_each_class_of_outcome_has_its_exit_code(
    stack: Stack, args: tuple[str, ...], code: int
) -> None:
    if args[0] in ("sale", "refund"):  # the same payment twice: the second is its replay
        args = (*args, "--ref", f"exit-{code}")
    got, _, err = await ecrctl(stack.socket, *args)
    assert got == code, err
    got_json, _, err = await ecrctl(stack.socket, *args, "--json")  # --json at the end
    assert got_json == code
    if code not in (ctl_out.EXIT_OK, ctl_out.EXIT_DECLINED):
        assert ctl_out.exit_for(json_error(err)["reason"]) == code or code == ctl_out.EXIT_USAGE


async def test_a_busy_terminal_and_a_blocked_one_exit_9(stack: Stack) -> None:
    # The customer never answers: the terminal stays busy however slowly ecrctl starts,
    # until the abort below.
    stack.terminal("lan").arm("never_answer")
    async with trio.open_nursery() as n:
        n.start_soon(ecrctl, stack.socket, "sale", "lan-1", "1.00")
        await until(lambda: stack.terminal("lan").payments.busy)
        busy, _, err = await ecrctl(stack.socket, "--json", "sale", "lan-1", "2.00")
        async with open_trio_client(stack.socket) as c:
            await c.call("abort", terminal="lan-1")
    assert busy == ctl_out.EXIT_BUSY and json_error(err)["reason"] == "terminal_busy"
    await ecrctl(stack.socket, "sale", "lan-1", "3.94")  # unknown: the terminal is blocked
    blocked, _, err = await ecrctl(stack.socket, "sale", "lan-1", "4.00", "--json")
    assert blocked == ctl_out.EXIT_BUSY and json_error(err)["reason"] == "unresolved_transaction"


async def test_an_unknown_is_listed_then_resolved_and_status_names_the_terminal(
    stack: Stack,
) -> None:
    """What a script does after exit 3: list the unknowns (``--json``), resolve one (exit
    0), and the terminal takes money again."""
    assert (await ecrctl(stack.socket, "sale", "lan-1", "10.94", "--ref", "u1"))[0] == 3
    code, out, _ = await ecrctl(stack.socket, "--json", "tx", "--state", "unknown")
    assert code == ctl_out.EXIT_OK and [t["reference_id"] for t in json.loads(out)] == ["u1"]
    code, _, err = await ecrctl(stack.socket, "resolve", "u1", "succeeded", "--note", "checked")
    assert code == ctl_out.EXIT_OK, err
    code, out, _ = await ecrctl(stack.socket, "status")
    assert code == ctl_out.EXIT_OK and "lan-1" in out
    assert (await ecrctl(stack.socket, "sale", "lan-1", "1.00"))[0] == ctl_out.EXIT_OK


async def test_ecrd_unreachable_exits_4_and_says_so_as_json(tmp_path: Path) -> None:
    code, _, err = await ecrctl(str(tmp_path / "none.sock"), "status", "--json")
    assert code == ctl_out.EXIT_UNREACHABLE
    assert json_error(err)["reason"] == "unreachable"


async def test_a_usage_error_under_json_is_one_json_object(tmp_path: Path) -> None:
    code, _, err = await ecrctl(str(tmp_path / "x.sock"), "tx", "--state", "nope", "--json")
    assert code == ctl_out.EXIT_USAGE and json_error(err)["reason"] == "usage"


async def test_a_permission_denied_exits_7(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Refused by role: a peer that says so on a real socket (running ecrctl as another
    user needs an interpreter that user may run; tests/test_e2e_roles.py proves the role
    check itself with real uids)."""
    path = str(tmp_path / "refuses.sock")

    async def refuse(stream: trio.SocketStream) -> None:
        request = json.loads((await stream.receive_some(65536)).split(b"\n")[0])
        error = {"code": -32030, "message": "missing role admin",
                 "data": {"reason": "permission_denied", "role": "admin"}}  # fmt: skip
        reply = {"jsonrpc": "2.0", "id": request["id"], "error": error}
        await stream.send_all(json.dumps(reply).encode() + b"\n")
        await stream.aclose()

    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(path)
    sock.listen(4)
    nursery.start_soon(trio.serve_listeners, refuse, [trio.SocketListener(sock)])
    code, _, err = await ecrctl(path, "reload")
    assert code == ctl_out.EXIT_PERMISSION and "[access].admin" in err


def test_every_reason_maps_to_a_documented_code_and_the_readme_has_the_table() -> None:
    assert set(ctl_out.REASON_EXITS.values()) <= set(ctl_out.EXIT_CODES)
    assert sorted(ctl_out.EXIT_CODES) == list(range(11))
    readme = (ROOT / "README.md").read_text()
    for code, what in ctl_out.EXIT_CODES.items():
        assert re.search(rf"^\| {code} \| ", readme, re.M), f"README lacks exit code {code}"
        assert what in ctl_out.EPILOG
