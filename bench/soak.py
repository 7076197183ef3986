"""Soak: many sales against the simulator on all three links, with simulator faults, daemon
crashes and client retries; then the journal is compared with what the terminals charged.

Not part of the tests (it takes minutes). Run: ``bench/run soak`` or
``python -m bench.soak [SALES]`` inside the venv.

What happens:

* ``ecrd-sim`` (one LAN, one serial over a pty, one cloud terminal) and ``ecrd run`` as real
  subprocesses (the harness of harness/daemon.py), ``block_on_unknown = false`` so that an
  ``unknown`` does not stop the run, a short ``timeout_s``, and ``status_action =
  "TransactionStatus"``, which each terminal answers with a Failed of its own casing and
  code, naming the reference (``STATUS_ANSWERS``): none is on ``not_charged_codes``, so none
  may settle anything.
* SALES sales (default 200; argv[1] or ``ECRD_SOAK_SALES``) spread over the three terminals,
  two POS clients per terminal. Each sale's amount picks a simulator fault through its
  cents (docs/simulator.md, "Magic amounts"): decline, delay, never_answer (another client
  then sends ``abort``), drop, wrong_key, stale_response, mismatch (a charged sale whose
  reply names another reference, amount, currency, type or action, or a key twice), tip
  (proven on lan-1, which allows tips, unknown elsewhere), partial (allowed nowhere), and
  on serial garbage and bad_crc.
  Some sales are sent by two clients at once with the same reference_id.
* Every few seconds the daemon is SIGKILLed (sometimes SIGTERMed) and restarted.
* A client retries with the same reference_id until it gets a final record or an
  ``unknown`` (after a dropped connection, ``terminal_busy``, ``shutting_down``); some
  clients ask again after their answer, which must not change.

At the end nothing is settled by hand (serial unknowns may be settled by the terminal's own
late reply; counted and checked against the ledger); the ledger comparison is printed:
``lost results: 0, double charges: 0, unknown: N (all listed)``. A lost result is a
reference the terminal charged while the journal says failed or has no record; a double
charge is a reference charged more than once. Exit status 1 if either is non-zero, or if
another check fails (a success the terminal never charged, a request sent to the terminal
twice, a client told something other than the journal says, a PIN in the daemon's log, a
client that never got an answer).

Then, with nothing crashing, ``MISTAKES`` slow serial sales are resolved as failed by a
(mistaken) supervisor before the terminal's late Success arrives: each must end
``disputed``, charged once (the late word kept, never dropped).

Environment: ``ECRD_SOAK_SALES``, ``ECRD_SOAK_SEED``, ``ECRD_SOAK_MAX_S`` (stop issuing
sales after this many seconds; default 900), ``ECRD_SOAK_KEEP=1`` (keep the temporary
directory with the logs).
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from bench._soak_report import Ledgers, judge, other_checks, print_money
from ecrd.client import Client, EcrdError
from harness.daemon import Daemon, Sim, pair, write_config

LINKS = ("lan", "serial", "cloud")
WORKERS_PER_TERMINAL = 2
TIMEOUT_S = 3  # the terminals' timeout_s: a held request becomes unknown after this
# fault name -> (cents, weight); ordinary cents are never magic (.91-.98).
FAULTS: dict[str, tuple[str, int]] = {
    "none": ("", 40),
    "decline": ("91", 8),
    "delay": ("92", 10),
    "never_answer": ("93", 8),
    "drop": ("94", 7),
    "wrong_key": ("95", 6),
    "stale_response": ("96", 6),
    "garbage": ("97", 8),  # serial only
    "bad_crc": ("98", 7),  # serial only
    "mismatch": ("89", 8),  # charged; the reply contradicts the sale (field: units % 6)
    "tip": ("88", 4),  # a 1.00 tip: proven on lan-1 (amount_changes = ["tip"]), else unknown
    "partial": ("87", 4),  # 1.00 approved: allowed nowhere, so unknown (charged)
}
# Each terminal's status action answers with one of these (sticky status_answer faults):
# none is on not_charged_codes, so none may settle anything.
STATUS_ANSWERS = {"lan": "TRANSACTION_NOT_FOUND", "serial": "unsupported_action",
                  "cloud": "Not_Found"}  # fmt: skip
MISTAKES = 4  # serial sales a supervisor resolves as failed before their late Success
SERIAL_ONLY = {"garbage", "bad_crc"}
ORDINARY_CENTS = ("00", "10", "20", "50", "75", "99")
RETRY_REASONS = {"connection_lost", "terminal_busy", "shutting_down", "too_many_clients"}


@dataclass
class SaleJob:
    ref: str
    link: str
    amount: str
    fault: str
    wait: bool
    twin: bool  # a second client sends the same reference at the same time
    replay: bool  # the client asks again after its answer
    outcome: str | None = None  # succeeded | failed | unknown | link_down (failed)
    outcomes: list[str] = field(default_factory=list)  # every final answer any client got
    attempts: int = 0
    problems: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def terminal(self) -> str:
        return f"{self.link}-1"

    def params(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "amount": self.amount,
            "currency": "HKD",
            "reference_id": self.ref,
        }


def plan(count: int, seed: int) -> list[SaleJob]:
    rng = random.Random(seed)
    jobs = []
    for i in range(count):
        link = LINKS[i % len(LINKS)]
        names = [n for n in FAULTS if link == "serial" or n not in SERIAL_ONLY]
        fault = rng.choices(names, weights=[FAULTS[n][1] for n in names])[0]
        cents = FAULTS[fault][0] or rng.choice(ORDINARY_CENTS)
        jobs.append(
            SaleJob(
                ref=f"soak-{link}-{i:04d}",
                link=link,
                amount=f"{rng.randint(1, 300)}.{cents}",
                fault=fault,
                wait=rng.random() < 0.5,
                twin=rng.random() < 0.1,
                replay=rng.random() < 0.3,
            )
        )
    return jobs


class Soak:
    def __init__(self, tmp: Path, jobs: list[SaleJob], seed: int, max_s: float) -> None:
        self.tmp = tmp
        self.jobs = jobs
        self.rng = random.Random(seed + 1)
        self.issue_until = time.monotonic() + max_s
        self.give_up_at = self.issue_until + 120
        self.stop = threading.Event()
        self.kills = 0
        self.terms = 0
        self.aborts = 0
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.sim = Sim(
            tmp, "--lan", "1", "--serial", "1", "--cloud", "1", "--reply-salt-reuse",
            "--magic-delay", "1.0", "--cloud-timeout", "30",
        )  # fmt: skip
        config = write_config(tmp, self.sim, timeout_s=TIMEOUT_S, info_timeout_s=3)
        data = tomllib.loads(config.read_text())
        data["daemon"].update(block_on_unknown=False, shutdown_grace_s=1, log_level="info")
        for terminal in data["terminal"]:
            terminal["status_action"] = "TransactionStatus"  # answered, never proof
            if terminal["id"] == "lan-1":
                terminal["amount_changes"] = ["tip"]
        config.write_bytes(tomli_w.dumps(data).encode())
        self.daemon = Daemon(tmp, config)
        self.socket = self.daemon.socket
        self.control = self.sim.desc["control_url"]

    # -- the simulator's ledger (one HTTP client per call: threads share nothing) ---------

    def ledger(self, link: str) -> list[dict[str, Any]]:
        url = f"{self.control}/terminals/{self.sim.sn(link)}/ledger"
        with httpx.Client(timeout=10, trust_env=False) as http:
            return list(http.get(url).json())

    def status_on_terminal(self, link: str, ref: str) -> str | None:
        found = [e["status"] for e in self.ledger(link) if e["referenceID"] == ref]
        return found[-1] if found else None

    # -- POS clients --------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> Any:
        with Client(self.socket, timeout=30) as client:
            return client.call(method, **params)

    def attempt(self, job: SaleJob) -> str | None:
        """Send the sale until a final answer; None when the soak's time is up."""
        while time.monotonic() < self.give_up_at:
            with self.lock:
                job.attempts += 1
            try:
                tx = self.call("sale", **job.params(), wait=job.wait)
            except EcrdError as exc:
                if exc.reason == "timeout_outcome_unknown":
                    return "unknown"
                if exc.reason == "link_down":
                    return "failed"
                if exc.reason in RETRY_REASONS:
                    time.sleep(0.1)
                    continue
                job.problems.append(f"unexpected error {exc.reason}: {exc.message}")
                return f"error:{exc.reason}"
            except OSError:  # the daemon is down or restarting
                time.sleep(0.1)
                continue
            return str(tx["state"])
        return None

    def run_sale(self, job: SaleJob) -> None:
        threads = []
        if job.fault == "never_answer":
            threads.append(threading.Thread(target=self.aborter, args=(job,)))
        if job.twin:
            threads.append(threading.Thread(target=self.twin, args=(job,)))
        for t in threads:
            t.start()
        job.outcome = self.attempt(job)
        if job.outcome is not None:
            job.outcomes.append(job.outcome)
            if job.replay:
                again = self.attempt(job)
                if again is not None:
                    job.outcomes.append(again)
        job.done.set()
        for t in threads:
            t.join()

    def twin(self, job: SaleJob) -> None:
        time.sleep(self.rng.uniform(0, 0.3))
        outcome = self.attempt(job)
        if outcome is not None:
            job.outcomes.append(outcome)

    def aborter(self, job: SaleJob) -> None:
        """Another client (the cashier) aborts a sale the customer never finishes."""
        time.sleep(self.rng.uniform(0.3, 1.5))
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                status = self.status_on_terminal(job.link, job.ref)
            except httpx.HTTPError:
                status = "?"
            if status in ("Success", "Failed") or (status is None and job.done.is_set()):
                return
            if status == "InProgress":
                try:
                    self.call("abort", terminal=job.terminal, reference_id=job.ref)
                    with self.lock:
                        self.aborts += 1
                except (EcrdError, OSError):
                    pass
            time.sleep(0.3)

    def worker(self, jobs: queue.Queue[SaleJob]) -> None:
        while time.monotonic() < self.issue_until:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            self.run_sale(job)

    # -- the daemon's bad days ----------------------------------------------------------

    def killer(self) -> None:
        while not self.stop.wait(self.rng.uniform(1.0, 4.0)):
            if self.rng.random() < 0.15:
                self.daemon.terminate(timeout=30)
                self.terms += 1
            else:
                self.daemon.kill()
                self.kills += 1
            time.sleep(self.rng.uniform(0, 0.5))
            for _ in range(3):
                try:
                    self.daemon.start()
                    break
                except RuntimeError as exc:
                    self.problems.append(f"restart failed: {str(exc)[:200]}")
            else:
                return

    # -- the run ------------------------------------------------------------------------

    def run(self) -> None:
        for link in LINKS:
            pair(self.daemon, self.sim, link)
            # The terminals know the status action, and answer it as STATUS_ANSWERS says.
            self.sim.control.patch(
                f"/terminals/{self.sim.sn(link)}", json={"status_action": "TransactionStatus"}
            )
            self.sim.fault(link, "status_answer", sticky=True,
                           params={"error_code": STATUS_ANSWERS[link]})  # fmt: skip
        queues: dict[str, queue.Queue[SaleJob]] = {link: queue.Queue() for link in LINKS}
        for job in self.jobs:
            queues[job.link].put(job)
        workers = [
            threading.Thread(target=self.worker, args=(queues[link],), name=f"pos-{link}-{n}")
            for link in LINKS
            for n in range(WORKERS_PER_TERMINAL)
        ]
        killer = threading.Thread(target=self.killer, name="killer")
        killer.start()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.stop.set()
        killer.join()

    def settle_down(self) -> None:
        """Let the terminals finish with their customers (nothing is resolved)."""
        end = time.monotonic() + 40
        while time.monotonic() < end:
            busy = [
                (link, e["referenceID"])
                for link in LINKS
                for e in self.ledger(link)
                if e["status"] == "InProgress"
            ]
            if not busy:
                return
            for link, ref in busy:  # a held request whose abort was lost in a crash
                with contextlib.suppress(EcrdError, OSError):
                    self.call("abort", terminal=f"{link}-1", reference_id=ref)
            time.sleep(0.5)

    def mistaken_resolves(self) -> list[tuple[str, str, int]]:
        """A supervisor resolves slow serial sales as failed before the terminal's late
        Success arrives (no crash meanwhile): each must end disputed, charged once.
        Returns (reference, state, charges) of each."""
        results = []
        for n in range(MISTAKES):
            ref = f"soak-mistake-{n}"
            self.sim.fault("serial", "delay", params={"seconds": TIMEOUT_S + 2.0})
            try:
                self.call("sale", terminal="serial-1", amount="5.00", currency="HKD",
                          reference_id=ref)  # fmt: skip
            except EcrdError as exc:
                if exc.reason != "timeout_outcome_unknown":
                    raise
            with contextlib.suppress(EcrdError):  # settled by its late reply already: fine
                self.call("transaction.resolve", reference_id=ref, outcome="failed",
                          note="soak: a supervisor's mistake")  # fmt: skip
            time.sleep(3.0)  # the late Success arrives ~2 s after the timeout
            state = self.call("transaction.get", reference_id=ref)["state"]
            charges = sum(e["charged"] for e in self.ledger("serial") if e["referenceID"] == ref)
            results.append((ref, state, charges))
        return results

    def close(self) -> str | None:
        """Stop both processes; returns a problem if a PIN appears in the daemon's log."""
        problem = None
        try:
            self.daemon.stop(self.sim)
        except AssertionError as exc:
            problem = str(exc)
        finally:
            self.sim.stop()
        return problem


def print_run(
    soak: Soak, issued: list[SaleJob], records: dict[str, Any], ledgers: Ledgers, elapsed: float
) -> None:
    """What was done: sales, clients, faults, the journal's states, the terminals' charges."""
    jobs = soak.jobs
    states = Counter(r["state"] for r in records.values())
    print(
        f"soak: {len(issued)} of {len(jobs)} sales on {', '.join(LINKS)} in {elapsed:.0f} s; "
        f"daemon SIGKILLed {soak.kills}x, SIGTERMed {soak.terms}x"
    )
    print(
        f"clients: {sum(j.attempts for j in jobs)} attempts, "
        f"{sum(j.twin for j in issued)} sent twice at once, "
        f"{sum(j.replay for j in issued)} asked again after the answer, "
        f"{soak.aborts} aborts"
    )
    asked = Counter(j.fault for j in issued)
    print("faults: " + ", ".join(f"{name} {asked[name]}" for name in FAULTS if asked[name]))
    print("journal: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    per_link = ", ".join(
        f"{k} {sum(e['charged'] for e in es)}" for k, es in ledgers.by_link.items()
    )
    print(
        f"terminals: {sum(ledgers.requests.values())} requests, "
        f"{sum(ledgers.charges.values())} charged ({per_link})"
    )


def journal_records(soak: Soak) -> dict[str, Any]:
    """Every record, page by page (docs/api.md, "Paging")."""
    listed: list[dict[str, Any]] = []
    before: dict[str, str] = {}
    while page := soak.call("transaction.list", limit=500, **before):
        listed += page
        before = {"before": page[-1]["reference_id"]}
    return {r["reference_id"]: r for r in listed}


def report(soak: Soak, elapsed: float) -> bool:
    """Print the comparison; True if a money check failed."""
    records = journal_records(soak)
    ledgers = Ledgers({link: soak.ledger(link) for link in LINKS})
    issued = [j for j in soak.jobs if j.outcome is not None or j.attempts]
    found = judge(soak.jobs, issued, records, ledgers)
    print(f"unknown when answered, settled since by the terminal's late reply: {len(found.late)}")
    print_run(soak, issued, records, ledgers, elapsed)
    print()
    print_money(found, records, ledgers)
    print()
    checks = other_checks(found, records, soak.problems)
    for name, items in checks.items():
        print(f"{name}: {len(items)}" + (f"  {items[:10]}" if items else ""))
    return bool(found.lost or found.double or any(checks.values()))


def main() -> int:
    count = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ECRD_SOAK_SALES", "200"))
    seed = int(os.environ.get("ECRD_SOAK_SEED", str(random.randrange(1 << 30))))
    max_s = float(os.environ.get("ECRD_SOAK_MAX_S", "900"))
    tmp = Path(tempfile.mkdtemp(prefix="ecrd-soak-"))
    print(f"soak: {count} sales, seed {seed} (ECRD_SOAK_SEED to repeat the plan), dir {tmp}")
    started = time.monotonic()
    soak = Soak(tmp, plan(count, seed), seed, max_s)
    failed = True
    try:
        soak.run()
        soak.settle_down()
        failed = report(soak, time.monotonic() - started)
        mistakes = soak.mistaken_resolves()
        kept = sum(state == "disputed" and charges == 1 for _, state, charges in mistakes)
        print(
            f"resolved failed by a person, then the terminal's late Success: {kept} of "
            f"{len(mistakes)} kept and disputed {mistakes if kept < len(mistakes) else ''}"
        )
        failed = failed or kept < len(mistakes)
    finally:
        pin_problem = soak.close()
        print(f"PIN in the daemon's logs: {pin_problem or 'none'}")
        failed = failed or pin_problem is not None
        print("RESULT: " + ("FAIL" if failed else "ok"))
        status = 1 if failed else 0
        if status == 0 and not os.environ.get("ECRD_SOAK_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}")
    return status


if __name__ == "__main__":
    sys.exit(main())
