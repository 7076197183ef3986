"""One terminal's task tree never takes the daemon down (Daemon._supervise): not when it
crashes, and not when it fails while it is being removed or stopped, where its error comes
grouped with the cancellation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trio
from stack import config_data, start_stack, wait_link_up

from ecrd.client import open_trio_client
from ecrd.transport.serial import SerialLink


async def test_a_terminal_failing_as_a_reload_removes_it_is_logged_and_the_daemon_goes_on(
    nursery: trio.Nursery,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_run = SerialLink.run

    async def fails_as_it_closes(self: SerialLink, **kwargs: Any) -> None:
        try:
            await real_run(self, **kwargs)
        finally:
            raise RuntimeError("the port failed to close")  # as its cancellation arrives

    monkeypatch.setattr(SerialLink, "run", fails_as_it_closes)
    stack = await start_stack(nursery, tmp_path)
    data = config_data(stack.description, tmp_path)
    data["terminal"] = [t for t in data["terminal"] if t["transport"] != "serial"]
    (tmp_path / "ecrd.toml").write_text(tomli_w.dumps(data))
    with caplog.at_level(logging.ERROR, logger="ecrd.daemon"):
        async with open_trio_client(stack.socket) as c:
            await wait_link_up(c, "serial-1")
            await c.call("config.reload")
            with trio.fail_after(5):
                while not any("terminal=serial-1 crashed" in r.getMessage()
                              for r in caplog.records):  # fmt: skip
                    await trio.sleep(0.01)
            assert await c.call("ping")  # the daemon still serves
            assert [t["id"] for t in await c.call("terminal.list")] == ["lan-1", "cloud-1"]
