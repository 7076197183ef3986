"""One terminal's task tree never takes the daemon down (Daemon._supervise): not when it
crashes, and not when it fails while it is being removed or stopped, where its error comes
grouped with the cancellation."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from stack import Stack


class FailsWhenCancelled:
    """A terminal whose teardown raises (a port that fails to close), with a task of its
    own beside it: what it raises is a group of the error and the cancellation."""

    id = "failing"
    last_error: str | None = None

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            try:
                await trio.sleep_forever()
            finally:
                raise RuntimeError("the port failed to close")


async def test_a_terminal_failing_as_it_is_removed_is_logged_and_the_daemon_goes_on(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    term, scope = FailsWhenCancelled(), trio.CancelScope()
    with caplog.at_level(logging.ERROR, logger="ecrd.daemon"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stack.daemon._supervise, term, scope)  # type: ignore[arg-type]
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()  # as a reload that removes the terminal does
    assert term.last_error == "internal: RuntimeError"
    assert any("terminal=failing crashed" in r.getMessage() for r in caplog.records)
    assert (await stack.daemon.status())["stopping"] is False
