"""Benchmarks 3 and 4: ecrd's memory with 100 terminals configured, and its start-up time
to the first answered ``ping``, each against a baseline measured in the same run.

``byte_compile_ecrd`` runs before any ecrd process starts: an installed ecrd (a wheel) comes
with its bytecode, while a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (set on some
machines) never writes any, so every start would compile ecrd from source again.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import ecrd
from bench._procs import Daemon, Procs, lan_terminal, try_ping, vm_rss_mb, write_config
from bench._table import Row, mb, ms

STARTS = 5
RSS_SETTLE_S = 3.0
START_LIMIT_S = 0.150  # issue #17: spawn -> first ping, one terminal
# Where the smallest trio server cannot answer in 150 ms on this machine, what ecrd may
# add to it: its own imports, config, journal, socket.
ABOVE_FLOOR_LIMIT_S = 0.030

# The floor of any trio daemon: a Unix socket server that answers one JSON-RPC line,
# started and polled exactly as ecrd is (``ready_time``).
SMALLEST_TRIO_SERVER = """
import json, os, sys, trio

async def answer(stream):
    async with stream:
        data = b""
        while not data.endswith(b"\\n"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        rid = json.loads(data)["id"]
        reply = {"jsonrpc": "2.0", "id": rid, "result": {"protocol": 1}}
        await stream.send_all(json.dumps(reply).encode() + b"\\n")

async def main(path):
    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(path)
    sock.listen(16)
    await trio.serve_listeners(answer, [trio.SocketListener(sock)])

trio.run(main, sys.argv[1])
"""


def ready_time(args: list[str], socket: str) -> float:
    """Seconds from spawning ``args`` to the first answered ``ping`` on ``socket``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (Path(socket).exists() and try_ping(socket)):
            if proc.poll() is not None or time.perf_counter() - t0 > 20:
                raise RuntimeError(f"{args[:3]} did not answer ping")
            time.sleep(0.002)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(10)


def byte_compile_ecrd() -> Path:
    """Write the bytecode of the ecrd package being measured, as a wheel install has it."""
    package = Path(ecrd.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    return package


def bench_rss(procs: Procs, tmp: Path) -> tuple[list[Row], float]:
    """The rows of benchmark 3, and how long the 100-terminal daemon took to be ready."""
    one = write_config(tmp, "rss-1", [lan_terminal("t-001", "127.0.0.1", 9, probe=True)])
    hundred = write_config(
        tmp,
        "rss-100",
        [lan_terminal(f"t-{i:03d}", "127.0.0.1", 20001 + i, probe=True) for i in range(100)],
    )
    d1, d100 = Daemon(procs, one), Daemon(procs, hundred)
    time.sleep(RSS_SETTLE_S)
    rss1, rss100 = vm_rss_mb(d1.pid), vm_rss_mb(d100.pid)
    d1.stop()
    d100.stop()
    rows = [
        Row("3. RSS, 1 LAN terminal configured (base)", mb(rss1)),
        Row(
            "3. RSS, 100 LAN terminals configured",
            mb(rss100),
            "",
            f"{rss100 / rss1:.2f}x",
            "<= 60 MB",
            rss100 <= 60,
        ),
    ]
    return rows, d100.ready_s


def time_command(args: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(args, check=True, timeout=30)
        out.append(time.perf_counter() - t0)
    return out


def bench_start(procs: Procs, tmp: Path, ready_100: float) -> list[Row]:
    """The rows of benchmark 4 (ecrd byte-compiled first: ``byte_compile_ecrd``)."""
    config = write_config(tmp, "start", [lan_terminal("t-001", "127.0.0.1", 9, probe=True)])
    Daemon(procs, config).stop()  # first start creates the state dir and the journal
    starts, floor = [], []
    for i in range(STARTS):  # interleaved: a drift of the machine's speed hits both alike
        d = Daemon(procs, config)
        starts.append(d.ready_s)
        d.stop()
        sock = str(tmp / f"floor-{i}.sock")
        floor.append(ready_time([sys.executable, "-c", SMALLEST_TRIO_SERVER, sock], sock))
    # Whole processes, teardown included (20-30 ms of import trio's time here), which a
    # start to the first ping does not pay: the start's "above import trio" is a low bound.
    python = time_command([sys.executable, "-c", "pass"], STARTS)
    trio_ = time_command([sys.executable, "-c", "import trio"], STARTS)
    imports = time_command([sys.executable, "-c", "import ecrd.cli, ecrd.daemon"], STARTS)
    return start_rows(starts, floor, python, trio_, imports, ready_100)


def start_rows(
    starts: list[float],
    floor: list[float],
    python: list[float],
    trio_: list[float],
    imports: list[float],
    ready_100: float,
) -> list[Row]:
    med, base, floor_med = (statistics.median(x) for x in (starts, python, floor))
    trio_med = statistics.median(trio_)
    return [
        Row("4. python -c pass (base)", ms(base), ms(max(python))),
        Row(
            "4. python -c 'import trio' (every trio daemon pays it)",
            ms(trio_med),
            ms(max(trio_)),
            f"{trio_med / base:.1f}x",
        ),
        Row(
            "4. python -c 'import ecrd.cli, ecrd.daemon'",
            ms(statistics.median(imports)),
            ms(max(imports)),
            f"{statistics.median(imports) / base:.1f}x",
        ),
        Row(
            "4. spawn the smallest trio server -> first ping (the floor)",
            ms(floor_med),
            ms(max(floor)),
            f"{floor_med / base:.1f}x",
        ),
        Row(
            f"4. spawn ecrd run -> first ping, 1 terminal, byte-compiled ({STARTS} starts; max)",
            ms(med),
            ms(max(starts)),
            f"{med / base:.1f}x",
            f"<= {START_LIMIT_S * 1e3:.0f} ms, else floor + {ABOVE_FLOOR_LIMIT_S * 1e3:.0f}",
            med <= max(START_LIMIT_S, floor_med + ABOVE_FLOOR_LIMIT_S),
        ),
        Row("   ecrd's start above the floor", ms(med - floor_med)),
        Row("4. spawn ecrd run -> first ping, 100 terminals (1 start)", ms(ready_100)),
    ]
