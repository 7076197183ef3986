"""Subprocess plumbing for the daemon benchmark: ``ecrd-sim`` and ``ecrd run`` as real
processes, their configs, and what /proc says about them (RSS, CPU time).

Every process started here is registered in a ``Procs`` and stopped by ``Procs.close``
(SIGTERM, then SIGKILL), whatever happened before.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w

from ecrd.client import Client, EcrdError

BIN = Path(sys.executable).parent
BUSINESS = "411d6207-1470-4d35-a557-54852463844d"
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_DEADLINE_S = 20.0


class Procs:
    """Every subprocess of the run, stopped in reverse order by ``close``."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._files: list[Any] = []

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
        for proc in reversed(self._procs):
            try:
                self.stop(proc)
            except Exception:
                proc.kill()
        self._procs.clear()
        for f in self._files:
            f.close()
        self._files.clear()


class Sim:
    """``ecrd-sim`` with the given options; ``desc`` is its readiness line."""

    def __init__(self, procs: Procs, tmp: Path, *args: str) -> None:
        self.procs = procs
        cmd = [str(BIN / "ecrd-sim"), "--state-dir", str(tmp / "sim"), "--business-id", BUSINESS]
        self.proc = procs.spawn([*cmd, *args], tmp / "sim.log", stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_DEADLINE_S)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError("ecrd-sim did not start: " + (tmp / "sim.log").read_text())
        self.desc: dict[str, Any] = json.loads(line)
        self.pid = self.proc.pid

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


def try_ping(socket_path: str) -> bool:
    try:
        with Client(socket_path, timeout=2) as c:
            c.call("ping")
        return True
    except (FileNotFoundError, ConnectionRefusedError, EcrdError, OSError):
        return False


class Daemon:
    """``ecrd run --config ...``; ``ready_s`` is the time from spawn to the first ping."""

    def __init__(self, procs: Procs, config: Path, poll_s: float = 0.002) -> None:
        self.procs = procs
        self.dir = config.parent
        self.socket = str(self.dir / "run" / "ecrd.sock")
        log = self.dir / "ecrd.log"
        t0 = time.perf_counter()
        self.proc = procs.spawn([str(BIN / "ecrd"), "run", "--config", str(config)], log)
        self.pid = self.proc.pid
        deadline = t0 + START_DEADLINE_S
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ecrd exited at start:\n" + log.read_text())
            if os.path.exists(self.socket) and try_ping(self.socket):
                self.ready_s = time.perf_counter() - t0
                return
            time.sleep(poll_s)
        raise RuntimeError("ecrd did not answer ping in time:\n" + log.read_text())

    def stop(self) -> None:
        self.procs.stop(self.proc)

    def pin(self, tid: str) -> str:
        """The pairing PIN ecrd stored for ``tid`` (the benchmark's own temp dir)."""
        import tomllib

        pairings = tomllib.loads((self.dir / "state" / "pairings.toml").read_text())
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
