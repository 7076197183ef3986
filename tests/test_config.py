"""Config: defaults, every ASSUMED knob, and errors that name file, key and expectation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ecrd.config import ConfigError, load, parse

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ecrd.toml"
    p.write_text(text)
    return p


def test_example_config_is_valid_and_covers_every_link() -> None:
    cfg = load(ROOT / "etc" / "ecrd.toml")
    assert {t.transport for t in cfg.terminals} == {"lan", "serial", "cloud"}


def test_example_config_names_every_terminal_option() -> None:
    text = (ROOT / "etc" / "ecrd.toml").read_text()
    import attrs

    from ecrd.config import AccessConfig, CloudConfig, DaemonConfig, TerminalConfig

    for cls in (DaemonConfig, CloudConfig, TerminalConfig, AccessConfig):
        for field in attrs.fields(cls):
            assert f"{field.name} =" in text, f"etc/ecrd.toml does not document {field.name}"


def test_defaults_follow_the_design() -> None:
    cfg = parse({"terminal": [{"id": "t1", "transport": "lan", "host": "127.0.0.1"}]})
    t = cfg.terminals[0]
    assert (t.port, t.path, t.tls, t.crypto, t.timeout_s) == (
        8443,
        "/v2/wonder/payment/ecr",
        False,
        "v2",
        180.0,
    )
    assert (t.frame_cmd, t.frame_byteorder, t.frame_crc) == (6, "big", "crc32")
    assert (t.baudrate, t.bytesize, t.parity, t.stopbits, t.rtscts) == (115200, 8, "N", 1, False)
    assert t.status_action is None and t.pair_confirm_action == "DeviceInfo"
    assert t.pin_fields == ("pinCode2", "pinCode", "newPinCode")
    assert cfg.daemon.socket == "/run/ecrd/ecrd.sock"
    assert cfg.daemon.state_dir == "/var/lib/ecrd"
    assert cfg.daemon.block_on_unknown is True


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[daemon]\nlog_level = "loud"', "[daemon].log_level must be one of"),
        (
            '[daemon]\nsocket_group = "no-such-group-xyz"',
            "[daemon].socket_group must be an existing group",
        ),
        ('[daemon]\nsokcet = "/x"', "unknown key [daemon].sokcet"),
        ('[[terminal]]\nid = "a"\ntransport = "lan"', "terminal[0].host must be set"),
        ('[[terminal]]\nid = "a"\ntransport = "serial"', "terminal[0].device must be set"),
        ('[[terminal]]\nid = "a"\ntransport = "usb"', "terminal[0].transport must be one of"),
        (
            '[[terminal]]\nid = "a"\ntransport = "lan"\nhost = "h"\nport = 70000',
            "terminal[0].port must be",
        ),
        (
            '[[terminal]]\nid = "a"\ntransport = "lan"\nhost = "h"\nport = "80"',
            "terminal[0].port must be an integer",
        ),
        (
            '[[terminal]]\nid = "a"\ntransport = "lan"\nhost = "h"\ntls = 1',
            "terminal[0].tls must be true or false",
        ),
        ('[cloud]\nbusiness_id = "nope"', "[cloud].business_id must be a UUID"),
        (
            '[[terminal]]\nid = "a"\ntransport = "lan"\nhost = "h"\nframe_crc = "crc16"',
            "frame_crc must be one of",
        ),
        (
            '[[terminal]]\nid = "a"\ntransport = "lan"\nhost = "h"\n'
            '[[terminal]]\nid = "a"\ntransport = "lan"\nhost = "h"',
            "'a' is used twice",
        ),
        ("[daemon\n", "TOML syntax error"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, toml: str, needle: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load(tmp_path / "absent.toml")


def test_check_config_command_accepts_the_example_and_rejects_a_typo(tmp_path: Path) -> None:
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecrd.cli",
            "check-config",
            "--config",
            str(ROOT / "etc" / "ecrd.toml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "counter-1: lan 192.168.1.50:8443" in ok.stdout
    bad = write(tmp_path, '[daemon]\nlog_levl = "info"')
    res = subprocess.run(
        [sys.executable, "-m", "ecrd.cli", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2
    assert "unknown key [daemon].log_levl" in res.stderr


def test_per_action_timeouts_override_the_terminal_timeout() -> None:
    term = {"id": "t", "transport": "lan", "host": "h", "timeout_s": 100}
    cfg = parse({"terminal": [{**term, "action_timeouts": {"Void": 30}}]})
    t = cfg.terminals[0]
    assert t.timeout_for("Void") == 30 and t.timeout_for("Sale") == 100
    with pytest.raises(ConfigError, match="action_timeouts"):
        parse({"terminal": [{**term, "action_timeouts": {"Void": "soon"}}]})


def test_inconclusive_codes_extend_the_built_in_list_and_must_be_strings() -> None:
    base = {"id": "t1", "transport": "lan", "host": "127.0.0.1"}
    assert parse({"terminal": [base]}).terminals[0].inconclusive_codes == ()
    cfg = parse({"terminal": [{**base, "inconclusive_codes": ["HOST_TIMEOUT"]}]})
    assert cfg.terminals[0].inconclusive_codes == ("HOST_TIMEOUT",)
    with pytest.raises(ConfigError, match="inconclusive_codes"):
        parse({"terminal": [{**base, "inconclusive_codes": ["", 3]}]})
