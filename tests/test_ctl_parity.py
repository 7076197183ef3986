"""ecrctl has what the API has: the real ``ecrctl`` against the daemon and the simulator,
its exit status and what the journal kept of each option."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from stack import Stack, pair, start_stack

from ecrd import ctl, ctl_out
from ecrd.client import open_trio_client

ECRCTL = str(Path(sys.executable).parent / "ecrctl")


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    stack = await start_stack(nursery, tmp_path, send_actions=["Settlement"])
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
    return stack


async def ecrctl(stack: Stack, *args: str) -> tuple[int, str, str]:
    done = await trio.run_process(
        [ECRCTL, "--socket", stack.socket, *args],
        capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def stored(stack: Stack, ref: str) -> dict[str, Any]:
    async with open_trio_client(stack.socket) as c:
        tx: dict[str, Any] = await c.call("transaction.get", reference_id=ref)
    return tx


async def test_sale_takes_print_extra_and_customer_order_id(stack: Stack) -> None:
    code, _, err = await ecrctl(
        stack, "sale", "lan-1", "30.00", "HKD", "--ref", "o1", "--print", "NO",
        "--extra", '{"memo": "table 4"}', "--customer-order-id", "C-77",
    )  # fmt: skip
    assert code == ctl_out.EXIT_OK, err
    params = (await stored(stack, "o1"))["params"]
    assert params["print"] == "NO" and params["customer_order_id"] == "C-77"
    assert params["extra"] == {"memo": "table 4"}


async def test_void_takes_timeout_wait_and_extra_and_refund_elsewhere(stack: Stack) -> None:
    assert (await ecrctl(stack, "sale", "lan-1", "30.00", "--ref", "o1"))[0] == ctl_out.EXIT_OK
    code, _, err = await ecrctl(
        stack, "void", "lan-1", "o1", "--ref", "v1", "--timeout", "30", "--wait",
        "--extra", '{"memo": "x"}',
    )  # fmt: skip
    assert code == ctl_out.EXIT_OK, err
    assert (await stored(stack, "v1"))["params"]["extra"] == {"memo": "x"}
    code, _, err = await ecrctl(
        stack, "refund", "lan-1", "1.00", "--original", "elsewhere-1", "--ref", "r1"
    )
    assert code == ctl_out.EXIT_REFUSED and "original_not_found" in err
    code, _, _ = await ecrctl(
        stack, "refund", "lan-1", "1.00", "--original", "elsewhere-1", "--ref", "r2",
        "--elsewhere",
    )  # fmt: skip
    assert (await stored(stack, "r2"))["params"]["original_elsewhere"] is True


async def test_send_forwards_only_allowed_actions(stack: Stack) -> None:
    code, out, err = await ecrctl(stack, "--json", "send", "lan-1", "DeviceInfo")
    assert code == ctl_out.EXIT_OK, err
    assert json.loads(out)["deviceSn"] == stack.terminal("lan").sn
    code, _, err = await ecrctl(stack, "send", "lan-1", "Capture", "--body", '{"amount": "1"}')
    assert code == ctl_out.EXIT_REFUSED and "action_not_allowed" in err


async def test_abort_exits_non_zero_when_nothing_was_in_progress(stack: Stack) -> None:
    code, out, _ = await ecrctl(stack, "abort", "lan-1")
    assert code == ctl_out.EXIT_DECLINED and "Failed" in out


def test_watch_takes_topics_and_bad_json_is_a_usage_error() -> None:
    args = ctl._parser().parse_args(["watch", "--topics", "terminal"])
    assert args.topics == ["terminal"]
    with pytest.raises(SystemExit) as exc:
        ctl._parser().parse_args(["sale", "t", "1.00", "--extra", "[1]"])
    assert exc.value.code == ctl_out.EXIT_USAGE


async def test_subscribe_says_which_topics_as_documented(stack: Stack) -> None:
    async with open_trio_client(stack.socket) as c:
        assert await c.call("subscribe") == {
            "subscribed": ["terminal", "transaction.disputed", "transaction.state"]
        }
        assert await c.call("subscribe", topics=["terminal"]) == {"subscribed": ["terminal"]}
