"""Where ecrd's own CPU goes in a sale: the profile issue #17 asked for before any cut.

One simulated LAN terminal that reuses its reply salt (so no PBKDF2 runs per sale, on
either side: what is left is ecrd's own work), one ``ecrd run``, ``SALES`` sales one after
another through the socket, as a POS app makes them, while ``py-spy`` (the bench extra)
samples every thread of ecrd from outside. The table gives, per sale:

* the CPU time of ecrd's event-loop thread and of its journal writer thread, from /proc
  (user + system), over exactly the sales;
* how each thread's busy time splits into parts: the deepest ecrd frame of each sample
  names its part (``PARTS``). "Busy" is running or inside a system call (a commit's fsync
  counts as busy for the writer), so a part's milliseconds are its share of the samples
  times the thread's CPU: a split, not a second measurement.

Run: ``bench/run profile`` (about 30 s). Informational: no acceptance lines. py-spy reads
another process's memory: it needs root, or ``kernel.yama.ptrace_scope`` 0.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench._daemon_setup import AMOUNT, new_ref, set_reply_salt_reuse
from bench._procs import BIN, CLK_TCK, Daemon, Procs, Sim, lan_terminal, write_config
from bench._table import Row, ms, render
from ecrd.client import Client

SALES = 1000
WARM_UP = 20

# The part of a sample, by the module of its deepest ecrd frame (first match wins).
PARTS = (
    ("store.journal_schema:immediate", "journal: commit (WAL write + fsync)"),
    ("store.", "journal: queries, records, JSON"),
    ("api.", "socket API: read, parse, dispatch, encode, write"),
    ("transport.", "LAN link: HTTP/1.1 over TCP"),
    ("protocol.crypto", "sealing and opening: AES, JSON"),
    ("terminal.sealing", "sealing and opening: AES, JSON"),
    ("protocol.", "envelope, reply checks"),
    ("terminal.replies", "envelope, reply checks"),
    ("terminal.terminal", "envelope, reply checks"),
    ("terminal.", "payments: admission, hand-offs to the journal"),
    ("workers", "payments: admission, hand-offs to the journal"),
    ("logs", "logging (one line per sale)"),
    ("events", "events and metrics"),
    ("metrics", "events and metrics"),
    ("housekeeping", "events and metrics"),
    ("trio", "trio: task switches, I/O readiness, thread wake-ups"),
)


def part_of(where: str) -> str:
    for prefix, part in PARTS:
        if where.startswith(prefix):
            return part
    return "other ecrd code"


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """User and system CPU seconds of each thread of ``pid``, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out[int(task.name)] = (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)
    return out


def run(tmp: Path, keep_alive: bool) -> tuple[float, dict[int, tuple[float, float]], Path, int]:
    """Sell, sampled: the time per sale, each thread's CPU over the sales, the samples."""
    procs = Procs()
    samples = tmp / "samples.txt"
    try:
        sim = Sim(procs, tmp, "--lan", "1", "--no-magic-amounts")
        term = sim.lan[0]
        lan = lan_terminal("lan-01", term["host"], term["port"])
        config = write_config(tmp, "ecrd", [{**lan, "keep_alive": keep_alive}])
        daemon = Daemon(procs, config)
        with Client(daemon.socket, timeout=60) as c:
            c.call("terminal.pair", terminal="lan-01", code=term["pin1"])
            set_reply_salt_reuse(sim, True)
            for _ in range(WARM_UP):
                sale(c)
            spy = procs.spawn(
                [str(BIN / "py-spy"), "record", "--rate", "500", "--format", "raw", "--threads",
                 "--idle", "--output", str(samples), "--pid", str(daemon.pid)],
                tmp / "py-spy.log",
            )  # fmt: skip
            time.sleep(1.0)  # py-spy attaches
            before, t0 = thread_cpu(daemon.pid), time.perf_counter()
            for _ in range(SALES):
                sale(c)
            elapsed, after = time.perf_counter() - t0, thread_cpu(daemon.pid)
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        cpu = {
            t: (u - before[t][0], s - before[t][1]) for t, (u, s) in after.items() if t in before
        }
        return elapsed, cpu, samples, daemon.pid
    finally:
        procs.close()


def sale(c: Client) -> None:
    tx = c.call("sale", terminal="lan-01", amount=AMOUNT, currency="HKD", reference_id=new_ref())
    if tx["state"] != "succeeded":
        raise RuntimeError(f"sale ended {tx['state']}: {tx.get('error')}")


_FRAME = re.compile(r"^(?P<fn>.*) \((?P<path>[^:]+):\d+\)$")
_IDLE = re.compile(r"get_events \(trio|_epoll_wait|Workers\._work|WorkerThread\._work")


def where(frames: list[str]) -> str:
    """The deepest ecrd frame of a sample as ``module:function``; ``idle`` for a thread
    waiting for work (the loop in epoll, a worker on its queue); ``trio`` for the loop's
    own machinery."""
    if _IDLE.search(frames[-1]):
        return "idle"
    for frame in reversed(frames):
        m = _FRAME.match(frame)
        if m and m["path"].startswith("ecrd/") and not m["path"].endswith("cli.py"):
            module = m["path"].removeprefix("ecrd/").removesuffix(".py").replace("/", ".")
            return f"{module}:{m['fn'].rsplit('.', 1)[-1]}"
    return "trio"


def read_samples(path: Path) -> tuple[dict[int, str], dict[int, Counter[str]]]:
    """py-spy's raw format: ``thread (TID): NAME;frame;frame... COUNT`` per line."""
    names: dict[int, str] = {}
    counts: dict[int, Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        head, *frames = stack.split(";")
        m = re.match(r"thread \((?:0x)?(\w+)\): ?(.*)", head)
        if not m or not frames:
            continue
        tid = int(m[1], 16) if head.startswith("thread (0x") else int(m[1])
        names[tid] = m[2]
        counts.setdefault(tid, Counter())[where(frames)] += int(n)
    return names, counts


def thread_rows(kind: str, cpu: list[float], counts: Counter[str]) -> list[Row]:
    user, system = cpu
    per_sale = (user + system) / SALES
    busy = {k: v for k, v in counts.items() if k != "idle"}
    total = sum(busy.values()) or 1
    parts: Counter[str] = Counter()
    for where, n in busy.items():
        parts[part_of(where)] += n
    rows = [
        Row(
            f"{kind} thread, CPU per sale (user {user / SALES * 1e3:.2f} + "
            f"system {system / SALES * 1e3:.2f} ms)",
            ms(per_sale),
        )
    ]
    for part, n in parts.most_common():
        rows.append(Row(f"   {part}", ms(per_sale * n / total), ratio=f"{n / total:.0%}"))
    return rows


def journal_thread(names: dict[int, str], counts: dict[int, Counter[str]], pid: int) -> int:
    """The thread that ran the journal's calls: ``ecrd-journal-0``, or (a tree from before
    that thread existed, profiled for comparison) the one most often inside ``store``."""
    named = [t for t, name in names.items() if name.startswith("ecrd-journal")]
    if named:
        return named[0]
    in_store = {
        t: sum(n for w, n in c.items() if w.startswith("store.")) for t, c in counts.items()
    }
    in_store.pop(pid, None)
    return max(in_store, key=in_store.__getitem__, default=-1)


def profile(keep_alive: bool) -> tuple[list[Row], Counter[str]]:
    """The rows of one profiled run, and the loop's samples by function."""
    tmp = Path(tempfile.mkdtemp(prefix="ecrd-profile-"))
    try:
        elapsed, cpu, samples, pid = run(tmp, keep_alive)
        names, counts = read_samples(samples)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    writer = journal_thread(names, counts, pid)
    label = f"{SALES} sales in a row, sim reusing its reply salt, keep_alive = {keep_alive}"
    rows = [Row(label.lower(), ms(elapsed / SALES))]
    for kind, tid in (("loop", pid), ("journal writer", writer)):
        rows += thread_rows(kind, list(cpu.get(tid, (0.0, 0.0))), counts.get(tid, Counter()))
    others = sum(u + s for t, (u, s) in cpu.items() if t not in (pid, writer))
    rows.append(
        Row("other threads of ecrd (derivations, trio's), CPU per sale", ms(others / SALES))
    )
    return rows, counts.get(pid, Counter())


def main() -> int:
    rows, top = profile(keep_alive=False)  # the default
    print(render(rows))
    top.pop("idle", None)
    total = sum(top.values()) or 1
    print("\nthe loop's busiest ecrd functions (share of its busy samples):")
    for fn, n in top.most_common(12):
        print(f"   {n / total:5.1%}  {fn}")
    # Both ways (issue #17): the same with one kept HTTP connection (the simulator keeps it).
    kept, _ = profile(keep_alive=True)
    print("\nthe same with keep_alive = true (no TCP connect and close per exchange):")
    print(render([r for r in kept if not r.name.startswith("   ")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
