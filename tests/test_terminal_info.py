"""``terminal.info`` cannot be turned against a sale: one DeviceInfo in flight per terminal,
shared by every caller, kept ``info_cache_s`` seconds, and never sent while a payment runs
on that terminal or waits for it (terminal/info.py). Against the simulator over real links
and the real socket; what reached the terminal is what the simulated terminal saw."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from stack import pair, start_stack, wait_link_up

from ecrd.client import open_trio_client
from ecrd.sim.terminal import SimTerminal
from ecrd.terminal.info import InfoCache

INFO = {"jsonrpc": "2.0", "method": "terminal.info"}


def record_actions(term: SimTerminal) -> list[tuple[str, float]]:
    """Every request the simulated terminal takes, with when it arrived."""
    seen: list[tuple[str, float]] = []
    handle = term.handle

    async def recording(request: Any, link: Any = "lan") -> Any:
        seen.append((request.action, trio.current_time()))
        return await handle(request, link)

    term.handle = recording  # type: ignore[method-assign]
    return seen


async def raw_infos(path: str, tid: str, n: int) -> list[dict[str, Any]]:
    """``n`` terminal.info lines written at once on one connection, every reply read."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(path)
    stream = trio.SocketStream(sock)
    async with stream:
        lines = [json.dumps({**INFO, "id": i, "params": {"terminal": tid}}) for i in range(n)]
        await stream.send_all(("\n".join(lines) + "\n").encode())
        data = b""
        while data.count(b"\n") < n:
            chunk = await stream.receive_some(65536)
            assert chunk, "ecrd closed the connection"
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("link", ["lan", "serial", "cloud"])
async def test_a_flood_of_terminal_info_shares_one_device_info_and_the_sale_goes_on(
    nursery: trio.Nursery, tmp_path: Path, link: str
) -> None:
    """The issue's flood: 16 connections x 64 calls in flight, while a cashier sells."""
    stack = await start_stack(nursery, tmp_path, reuse_salt=False)
    tid = f"{link}-1"
    async with open_trio_client(stack.socket) as c:
        await wait_link_up(c, tid)
        await pair(c, stack, link)
        seen = record_actions(stack.terminal(link))
        replies: list[list[dict[str, Any]]] = []
        async with trio.open_nursery() as flood:
            for _ in range(15):  # the cashier's connection is the 16th
                flood.start_soon(lambda: _collect(replies, raw_infos(stack.socket, tid, 64)))
            with trio.fail_after(4):  # the terminal's own timeout_s is 5
                tx = await c.call("sale", terminal=tid, amount="2.00", currency="HKD",
                                  reference_id=f"flood-{link}")  # fmt: skip
    assert tx["state"] == "succeeded"
    answers = [r for rs in replies for r in rs]
    assert len(answers) == 15 * 64
    assert all(r["result"]["deviceSn"] == stack.terminal(link).sn for r in answers)
    device_infos = [action for action, _ in seen if action == "DeviceInfo"]
    assert len(device_infos) <= 2, f"{len(device_infos)} DeviceInfo exchanges for one answer"


async def _collect(into: list[Any], calls: Any) -> None:
    into.append(await calls)


async def test_the_answer_is_kept_info_cache_s_seconds(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    kept = await start_stack(nursery, tmp_path / "kept", info_cache_s=30)
    fresh = await start_stack(nursery, tmp_path / "fresh", info_cache_s=0)
    for stack, expected in ((kept, 1), (fresh, 3)):
        async with open_trio_client(stack.socket) as c:
            await pair(c, stack, "lan")
            seen = record_actions(stack.terminal("lan"))
            for _ in range(3):
                await c.call("terminal.info", terminal="lan-1")
        assert [a for a, _ in seen] == ["DeviceInfo"] * expected


async def test_terminal_info_waits_behind_a_payment_in_progress_and_one_waiting(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Never ahead: asked during a sale, with a second sale queued ("wait": true), the
    DeviceInfo reaches the terminal only once both are done."""
    stack = await start_stack(nursery, tmp_path)
    term = stack.terminal("lan")
    sale = {"terminal": "lan-1", "amount": "1.00", "currency": "HKD"}
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        term.arm("delay", params={"seconds": 0.5}, sticky=True)
        seen = record_actions(term)
        done: dict[str, float] = {}

        async def run(name: str, method: str, **params: Any) -> None:
            await c.call(method, **params)
            done[name] = trio.current_time()

        async with trio.open_nursery() as n:
            n.start_soon(lambda: run("first", "sale", **sale, reference_id="q1"))
            await stack.held("lan", "q1")
            n.start_soon(lambda: run("second", "sale", **sale, reference_id="q2", wait=True))
            await stack.queued("lan-1")
            n.start_soon(lambda: run("info", "terminal.info", terminal="lan-1"))
    assert [a for a, _ in seen] == ["Sale", "Sale", "DeviceInfo"]
    info_at = next(t for a, t in seen if a == "DeviceInfo")
    assert info_at >= done["second"] - 0.05  # sent once the queued sale was answered
    assert done["first"] < done["second"] <= done["info"]


async def test_a_cached_answer_is_given_while_a_payment_runs(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path, info_cache_s=30)
    term = stack.terminal("lan")
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        first = await c.call("terminal.info", terminal="lan-1")
        term.arm("delay", params={"seconds": 1.0})
        async with trio.open_nursery() as n:
            n.start_soon(lambda: c.call("sale", terminal="lan-1", amount="1.00", currency="HKD",
                                        reference_id="c1"))  # fmt: skip
            await stack.held("lan", "c1")
            with trio.fail_after(0.5):  # not behind the customer: nothing goes to the terminal
                assert await c.call("terminal.info", terminal="lan-1") == first


async def test_callers_of_a_cancelled_flight_start_another_and_errors_are_shared_not_kept() -> None:
    calls: list[str] = []
    outcome: list[Any] = [trio.sleep_forever, RuntimeError("no reply"), {"deviceSn": "X"}]

    async def fetch() -> dict[str, Any]:
        calls.append("fetch")
        step = outcome.pop(0)
        if callable(step):
            await step()
        if isinstance(step, Exception):
            await trio.sleep(0.05)
            raise step
        return dict(step)

    cache = InfoCache(fetch, lambda: 10.0)

    async def turn() -> None:
        await trio.lowlevel.checkpoint()

    results: list[Any] = []

    async def caller() -> None:
        try:
            results.append(await cache.get(turn))
        except RuntimeError as exc:
            results.append(str(exc))

    async with trio.open_nursery() as n:
        doomed = trio.CancelScope()  # the first flight's caller goes away: no answer
        n.start_soon(_cancelled_caller, cache, turn, doomed)
        await trio.testing.wait_all_tasks_blocked()  # its flight is under way
        n.start_soon(caller)
        n.start_soon(caller)
        await trio.testing.wait_all_tasks_blocked()  # both joined it
        doomed.cancel()
    assert results == ["no reply", "no reply"]  # one flight's error, shared
    assert await cache.get(turn) == {"deviceSn": "X"}  # the error was not kept
    assert await cache.get(turn) == {"deviceSn": "X"}  # the answer was
    assert len(calls) == 3


async def _cancelled_caller(cache: InfoCache, turn: Any, scope: trio.CancelScope) -> None:
    with scope:
        await cache.get(turn)


async def test_a_kept_answer_is_forgotten_when_the_terminal_is_paired_anew(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path, info_cache_s=30)
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        await c.call("terminal.info", terminal="lan-1")
        seen = record_actions(stack.terminal("lan"))
        await c.call("terminal.info", terminal="lan-1")
        assert seen == []  # kept
        stack.terminal("lan").show_pairing_page()
        await pair(c, stack, "lan")
        seen.clear()
        await c.call("terminal.info", terminal="lan-1")
    assert [a for a, _ in seen] == ["DeviceInfo"]  # asked again under the new pairing
