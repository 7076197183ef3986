"""Subprocess plumbing for the daemon benchmark: ``ecrd-sim`` and ``ecrd run`` as real
processes (the harness the tests use, ``harness/daemon.py``), their configs, and what /proc
says about them (RSS, CPU time).

Every process started here is registered in a ``Procs`` and stopped by ``Procs.close``
(SIGTERM, then SIGKILL), whatever happened before.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

import harness.daemon as harness

BIN, BUSINESS = harness.BIN, harness.BUSINESS
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_DEADLINE_S = 20.0


class Procs:
    """Every subprocess of the run, stopped in reverse order by ``close``."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._files: list[Any] = []
        self._adopted: list[harness.Sim | harness.Daemon] = []

    def adopt(self, started: harness.Sim | harness.Daemon) -> None:
        """A harness process (it has its own log), stopped by ``close`` too."""
        self._adopted.append(started)

    def spawn(self, args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - closed in close()
        self._files.append(out)
        kwargs.setdefault("stdout", out)
        proc = subprocess.Popen(args, stderr=out, **kwargs)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def close(self) -> None:
        for started in reversed(self._adopted):
            try:
                started.stop()
            except Exception:
                if started.proc is not None:
                    started.proc.kill()
        self._adopted.clear()
        for proc in reversed(self._procs):
            try:
                self.stop(proc)
            except Exception:
                proc.kill()
        self._procs.clear()
        for f in self._files:
            f.close()
        self._files.clear()


class Sim(harness.Sim):
    """``ecrd-sim`` with the given options (the harness's, without its PINs); ``desc`` is
    its readiness line."""

    def __init__(self, procs: Procs, tmp: Path, *args: str) -> None:
        super().__init__(tmp, *args, pins=(), deadline=START_DEADLINE_S)
        procs.adopt(self)

    @property
    def lan(self) -> list[dict[str, Any]]:
        return [t for t in self.desc["terminals"] if t["link"] == "lan"]


def lan_terminal(tid: str, host: str, port: int, *, probe: bool = False) -> dict[str, Any]:
    """A LAN terminal; without ``probe`` no liveness probe, which would add DeviceInfo
    exchanges (two derivations each) at random moments of a measurement of sales."""
    term: dict[str, Any] = {"id": tid, "transport": "lan", "host": host, "port": port}
    if not probe:
        term.update(timeout_s=30, info_timeout_s=30, probe_interval_s=0)
    return term


def write_config(
    tmp: Path, name: str, terminals: list[dict[str, Any]], http: dict[str, Any] | None = None
) -> Path:
    data: dict[str, Any] = {
        "daemon": {
            # A directory of ecrd's own for the socket: ecrd creates it 0750 (ownership.py).
            "socket": str(tmp / name / "run" / "ecrd.sock"),
            "state_dir": str(tmp / name / "state"),
            "client_device_sn": "POS-BENCH",
            "log_level": "info",
            "shutdown_grace_s": 5,
            # 32 terminals, each sold by its own connection, plus pings: all from one uid.
            "max_clients": 128,
            "max_clients_per_user": 96,
        },
        "terminal": terminals,
    }
    if http is not None:
        data["http"] = http
    (tmp / name).mkdir(parents=True, exist_ok=True)
    path = tmp / name / "ecrd.toml"
    path.write_bytes(tomli_w.dumps(data).encode())
    return path


try_ping = harness.answers_ping


class Daemon(harness.Daemon):
    """``ecrd run --config ...`` (the harness's); ``ready_s`` is the time from spawn to the
    first ping, polled every ``poll_s``."""

    def __init__(self, procs: Procs, config: Path, poll_s: float = 0.002) -> None:
        self.dir = config.parent
        super().__init__(self.dir, config, poll_s=poll_s, deadline=START_DEADLINE_S)
        procs.adopt(self)

    def pin(self, tid: str) -> str:
        """The pairing PIN ecrd stored for ``tid`` (the benchmark's own temp dir)."""
        pairings = tomllib.loads((self.state / "pairings.toml").read_text())
        return str(pairings["terminals"][tid]["pin"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").exists()


def machine_busy_seconds() -> float:
    """CPU time spent by everything on the machine so far (all cores, not idle/iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
