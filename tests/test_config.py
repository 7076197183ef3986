"""Config: defaults, every ASSUMED knob, and errors that name file, key and expectation."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from ecrd import config_decl as decl
from ecrd.config import TERMINALS, ConfigError, LanTerminal, SerialTerminal, load, parse
from ecrd.config_decl import default_of, explain, key, keys, structure
from ecrd.docgen import config_doc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "etc" / "ecrd.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ecrd.toml"
    p.write_text(text)
    return p


def test_example_config_is_valid_and_covers_every_link() -> None:
    cfg = load(ROOT / "etc" / "ecrd.toml")
    assert {t.transport for t in cfg.terminals} == {"lan", "serial", "cloud"}


def example_records() -> Iterator[tuple[config_doc.Line, type]]:
    """Each key line of the example with the record its table is read into (a terminal's:
    the one its ``transport`` selects)."""
    lines = config_doc.lines(EXAMPLE.read_text())
    transports = {(ln.table, ln.index): tomllib.loads(f"v = {ln.value}")["v"]
                  for ln in lines if ln.name == "transport"}  # fmt: skip
    for ln in lines:
        records = config_doc.TABLES[ln.table]
        tag = transports.get((ln.table, ln.index))
        yield ln, TERMINALS[tag] if tag else records[0]


def test_the_example_shows_every_declared_key_and_no_other() -> None:
    """Every key of the declarations is in etc/ecrd.toml (set, or commented out), in a
    table whose record has it, and every key line there is a declared key."""
    shown: set[tuple[type, str]] = set()
    for ln, record in example_records():
        assert ln.name in key_names(record), f"etc/ecrd.toml: [{ln.table}] has no key {ln.name}"
        shown.add((record, ln.name))
    for table, records in config_doc.TABLES.items():
        for record in records:
            for name in key_names(record):
                owners = [r for r in records if name in key_names(r)]
                assert any((r, name) in shown for r in owners), f"[{table}].{name} not shown"


def key_names(record: type) -> set[str]:
    return {name for name, _, d in keys(record) if not d.kind.records}


def plain(value: object) -> object:
    """A TOML value as the records keep it: lists as tuples, tables as sorted pairs."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value


def test_the_example_shows_each_default_or_the_declared_example() -> None:
    """A key the example sets (or shows commented out, where it has a default) shows its
    default, or the value its declaration names as the example's."""
    for ln, record in example_records():
        [(field, d)] = [(f, d) for n, f, d in keys(record) if n == ln.name]
        default = default_of(field)
        if default is attrs.NOTHING or (ln.commented and default is None):
            continue  # required, or unset: any value is an example
        shown = plain(tomllib.loads(f"v = {ln.value}")["v"])
        wanted = [plain(d.example)] if d.example is not None else []
        if default is not None:
            wanted.append(default)
        assert shown in wanted, f"etc/ecrd.toml: [{ln.table}].{ln.name} = {ln.value}"


def test_defaults_follow_the_design() -> None:
    cfg = parse(
        {
            "terminal": [
                {"id": "t1", "transport": "lan", "host": "127.0.0.1"},
                {"id": "t2", "transport": "serial", "device": "/dev/ttyS0"},
            ]
        }
    )
    t, s = cfg.terminals
    assert isinstance(t, LanTerminal) and isinstance(s, SerialTerminal)
    assert (t.port, t.path, t.tls, t.crypto, t.timeout_s) == (
        8443,
        "/v2/wonder/payment/ecr",
        False,
        "v2",
        180.0,
    )
    assert (s.frame_cmd, s.frame_byteorder, s.frame_crc) == (6, "big", "crc32")
    assert (s.baudrate, s.bytesize, s.parity, s.stopbits, s.rtscts) == (115200, 8, "N", 1, False)
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
            '[[terminal]]\nid = "a"\ntransport = "serial"\ndevice = "d"\nframe_crc = "crc16"',
            "terminal[0].frame_crc must be one of",
        ),
        (
            '[[terminal]]\nid = "a"\ntransport = "lan"\nhost = "h"\nframe_crc = "crc32"',
            'unknown key terminal[0].frame_crc (a key of transport = "serial" only',
        ),
        ('[[terminal]]\nid = "a"\ntransport = "cloud"\nfallback = "cloud"', "fallback must be"),
        ("[daemon]\nmax_clients = true", "[daemon].max_clients must be an integer between"),
        ("daemon = 3", "[daemon] must be a table"),
        ("terminal = 3", "terminal must be [[terminal]] tables"),
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


# -- a section with a list of sub-tables, declared as [http] will be ---------------------


@attrs.frozen(kw_only=True)
class Client:
    name: str = key(decl.text(), doc="the client's name")
    roles: tuple[str, ...] = key(decl.strings("roles", choices=("read", "sell")), (), doc="roles")


@attrs.frozen(kw_only=True)
class Http:
    listen: str = key(decl.text(), "127.0.0.1:8765", doc="the address to listen on")
    clients: tuple[Client, ...] = key(
        decl.tables(Client, "[[http.client]]"), (), name="client", doc="the clients"
    )


@attrs.frozen(kw_only=True)
class File:
    http: Http = key(decl.table(Http), factory=Http, doc="the HTTP API")


def nested_error(data: dict[str, object]) -> str:
    with pytest.raises(Exception) as info:
        structure(data, File)
    return explain(info.value, File)


def test_a_list_of_sub_tables_is_declared_like_any_key_and_its_errors_name_the_path() -> None:
    clients = [{"name": "till"}, {"name": "office", "roles": ["read", "sell"]}]
    got = structure({"http": {"client": clients}}, File)
    office = Client(name="office", roles=("read", "sell"))
    assert got == File(http=Http(clients=(Client(name="till"), office)))
    assert structure({}, File).http.listen == "127.0.0.1:8765"
    bad = [{"name": "till"}, {"name": "office", "roles": ["root"]}]
    assert nested_error({"http": {"client": bad}}) == (
        "[http].client[1].roles must be a list of 'read', 'sell', each once (got ['root'])"
    )
    assert nested_error({"http": {"client": [{"nmae": "x"}]}}).startswith(
        "unknown key [http].client[0].nmae (check the spelling"
    )
    assert nested_error({"http": {"client": [{}]}}) == (
        "[http].client[0].name must be set (the client's name)"
    )
    assert nested_error({"http": {"client": {"name": "x"}}}).startswith(
        "[http].client must be [[http.client]] tables"
    )
    assert config_doc._tables(File) == {"http": (Http,), "http.client": (Client,)}
