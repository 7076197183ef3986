"""``terminal.send`` forwards only an allowlist (DeviceInfo, the status action, the
terminal's ``send_actions``): anything else is ``action_not_allowed`` and never reaches the
terminal — counted by the simulator itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from stack import Stack, call_error, config_data, pair, start_stack

from ecrd import errors
from ecrd.client import open_trio_client
from ecrd.config import parse

DESC = {
    "terminals": [
        {"link": "lan", "host": "127.0.0.1", "port": 8443},
        {"link": "serial", "device": "/dev/ttyS0"},
        {"link": "cloud"},
    ],
    "cloud": {"base_url": "http://127.0.0.1:1", "command_url": "http://127.0.0.1:1/c"},
}


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    return await start_stack(
        nursery, tmp_path, status_action="TransactionStatus", send_actions=["Settlement"]
    )


@pytest.mark.parametrize(
    "action",
    ["PreAuthCompletion", "Capture", "TipAdjust", "Sale", "sale", "Refund", "Void", "Pair",
     "ConnectionInfo", "Abort", "devicEinfo", "settlement", "NoSuchAction"],
)  # fmt: skip
async def test_an_action_off_the_allowlist_never_reaches_the_terminal(
    stack: Stack, action: str
) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        before = stack.terminal("lan").stats.requests
        err = await call_error(c, "terminal.send", terminal="lan-1", action=action, body={})
        assert (err.code, err.reason) == (-32008, "action_not_allowed")
        assert err.data["allowed"] == ["DeviceInfo", "TransactionStatus", "Settlement"]
        assert stack.terminal("lan").stats.requests == before


@pytest.mark.parametrize("action", ["DeviceInfo", "TransactionStatus", "Settlement"])
async def test_deviceinfo_the_status_action_and_send_actions_are_forwarded(
    stack: Stack, action: str
) -> None:
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        before = stack.terminal("lan").stats.requests
        reply = await c.call("terminal.send", terminal="lan-1", action=action, body={})
        assert isinstance(reply, dict) and ("status" in reply or "deviceSn" in reply)
        assert stack.terminal("lan").stats.requests == before + 1


@pytest.mark.parametrize(
    "action",
    ["Sale", "refund ", "Pair", "Abort", "ConnectionInfo", "PreAuthCompletion", "Capture",
     "TipAdjust", "TIP_ADJUST", "pre-auth"],
)  # fmt: skip
def test_send_actions_never_lists_a_money_pairing_or_abort_action(
    tmp_path: Path, action: str
) -> None:
    data = config_data(DESC, tmp_path, send_actions=["Settlement", action])
    with pytest.raises(errors.ConfigError, match=r"send_actions"):
        parse(data, "ecrd.toml")
    assert parse(config_data(DESC, tmp_path, send_actions=["Settlement"])).terminals[
        0
    ].send_actions == ("Settlement",)


def test_check_config_reload_and_the_api_share_one_definition_of_money_like() -> None:
    """The allowlist an admin writes is guarded by one rule (protocol/actions.py): what the
    config refuses, the API would refuse too, even if a config somehow carried it."""
    from ecrd.api.methods import send_actions
    from ecrd.config import LanTerminal
    from ecrd.config_rules import action_problem
    from ecrd.protocol.actions import money_like

    listed = ("Settlement", "Capture", "PaymentStatus", "TipAdjust")
    term = type("T", (), {"cfg": LanTerminal(id="t", host="h", send_actions=listed)})()
    assert send_actions(term) == ("DeviceInfo", "Settlement", "PaymentStatus")  # type: ignore[arg-type]
    for action in listed:
        assert (action_problem(action) is None) == (not money_like(action))
