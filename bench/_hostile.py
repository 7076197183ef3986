"""The hostile-client phase of ``bench/fuzz``: one load driver sells while hostile clients
do what repro 1 and 2 of the robustness issue did, all against ``ecrd run`` as a real
subprocess with a journal of 3 000 records.

Hostile clients (threads of this process, all as this process's uid — ecrd's own, so the
admin reserve is theirs too and they take every slot the limits leave):

* idle hogs: keep trying to hold 40 silent connections;
* unread-reply floods: 4 connections, each 512 ``transaction.list {"limit": 500}`` lines,
  never reading a reply; reopened when ecrd closes them;
* drip writers: 4 connections each sending one byte of a never-ending line per second.

Meanwhile the load driver (connected first, one connection) sells back to back on one LAN
terminal and a separate process (``bench._ping``) pings every 20 ms.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import select
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from ecrd.client import Client
from harness.daemon import Daemon, Sim, pair, rss_kib, write_config
from harness.hostile import fill_journal, flood_on
from harness.raw import connect

ROOT = Path(__file__).resolve().parents[1]
IDLE_TIMEOUT_S = 5
HOGS, FLOODS, DRIPS = 40, 4, 4
JOURNAL_ROWS = 3000
RSS_BOUND_MIB = 64
PING_P99_MS = 20
MAX_SALE_S = 3.0
WINDOW_S = 5.0


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n


def _closed(sock: socket.socket) -> bool:
    """Whether ecrd closed ``sock`` (without blocking; pending replies are not read)."""
    ready, _, _ = select.select([sock], [], [], 0)
    if not ready:
        return False
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return True


def _flood_closed(sock: socket.socket) -> bool:
    """A flood has replies waiting unread, so EOF cannot be seen: probe with a write."""
    try:
        sock.send(b" ", socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False  # ecrd stopped reading it, and still holds it
    except OSError:
        return True
    return False


def _admitted(path: str, tally: Tally, kind: str) -> socket.socket | None:
    try:
        sock = connect(path)
    except OSError:
        tally.add(f"{kind}: connect failed")
        return None
    ready, _, _ = select.select([sock], [], [], 0.1)
    if ready:  # a refused connection gets too_many_clients at once, then EOF
        tally.add(f"{kind}: refused (too_many_clients)")
        sock.close()
        return None
    tally.add(f"{kind}: admitted")
    return sock


def _keep(path: str, stop: threading.Event, tally: Tally, kind: str, want: int,
          opener: Callable[[str], socket.socket | None], act: Callable[[socket.socket], None],
          pause: float, closed: Callable[[socket.socket], bool] = _closed) -> None:  # fmt: skip
    """Hold ``want`` connections of one kind, replacing those ecrd closes."""
    held: list[socket.socket] = []
    while not stop.is_set():
        for sock in [s for s in held if closed(s)]:
            tally.add(f"{kind}: closed by ecrd")
            held.remove(sock)
            sock.close()
        while len(held) < want and not stop.is_set():
            sock = opener(path)
            if sock is None:
                break
            held.append(sock)
        for sock in held:
            with contextlib.suppress(OSError):
                act(sock)
        stop.wait(pause)
    for sock in held:
        sock.close()


def _open_flood(path: str, tally: Tally) -> socket.socket | None:
    sock = _admitted(path, tally, "flood")
    if sock is not None:
        try:
            flood_on(sock, timeout=0.5)
        except OSError:
            sock.close()
            return None
    return sock


def _drive_sales(path: str, stop: threading.Event, sales: list[tuple[float, float, str]]) -> None:
    with Client(path, timeout=60) as client:
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            tx = client.call("sale", terminal="lan-1", amount="10.20", currency="HKD",
                             reference_id=f"hostile-{i}")  # fmt: skip
            sales.append((started, time.monotonic() - started, tx["state"]))
            i += 1


@dataclass
class Result:
    seconds: float
    sales: list[tuple[float, float, str]]
    pings: list[float]
    ping_errors: int
    started: float
    rss_before: int
    rss_peak: int
    rss_end: int
    alive: bool
    tally: dict[str, int]


def _threads(path: str, stop: threading.Event, tally: Tally) -> list[threading.Thread]:
    def nothing(sock: socket.socket) -> None:
        pass

    def one_byte(sock: socket.socket) -> None:
        sock.send(b" ")

    specs = [
        ("idle hog", HOGS, lambda p: _admitted(p, tally, "idle hog"), nothing, 0.5, _closed),
        ("flood", FLOODS, lambda p: _open_flood(p, tally), nothing, 0.5, _flood_closed),
        ("drip", DRIPS, lambda p: _admitted(p, tally, "drip"), one_byte, 1.0, _closed),
    ]
    return [
        threading.Thread(target=_keep, args=(path, stop, tally, kind, *spec))
        for kind, *spec in specs
    ]


def _run(daemon: Daemon, seconds: float) -> Result:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    stop, tally = threading.Event(), Tally()
    sales: list[tuple[float, float, str]] = []
    driver = threading.Thread(target=_drive_sales, args=(daemon.socket, stop, sales))
    driver.start()
    ping = subprocess.Popen(
        [sys.executable, "-m", "bench._ping", daemon.socket, f"{seconds:.1f}", "0.02"],
        stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    time.sleep(1)  # the driver and the ping client are connected before the hostiles
    before = peak = rss_kib(pid)
    hostiles = _threads(daemon.socket, stop, tally)
    for t in hostiles:
        t.start()
    start = time.monotonic()
    while time.monotonic() - start < seconds - 1 and daemon.proc.poll() is None:
        peak = max(peak, rss_kib(pid))
        time.sleep(0.5)
    out, _ = ping.communicate(timeout=60)
    stop.set()
    for t in [*hostiles, driver]:
        t.join(60)
    alive = daemon.proc.poll() is None
    end = rss_kib(pid) if alive else 0
    pinged = json.loads(out)
    return Result(seconds, sales, pinged["latencies"], pinged["errors"], start, before, peak,
                  end, alive, dict(tally.counts))  # fmt: skip


def run_phase(tmp: Path, seconds: float) -> Result:
    """The simulator and ecrd (3 000 journal records, idle_timeout_s = 5), then the phase."""
    sim = Sim(tmp, "--lan", "1")
    daemon: Daemon | None = None
    try:
        fill_journal(tmp / "state", JOURNAL_ROWS)
        config = write_config(tmp, sim)
        data = tomllib.loads(config.read_text())
        data["daemon"].update(idle_timeout_s=IDLE_TIMEOUT_S, log_level="info")
        config.write_text(tomli_w.dumps(data))
        daemon = Daemon(tmp, config)
        pair(daemon, sim, "lan")
        daemon.call("sale", terminal="lan-1", amount="10.20", currency="HKD", reference_id="w")
        return _run(daemon, seconds)
    finally:
        try:
            if daemon is not None:
                daemon.stop(sim)
        finally:
            sim.stop()


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] if ordered else 0.0


def report(r: Result) -> list[str]:
    """Print the phase's table; return the failed acceptance lines."""
    done = sorted(s + d for s, d, _ in r.sales if s >= r.started)
    marks = [r.started, *done, r.started + r.seconds - 1]
    gaps = [b - a for a, b in itertools.pairwise(marks)]
    durations = [d for s, d, _ in r.sales if s >= r.started]
    ok = all(state == "succeeded" for _, _, state in r.sales)
    ping_ms = [x * 1000 for x in r.pings]
    grown = (r.rss_peak - r.rss_before) / 1024
    rows = [
        ("sales during the phase", f"{len(durations)} ({len(durations) / r.seconds:.1f}/s)",
         "all succeeded" if ok else "NOT all succeeded"),
        ("longest time without a sale", f"{max(gaps, default=0):.2f} s", f"<= {WINDOW_S:g} s"),
        ("sale p50 / max", f"{_p(durations, 50):.3f} / {max(durations, default=0):.3f} s",
         f"max <= {MAX_SALE_S:g} s"),
        ("ping p50 / p99 / max", f"{_p(ping_ms, 50):.1f} / {_p(ping_ms, 99):.1f} / "
         f"{max(ping_ms, default=0):.1f} ms ({len(ping_ms)} pings, {r.ping_errors} errors)",
         f"p99 < {PING_P99_MS} ms"),
        ("VmRSS before / peak / end", f"{r.rss_before / 1024:.1f} / {r.rss_peak / 1024:.1f} / "
         f"{r.rss_end / 1024:.1f} MiB", f"peak - before <= {RSS_BOUND_MIB} MiB"),
    ]  # fmt: skip
    rows += [(k, str(v), "-") for k, v in sorted(r.tally.items())]
    print(f"\nhostile clients ({r.seconds:.0f} s, idle_timeout_s = {IDLE_TIMEOUT_S}):")
    print(f"  {'row':<40}{'value':<52}acceptance")
    for name, value, acceptance in rows:
        print(f"  {name:<40}{value:<52}{acceptance}")
    failures = []
    if not r.alive:
        failures.append("ecrd died in the hostile phase")
    if not ok or not durations:
        failures.append("sales did not all succeed")
    if max(gaps, default=WINDOW_S + 1) > WINDOW_S:
        failures.append(f"no sale for {max(gaps, default=0):.1f} s")
    if max(durations, default=0) > MAX_SALE_S:
        failures.append(f"a sale took {max(durations):.1f} s")
    if not ping_ms or r.ping_errors or _p(ping_ms, 99) >= PING_P99_MS:
        failures.append(f"ping p99 {_p(ping_ms, 99):.1f} ms")
    if grown > RSS_BOUND_MIB:
        failures.append(f"VmRSS grew by {grown:.1f} MiB in the hostile phase")
    return failures
