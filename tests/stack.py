"""An in-process stack for integration tests: the simulator (LAN over HTTP on loopback,
serial over a real pty, cloud gateway) and the daemon on a real Unix socket, in one Trio
loop. End-to-end tests with real subprocesses live in test_e2e_*.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from ecrd.client import EcrdError, TrioClient
from ecrd.config import Config, parse
from ecrd.daemon import Daemon
from ecrd.protocol.crypto import KeyCache
from ecrd.sim.simulator import Simulator
from ecrd.sim.terminal import SimTerminal

BUSINESS = "411d6207-1470-4d35-a557-54852463844d"
# Shared by every simulated terminal of the test session (random salts: a key derived at the
# tests' work factor is never asked for under the protocol's; tests/conftest.py).
SIM_KEYS = KeyCache(size=4096)
SN = {
    "lan": "NEXGO-N96-1170000001",
    "serial": "PAX-A930-1170000002",
    "cloud": "NEXGO-N62-1170000003",
}
PIN1 = {"lan": "111111", "serial": "222222", "cloud": "333333"}


@attrs.define
class Stack:
    sim: Simulator
    daemon: Daemon
    socket: str
    description: dict[str, Any]
    tmp: Path

    def terminal(self, link: str) -> SimTerminal:
        return self.sim.terminal(SN[link])

    def charges(self, link: str, ref: str) -> int:
        return self.terminal(link).payments.charges(ref)

    def requests(self, link: str, ref: str) -> int:
        """Money requests the terminal received for ``ref`` (charged or not)."""
        return sum(1 for e in self.terminal(link).payments.ledger if e["referenceID"] == ref)

    def event(self, topic: str, **match: Any) -> trio.Event:
        """Set once the daemon publishes a ``topic`` event whose payload has ``match`` (the
        daemon's own event bus: no polling). Ask before the action that causes it."""
        seen = trio.Event()

        def check(event: dict[str, Any]) -> None:
            if all(event.get(k) == v for k, v in match.items()):
                seen.set()
                stop()

        stop = self.daemon.events.watch(frozenset({topic}), check)
        return seen

    async def settled(self, ref: str, state: str, timeout: float = 5.0) -> None:
        """Until the record ``ref`` is in ``state`` (its ``transaction.state`` event, or
        already there)."""
        seen = self.event("transaction.state", reference_id=ref, state=state)
        record = self.daemon.journal_view.get(ref)
        if record is None or record.state != state:
            with trio.fail_after(timeout):
                await seen.wait()

    async def held(self, link: str, ref: str, timeout: float = 5.0) -> None:
        """Until the simulated terminal has the request for ``ref`` (with its customer)."""
        await until(lambda: self.requests(link, ref) > 0, timeout)

    async def queued(self, terminal: str, n: int = 1, timeout: float = 5.0) -> None:
        """Until ``n`` payments wait (``"wait": true``) for the busy ``terminal``."""
        await until(lambda: self.daemon.payments._waiting[terminal] == n, timeout)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Until ``condition()`` holds, checked every 10 ms, failing after ``timeout``: for a
    state that announces itself nowhere (the simulator's ledger, a file)."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


def make_sim(tmp: Path, *, reuse_salt: bool = True, **terminal_kw: Any) -> Simulator:
    sim = Simulator(state_dir=tmp / "sim", business_id=BUSINESS, control_port=None)
    for link in ("lan", "serial", "cloud"):
        term = SimTerminal(
            SN[link], business_id=BUSINESS, pin1=PIN1[link], keys=SIM_KEYS,
            reply_salt_reuse=reuse_salt, magic_delay=0.3, **terminal_kw,
        )  # fmt: skip
        getattr(sim, f"add_{link}")(term)
    return sim


def config_for(desc: dict[str, Any], tmp: Path, **terminal_extra: Any) -> Config:
    return parse(config_data(desc, tmp, **terminal_extra), str(tmp / "ecrd.toml"))


def config_data(desc: dict[str, Any], tmp: Path, **terminal_extra: Any) -> dict[str, Any]:
    by_link = {t["link"]: t for t in desc["terminals"]}
    common = {"timeout_s": 5, "info_timeout_s": 3, "probe_interval_s": 0, **terminal_extra}
    data: dict[str, Any] = {
        "daemon": {
            "socket": str(tmp / "run" / "ecrd.sock"),
            "state_dir": str(tmp / "state"),
            "client_device_sn": "POS-TEST",
            "shutdown_grace_s": 2,
        },
        "cloud": {
            "base_url": desc["cloud"]["base_url"],
            "command_url": desc["cloud"]["command_url"],
            "business_id": BUSINESS,
            "timeout_s": 5,
        },
        "terminal": [
            {"id": "lan-1", "transport": "lan", "host": by_link["lan"]["host"],
             "port": by_link["lan"]["port"], **common},
            {"id": "serial-1", "transport": "serial", "device": by_link["serial"]["device"],
             **common},
            {"id": "cloud-1", "transport": "cloud", **common},
        ],
    }  # fmt: skip
    return data


async def start_stack(
    nursery: trio.Nursery,
    tmp: Path,
    *,
    reuse_salt: bool = True,
    sim_kw: dict[str, Any] | None = None,
    **terminal_extra: Any,
) -> Stack:
    """``sim_kw`` goes to every ``SimTerminal``; ``terminal_extra`` to every ``[[terminal]]``."""
    sim = make_sim(tmp, reuse_salt=reuse_salt, **(sim_kw or {}))
    desc = await nursery.start(sim.run)
    cfg = config_for(desc, tmp, **terminal_extra)
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    return Stack(sim, daemon, cfg.daemon.socket, desc, tmp)


async def pair(client: TrioClient, stack: Stack, link: str) -> dict[str, Any]:
    tid = {"lan": "lan-1", "serial": "serial-1", "cloud": "cloud-1"}[link]
    await wait_link_up(client, tid)  # a serial port opens in the background
    result: dict[str, Any] = await client.call(
        "terminal.pair", terminal=tid, code=stack.terminal(link).pin1
    )
    return result


async def wait_link_up(client: TrioClient, terminal: str, timeout: float = 5.0) -> None:
    """Until a serial terminal's port is open: the daemon is ready before its terminals'
    serial ports open (they open in the background), so a first request may find it closed.
    LAN and cloud links have no state before their first exchange."""
    with trio.fail_after(timeout):
        while True:
            row = next(r for r in await client.call("terminal.list") if r["id"] == terminal)
            if row["transport"] != "serial" or row["link"] == "up":
                return
            await trio.sleep(0.02)


async def call_error(client: TrioClient, method: str, **params: Any) -> EcrdError:
    try:
        await client.call(method, **params)
    except EcrdError as exc:
        return exc
    raise AssertionError(f"{method} did not fail")
