"""The subprocess harness: the simulator and the daemon as real subprocesses, a real TOML config,
and only the Unix socket (and the simulator's control API) to talk to them.

Every daemon started here logs to a file; when it stops, ``Daemon.stop`` scans every line
for every PIN the test saw (pinCode1 from the simulator, pinCode2 from the pairing file)
and fails if one is there (design.md §6: never log a PIN).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from ecrd.client import Client, EcrdError

BIN = Path(sys.executable).parent
BUSINESS = "411d6207-1470-4d35-a557-54852463844d"
PINS = ["111111", "222222", "333333"]


class Sim:
    """``ecrd-sim`` with ``args`` (default: one terminal on each link) and the pinCode1s
    ``pins``; ``desc`` is its readiness line, ``control`` its control API."""

    def __init__(
        self, tmp: Path, *args: str, pins: Sequence[str] = PINS, deadline: float = 20
    ) -> None:
        self.dir = tmp / "sim"
        cmd = [str(BIN / "ecrd-sim"), "--state-dir", str(self.dir), "--business-id", BUSINESS]
        if not args:
            args = ("--lan", "1", "--serial", "1", "--cloud", "1")
        with_pins = [a for p in pins for a in ("--pin1", p)]
        self.log = open(tmp / "sim.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*cmd, *args, *with_pins], stdout=subprocess.PIPE, stderr=self.log
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], deadline)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError("ecrd-sim did not start: " + (tmp / "sim.log").read_text())
        self.desc: dict[str, Any] = json.loads(line)
        self.control = httpx.Client(base_url=self.desc["control_url"], timeout=10, trust_env=False)

    def terminal(self, link: str) -> dict[str, Any]:
        return next(t for t in self.desc["terminals"] if t["link"] == link)

    def sn(self, link: str) -> str:
        return str(self.terminal(link)["sn"])

    def fault(self, link: str, name: str, **body: Any) -> None:
        r = self.control.post(f"/terminals/{self.sn(link)}/faults", json={"name": name, **body})
        assert r.status_code == 201, r.text

    def post(self, link: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.control.post(f"/terminals/{self.sn(link)}/{what}", json=body or {})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def ledger(self, link: str) -> list[dict[str, Any]]:
        r = self.control.get(f"/terminals/{self.sn(link)}/ledger")
        return list(r.json())

    def charges(self, link: str, ref: str) -> int:
        return sum(1 for e in self.ledger(link) if e["referenceID"] == ref and e["charged"])

    def requests(self, link: str, ref: str) -> int:
        return sum(1 for e in self.ledger(link) if e["referenceID"] == ref)

    def stop(self) -> None:
        if hasattr(self, "control"):
            self.control.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


def answers_ping(socket_path: str) -> bool:
    """Whether ecrd answers a ping on ``socket_path`` now."""
    try:
        with Client(socket_path, timeout=2) as c:
            c.call("ping")
        return True
    except (OSError, EcrdError):
        return False


def write_config(tmp: Path, sim: Sim, **terminal_extra: Any) -> Path:
    links = {t["link"]: t for t in sim.desc["terminals"]}
    common = {"timeout_s": 10, "info_timeout_s": 5, "probe_interval_s": 0, **terminal_extra}
    terminals = []
    if "lan" in links:
        terminals.append({"id": "lan-1", "transport": "lan", "host": links["lan"]["host"],
                          "port": links["lan"]["port"], **common})  # fmt: skip
    if "serial" in links:
        terminals.append(
            {"id": "serial-1", "transport": "serial", "device": links["serial"]["device"], **common}
        )
    if "cloud" in links:
        terminals.append({"id": "cloud-1", "transport": "cloud", **common})
    data = {
        "daemon": {
            "socket": str(tmp / "run" / "ecrd.sock"),
            "state_dir": str(tmp / "state"),
            "client_device_sn": "POS-E2E",
            "log_level": "debug",
            "shutdown_grace_s": 3,
        },
        "cloud": {
            "base_url": sim.desc["cloud"]["base_url"],
            "command_url": sim.desc["cloud"]["command_url"],
            "business_id": BUSINESS,
            "timeout_s": 10,
        },
        "terminal": terminals,
    }
    path = tmp / "ecrd.toml"
    path.write_bytes(tomli_w.dumps(data).encode())
    return path


class Daemon:
    """``ecrd run`` in a subprocess; ``client()`` opens a socket client. ``ready_s``: the
    time from the spawn to the first answered ping (polled every ``poll_s``)."""

    def __init__(
        self,
        tmp: Path,
        config: Path,
        env: dict[str, str] | None = None,
        *,
        poll_s: float = 0.05,
        deadline: float = 15,
    ) -> None:
        self.tmp = tmp
        self.config = config
        cfg = tomllib.loads(config.read_text())
        self.socket = cfg["daemon"]["socket"]
        self.state = Path(cfg["daemon"]["state_dir"])
        self.logs: list[Path] = []
        self.env = env
        self.poll_s, self.deadline = poll_s, deadline
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        log = self.tmp / f"ecrd-{len(self.logs)}.log"
        self.logs.append(log)
        self._log = open(log, "wb")  # noqa: SIM115 - closed in _reap()
        self.started_at = time.monotonic()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(BIN / "ecrd"), "run", "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})},
        )  # fmt: skip
        deadline = t0 + self.deadline
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ecrd exited at start:\n" + log.read_text())
            if answers_ping(self.socket):
                self.ready_s = time.perf_counter() - t0
                return
            time.sleep(self.poll_s)
        raise RuntimeError("ecrd did not open its socket:\n" + log.read_text())

    def client(self, timeout: float | None = 30) -> Client:
        return Client(self.socket, timeout=timeout)

    def call(self, method: str, **params: Any) -> Any:
        with self.client() as c:
            return c.call(method, **params)

    def error(self, method: str, **params: Any) -> EcrdError:
        try:
            self.call(method, **params)
        except EcrdError as exc:
            return exc
        raise AssertionError(f"{method} did not fail")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self._reap()

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reap()
        return code

    def wait_exit(self, timeout: float = 20) -> int:
        """Wait for the daemon to stop by itself (after a signal sent earlier)."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._reap()
        return code

    def _reap(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        self._log.close()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)

    def secrets(self, sim: Sim | None) -> set[str]:
        found = set(PINS)
        if sim is not None:
            found |= {t["pin1"] for t in sim.desc["terminals"]}
        pairings = self.state / "pairings.toml"
        if pairings.exists():
            for entry in tomllib.loads(pairings.read_text()).get("terminals", {}).values():
                found.add(entry["pin"])
        return found

    def stop(self, sim: Sim | None = None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
        text = self.log_text()
        for secret in self.secrets(sim):
            assert secret not in text, f"a PIN ({secret[:2]}****) appears in ecrd's log"


@contextmanager
def running(
    tmp: Path, *sim_args: str, env: dict[str, str] | None = None, **terminal_extra: Any
) -> Iterator[tuple[Sim, Daemon]]:
    """The simulator and ``ecrd run`` (with ``env``, e.g. a failpoint) as subprocesses."""
    sim = Sim(tmp, *sim_args)
    daemon: Daemon | None = None
    try:
        daemon = Daemon(tmp, write_config(tmp, sim, **terminal_extra), env=env)
        yield sim, daemon
    finally:
        try:
            if daemon is not None:
                daemon.stop(sim)
        finally:
            sim.stop()


def until(what: str, predicate: Callable[[], bool], timeout: float = 15) -> None:
    """Until ``predicate()`` holds, polled every 20 ms (the peer is another process),
    failing with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.02)


def rss_kib(pid: int) -> int:
    """A process's resident memory (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for row in f:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    raise AssertionError("no VmRSS")


def pair(daemon: Daemon, sim: Sim, link: str) -> dict[str, Any]:
    tid = f"{link}-1"
    result: dict[str, Any] = daemon.call(
        "terminal.pair", terminal=tid, code=sim.terminal(link)["pin1"]
    )
    return result
