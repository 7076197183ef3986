"""What every section of the daemon benchmark shares: the machine, the sale, and the
setup (one ``ecrd-sim --lan 32``, one ecrd with all 32 terminals paired and warmed up).
"""

from __future__ import annotations

import os
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from bench._procs import Daemon, Procs, Sim, lan_terminal, write_config
from ecrd.client import open_trio_client

ROOT = Path(__file__).resolve().parent.parent
CORES = os.cpu_count() or 1
TERMINALS = 32
AMOUNT = "10.20"  # not a magic amount (.91-.98), and the simulator runs without them anyway
PAIR_BATCH = 8


def new_ref() -> str:
    return f"bench-{uuid.uuid4()}"


def tid_of(i: int) -> str:
    return f"lan-{i + 1:02d}"


def start(
    procs: Procs, tmp: Path, http: dict[str, Any] | None = None
) -> tuple[Sim, Daemon, list[str]]:
    """The simulator and a daemon configured with its ``TERMINALS`` terminals (unpaired),
    and ``http`` as its ``[http]`` table."""
    sim = Sim(procs, tmp, "--lan", str(TERMINALS), "--no-magic-amounts")
    tids = [tid_of(i) for i in range(TERMINALS)]
    terms = [lan_terminal(tid, t["host"], t["port"]) for tid, t in zip(tids, sim.lan, strict=True)]
    return sim, Daemon(procs, write_config(tmp, "ecrd", terms, http)), tids


def pair_all(sim: Sim, daemon: Daemon, tids: list[str]) -> None:
    """Pair every terminal, ``PAIR_BATCH`` at a time, with the code the simulator shows."""
    codes = {tid: t["pin1"] for tid, t in zip(tids, sim.lan, strict=True)}
    trio.run(_pair_all, daemon.socket, codes)


async def _pair_all(socket: str, codes: dict[str, str]) -> None:
    async with open_trio_client(socket) as c:
        items = list(codes.items())
        for i in range(0, len(items), PAIR_BATCH):
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    for tid, code in items[i : i + PAIR_BATCH]:
                        nursery.start_soon(
                            partial(c.call, "terminal.pair", terminal=tid, code=code)
                        )


async def one_sale_each(socket: str, tids: list[str]) -> None:
    """Warm-up: after pairing, each terminal's first sale derives a fresh outgoing salt."""
    async with open_trio_client(socket) as c:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for tid in tids:
                    nursery.start_soon(_sale, c, tid)


async def _sale(c: Any, tid: str) -> None:
    tx = await c.call("sale", terminal=tid, amount=AMOUNT, currency="HKD", reference_id=new_ref())
    if tx["state"] != "succeeded":
        raise RuntimeError(f"warm-up sale on {tid} ended {tx['state']}: {tx.get('error')}")


def set_reply_salt_reuse(sim: Sim, on: bool, terms: list[dict[str, Any]] | None = None) -> None:
    with httpx.Client(base_url=sim.desc["control_url"], timeout=10, trust_env=False) as control:
        for term in sim.lan if terms is None else terms:
            r = control.patch(f"/terminals/{term['sn']}", json={"reply_salt_reuse": on})
            r.raise_for_status()
