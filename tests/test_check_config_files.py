"""``ecrd check-config`` looks at the files and devices the config names (ecrd/config_checks.py):
a CA bundle that TLS cannot use and a serial ``device`` that is not a serial port are errors
naming the key; a serial device that is not plugged in is a warning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import certifi
import pytest
import tomli_w

from ecrd import cli

PEM = certifi.where()  # a real CA bundle


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "ecrd.toml"
    run = tmp_path / "run"
    path.write_text(
        f'[daemon]\nsocket = "{run}/ecrd.sock"\nstate_dir = "{tmp_path}/state"\n' + text
    )
    status = cli.main(["check-config", "-c", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def lan(**keys: object) -> str:
    more = tomli_w.dumps(keys)
    return f'[[terminal]]\nid = "t1"\ntransport = "lan"\nhost = "127.0.0.1"\n{more}'


def serial(device: str) -> str:
    return f'[[terminal]]\nid = "s1"\ntransport = "serial"\ndevice = "{device}"\n'


def test_a_missing_ca_file_with_tls_is_an_error_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = check(tmp_path, lan(tls=True, ca_file=f"{tmp_path}/root.pem"), capsys)
    assert status == 2 and out == ""
    assert f"terminal[0].ca_file: {tmp_path}/root.pem does not exist" in err


def test_a_ca_file_that_is_not_pem_or_not_a_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "root.pem").write_text("not a certificate\n")
    status, _, err = check(tmp_path, lan(tls=True, ca_file=f"{tmp_path}/root.pem"), capsys)
    assert status == 2 and "is not a PEM CA certificate bundle" in err
    status, _, err = check(tmp_path, lan(tls=True, ca_file=str(tmp_path)), capsys)
    assert status == 2 and f"terminal[0].ca_file: {tmp_path} is not a file" in err


def test_a_good_ca_file_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = check(tmp_path, lan(tls=True, ca_file=PEM), capsys)
    assert (status, err) == (0, "")
    assert "warning" not in out


def test_the_cloud_ca_file_is_checked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = check(tmp_path, f'[cloud]\nca_file = "{tmp_path}/gw.pem"\n', capsys)
    assert status == 2 and f"[cloud].ca_file: {tmp_path}/gw.pem does not exist" in err
    status, _, err = check(tmp_path, f'[cloud]\nca_file = "{PEM}"\n', capsys)
    assert (status, err) == (0, "")


def test_tls_without_ca_file_and_an_unused_ca_file_are_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = check(tmp_path, lan(tls=True), capsys)
    assert status == 0 and "warning    terminal[0].tls: tls = true without ca_file" in out
    status, out, _ = check(tmp_path, lan(ca_file=f"{tmp_path}/absent.pem"), capsys)
    assert status == 0 and "warning    terminal[0].ca_file: not used with tls = false" in out


def test_a_serial_device_that_is_not_plugged_in_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = check(tmp_path, serial(f"{tmp_path}/ttyUSB9"), capsys)
    assert (status, err) == (0, "")
    assert f"warning    terminal[0].device: {tmp_path}/ttyUSB9 is not there now" in out


def test_a_serial_device_that_is_not_a_character_device_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ttyUSB0").write_text("")
    status, out, err = check(tmp_path, serial(f"{tmp_path}/ttyUSB0"), capsys)
    assert status == 2 and out == ""
    assert f"terminal[0].device: {tmp_path}/ttyUSB0 is not a character device" in err


def test_a_character_device_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "by-id").mkdir()
    (tmp_path / "by-id" / "usb-adapter").symlink_to("/dev/null")  # as udev's stable names
    status, out, err = check(tmp_path, serial(f"{tmp_path}/by-id/usb-adapter"), capsys)
    assert (status, err) == (0, "")
    assert "warning" not in out


def test_a_metrics_file_in_a_missing_directory_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f'metrics_file = "{tmp_path}/textfile/ecrd.prom"\n'
    status, out, _ = check(tmp_path, text, capsys)
    assert status == 0 and "warning    [daemon].metrics_file: the directory of" in out


def test_every_error_is_said_with_the_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tty").write_text("")
    text = f'[cloud]\nca_file = "{tmp_path}/gw.pem"\n' + serial(f"{tmp_path}/tty")
    text += f'[[terminal]]\nid = "s2"\ntransport = "serial"\ndevice = "{tmp_path}/gone"\n'
    status, _, err = check(tmp_path, text, capsys)
    lines = err.splitlines()
    assert status == 2 and len(lines) == 3, err
    assert "[cloud].ca_file" in lines[0] and "terminal[0].device" in lines[1]
    assert lines[2].startswith("ecrd: warning: terminal[1].device:")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "http.crt", tmp_path / "http.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=throwaway",
         "-days", "2"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def store_mode(cert: Path, key: Path, ca: Path) -> str:
    return (
        f'[http]\nlisten = "127.0.0.1:8765"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'client_ca = "{ca}"\n'
    )


def test_store_mode_files_must_load_as_tls_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = _self_signed(tmp_path)
    assert check(tmp_path, store_mode(cert, key, cert), capsys)[0] == 0
    status, _, err = check(tmp_path, store_mode(cert, key, tmp_path / "ca.pem"), capsys)
    assert status == 2 and f"[http].client_ca: {tmp_path}/ca.pem does not exist" in err
    status, _, err = check(tmp_path, store_mode(cert, tmp_path / "gone.key", cert), capsys)
    assert status == 2 and f"[http].tls_key: {tmp_path}/gone.key does not exist" in err
    other, _ = _self_signed(
        tmp_path / "other" if (tmp_path / "other").mkdir() is None else tmp_path
    )
    status, _, err = check(tmp_path, store_mode(other, key, cert), capsys)
    assert status == 2 and "[http].tls_cert:" in err and "not a PEM certificate and its" in err
