"""Roles on the socket with real users: the daemon (in this process, as root) against the
simulator, and each client a separate process running as ``nobody`` with the groups a test
gives it (``setgroups``), so the kernel's SO_PEERCRED / SO_PEERGROUPS are the only source
of who it is. Each role's allowed and refused methods; a refused call sends and journals
nothing; a reload applies new roles to the calls after it; the journal keeps who started
a payment.

Needs root (to run clients as another uid); skipped otherwise.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trio
from stack import Stack, config_data, make_sim

from ecrd.api import refusals
from ecrd.client import open_trio_client
from ecrd.config import parse
from ecrd.daemon import Daemon


def world_runnable(path: str) -> bool:
    """Whether any user may run ``path``: it and every directory above it have o+x."""
    real = Path(os.path.realpath(path))
    return real.is_file() and all(p.stat().st_mode & 0o001 for p in (real, *real.parents))


# The client needs only the standard library: any Python that nobody may run.
PYTHON = next(
    (os.path.realpath(p) for p in (sys.executable, "/usr/bin/python3") if world_runnable(p)),
    None,
)
pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: clients run as another uid (setuid to nobody)"
    ),
    pytest.mark.skipif(PYTHON is None, reason="no Python interpreter that nobody may run"),
]
SELL, REFUND, ADMIN, SOCKET_GROUP = "audio", "video", "dialout", "users"
ACCESS = {"sell": [f"@{SELL}"], "refund": [f"@{REFUND}"], "admin": [f"@{ADMIN}"]}
# A client that knows nothing of ecrd: one JSON-RPC request per line, the replies back.
CLIENT = r"""
import json, socket, sys
requests = json.loads(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
for r in requests:
    f.write(json.dumps(r).encode() + b"\n")
f.flush()
s.shutdown(socket.SHUT_WR)
print(json.dumps([json.loads(line) for line in f]))
"""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """The socket's directory, somewhere nobody can reach (pytest's tmp is root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ecrd-roles-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def start(nursery: trio.Nursery, tmp: Path, run_dir: Path, access: Any) -> Stack:
    sim = make_sim(tmp)
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp)
    data["daemon"].update(socket=str(run_dir / "run" / "ecrd.sock"), socket_group=SOCKET_GROUP)
    if access is not None:
        data["access"] = access
    path = tmp / "ecrd.toml"
    path.write_text(tomli_w.dumps(data))
    cfg = parse(data, str(path))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    return Stack(sim, daemon, cfg.daemon.socket, desc, tmp)


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: Path, run_dir: Path) -> Stack:
    stack = await start(nursery, tmp_path, run_dir, ACCESS)
    async with open_trio_client(stack.socket) as c:  # root: every role
        await c.call("terminal.pair", terminal="lan-1", code=stack.terminal("lan").pin1)
        await c.call("sale", terminal="lan-1", amount="30.00", currency="HKD", reference_id="o1")
    return stack


async def as_nobody(
    stack: Stack, groups: tuple[str, ...], *calls: tuple[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Run ``calls`` from a process of uid ``nobody`` in ``groups`` (and the socket's)."""
    nobody = pwd.getpwnam("nobody")
    gids = [grp.getgrnam(g).gr_gid for g in (SOCKET_GROUP, *groups)]

    def drop() -> None:
        os.setgroups(gids)
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    requests = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in enumerate(calls)]  # fmt: skip
    assert PYTHON is not None
    done = await trio.run_process(
        [PYTHON, "-I", "-c", CLIENT, stack.socket, json.dumps(requests)],
        capture_stdout=True, capture_stderr=True, preexec_fn=drop, cwd="/",
    )  # fmt: skip
    replies = sorted(json.loads(done.stdout), key=lambda r: r["id"])
    assert [r["id"] for r in replies] == list(range(len(calls)))
    return replies


def denied(reply: dict[str, Any], role: str) -> bool:
    error = reply.get("error") or {}
    return error.get("code") == -32030 and error["data"] == {
        "reason": "permission_denied", "role": role,
    }  # fmt: skip


def sale(ref: str) -> tuple[str, dict[str, Any]]:
    return "sale", {"terminal": "lan-1", "amount": "1.00", "currency": "HKD", "reference_id": ref}


def refund(ref: str) -> tuple[str, dict[str, Any]]:
    return "refund", {"terminal": "lan-1", "amount": "1.00", "currency": "HKD",
                      "reference_id": ref, "original_reference_id": "o1"}  # fmt: skip


READS = (("ping", {}), ("status", {}), ("terminal.list", {}),
         ("transaction.get", {"reference_id": "o1"}), ("transaction.list", {}))  # fmt: skip
ADMIN_CALLS = (("terminal.unpair", {"terminal": "lan-1"}), ("config.reload", {}),
               ("terminal.send", {"terminal": "lan-1", "action": "DeviceInfo"}),
               ("transaction.resolve", {"reference_id": "o1", "outcome": "failed"}))  # fmt: skip


async def nothing_happened(stack: Stack, *refs: str) -> None:
    for ref in refs:
        assert stack.requests("lan", ref) == 0
        assert await stack.daemon.payments.db(stack.daemon.payments.journal.get, ref) is None


async def test_socket_access_alone_reads_but_every_money_and_admin_call_is_refused(
    stack: Stack,
) -> None:
    calls = (*READS, sale("n1"), refund("n2"), ("abort", {"terminal": "lan-1"}), *ADMIN_CALLS)
    replies = await as_nobody(stack, (), *calls)
    assert all("result" in r for r in replies[: len(READS)])
    roles = ["sell", "refund", "sell"] + ["admin"] * len(ADMIN_CALLS)
    assert all(denied(r, role) for r, role in zip(replies[len(READS) :], roles, strict=True))
    await nothing_happened(stack, "n1", "n2")
    assert stack.daemon.terminals["lan-1"].paired  # the unpair never ran


async def test_the_sell_role_sells_but_may_not_refund_nor_administer(stack: Stack) -> None:
    replies = await as_nobody(stack, (SELL,), sale("s1"), refund("s2"), *ADMIN_CALLS)
    assert replies[0]["result"]["state"] == "succeeded"
    assert denied(replies[1], "refund")
    assert all(denied(r, "admin") for r in replies[2:])
    await nothing_happened(stack, "s2")
    async with open_trio_client(stack.socket) as c:
        tx = await c.call("transaction.get", reference_id="s1")
    first = tx["history"][0]  # the audit trail as the journal keeps it
    assert first["to"] == "pending"
    assert first["who"].startswith(f"uid={pwd.getpwnam('nobody').pw_uid} user=nobody pid=")
    assert f"exe={PYTHON}" in first["who"]
    assert tx["started_by"] == first["who"]


async def test_the_refund_role_refunds_and_voids_but_may_not_sell(stack: Stack) -> None:
    void = ("void", {"terminal": "lan-1", "reference_id": "v1", "original_reference_id": "o1"})
    assert (await as_nobody(stack, (REFUND,), refund("r1")))[0]["result"]["state"] == "succeeded"
    replies = await as_nobody(stack, (REFUND,), sale("r2"), void)
    assert denied(replies[0], "sell")
    # The void is the refund role's to send; the journal guard then refuses it (a refund
    # of o1 went out first): a different refusal, after the role check.
    assert replies[1]["error"]["data"]["reason"] == "refund_exceeds_original"
    await nothing_happened(stack, "r2", "v1")


async def test_the_admin_role_administers_but_may_not_sell(stack: Stack) -> None:
    send = ("terminal.send", {"terminal": "lan-1", "action": "DeviceInfo"})
    unpair = ("terminal.unpair", {"terminal": "lan-1"})
    replies = await as_nobody(stack, (ADMIN,), send, ("config.reload", {}), sale("a1"))
    assert "deviceSn" in replies[0]["result"]
    assert "applied" in replies[1]["result"]
    assert denied(replies[2], "sell")
    replies = await as_nobody(stack, (ADMIN,), unpair)
    assert replies[0]["result"] == {"terminal": "lan-1", "paired": False}


async def test_a_reload_applies_new_roles_to_the_calls_after_it(stack: Stack) -> None:
    assert denied((await as_nobody(stack, (), sale("x1")))[0], "sell")
    data = config_data(stack.description, stack.tmp)
    data["daemon"].update(socket=stack.socket, socket_group=SOCKET_GROUP)
    data["access"] = {**ACCESS, "sell": ["nobody"]}  # by user name this time
    (stack.tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
    async with open_trio_client(stack.socket) as c:
        assert "access" in (await c.call("config.reload"))["applied"]
    replies = await as_nobody(stack, (), sale("x2"))
    assert replies[0]["result"]["state"] == "succeeded"
    assert stack.charges("lan", "x2") == 1


async def test_without_an_access_table_anyone_sells_and_refunds_but_only_root_administers(
    nursery: trio.Nursery, tmp_path: Path, run_dir: Path
) -> None:
    stack = await start(nursery, tmp_path, run_dir, None)
    async with open_trio_client(stack.socket) as c:
        await c.call("terminal.pair", terminal="lan-1", code=stack.terminal("lan").pin1)
        await c.call("sale", terminal="lan-1", amount="30.00", currency="HKD", reference_id="o1")
    assert (await as_nobody(stack, (), sale("d1")))[0]["result"]["state"] == "succeeded"
    assert (await as_nobody(stack, (), refund("d2")))[0]["result"]["state"] == "succeeded"
    replies = await as_nobody(stack, (), *ADMIN_CALLS)
    assert all(denied(r, "admin") for r in replies)


async def test_the_read_role_guards_terminal_info_and_the_journal_and_sellers_hold_it(
    nursery: trio.Nursery, tmp_path: Path, run_dir: Path
) -> None:
    """With [access].read narrowed, a user without it may ping and nothing else: no
    DeviceInfo reaches the terminal for it; a seller still reads what it sold."""
    stack = await start(nursery, tmp_path, run_dir, {**ACCESS, "read": [f"@{ADMIN}"]})
    async with open_trio_client(stack.socket) as c:
        await c.call("terminal.pair", terminal="lan-1", code=stack.terminal("lan").pin1)
    asked = stack.terminal("lan").stats.requests
    replies = await as_nobody(stack, (), ("ping", {}), ("terminal.info", {"terminal": "lan-1"}),
                              *READS[1:])  # fmt: skip
    assert "result" in replies[0]
    assert all(denied(r, "read") for r in replies[1:])
    assert stack.terminal("lan").stats.requests == asked  # nothing was sent for it
    assert (await as_nobody(stack, (SELL,), sale("rd1")))[0]["result"]["state"] == "succeeded"
    replies = await as_nobody(stack, (SELL,), ("transaction.get", {"reference_id": "rd1"}))
    assert replies[0]["result"]["state"] == "succeeded"


async def test_refused_calls_are_logged_a_few_per_interval_then_summed_up(
    nursery: trio.Nursery, tmp_path: Path, run_dir: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The issue's 10 000 lines a second from nobody: now 5 lines, then one summary."""
    monkeypatch.setattr(refusals, "INTERVAL_S", 1.0)
    stack = await start(nursery, tmp_path, run_dir, ACCESS)
    caplog.set_level(logging.INFO, logger="ecrd.api")
    calls = [sale(f"f{i}") for i in range(150)] + [("config.reload", {})] * 50
    replies = await as_nobody(stack, (), *calls)
    assert all("error" in r for r in replies)
    await trio.sleep(1.5)
    said = [r.getMessage() for r in caplog.records if "refus" in r.getMessage()]
    assert len(said) == 6, said
    assert said[-1].startswith("client uid=65534 user=nobody")
    assert "195 more refusal(s)" in said[-1]
    assert "sale (no sell role) x" in said[-1] and "config.reload (no admin role) x" in said[-1]
    async with open_trio_client(stack.socket) as c:
        assert await c.call("journal.audit") == []  # refusals are not admin actions
