"""Benchmark 1: one sale at a time, through the daemon and without it (the base).

The base is a direct client doing the protocol work of ecrd's own LAN link without the
daemon: the same ``LanLink``, ``Sealer`` with a cached salt, ``open_`` and
``check_response``. So the difference between the two is what the daemon adds (JSON-RPC on
the Unix socket, the journal, thread hops, its event loop), not a different HTTP client.

Both ways run in one ``trio.run``, interleaved one sale each per round with the order
rotating, on the same simulator terminal: first with the simulator sealing every reply with
a random salt (as a terminal does), then with it reusing its reply salt ("bare": no
derivation per sale), where the difference is what ecrd itself adds, in latency and in CPU.
"""

from __future__ import annotations

import inspect
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bench._daemon_setup import AMOUNT, new_ref, set_reply_salt_reuse, tid_of
from bench._procs import Daemon, Sim, cpu_seconds, machine_busy_seconds
from bench._table import Row, ms, p
from ecrd.client import TrioClient, open_trio_client
from ecrd.money.evidence import Reply
from ecrd.money.settlement import settle
from ecrd.protocol.crypto import KeyCache, Sealer, open_
from ecrd.protocol.envelope import Envelope, check_response, request_message
from ecrd.store.journal import Journal
from ecrd.transport.base import first_reply
from ecrd.transport.lan import LanLink

WARM_UP = 3  # sales each way before a measurement: salts derived, code paths imported
BARE_ROUNDS = 200  # sales each way with the reply salt reused: /proc counts CPU in 10 ms ticks
SALE_DEADLINE_S = 60.0
# ecrd's LAN link default. Passed only to a LanLink that has the keyword (it is new).
KEEP_ALIVE = False
ADDS_LIMIT_S = 0.001  # issue #17: latency and CPU ecrd adds per sale, reply salt reused
RATIO_LIMIT = 1.03  # issue #17: sale through ecrd ÷ direct client

Sale = Callable[[], Awaitable[None]]


def lan_link(host: str, port: int) -> LanLink:
    """ecrd's own LAN link to ``host:port``, keep-alive as ``KEEP_ALIVE`` where supported."""
    kwargs: dict[str, Any] = {}
    if "keep_alive" in inspect.signature(LanLink.__init__).parameters:
        kwargs["keep_alive"] = KEEP_ALIVE
    return LanLink(host, port, **kwargs)


class Direct:
    """The base: one sale with ecrd's protocol code and LAN link, without the daemon.
    ``cpu`` collects this thread's CPU time per sale (the bench's loop runs nothing else
    meanwhile)."""

    def __init__(self, term: dict[str, Any], pin: str) -> None:
        self.pin, self.sn = pin, term["sn"]
        self.keys = KeyCache()  # as ecrd: a key is derived once per (PIN, salt)
        self.sealer = Sealer(pin, keys=self.keys)  # its own salt, derived in the warm-up
        self.link = lan_link(term["host"], term["port"])
        self.cpu: list[float] = []

    async def sale(self) -> None:
        c0 = time.thread_time()
        ref = new_ref()
        message = request_message(
            {"referenceID": ref, "amount": AMOUNT, "currency": "HKD"}, "POS-BENCH"
        )
        request_id = message["header"]["requestID"]
        envelope = Envelope("Sale", self.sealer.seal(message))
        reply = await first_reply(self.link, envelope, timeout=30)
        # With random reply salts this derives, as ecrd does (ecrd on a worker thread).
        plain = open_(reply.data, self.pin, keys=self.keys)
        body = check_response(plain, request_id, self.sn)
        self.cpu.append(time.thread_time() - c0)
        if body.get("status") != "Success" or body.get("referenceID") != ref:
            raise RuntimeError(f"direct sale failed: {body}")

    async def aclose(self) -> None:
        await self.link.aclose()


def via_daemon(client: TrioClient, tid: str) -> Sale:
    """One sale through ecrd: JSON-RPC on the Unix socket, ecrd, the same terminal."""

    async def sale() -> None:
        tx = await client.call(
            "sale", terminal=tid, amount=AMOUNT, currency="HKD", reference_id=new_ref()
        )
        if tx["state"] != "succeeded":
            raise RuntimeError(f"daemon sale ended {tx['state']}: {tx.get('error')}")

    return sale


async def interleaved(fns: dict[str, Sale], rounds: int) -> dict[str, list[float]]:
    """``bench.protocol.interleaved``, awaited: one sale each per round, the order
    rotating, so drift hits both alike."""
    names = list(fns)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            with trio.fail_after(SALE_DEADLINE_S):
                await fns[name]()
            out[name].append(time.perf_counter() - t0)
    return out


async def warm_up(fns: dict[str, Sale]) -> None:
    await interleaved(fns, WARM_UP)


@dataclass
class Trip:
    """What benchmark 1 measured."""

    times: dict[str, list[float]] = field(default_factory=dict)  # random reply salts
    bare: dict[str, list[float]] = field(default_factory=dict)  # reply salt reused
    direct_cpu: list[float] = field(default_factory=list)  # per bare direct sale
    ecrd_cpu: float = 0.0  # ecrd's CPU seconds over the bare phase
    others: float = 0.0  # cores used by other processes during the random-salt phase
    journal: tuple[float, float] = (0.0, 0.0)  # one sale's journal work alone: wall, CPU


def journal_alone(sales: int, directory: Path) -> tuple[float, float]:
    """What money rule 1 costs by itself: ecrd's journal, in this process, doing a sale's
    three calls (the admission lookup, ``begin`` and the reply's ``apply``, two fsynced commits) on
    the same disk. Median wall and mean CPU (``thread_time``) per sale."""
    journal = Journal(str(directory / "alone.db"))
    wall, cpu = [], []
    try:
        for _ in range(sales):
            ref = new_ref()
            t0, c0 = time.perf_counter(), time.thread_time()
            journal.get(ref)  # the admission lookup, as Payments._facts makes it
            journal.pending()
            journal.unknown("lan-01")
            journal.begin(
                reference_id=ref, terminal="lan-01", action="Sale", amount=AMOUNT,
                params={"amount": AMOUNT, "currency": "HKD"}, currency="HKD", who="bench",
                request_id=new_ref(), link="lan",
            )  # fmt: skip
            reply = Reply("Sale", {"status": "Success", "referenceID": ref, "amount": AMOUNT,
                                   "currency": "HKD"})  # fmt: skip
            journal.apply(ref, partial(settle, evidence=reply))
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
    finally:
        journal.close()
    return statistics.median(wall), statistics.mean(cpu)


async def _measure(sim: Sim, daemon: Daemon, rounds: int, trip: Trip) -> None:
    term, tid = sim.lan[0], tid_of(0)
    direct = Direct(term, daemon.pin(tid))
    try:
        async with open_trio_client(daemon.socket) as client:
            fns = {"daemon": via_daemon(client, tid), "direct": direct.sale}
            await warm_up(fns)
            pids = (daemon.pid, sim.pid, os.getpid())
            c0, m0, t0 = sum(map(cpu_seconds, pids)), machine_busy_seconds(), time.perf_counter()
            trip.times = await interleaved(fns, rounds)
            ours, machine = sum(map(cpu_seconds, pids)) - c0, machine_busy_seconds() - m0
            trip.others = (machine - ours) / (time.perf_counter() - t0)
            # No derivation per sale: what ecrd adds, in latency and in CPU.
            await trio.to_thread.run_sync(set_reply_salt_reuse, sim, True, [term])
            await warm_up(fns)
            direct.cpu.clear()
            e0 = cpu_seconds(daemon.pid)  # ecrd is idle during the direct sales
            trip.bare = await interleaved(fns, BARE_ROUNDS)
            trip.ecrd_cpu = cpu_seconds(daemon.pid) - e0
            trip.direct_cpu = list(direct.cpu)
            await trio.to_thread.run_sync(set_reply_salt_reuse, sim, False, [term])
    finally:
        with trio.CancelScope(shield=True):
            await direct.aclose()


def bench_round_trip(sim: Sim, daemon: Daemon, rounds: int) -> tuple[list[Row], float]:
    """The rows of benchmark 1, and the cores other processes used meanwhile."""
    trip = Trip()
    trio.run(_measure, sim, daemon, rounds, trip)
    trip.journal = journal_alone(BARE_ROUNDS, daemon.dir)
    return trip_rows(trip) + bare_rows(trip), trip.others


def trip_rows(trip: Trip) -> list[Row]:
    base, d = trip.times["direct"], trip.times["daemon"]
    ratio = statistics.median(d) / statistics.median(base)
    return [
        Row(
            "1. sale, direct client: ecrd's LanLink, seal, open, check (base)",
            ms(statistics.median(base)),
            ms(p(base, 95)),
        ),
        Row(
            "1. sale, client -> socket -> ecrd -> LAN sim",
            ms(statistics.median(d)),
            ms(p(d, 95)),
            f"{ratio:.3f}x",
            f"<= {RATIO_LIMIT:.2f}x",
            ratio <= RATIO_LIMIT,
        ),
        Row("   CPU used by other processes during the first two", f"{trip.others:6.2f} cores"),
    ]


def bare_rows(trip: Trip) -> list[Row]:
    """Sim reusing its reply salt: the latency and the CPU ecrd adds to a sale."""
    direct, daemon = trip.bare["direct"], trip.bare["daemon"]
    added = statistics.median(daemon) - statistics.median(direct)
    ecrd_cpu = trip.ecrd_cpu / len(daemon)
    direct_cpu = statistics.mean(trip.direct_cpu)
    cpu_added = ecrd_cpu - direct_cpu
    limit = f"<= {ADDS_LIMIT_S * 1e3:.1f} ms"
    return [
        Row(
            f"1. sim reusing its reply salt, {len(direct)} each: direct (base)",
            ms(statistics.median(direct)),
            ms(p(direct, 95)),
        ),
        Row(
            "   ... through ecrd",
            ms(statistics.median(daemon)),
            ms(p(daemon, 95)),
            f"{statistics.median(daemon) / statistics.median(direct):.2f}x",
        ),
        Row(
            "   latency ecrd adds (median - median)",
            ms(added),
            limit=limit,
            ok=added <= ADDS_LIMIT_S,
        ),
        Row("   CPU per sale, ecrd (/proc over the phase / its sales) (info)", ms(ecrd_cpu)),
        Row("   CPU per sale, direct client (thread_time, mean) (info)", ms(direct_cpu)),
        Row(
            "   CPU ecrd adds per sale (ecrd - direct client)",
            ms(cpu_added),
            limit=limit,
            ok=cpu_added <= ADDS_LIMIT_S,
        ),
        Row(
            "   of both, the journal alone: lookup, begin, finish; 2 fsyncs (info)",
            f"{ms(trip.journal[0]).strip()} wall",
            f"{ms(trip.journal[1]).strip()} CPU",
        ),
    ]
