"""Benchmark 1: one sale at a time, through the daemon and without it (the base).

Both ways are measured interleaved, one sale each per round, on the same simulator
terminal: first with the simulator sealing every reply with a random salt (as a terminal
does), then with it reusing its reply salt, where the difference is what ecrd itself adds.
"""

from __future__ import annotations

import os
import statistics
import time

import httpx

from bench._daemon_setup import AMOUNT, new_ref, set_reply_salt_reuse, tid_of
from bench._procs import Daemon, Sim, cpu_seconds, machine_busy_seconds
from bench._table import Row, ms, p
from bench.protocol import interleaved
from ecrd.client import Client
from ecrd.protocol.crypto import KeyCache, Sealer, open_
from ecrd.protocol.envelope import Envelope, check_response, request_message

WARM_UP = 3  # sales each way before a measurement: salts derived, code paths imported


class Sales:
    """The two ways to make one sale on the first simulated terminal."""

    def __init__(self, sim: Sim, daemon: Daemon) -> None:
        self.term, self.tid = sim.lan[0], tid_of(0)
        self.pin, self.sn, self.url = daemon.pin(self.tid), self.term["sn"], self.term["url"]
        self.keys = KeyCache()  # as ecrd: a key is derived once per (PIN, salt)
        self.sealer = Sealer(self.pin, keys=self.keys)  # its own salt, derived in the warm-up
        self.http = httpx.Client(  # what ecrd's LAN link does: a new connection per request
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"Connection": "close"},
            trust_env=False,
            timeout=30,
        )
        self.client = Client(daemon.socket, timeout=60)

    def via_daemon(self) -> None:
        tx = self.client.call(
            "sale", terminal=self.tid, amount=AMOUNT, currency="HKD", reference_id=new_ref()
        )
        if tx["state"] != "succeeded":
            raise RuntimeError(f"daemon sale ended {tx['state']}: {tx.get('error')}")

    def direct(self) -> None:
        ref = new_ref()
        message = request_message(
            {"referenceID": ref, "amount": AMOUNT, "currency": "HKD"}, "POS-BENCH"
        )
        request_id = message["header"]["requestID"]
        body = Envelope("Sale", self.sealer.seal(message)).to_bytes()
        r = self.http.post(self.url, content=body, headers={"Content-Type": "application/json"})
        r.raise_for_status()
        # The simulator's reply salt is random: this derives.
        plain = open_(Envelope.from_bytes(r.content).data, self.pin, keys=self.keys)
        reply = check_response(plain, request_id, self.sn)
        if reply.get("status") != "Success" or reply.get("referenceID") != ref:
            raise RuntimeError(f"direct sale failed: {reply}")

    def warm_up(self) -> None:
        for _ in range(WARM_UP):
            self.via_daemon()
            self.direct()

    def interleaved(self, rounds: int) -> dict[str, list[float]]:
        return interleaved({"daemon": self.via_daemon, "direct": self.direct}, rounds)

    def close(self) -> None:
        self.client.close()
        self.http.close()


def bench_round_trip(sim: Sim, daemon: Daemon, rounds: int) -> tuple[list[Row], float]:
    """The rows of benchmark 1, and the cores other processes used meanwhile."""
    sales = Sales(sim, daemon)
    try:
        sales.warm_up()
        pids = (daemon.pid, sim.pid, os.getpid())
        c0, m0, t0 = sum(map(cpu_seconds, pids)), machine_busy_seconds(), time.perf_counter()
        times = sales.interleaved(rounds)
        ours, machine = sum(map(cpu_seconds, pids)) - c0, machine_busy_seconds() - m0
        others = (machine - ours) / (time.perf_counter() - t0)
        # The same without any derivation per sale: what ecrd adds, in milliseconds.
        set_reply_salt_reuse(sim, True, [sales.term])
        sales.warm_up()
        bare = sales.interleaved(rounds // 2)
        set_reply_salt_reuse(sim, False, [sales.term])
    finally:
        sales.close()
    return trip_rows(times, bare, others), others


def trip_rows(
    times: dict[str, list[float]], bare: dict[str, list[float]], others: float
) -> list[Row]:
    base, d = times["direct"], times["daemon"]
    ratio = statistics.median(d) / statistics.median(base)
    added = statistics.median(bare["daemon"]) - statistics.median(bare["direct"])
    return [
        Row(
            "1. sale, direct client: seal, httpx POST, open, check (base)",
            ms(statistics.median(base)),
            ms(p(base, 95)),
        ),
        Row(
            "1. sale, client -> socket -> ecrd -> LAN sim",
            ms(statistics.median(d)),
            ms(p(d, 95)),
            f"{ratio:.3f}x",
            "<= 1.10x",
            ratio <= 1.10,
        ),
        Row(
            "1. the same two, sim reusing its reply salt: direct (info)",
            ms(statistics.median(bare["direct"])),
            ms(p(bare["direct"], 95)),
        ),
        Row(
            f"   ... through ecrd (adds {added * 1e3:.1f} ms: socket, journal, threads)",
            ms(statistics.median(bare["daemon"])),
            ms(p(bare["daemon"], 95)),
        ),
        Row("   CPU used by other processes during the first two", f"{others:6.2f} cores"),
    ]
