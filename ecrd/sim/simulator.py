"""Several simulated terminals, their links, the cloud gateway and the control API, as one.

``Simulator`` is what the ``ecrd-sim`` command runs and what a test uses when it wants the
whole picture (several terminals, the gateway, the control API) rather than one link.
Every terminal is reachable through the cloud gateway; each one additionally has the
local link it was added with (``lan`` or ``serial``), or none (``cloud``: reachable only
through the gateway, as a terminal on another network).

Invariant: ``describe()`` holds everything a client needs to reach every terminal, and it
is only reported once every listener is bound and every pty is open.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ecrd.protocol.frames import FrameFormat
from ecrd.sim.cloud import COMMAND_PATH, INFO_PATH, serve_cloud
from ecrd.sim.control import serve_control
from ecrd.sim.lan import LAN_PATH, serve_lan
from ecrd.sim.serial import serve_serial
from ecrd.sim.slots import Slot
from ecrd.sim.terminal import DEFAULT_BUSINESS_ID, SimTerminal


class Simulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        business_id: str = DEFAULT_BUSINESS_ID,
        state_dir: str | os.PathLike[str] | None = None,
        cloud_port: int = 0,
        cloud_timeout: float = 300.0,
        control_port: int | None = 0,
        strict_cloud: bool = False,
    ) -> None:
        """``strict_cloud``: the gateway requires every header the document marks required
        (``sim/strict.py``); each terminal's own strictness is its ``strict``."""
        self.host = host
        self.business_id = business_id
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.cloud_port = cloud_port
        self.cloud_timeout = cloud_timeout
        self.control_port = control_port
        self.strict_cloud = strict_cloud
        self.slots: list[Slot] = []

    @property
    def terminals(self) -> list[SimTerminal]:
        return [slot.terminal for slot in self.slots]

    def slot(self, sn: str) -> Slot:
        for slot in self.slots:
            if slot.terminal.sn == sn:
                return slot
        raise KeyError(sn)

    def terminal(self, sn: str) -> SimTerminal:
        return self.slot(sn).terminal

    def _add(self, slot: Slot) -> SimTerminal:
        if any(s.terminal.sn == slot.terminal.sn for s in self.slots):
            raise ValueError(f"two terminals with SN {slot.terminal.sn}")
        self.slots.append(slot)
        return slot.terminal

    def add_lan(
        self,
        terminal: SimTerminal,
        *,
        port: int = 0,
        path: str = LAN_PATH,
        tls: ssl.SSLContext | None = None,
        wrap: bool = False,
    ) -> SimTerminal:
        """``tls``: serve https with this server context (a self-signed certificate);
        ``wrap``: wrap replies as the cloud does (``{code, message, data}``)."""
        slot = Slot(terminal, "lan", lan_port=port, lan_path=path, lan_tls=tls, lan_wrap=wrap)
        return self._add(slot)

    def add_serial(
        self,
        terminal: SimTerminal,
        *,
        symlink: str | os.PathLike[str] | None = None,
        fmt: FrameFormat | None = None,
        pace_bps: float | None = None,
        baudrate: int | None = None,
        strict_cmd: bool = False,
    ) -> SimTerminal:
        if symlink is None and self.state_dir is not None:
            n = sum(1 for s in self.slots if s.link == "serial")
            symlink = self.state_dir / f"ttyECR{n}"
        link = Path(symlink) if symlink is not None else None
        return self._add(
            Slot(
                terminal,
                "serial",
                symlink=link,
                fmt=fmt or FrameFormat(),
                pace_bps=pace_bps,
                baudrate=baudrate,
                strict_cmd=strict_cmd,
            )
        )

    def add_cloud(self, terminal: SimTerminal) -> SimTerminal:
        return self._add(Slot(terminal, "cloud"))

    def cloud_urls(self) -> dict[str, Any]:
        base = f"http://{self.host}:{self.cloud_port}"
        return {
            "base_url": base,
            "info_url": base + INFO_PATH,
            "command_url": base + COMMAND_PATH,
            "business_id": self.business_id,
            "strict": self.strict_cloud,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "ecrd_sim": 1,
            "pid": os.getpid(),
            "control_url": (
                f"http://{self.host}:{self.control_port}" if self.control_port is not None else None
            ),
            "cloud": self.cloud_urls(),
            "terminals": [slot.describe(self.host) for slot in self.slots],
        }

    async def run(
        self, *, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve everything until cancelled; reports ``describe()`` once all is up."""
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            self.cloud_port = await nursery.start(
                partial(serve_cloud, self.terminals_view(), self.host, self.cloud_port,
                        timeout=self.cloud_timeout, strict=self.strict_cloud)
            )  # fmt: skip
            for slot in self.slots:
                await self._start_link(nursery, slot)
            if self.control_port is not None:
                self.control_port = await nursery.start(
                    partial(serve_control, self, self.host, self.control_port)
                )
            task_status.started(self.describe())

    async def _start_link(self, nursery: trio.Nursery, slot: Slot) -> None:
        t = slot.terminal
        if slot.link == "lan":
            serve = partial(
                serve_lan, t, self.host, slot.lan_port, path=slot.lan_path, tls=slot.lan_tls,
                wrap=slot.lan_wrap,
            )  # fmt: skip
            slot.lan_port = await nursery.start(serve)
        elif slot.link == "serial":
            serve_s = partial(
                serve_serial, t, symlink=slot.symlink, fmt=slot.fmt, pace_bps=slot.pace_bps,
                baudrate=slot.baudrate, strict_cmd=slot.strict_cmd,
            )  # fmt: skip
            slot.serial = await nursery.start(serve_s)

    def terminals_view(self) -> _TerminalsView:
        return _TerminalsView(self)


class _TerminalsView:
    """A live, iterable view of the simulator's terminals for the gateway."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def __iter__(self) -> Iterator[SimTerminal]:
        return iter(self._sim.terminals)
