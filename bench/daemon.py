"""Benchmarks of the whole daemon: ``ecrd run`` and ``ecrd-sim`` as real subprocesses.

Everything is measured in this one run, against baselines measured in the same run:

1. **Round trip of a sale**, POS app → Unix socket → ecrd → LAN simulator and back, against
   a direct client doing the same protocol work without the daemon, with ecrd's own code
   (``Sealer`` with a cached salt, ecrd's ``LanLink``, ``open_``, ``check_response``). Same
   simulator terminal, sequential, interleaved one sale each per round in one trio run.
   Both sides pay one PBKDF2 per reply (the simulator seals each reply with a random salt,
   as a terminal does) and the simulator pays one to seal it. Acceptance: daemon ≤ 1.03 ×
   direct. Then with the simulator reusing its reply salt (no derivation per sale):
   ecrd adds ≤ 1.0 ms of latency and ≤ 1.0 ms of CPU per sale. 1H: the same sale over
   the HTTP endpoint (``POST /rpc``) against the Unix socket: HTTP adds ≤ 1.0 ms.
2. **32 terminals selling at once** (one ``ecrd-sim --lan 32``, all paired first), each one
   sale after another for a fixed time. Row A: random reply salts (realistic): two
   derivations per sale on this machine, one in the simulator (sealing the reply) and one
   in ecrd (opening it); both processes share the cores. Acceptance: ≥ 95 % of the "floor
   as delivered" (what two threads deriving flat out achieve, ÷ 2), ecrd's CPU per sale
   ≤ 1.05 × one derivation's CPU with every core deriving, and a separate ping client
   (every 20 ms) sees p99 ≤ 6.0 ms. Row B: the simulator reuses its reply salt, so
   neither side derives per sale: what ecrd costs besides PBKDF2 (informational).
3. **RSS** of ecrd with 100 LAN terminals configured (unpaired) vs 1 terminal.
   Acceptance: ≤ 60 MB. And RSS while 16 clients ask for a full page of big records and
   never read it, against the same daemon just before. Acceptance: ≤ +40 MB.
4. **Start to socket ready**: spawn ``ecrd run`` until the first ``ping`` answers, median
   of 5 starts, with ecrd byte-compiled first (as a wheel install is). Acceptance: ≤ 150 ms
   with one terminal.

Layout: ``_daemon_setup`` (the processes, pairing, warm-up), ``_daemon_trip`` (1),
``_daemon_http`` (1H),
``_daemon_load`` and ``_daemon_ping`` (2), ``_daemon_footprint`` (3 and 4),
``_daemon_listings`` (3, unread listings), ``_table``
(rows and units); this module runs them in order and prints the table.

Run: ``bench/run daemon`` (or ``python -m bench.daemon`` inside the venv). Exit status 1
if an acceptance line fails. Takes about two minutes.
"""

from __future__ import annotations

import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from bench._daemon_footprint import bench_rss, bench_start, byte_compile_ecrd
from bench._daemon_http import bench_http, free_port, http_table
from bench._daemon_listings import bench_unread_listings
from bench._daemon_load import bench_load
from bench._daemon_setup import CORES, TERMINALS, one_sale_each, pair_all, start
from bench._daemon_trip import bench_round_trip
from bench._procs import Procs
from bench._table import Row, render

ROUND_TRIPS = 50  # sales per side in benchmark 1
BUSY_WARN_CORES = 0.2
NOTE = (
    "\n2A counts 2 derivations per sale: random reply salts, as a real terminal, so the "
    "simulator derives once per reply to seal it and ecrd once to open it, on the same "
    "cores. 2B: the simulator reuses one reply salt per PIN, so ecrd's key cache hits "
    "too: no derivation per sale, ecrd's own overhead only (no acceptance)."
)


def fs_type(path: Path) -> str:
    out = subprocess.run(
        ["df", "--output=fstype", str(path)], capture_output=True, text=True, check=False
    )
    lines = out.stdout.split()
    return lines[-1] if len(lines) > 1 else "?"


def run_all(procs: Procs, tmp: Path) -> tuple[list[Row], float, float]:
    """Every row, in order, and the cores other processes used during 1 and during 2A."""
    port = free_port()
    sim, daemon, tids = start(procs, tmp, http_table(port))
    t0 = time.perf_counter()
    pair_all(sim, daemon, tids)
    trio.run(one_sale_each, daemon.socket, tids)
    print(f"paired {TERMINALS} terminals, one sale on each: {time.perf_counter() - t0:.1f} s")
    rows, busy_1 = bench_round_trip(sim, daemon, ROUND_TRIPS)
    rows += bench_http(sim, daemon, port, tids[0])
    load, busy = bench_load(sim, daemon, tids)
    rows += load
    daemon.stop()
    rss_rows, ready_100 = bench_rss(procs, tmp)
    rows += rss_rows
    rows += bench_unread_listings(procs, tmp)
    rows += bench_start(procs, tmp, ready_100)
    return rows, busy_1, busy


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ecrd-bench-"))
    print(
        f"python {platform.python_version()}, {ssl.OPENSSL_VERSION}, {CORES} CPUs, "
        f"{platform.machine()}; state dirs and journals on {fs_type(tmp)} ({tmp})"
    )
    # Before any ecrd process starts, so every start loads bytecode (benchmark 4).
    print(f"byte-compiled {byte_compile_ecrd()}")
    procs = Procs()
    try:
        rows, busy_1, busy = run_all(procs, tmp)
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(rows))
    print(NOTE)
    if max(busy_1, busy) > BUSY_WARN_CORES:
        print(
            f"WARNING: other processes used {busy_1:.2f} cores during 1 and {busy:.2f} during "
            "2A: those lines measure a shared machine; rerun on a quiet one before trusting them."
        )
    failed = [r.name.strip() for r in rows if r.ok is False]
    print("FAIL: " + "; ".join(failed) if failed else "all acceptance lines PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
