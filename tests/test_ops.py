"""Operations: systemd (unit, sd_notify, watchdog), reload, SIGTERM, socket permissions."""

from __future__ import annotations

import grp
import itertools
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from e2e import Daemon, Sim, pair, until, write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    import sys

    ecrd = str(Path(sys.executable).parent / "ecrd")
    unit = (ROOT / "systemd" / "ecrd.service").read_text().replace("/usr/bin/ecrd", ecrd)
    (tmp_path / "ecrd.service").write_text(unit)
    res = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "ecrd.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "ecrd.service" not in res.stderr, res.stderr


def test_the_unit_runs_as_notify_with_watchdog_and_hardening() -> None:
    unit = (ROOT / "systemd" / "ecrd.service").read_text()
    for line in (
        "Type=notify", "WatchdogSec=", "User=ecrd", "SupplementaryGroups=dialout",
        "RuntimeDirectory=ecrd", "StateDirectory=ecrd", "ConfigurationDirectory=ecrd",
        "UMask=0077", "DevicePolicy=closed", "DeviceAllow=char-ttyUSB rw", "ExecReload=",
        "SystemCallErrorNumber=EPERM",
    ):  # fmt: skip
        assert line in unit
    # ecrd's crypto threads call setpriority (ecrd/workers.py): @resources must stay allowed.
    denied = [ln for ln in unit.splitlines() if ln.startswith("SystemCallFilter=~")]
    assert all("@resources" not in ln for ln in denied)


class NotifyListener:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, msg in self.messages for line in msg.splitlines()]

    def wait_for(self, prefix: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.startswith(prefix):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r} among {self.lines()}")

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


def test_ready_status_and_watchdog_reach_notify_socket(tmp_path: Path) -> None:
    sim = Sim(tmp_path)
    listener = NotifyListener(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "600000"}
    daemon = None
    try:
        daemon = Daemon(tmp_path, write_config(tmp_path, sim), env=env)
        ready = listener.wait_for("READY=1")
        assert ready == "READY=1"
        status = listener.wait_for("STATUS=")
        assert "3 terminal(s), 0 paired" in status
        # READY comes only once the socket answers (Daemon() waited for a ping already).
        pair(daemon, sim, "lan")
        time.sleep(1.5)
        pings = [t for t, m in listener.messages if m == "WATCHDOG=1"]
        assert len(pings) >= 3  # every 0.3 s: half of WATCHDOG_USEC
        # Paced by WATCHDOG_USEC (0.3 s here), not by the 10 s default; slack for a busy CI.
        assert max(b - a for a, b in itertools.pairwise(pings)) < 1.5
        assert daemon.terminate() == 0
        listener.wait_for("STOPPING=1")
    finally:
        if daemon is not None:
            daemon.stop(sim)
        sim.stop()
        listener.close()


def test_status_line_shows_unknown_transactions(tmp_path: Path) -> None:
    sim = Sim(tmp_path)
    listener = NotifyListener(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    daemon = None
    try:
        daemon = Daemon(tmp_path, write_config(tmp_path, sim, timeout_s=2), env=env)
        pair(daemon, sim, "lan")
        daemon.error("sale", terminal="lan-1", amount="1.94", currency="HKD", reference_id="u1")
        deadline = time.monotonic() + 10
        while not any("UNKNOWN" in x for x in listener.lines()):
            assert time.monotonic() < deadline, listener.lines()
            time.sleep(0.1)
    finally:
        if daemon is not None:
            daemon.stop(sim)
        sim.stop()
        listener.close()


def _config(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def test_reload_keeps_the_old_config_on_a_broken_file_and_applies_a_good_one(
    tmp_path: Path,
) -> None:
    sim = Sim(tmp_path)
    config = write_config(tmp_path, sim)
    daemon = Daemon(tmp_path, config)
    try:
        with daemon.client() as client:
            client.call("subscribe")
            before = [t["id"] for t in client.call("terminal.list")]
            good = config.read_text()
            config.write_text(good + "\n[[terminal]]\nid = 'broken'\ntransport = 'lan'\n")
            assert daemon.proc is not None
            daemon.proc.send_signal(1)  # SIGHUP
            deadline = time.monotonic() + 10
            while not client.call("status")["reload_error"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            status = client.call("status")
            assert "terminal[3].host must be set" in status["reload_error"]
            assert [t["id"] for t in status["terminals"]] == before
            # A good file, through the API, on the same connection that is still open.
            data = tomllib.loads(good)
            data["terminal"].append(
                {"id": "lan-2", "transport": "lan", "host": "127.0.0.1", "port": 9}
            )
            data["terminal"][0]["timeout_s"] = 42
            config.write_text(tomli_w.dumps(data))
            result = client.call("config.reload")
            assert result["added"] == ["lan-2"] and result["changed"] == ["lan-1"]
            assert client.call("status")["reload_error"] is None
            assert "lan-2" in [t["id"] for t in client.call("terminal.list")]
            assert client.call("ping")["protocol"] == 1
            # The paired terminal still takes payments after the change.
            pair(daemon, sim, "lan")
            tx = client.call("sale", terminal="lan-1", amount="1.00", currency="HKD")
            assert tx["state"] == "succeeded"
            events = [e for e in client.events if e.get("topic") == "transaction.state"]
            assert events, "the subscription survived both reloads"
    finally:
        daemon.stop(sim)
        sim.stop()


def test_sigterm_lets_a_payment_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    sim = Sim(tmp_path)
    daemon = Daemon(tmp_path, write_config(tmp_path, sim))
    try:
        pair(daemon, sim, "lan")
        sim.fault("lan", "delay", params={"seconds": 1.0})
        result: dict[str, Any] = {}

        def sale() -> None:
            result["tx"] = daemon.call(
                "sale", terminal="lan-1", amount="2.00", currency="HKD", reference_id="t1"
            )

        worker = threading.Thread(target=sale)
        worker.start()
        until("the terminal has the sale", lambda: sim.requests("lan", "t1") > 0)
        assert daemon.proc is not None
        daemon.proc.send_signal(15)  # SIGTERM
        until("ecrd is stopping", lambda: daemon.call("status")["stopping"])
        # While draining, no new payment is taken, but everything else is answered.
        late = daemon.error("sale", terminal="serial-1", amount="1.00", currency="HKD")
        assert late.reason == "shutting_down"
        assert daemon.call("status")["stopping"] is True
        assert daemon.wait_exit() == 0
        worker.join(10)
        assert result["tx"]["state"] == "succeeded"
        assert sim.charges("lan", "t1") == 1
    finally:
        daemon.stop(sim)
        sim.stop()


def _with_grace(tmp_path: Path, grace: float) -> tuple[Sim, Daemon]:
    sim = Sim(tmp_path)
    config = write_config(tmp_path, sim)
    data = _config(config)
    data["daemon"]["shutdown_grace_s"] = grace
    config.write_text(tomli_w.dumps(data))
    return sim, Daemon(tmp_path, config)


def _start_a_sale_that_never_ends(sim: Sim, daemon: Daemon, ref: str) -> None:
    pair(daemon, sim, "lan")
    sim.fault("lan", "never_answer")
    threading.Thread(
        target=lambda: daemon.error(
            "sale", terminal="lan-1", amount="3.00", currency="HKD", reference_id=ref
        ),
        daemon=True,
    ).start()
    until("the terminal has the sale", lambda: sim.requests("lan", ref) > 0)


def test_sigterm_past_the_grace_journals_unknown_and_exits_0(tmp_path: Path) -> None:
    sim, daemon = _with_grace(tmp_path, 0.5)
    try:
        _start_a_sale_that_never_ends(sim, daemon, "t2")
        assert daemon.terminate() == 0
        daemon.start()
        tx = daemon.call("transaction.get", reference_id="t2")
        assert tx["state"] == "unknown"
        assert "stopped" in (tx["note"] or "") or tx["error"]["reason"] == "shutting_down"
    finally:
        daemon.stop(sim)
        sim.stop()


def test_socket_group_from_config(tmp_path: Path) -> None:
    group = next(g for g in grp.getgrall() if g.gr_gid != 0)
    sim = Sim(tmp_path)
    config = write_config(tmp_path, sim)
    data = _config(config)
    data["daemon"]["socket_group"] = group.gr_name
    config.write_text(tomli_w.dumps(data))
    daemon = Daemon(tmp_path, config)
    try:
        st = os.stat(daemon.socket)
        assert st.st_gid == group.gr_gid
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert os.stat(os.path.dirname(daemon.socket)).st_gid == group.gr_gid
    finally:
        daemon.stop(sim)
        sim.stop()


def test_a_second_ecrd_on_the_same_state_or_socket_refuses_to_start(tmp_path: Path) -> None:
    import sys

    sim = Sim(tmp_path)
    config = write_config(tmp_path, sim)
    daemon = Daemon(tmp_path, config)
    try:
        ecrd = str(Path(sys.executable).parent / "ecrd")
        same = subprocess.run(
            [ecrd, "run", "--config", str(config)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert same.returncode == 2  # "cannot start": systemd does not loop on it
        assert "another ecrd is already running with state_dir" in same.stderr
        # Another state dir, same socket: refused too, and the socket is left alone.
        data = _config(config)
        data["daemon"]["state_dir"] = str(tmp_path / "other-state")
        other = tmp_path / "other.toml"
        other.write_text(tomli_w.dumps(data))
        sock = subprocess.run(
            [ecrd, "run", "--config", str(other)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert sock.returncode == 2 and "is in use" in sock.stderr
        assert daemon.call("ping")["protocol"] == 1  # the first one never noticed
    finally:
        daemon.stop(sim)
        sim.stop()


def test_a_second_sigterm_stops_waiting_and_journals_unknown(tmp_path: Path) -> None:
    sim, daemon = _with_grace(tmp_path, 120)
    try:
        _start_a_sale_that_never_ends(sim, daemon, "t3")
        assert daemon.proc is not None
        daemon.proc.send_signal(15)
        time.sleep(0.3)
        daemon.proc.send_signal(15)  # the admin insists
        assert daemon.wait_exit(timeout=30) == 0  # long before the 120 s grace
        daemon.start()
        assert daemon.call("transaction.get", reference_id="t3")["state"] == "unknown"
    finally:
        daemon.stop(sim)
        sim.stop()
