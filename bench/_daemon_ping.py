"""The ping client of benchmark 2: a separate process (``bench._ping``) that sends one
``ping`` every ``PING_INTERVAL_S`` and reports the latencies, and its baselines on an idle
daemon (alone, and beside other processes deriving keys).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from bench._daemon_setup import CORES, ROOT
from bench._procs import Daemon
from bench._table import Row, ms, p

PING_INTERVAL_S = 0.02


def ping_helper(socket: str, seconds: float, delay: float = 0.0) -> subprocess.Popen[bytes]:
    args = [socket, f"{seconds:.2f}", f"{PING_INTERVAL_S}", f"{delay:.2f}"]
    return subprocess.Popen(
        [sys.executable, "-m", "bench._ping", *args], stdout=subprocess.PIPE, cwd=ROOT
    )


def ping_result(proc: subprocess.Popen[bytes], timeout: float) -> tuple[list[float], int]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(out)
    return result["latencies"], result["errors"]


def ping_while_burning(socket: str, seconds: float, threads: int, nice: int) -> list[float]:
    burn = subprocess.Popen(
        ["nice", "-n", str(nice), sys.executable, "-m", "bench._burn", str(threads),
         f"{seconds + 1.0:.2f}"],
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )  # fmt: skip
    try:
        lat, _ = ping_result(ping_helper(socket, seconds, delay=0.5), seconds + 30)
    finally:
        try:
            burn.wait(seconds + 30)
        finally:
            if burn.poll() is None:
                burn.kill()
                burn.wait()
    return lat


def bench_ping_baselines(daemon: Daemon, seconds: float) -> tuple[list[Row], list[float]]:
    """Ping the idle daemon: alone, then while another process keeps as many PBKDF2
    threads busy as load A does (2 in ecrd + 2 in the simulator), at nice 0 and nice 10."""
    idle, _ = ping_result(ping_helper(daemon.socket, seconds), seconds + 30)
    threads = 2 * CORES
    rows = [
        Row(
            "2. ping, idle ecrd (slow end = p99) (base)",
            ms(statistics.median(idle)),
            ms(p(idle, 99)),
        )
    ]
    for nice in (0, 10):
        busy = ping_while_burning(daemon.socket, seconds, threads, nice)
        rows.append(
            Row(
                f"2. ping, idle ecrd, {threads} PBKDF2 threads at nice {nice} elsewhere",
                ms(statistics.median(busy)),
                ms(p(busy, 99)),
                f"{p(busy, 99) / p(idle, 99):.1f}x",
            )
        )
    return rows, idle
