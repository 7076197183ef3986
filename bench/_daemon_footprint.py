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
from bench._procs import Daemon, Procs, lan_terminal, vm_rss_mb, write_config
from bench._table import Row, mb, ms

STARTS = 5
RSS_SETTLE_S = 3.0
START_LIMIT_S = 0.150  # issue #17: spawn -> first ping, one terminal


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
    starts = []
    for _ in range(STARTS):
        d = Daemon(procs, config)
        starts.append(d.ready_s)
        d.stop()
    # Whole processes, teardown included (20-30 ms of import trio's time here), which a
    # start to the first ping does not pay: the start's "above import trio" is a low bound.
    python = time_command([sys.executable, "-c", "pass"], STARTS)
    trio_ = time_command([sys.executable, "-c", "import trio"], STARTS)
    imports = time_command([sys.executable, "-c", "import ecrd.cli, ecrd.daemon"], STARTS)
    return start_rows(starts, python, trio_, imports, ready_100)


def start_rows(
    starts: list[float],
    python: list[float],
    trio_: list[float],
    imports: list[float],
    ready_100: float,
) -> list[Row]:
    med, base, trio_med = (statistics.median(x) for x in (starts, python, trio_))
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
            f"4. spawn ecrd run -> first ping, 1 terminal, byte-compiled ({STARTS} starts; max)",
            ms(med),
            ms(max(starts)),
            f"{med / base:.1f}x",
            f"<= {START_LIMIT_S * 1e3:.0f} ms",
            med <= START_LIMIT_S,
        ),
        Row("   start above import trio (info)", ms(med - trio_med)),
        Row("4. spawn ecrd run -> first ping, 100 terminals (1 start)", ms(ready_100)),
    ]
