"""How long ``ecrctl probe`` takes to find a terminal whose settings are off (issue #23).

Every row runs ``ecrd-sim`` (one terminal that answers only its own settings: a serial one
ignores every other cmd, fails every other CRC and byte order, and garbles every other
speed) and ``ecrd run`` as real subprocesses, the daemon's entry left at the defaults, and
times one ``terminal.probe`` through the socket, as ``ecrctl probe`` calls it. The serial
windows are paced at each speed's line rate (``transport/serial_window.py``), so the
times are those of a real line, not of the pty.

The rows (bench/README.md says each): serial one, two and four settings off (the last is
issue #23's example: CRC-32C, little-endian, cmd 0x0101, legacy crypto), the worst serial
case (9600 baud, the last framing of the window, legacy), nothing answering on serial;
LAN three off (path, https, legacy), LAN with the other look-up, nothing answering on LAN.
Acceptance (issue #23): serial found ≤ 30 s, serial nothing answering ends ≤ 60 s, LAN
≤ 10 s.

Run: ``bench/run probe`` (or ``python -m bench.probe``). Exit status 1 on a FAIL. Takes
about two minutes, most of it the two slowest serial rows.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from bench._procs import BUSINESS, Daemon, Procs, Sim
from bench._table import Row, render
from ecrd.client import Client
from ecrd.config import SerialTerminal
from ecrd.terminal.probe_serial import framings

PIN = "246810"
FOUND_S = 30.0
SILENT_S = 60.0
LAN_S = 10.0


def _lan_tls(tmp: Path) -> list[str]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return ["--lan-tls", str(cert), str(key)]


def last_framing() -> dict[str, Any]:
    """The framing the window sends last, for the default entry."""
    return framings(SerialTerminal(id="s", device="/dev/null"))[-1]


def serial_args(crc: str = "crc32", order: str = "big", cmd: int = 6, **kw: Any) -> list[str]:
    args = ["--serial", "1", "--strict-cmd", "--frame-crc", crc, "--frame-byteorder", order,
            "--frame-cmd", str(cmd)]  # fmt: skip
    if kw.get("legacy"):
        args += ["--scheme", "legacy"]
    if kw.get("baud"):
        args += ["--serial-baud", str(kw["baud"])]
    return args


def one_probe(
    procs: Procs, tmp: Path, args: list[str], prepare: Callable[[Sim], None]
) -> tuple[float, dict[str, Any]]:
    """Start the simulator with ``args`` and a daemon with its terminal at the defaults;
    the wall time of one probe, and its result."""
    tmp.mkdir(parents=True)
    sim = Sim(procs, tmp, *args, "--pin1", PIN, "--no-magic-amounts")
    term = sim.desc["terminals"][0]
    entry: dict[str, Any] = {"id": "t", "transport": term["link"], "probe_interval_s": 0}
    entry |= {"device": term["device"]} if term["link"] == "serial" else {
        "host": term["host"], "port": term["port"]}  # fmt: skip
    prepare(sim)
    data = {
        "daemon": {"socket": str(tmp / "ecrd" / "run" / "ecrd.sock"),
                   "state_dir": str(tmp / "ecrd" / "state"), "client_device_sn": "POS-BENCH"},
        "cloud": {"business_id": BUSINESS},
        "terminal": [entry],
    }  # fmt: skip
    (tmp / "ecrd").mkdir(parents=True, exist_ok=True)
    config = tmp / "ecrd" / "ecrd.toml"
    config.write_text(tomli_w.dumps(data))
    daemon = Daemon(procs, config)
    try:
        with Client(daemon.socket, timeout=400) as c:
            _port_open(c)
            t0 = time.perf_counter()
            result: dict[str, Any] = c.call("terminal.probe", terminal="t", code=PIN)
            return time.perf_counter() - t0, result
    finally:
        daemon.stop()
        procs.stop(sim.proc)


def _port_open(c: Client) -> None:
    """A serial terminal's port opens in the background: wait for it, as a person would."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = c.call("terminal.list")[0]
        if row["transport"] != "serial" or row["link"] == "up":
            return
        time.sleep(0.05)
    raise RuntimeError("the serial port did not open")


def hold_device_info(sim: Sim) -> None:
    with httpx.Client(base_url=sim.desc["control_url"], timeout=10, trust_env=False) as control:
        sn = sim.desc["terminals"][0]["sn"]
        fault = {"name": "never_answer", "sticky": True, "actions": ["DeviceInfo"]}
        control.post(f"/terminals/{sn}/faults", json=fault).raise_for_status()


def rows_to_run(tmp: Path) -> list[tuple[str, list[str], Callable[[Sim], None], float, bool]]:
    """(name, ecrd-sim options, preparation, limit, whether the terminal is to be found)."""
    last = last_framing()
    worst = serial_args(last["frame_crc"], last["frame_byteorder"], last["frame_cmd"],
                        legacy=True, baud=9600)  # fmt: skip
    nothing = lambda _sim: None  # noqa: E731
    return [
        ("serial, one off: CRC-32C", serial_args("crc32c"), nothing, FOUND_S, True),
        ("serial, two off: little-endian, cmd 0x0101", serial_args(order="little", cmd=0x0101),
         nothing, FOUND_S, True),
        ("serial, four off: CRC-32C, little, 0x0101, legacy",
         serial_args("crc32c", "little", 0x0101, legacy=True), nothing, FOUND_S, True),
        (f"serial, worst: 9600 baud, last framing ({last['frame_crc']}, "
         f"{last['frame_byteorder']}, {last['frame_cmd']:#06x}), legacy", worst, nothing,
         FOUND_S, True),
        ("serial, nothing answers (every speed)", serial_args(baud=4800), nothing, SILENT_S,
         False),
        ("LAN, three off: path, https, legacy",
         ["--lan-path", "/wonder-terminal", *_lan_tls(tmp), "--scheme", "legacy"], nothing,
         LAN_S, True),
        ("LAN, look-up: ConnectionInfo only", ["--identify-only", "ConnectionInfo"], nothing,
         LAN_S, True),
        ("LAN, nothing answers", [], hold_device_info, LAN_S, False),
    ]  # fmt: skip


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ecrd-bench-probe-"))
    procs = Procs()
    rows: list[Row] = []
    try:
        for i, (name, args, prepare, limit, to_find) in enumerate(rows_to_run(tmp)):
            took, result = one_probe(procs, tmp / f"row{i}", args, prepare)
            found = result["found"] is not None
            ok = took <= limit and found == to_find
            what = f"{'found' if found else 'nothing'}, {len(result['tried'])} steps"
            rows.append(Row(name, f"{took:8.1f} s", what, "", f"<= {limit:g} s"
                            + (", found" if to_find else ""), ok))  # fmt: skip
            print(f"{name}: {took:.1f} s, {what}", flush=True)
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(rows))
    failed = [r.name for r in rows if r.ok is False]
    print("FAIL: " + "; ".join(failed) if failed else "all acceptance lines PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
