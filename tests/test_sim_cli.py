"""``ecrd-sim`` as a program: one JSON line when ready, clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ecrd.sim.__main__ import build, parse_args
from ecrd.sim.codes import LETTERS

SIM = [sys.executable, "-m", "ecrd.sim"]


def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [*SIM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        pytest.fail(f"no readiness line; stderr: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str], signum: int) -> tuple[int, str, str]:
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=10)
    return proc.returncode, out, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_prints_one_json_line_and_exits_cleanly(signum: int, tmp_path: Path) -> None:
    proc, ready = start(
        "--lan", "1", "--serial", "1", "--cloud", "1", "--pin1", "123456",
        "--state-dir", str(tmp_path), "--reply-salt-reuse",
    )  # fmt: skip
    try:
        assert ready["pid"] == proc.pid
        assert ready["control_url"].startswith("http://127.0.0.1:")
        assert ready["cloud"]["business_id"]
        lan, serial, cloud = ready["terminals"]
        assert (lan["link"], serial["link"], cloud["link"]) == ("lan", "serial", "cloud")
        assert lan["pin1"] == "123456" and json.loads(lan["qr"])["pairCode"] == "123456"
        assert lan["sn"] == "NEXGO-N96-1170270945" and serial["sn"] == "NEXGO-N96-1170270946"
        assert serial["device"] == str(tmp_path / "ttyECR0")
        assert os.path.realpath(serial["device"]) == serial["slave"]
        assert json.loads((tmp_path / "ready.json").read_text()) == ready
    finally:
        code, out, err = stop(proc, signum)
    assert code == 0, err
    assert out == ""  # nothing after the readiness line
    assert "pairing code (pinCode1) 123456" in err  # the screen, on stderr
    assert not os.path.lexists(tmp_path / "ttyECR0")


def test_temporary_state_dir_is_removed() -> None:
    proc, ready = start("--serial", "1")
    device = ready["terminals"][0]["device"]
    assert os.path.islink(device)
    code, _, _ = stop(proc, signal.SIGTERM)
    assert code == 0 and not os.path.exists(os.path.dirname(device))


def test_help_explains_links_faults_magic_amounts_and_control_api() -> None:
    out = subprocess.run([*SIM, "--help"], capture_output=True, text=True, check=True).stdout
    for text in ("never_answer", "x.91", "/terminals/SN/faults", "terminal/command", "ttyECR"):
        assert text in out


def test_bad_pin_is_a_usage_error() -> None:
    result = subprocess.run([*SIM, "--pin1", "12"], capture_output=True, text=True)
    assert result.returncode == 2 and "6 characters, A-Z and 0-9" in result.stderr


def test_lan_is_the_default_link() -> None:
    args = parse_args([])
    assert (args.lan, args.serial, args.cloud) == (1, 0, 0)
    assert parse_args(["--serial", "2"]).lan == 0


def test_the_variants_a_real_terminal_may_have_are_options(tmp_path: Path) -> None:
    args = parse_args(
        ["--lan", "1", "--serial", "1", "--letter-codes", "--serial-baud", "9600",
         "--strict-cmd", "--frame-cmd", "0x0101"]
    )  # fmt: skip
    sim = build(args, tmp_path)
    lan, serial = sim.slots
    assert all(s.terminal.code_alphabet == LETTERS for s in sim.slots)
    assert serial.baudrate == 9600 and serial.strict_cmd and serial.fmt.cmd == 0x0101
    assert lan.lan_tls is None and not lan.lan_wrap and not sim.strict_cloud
    assert all(not s.terminal.strict and s.terminal.identify_only is None for s in sim.slots)
    readings = parse_args(
        ["--lan", "1", "--lan-wrap", "--strict", "--identify-only", "ConnectionInfo",
         "--pair-uuid-field", "uuid"]
    )  # fmt: skip
    sim = build(readings, tmp_path)
    [lan] = sim.slots
    assert lan.lan_wrap and sim.strict_cloud and lan.terminal.strict
    assert (lan.terminal.identify_only, lan.terminal.pair_uuid_field) == ("ConnectionInfo", "uuid")
