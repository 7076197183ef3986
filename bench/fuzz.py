"""Socket fuzz at scale: ``ecrd run`` and ``ecrd-sim`` as real subprocesses, and 100 000
random and mutated JSON-RPC lines over a few raw connections (the generator and the checks
of ``harness/fuzz.py``; ``tests/test_reliability.py`` runs a few thousand of them in CI).

Prints requests/s, the error-code histogram and the daemon's VmRSS before and after.

Acceptance lines:

* the daemon is alive at the end, and every line got its one well-formed reply;
* no ``internal_error`` (-32603) reply: one would be a bug in ecrd;
* VmRSS after the run is at most 32 MiB above VmRSS after a warm-up of 2 000 lines.

Then a hostile-client phase (``bench/_hostile.py``, ``--hostile-seconds``, default 30) on a
fresh ecrd with a journal of 3 000 records: idle hogs, unread-reply floods and drip writers
while a load driver sells. Its acceptance lines:

* sales keep going: all succeed, no 5 s without a completed sale, none takes over 3 s;
* ping p99 < 20 ms (one ping every 20 ms from a separate process);
* VmRSS peak during the phase at most 64 MiB above VmRSS before the hostile clients start.

Run: ``bench/run fuzz`` (or ``python -m bench.fuzz [--count N] [--seconds S] [--seed N]``
inside the venv). The run stops at ``--count`` lines or after ``--seconds``, whichever
comes first. Exit status 1 if an acceptance line fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench._hostile import report, run_phase
from harness.daemon import rss_kib, running
from harness.fuzz import run_fuzz

CHUNK = 5000
WARM_UP = 2000
RSS_LIMIT_KIB = 32 * 1024


@dataclass
class FuzzRun:
    """What one fuzz run saw, and what broke its contract."""

    sent: int = 0
    replies: int = 0
    events: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    before: int = 0  # VmRSS (KiB) after the warm-up
    peak: int = 0
    after: int = 0
    elapsed: float = 0.0
    alive: bool = True
    money: int = 0  # money requests that reached a terminal (none may)
    failures: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="lines to send")
    parser.add_argument("--seconds", type=float, default=300.0, help="time budget")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--hostile-seconds", type=float, default=30.0)
    return parser.parse_args(argv)


def fuzz(args: argparse.Namespace) -> FuzzRun:
    """Warm up, then send lines in chunks until the count or the time budget is spent."""
    run = FuzzRun()
    with (
        tempfile.TemporaryDirectory(prefix="ecrd-fuzz-") as tmp,
        running(Path(tmp)) as (
            sim,
            daemon,
        ),
    ):
        assert daemon.proc is not None
        pid = daemon.proc.pid
        run_fuzz(daemon.socket, WARM_UP, args.seed - 1, connections=args.connections)
        run.before = run.peak = rss_kib(pid)
        start = time.monotonic()
        seed = args.seed
        try:
            while run.sent < args.count and time.monotonic() - start < args.seconds:
                stats = run_fuzz(
                    daemon.socket, min(CHUNK, args.count - run.sent), seed,
                    connections=args.connections,
                )  # fmt: skip
                seed += 1
                run.sent, run.replies = run.sent + stats.sent, run.replies + stats.replies
                run.events += stats.events
                run.codes.update(stats.codes)
                run.peak = max(run.peak, rss_kib(pid))
                rate = run.sent / (time.monotonic() - start)
                print(f"  {run.sent:>7} lines  {rate:7.0f}/s  VmRSS {run.peak / 1024:.1f} MiB")
        except AssertionError as exc:
            run.failures.append(f"a reply broke the contract (seed {seed}): {exc}")
        except OSError as exc:
            run.failures.append(f"a fuzz connection broke (seed {seed}): {exc!r}")
        run.elapsed = time.monotonic() - start
        run.alive = daemon.proc.poll() is None
        run.after = rss_kib(pid) if run.alive else 0
        if run.alive:
            run.money = sum(len(sim.ledger(link)) for link in ("lan", "serial", "cloud"))
    return run


def print_run(run: FuzzRun) -> None:
    print()
    print(f"{'lines sent':<28}{run.sent:>12}")
    print(f"{'replies':<28}{run.replies:>12}")
    print(f"{'event notifications':<28}{run.events:>12}")
    print(f"{'time':<28}{run.elapsed:>11.1f}s")
    print(f"{'lines/s':<28}{run.sent / run.elapsed if run.elapsed else 0:>12.0f}")
    print(f"{'VmRSS after warm-up':<28}{run.before / 1024:>10.1f} MiB")
    print(f"{'VmRSS peak':<28}{run.peak / 1024:>10.1f} MiB")
    print(f"{'VmRSS at the end':<28}{run.after / 1024:>10.1f} MiB")
    print("\nreplies by code:")
    for code, count in run.codes.most_common():
        print(f"  {count:>8}  {code}")
    print()


def judge(run: FuzzRun) -> list[str]:
    """The acceptance lines of the fuzz phase (module docstring)."""
    failures = list(run.failures)
    if not run.alive:
        failures.append("ecrd died")
    if run.codes["-32603 internal_error"]:
        failures.append(f"{run.codes['-32603 internal_error']} internal_error replies")
    if run.alive and run.after - run.before > RSS_LIMIT_KIB:
        failures.append(f"VmRSS grew by {(run.after - run.before) / 1024:.1f} MiB (limit 32)")
    if run.money:
        failures.append(f"{run.money} money requests reached a terminal")
    return failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, seed {args.seed}")
    run = fuzz(args)
    print_run(run)
    failures = judge(run)
    if args.hostile_seconds > 0:
        with tempfile.TemporaryDirectory(prefix="ecrd-hostile-") as tmp:
            failures += report(run_phase(Path(tmp), args.hostile_seconds))
        print()
    print("FAIL: " + "; ".join(failures) if failures else "all acceptance lines PASS")
    return 1 if failures else 0
