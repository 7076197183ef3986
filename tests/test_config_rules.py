"""One validator for check-config, run and reload: a value that passes can be used.

Repro 3 and 6 of the robustness issue: bad ``host``/``path`` values, ``status_action =
"Sale"``, control characters and a socket inside ``state_dir`` all pass nowhere; ``ecrd
run`` refuses them (and every config or state problem) in one line with exit status 2, and
never removes a file that is not a stale socket.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from ecrd.config import ConfigError, parse

ECRD = str(Path(sys.executable).parent / "ecrd")


def lan(**change: object) -> dict[str, object]:
    return {"terminal": [{"id": "lan1", "transport": "lan", "host": "192.168.1.50", **change}]}


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:44391", "http://192.168.1.50", "1.2.3.4\n", "1.2.3.999", "a b", "-x.local",
     "host/path", "", "[::1]"],
)  # fmt: skip
def test_host_must_be_a_bare_ip_address_or_host_name(host: str) -> None:
    with pytest.raises(ConfigError, match=r"terminal\[0\]\.host must be"):
        parse(lan(host=host))


@pytest.mark.parametrize("host", ["192.168.1.50", "::1", "terminal-1.shop.lan", "localhost"])
def test_good_hosts_pass(host: str) -> None:
    assert parse(lan(host=host)).terminals[0].host == host


@pytest.mark.parametrize("path", ["x", "v2/ecr", "/v2/wonder payment", "/v2\t", "/a\x1b[2J"])
def test_path_must_start_with_a_slash_without_spaces_or_control_characters(path: str) -> None:
    with pytest.raises(ConfigError, match=r"terminal\[0\]\.path must be"):
        parse(lan(path=path))


@pytest.mark.parametrize("key", ["status_action", "pair_confirm_action"])
@pytest.mark.parametrize("action", ["Sale", "sale ", "PreAuth", "Refund", "Void", "Pair", "Abort"])
def test_status_and_pair_confirm_actions_are_never_money_or_pairing(key: str, action: str) -> None:
    with pytest.raises(ConfigError, match=rf"terminal\[0\]\.{key} must be a read-only action"):
        parse(lan(**{key: action}))


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"daemon": {"client_device_sn": "POS\n1"}}, "client_device_sn"),
        ({"daemon": {"socket": "/run/ecrd/x\x1b.sock"}}, "socket"),
        (lan(device_sn="SN\r\nCRITICAL forged"), "device_sn"),
        (lan(pin_fields=["pinCode2", "pin\x00"]), "pin_fields"),
        (lan(action_timeouts={"Sale\n": 10}), "action_timeouts"),
    ],
)
def test_every_text_value_refuses_control_characters(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key} must be .* without control characters"):
        parse(data)


def test_the_socket_cannot_lie_inside_state_dir() -> None:
    data = {"daemon": {"state_dir": "/var/lib/ecrd", "socket": "/var/lib/ecrd/journal.sqlite3"}}
    with pytest.raises(ConfigError, match=r"\[daemon\]\.socket must be outside state_dir"):
        parse(data)


@pytest.mark.parametrize("changes", [["tips"], ["tip", "tip"], "tip", [1], ["currency"]])
def test_amount_changes_are_only_tip_and_partial_each_once(changes: object) -> None:
    with pytest.raises(ConfigError, match="amount_changes"):
        parse(lan(amount_changes=changes))
    cfg = parse(lan(amount_changes=["partial", "tip"], not_charged_codes=["TX_VOID"]))
    assert cfg.terminals[0].amount_changes == ("partial", "tip")
    assert cfg.terminals[0].not_charged_codes == ("TX_VOID",)


def test_extra_currencies_must_be_currency_codes() -> None:
    assert parse({"daemon": {"extra_currencies": ["TST"]}}).daemon.extra_currencies == ("TST",)
    with pytest.raises(ConfigError, match="extra_currencies"):
        parse({"daemon": {"extra_currencies": ["tst"]}})


# -- the commands ------------------------------------------------------------------------


def config_file(tmp_path: Path, **daemon: object) -> Path:
    data = {
        "daemon": {"socket": str(tmp_path / "run" / "ecrd.sock"),
                   "state_dir": str(tmp_path / "state"), **daemon},
        "terminal": [{"id": "lan1", "transport": "lan", "host": "127.0.0.1", "port": 9,
                      "probe_interval_s": 0}],
    }  # fmt: skip
    path = tmp_path / "ecrd.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def ecrd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ECRD, *args], capture_output=True, text=True, timeout=30, check=False)


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecrd: cannot start: "), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_a_bad_host_fails_check_config_and_run_in_one_line(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    path.write_text(path.read_text().replace('"127.0.0.1"', '"127.0.0.1:44391"'))
    check = ecrd("check-config", "-c", str(path))
    assert check.returncode == 2 and "terminal[0].host must be" in check.stderr
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "terminal[0].host must be")


def test_a_socket_path_that_is_a_file_is_refused_and_never_removed(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    (tmp_path / "run").mkdir(mode=0o750)
    victim = tmp_path / "run" / "ecrd.sock"
    victim.write_text("precious")
    check = ecrd("check-config", "-c", str(path))
    assert check.returncode == 2 and "is not a socket" in check.stderr
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "is not a socket")
    assert victim.read_text() == "precious"


def test_a_socket_inside_state_dir_is_refused_and_the_journal_kept(tmp_path: Path) -> None:
    path = config_file(tmp_path, socket=str(tmp_path / "state" / "journal.sqlite3"))
    (tmp_path / "state").mkdir(mode=0o700)
    journal = tmp_path / "state" / "journal.sqlite3"
    journal.write_bytes(b"not really a journal, but never to be removed")
    assert ecrd("check-config", "-c", str(path)).returncode == 2
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "outside state_dir")
    assert journal.exists()


def test_a_corrupt_pairings_file_at_start_is_one_line(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "pairings.toml").write_text("[terminals\nbroken = ")
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "pairings.toml")


def test_a_corrupt_journal_at_start_is_one_line(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "journal.sqlite3").write_bytes(b"garbage " * 512)
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "journal")


def test_a_loose_state_dir_is_refused_at_start(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    (tmp_path / "state").mkdir()
    os.chmod(tmp_path / "state", 0o755)  # noqa: S103 - the loose directory under test
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "chmod 0700")


def test_the_unit_does_not_restart_on_exit_status_2() -> None:
    unit = (Path(__file__).resolve().parents[1] / "systemd" / "ecrd.service").read_text()
    assert "RestartPreventExitStatus=2" in unit.splitlines()
