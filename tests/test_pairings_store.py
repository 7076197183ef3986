"""The pairing file: round trip, permissions, atomic writes, and refusing a broken file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ecrd.store.pairings import Pairing, PairingFileError, PairingStore, PairingWriteError

PAIRED_AT = "2025-11-12T10:11:04+00:00"


def pairing(terminal_id: str = "counter-1", **changes: object) -> Pairing:
    fields: dict[str, object] = {
        "terminal_id": terminal_id,
        "device_sn": "NEXGO-N96-1170270945",
        "pin": "654321",
        "scheme": "v2",
        "host": "192.168.1.50",
        "port": 8443,
        "paired_at": PAIRED_AT,
    }
    fields.update(changes)
    return Pairing(**fields)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "pairings.toml"


def test_a_pairing_round_trips(path: Path) -> None:
    store = PairingStore(path)
    lan = pairing()
    serial = pairing("counter-2", pin="012345", scheme="legacy", host=None, port=None)

    store.put(lan)
    store.put(serial)

    assert store.load() == {"counter-1": lan, "counter-2": serial}
    assert store.get("counter-2") == serial
    assert store.get("counter-3") is None


def test_a_new_store_object_reads_what_an_old_one_wrote(path: Path) -> None:
    PairingStore(path).put(pairing())

    assert PairingStore(path).get("counter-1") == pairing()


def test_a_missing_file_means_nothing_is_paired(path: Path) -> None:
    assert PairingStore(path).load() == {}
    assert not path.parent.exists()


def test_the_file_is_private_and_its_directory_too(path: Path) -> None:
    PairingStore(path).put(pairing())

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_writes_leave_no_temp_files(path: Path) -> None:
    store = PairingStore(path)
    for n in range(3):
        store.put(pairing(f"counter-{n}"))
    store.remove("counter-1")

    assert os.listdir(path.parent) == ["pairings.toml"]


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PairingStore(path)
    store.put(pairing())
    before = path.read_bytes()

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(PairingWriteError, match="No space left"):
        store.put(pairing("counter-2"))

    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["pairings.toml"]


def test_unpair_removes_the_pairing(path: Path) -> None:
    store = PairingStore(path)
    store.put(pairing())
    store.put(pairing("counter-2"))

    assert store.remove("counter-1") is True
    assert store.remove("counter-1") is False
    assert list(PairingStore(path).load()) == ["counter-2"]


def test_a_corrupt_file_names_file_and_line_and_is_never_overwritten(path: Path) -> None:
    path.parent.mkdir(mode=0o700)
    broken = b'version = 1\n\n[terminals.counter-1]\ndevice_sn = "NEXGO"\npin = 654321"\n'
    path.write_bytes(broken)
    store = PairingStore(path)

    with pytest.raises(PairingFileError) as caught:
        store.load()
    assert str(path) in str(caught.value)
    assert caught.value.line == 5
    assert "line 5" in str(caught.value)

    with pytest.raises(PairingFileError):
        store.put(pairing("counter-2"))
    with pytest.raises(PairingFileError):
        store.remove("counter-1")
    assert path.read_bytes() == broken


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('device_sn = "SN"\npin = 654321\nscheme = "v2"\n', "pin must be a string"),
        (
            'device_sn = "SN"\npin = "1"\nscheme = "v3"\npaired_at = "2025-11-12T10:11:04Z"\n',
            "scheme",
        ),
        ('device_sn = "SN"\nscheme = "v2"\npaired_at = "2025-11-12T10:11:04Z"\n', "lacks pin"),
        ('device_sn = "SN"\npni = "1"\n', "unknown key 'pni'"),
        ('device_sn = "SN"\npin = "1"\nscheme = "v2"\npaired_at = "yesterday"\n', "paired_at"),
    ],
)
def test_a_bad_key_is_named(path: Path, table: str, problem: str) -> None:
    path.parent.mkdir()
    path.write_text(f"version = 1\n[terminals.counter-1]\n{table}")

    with pytest.raises(PairingFileError, match=problem) as caught:
        PairingStore(path).load()

    assert "[terminals.counter-1]" in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_file_from_a_newer_version_is_refused(path: Path) -> None:
    path.parent.mkdir()
    path.write_text("version = 2\n")

    with pytest.raises(PairingFileError, match="newer"):
        PairingStore(path).load()


def test_the_pin_never_shows(path: Path) -> None:
    p = pairing(pin="987654")
    assert "987654" not in repr(p)
    with pytest.raises(ValueError) as caught:
        pairing(pin="")
    assert "pin" in str(caught.value)

    path.parent.mkdir()
    path.write_text('[terminals.c]\ndevice_sn = "SN"\npin = 987654\n')
    with pytest.raises(PairingFileError) as bad:
        PairingStore(path).load()
    assert "987654" not in str(bad.value)


def test_paired_at_defaults_to_now_with_an_offset() -> None:
    p = Pairing("counter-1", "SN", "654321", "v2")
    assert p.paired_at.endswith("+00:00")


def test_pin1_info_pin_and_business_are_kept_and_pin1_never_shows(path: Path) -> None:
    store = PairingStore(path)
    p = pairing(pin1="K7Q2ZD", info_pin="pin2", business_id="411d6207-aaaa")
    assert "K7Q2ZD" not in repr(p)
    assert p.secrets == (p.pin, "K7Q2ZD")
    store.put(p)
    assert PairingStore(path).get("counter-1") == p
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="info_pin"):
        pairing(info_pin="pin3")


def test_a_pairing_without_the_new_keys_loads_as_before(path: Path) -> None:
    path.parent.mkdir()
    path.write_text(
        'version = 1\n[terminals.c]\ndevice_sn = "SN"\npin = "654321"\nscheme = "v2"\n'
        'paired_at = "2025-11-12T10:11:04+00:00"\n'
    )
    p = PairingStore(path).get("c")
    assert p is not None and p.pin1 is None and p.info_pin is None and p.business_id is None
