"""The admin's TOML file (design.md §5) into frozen, validated records.

Each key is declared once, here: a field of a record with its kind, doc, default and
reload rule (``config_decl.key``); the validator (cattrs, through the kinds), the reload
plan, ``check-config``, ``ecrd.toml(5)`` and the test of ``etc/ecrd.toml`` all read these
declarations. Every [ASSUMED] item of protocol.md is a key here with its default, so an
integrator with a real terminal corrects it without a code change. An error names the
file, the key (``terminal[2].port``) and what was expected; an unknown key is an error too,
because a typo in a payment system's config must not silently fall back to a default.

A terminal is one of three records, told apart by ``transport``: ``LanTerminal``,
``SerialTerminal`` and ``CloudTerminal``, each a ``BaseTerminal`` (the keys every link
shares) with the keys of its link.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from socket import gethostname
from typing import Any, Final, Literal

import attrs

from ecrd import config_rules, errors
from ecrd.config_decl import (
    Invalid,
    explain,
    flag,
    integer,
    integers,
    key,
    number,
    register_union,
    seconds_by_name,
    strings,
    structure,
    table,
    tables,
    tagged,
    text,
    unique,
)
from ecrd.http_config import HttpConfig
from ecrd.protocol.crypto import Scheme
from ecrd.protocol.envelope import PIN_FIELDS
from ecrd.protocol.frames import CRC_VARIANTS, ByteOrder, FrameFormat

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
# Amount changes a terminal may make and still prove a payment (money/evidence.py).
AMOUNT_CHANGES: Final = ("tip", "partial")
TRANSPORTS: Final = ("lan", "serial", "cloud")
# [ASSUMED] How LAN and RS232 pairing ask a terminal its serial number under pinCode1:
# DeviceInfo with no body, or the seed's terminal-info request, ConnectionInfo {businessID}.
IDENTIFY_ACTIONS: Final = ("DeviceInfo", "ConnectionInfo")
LAN_PORT: Final = 8443


ConfigError = errors.ConfigError  # raised here, defined once with the other errors

_ACTION = text(rule=config_rules.action_problem, expected="a read-only action name")
_URL = text(rule=config_rules.url_problem, expected="an http:// or https:// URL")
_ACCESS = strings('user names, "@group" or "*"', rule=config_rules.access_problem)


@attrs.frozen(kw_only=True)
class DaemonConfig:
    socket: str = key(
        text(), "/run/ecrd/ecrd.sock", reload="restart", doc="the Unix socket POS apps connect to"
    )
    socket_group: str | None = key(
        text(rule=config_rules.group_problem, expected="an existing group"),
        None,
        reload="restart",
        doc="the group that may use the socket",
        example="ecrd-clients",
    )
    state_dir: str = key(
        text(), "/var/lib/ecrd", reload="restart", doc="where the pairings and the journal live"
    )
    client_device_sn: str = key(
        text(),
        factory=gethostname,
        reload="restart",
        doc="this box's clientDeviceSN",
        example="POS-0001",
    )
    log_level: str = key(text(choices=LOG_LEVELS), "info", doc="the log's threshold")
    max_line_bytes: int = key(
        integer(1024, 16 * 2**20), 65536, doc="the longest request line a client may send"
    )
    # design.md §3 rule 4: an unknown outcome blocks new money commands on that terminal.
    block_on_unknown: bool = key(flag(), True, doc="an unknown outcome blocks its terminal")
    # SIGTERM: how long in-flight payments may take to finish before they are journaled unknown.
    shutdown_grace_s: float = key(
        number(high=3600), 30.0, doc="seconds payments in progress get at a stop"
    )
    max_clients: int = key(integer(1, 10000), 64, doc="simultaneous socket clients, in all")
    # Fair sharing of the socket (docs/api.md, "Limits").
    max_clients_per_user: int = key(
        integer(1, 10000), 16, doc="simultaneous socket clients of one uid"
    )
    idle_timeout_s: float = key(
        number(1, 86400), 300.0, doc="seconds an idle connection may stay open"
    )
    extra_currencies: tuple[str, ...] = key(
        strings("currency codes", each=config_rules.currency_problem),
        (),
        doc="currency codes accepted beyond ISO 4217",
    )
    metrics_file: str | None = key(
        text(),
        None,
        doc="the Prometheus text file; unset: none",
        example="/var/lib/node_exporter/textfile_collector/ecrd.prom",
    )

    def check(self) -> None:
        problem = config_rules.socket_problem(self.socket, self.state_dir)
        if problem is not None:
            raise Invalid(problem, self.socket, within=("socket",))


@attrs.frozen(kw_only=True)
class JournalConfig:
    keep_days: int = key(integer(0, 36500), 400, doc="days settled records are kept (0: all)")


@attrs.frozen(kw_only=True)
class CloudConfig:
    environment: str = key(
        text(choices=("production", "staging")), "production", doc="Wonder's gateway"
    )
    base_url: str | None = key(
        _URL,
        None,
        doc="the gateway's address, instead of environment's",
    )
    business_id: str | None = key(
        text(rule=config_rules.uuid_problem, expected="a UUID"),
        None,
        doc="the business ID from the Wonder App",
        example="411d6207-1470-4d35-a557-54852463844d",
    )
    command_url: str | None = key(_URL, None, doc="the cloud send-command URL")
    info_url: str | None = key(_URL, None, doc="the terminal-info URL")
    ca_file: str | None = key(text(), None, doc="a CA bundle for the gateway")
    timeout_s: float = key(number(1, 600), 30.0, doc="seconds for a non-payment cloud call")
    refusal_statuses: tuple[int, ...] = key(
        integers("a list of HTTP 4xx statuses, e.g. [400, 403, 404]", lambda s: 400 <= s <= 499),
        (),
        doc="HTTP statuses that prove the gateway relayed nothing",
    )


@attrs.frozen(kw_only=True)
class AccessConfig:
    """[access]: who holds each role (docs/api.md, "Roles"): user names, ``@group``, or
    ``*`` (anyone who can open the socket). root and ecrd's own user hold every role."""

    read: tuple[str, ...] = key(_ACCESS, ("*",), doc="who may read")
    sell: tuple[str, ...] = key(_ACCESS, ("*",), doc="who may sell", example=["@pos"])
    refund: tuple[str, ...] = key(
        _ACCESS, ("*",), doc="who may refund and void", example=["@supervisors"]
    )
    admin: tuple[str, ...] = key(_ACCESS, (), doc="who may administer", example=["@ecrd-admin"])


_ID = "a name of letters, digits, '.', '_' or '-' (max 64)"


def _transport(tag: str | None = None) -> Any:
    """``transport``: each terminal record declares it with its own value as the default
    (the tag that selects it); the base, for the keys it shares, without one."""
    kind = text(choices=TRANSPORTS)
    return key(kind, attrs.NOTHING if tag is None else tag, doc="the link: lan, serial or cloud")


@attrs.frozen(kw_only=True)
class BaseTerminal:
    """The keys of every ``[[terminal]]`` table, whatever its link."""

    id: str = key(
        text(rule=config_rules.id_problem, expected=_ID), doc="the name POS apps and ecrctl use"
    )
    transport: str = _transport()  # each record's own (LanTerminal...) says its value
    crypto: Scheme = key(text(choices=("v2", "legacy")), "v2", doc="the encryption scheme")
    device_sn: str | None = key(text(), None, doc="the terminal's serial number")
    timeout_s: float = key(number(1, 3600), 180.0, doc="seconds to wait for a payment")
    # [ASSUMED] per-action overrides of timeout_s, e.g. {Refund = 60} (protocol.md §1).
    action_timeouts: tuple[tuple[str, float], ...] = key(
        seconds_by_name(1, 3600, "{Sale = 180, Refund = 60}"),
        (),
        doc="per-action overrides of timeout_s",
        example={"Sale": 180, "PreAuth": 180, "Refund": 120, "Void": 60},
    )
    status_action: str | None = key(_ACTION, None, doc="the action that asks a status")
    # What terminal.send forwards besides DeviceInfo and status_action (read-only actions).
    send_actions: tuple[str, ...] = key(
        strings("action names", each=config_rules.action_problem),
        (),
        doc="read-only actions terminal.send forwards",
        example=["Settlement"],
    )
    # errorCodes of a Failed reply that prove nothing about the payment, on top of
    # money.evidence.INCONCLUSIVE_CODES (DUPLICATE_REFERENCE).
    inconclusive_codes: tuple[str, ...] = key(
        strings("errorCode strings"), (), doc="errorCodes that prove nothing"
    )
    # [ASSUMED] errorCodes with which a Failed *status answer* proves "not charged"; empty:
    # such an answer proves nothing (money/evidence.py). An allowlist, case-insensitive.
    not_charged_codes: tuple[str, ...] = key(
        strings("errorCode strings"), (), doc='errorCodes that prove "not charged"'
    )
    # Amounts the terminal may change and still prove the payment (money/evidence.py).
    amount_changes: tuple[str, ...] = key(
        strings("names", choices=AMOUNT_CHANGES),
        (),
        doc="amount changes that still prove a payment",
    )
    pair_confirm_action: str = key(_ACTION, "DeviceInfo", doc="how pairing is confirmed")
    pin_fields: tuple[str, ...] = key(
        strings("field names", required=True),
        PIN_FIELDS,
        doc="where the Pair reply carries the new PIN",
    )
    # [ASSUMED] LAN and serial pairing's serial-number look-up (IDENTIFY_ACTIONS).
    identify_action: str = key(
        text(choices=IDENTIFY_ACTIONS), "DeviceInfo", doc="pairing's serial-number look-up"
    )
    # [ASSUMED] The Pair body's one field, a fresh UUID (the vendor shows no Pair example).
    pair_uuid_field: str = key(
        text(rule=config_rules.field_problem, expected="a JSON field name"),
        "pairUuid",
        doc="the Pair request's one field",
    )
    fallback: str | None = key(
        text(choices=("cloud",)), None, doc="the link for requests that provably never left"
    )
    probe_interval_s: float = key(
        number(0, 86400), 30.0, doc="seconds between liveness checks (0: none)"
    )
    info_timeout_s: float = key(
        number(0.1, 600), 15.0, doc="seconds to wait for a non-payment reply"
    )
    # terminal.info's answer is kept this long and shared (terminal/info.py); 0: not kept.
    info_cache_s: float = key(number(0, 3600), 5.0, doc="seconds terminal.info is kept")
    trace: bool = key(flag(), False, doc="a wire trace for support (terminal/trace.py)")

    def timeout_for(self, action: str) -> float:
        return dict(self.action_timeouts).get(action, self.timeout_s)

    @property
    def links(self) -> tuple[str, ...]:
        return (self.transport,) + ((self.fallback,) if self.fallback else ())

    def lan_address(self) -> tuple[str | None, int]:
        """The address the config gives a LAN link: none but LAN's port, off LAN."""
        return None, LAN_PORT


@attrs.frozen(kw_only=True)
class LanTerminal(BaseTerminal):
    transport: Literal["lan"] = _transport("lan")
    host: str = key(
        text(rule=config_rules.host_problem, expected="an IP address or host name"),
        doc="the terminal's IP address",
    )
    port: int = key(integer(1, 65535), LAN_PORT, doc="the terminal's TCP port")
    path: str = key(
        text(rule=config_rules.path_problem, expected='a URL path starting with "/"'),
        "/v2/wonder/payment/ecr",
        doc="the URL path on the terminal",
    )
    tls: bool = key(flag(), False, doc="https (true) or http (false)")
    ca_file: str | None = key(text(), None, doc="the terminal's CA, with tls = true")
    connect_timeout_s: float = key(number(0.1, 120), 5.0, doc="seconds to open the connection")
    # Reuse one HTTP connection between exchanges [ASSUMED: a terminal may or may not keep
    # it open]. Off by default: a fresh connection per exchange makes "refused" a clean
    # "never sent"; on, a terminal closing the kept connection as a sale arrives leaves that
    # sale unknown (transport/http11.py). Saves a TCP (and TLS) handshake per exchange.
    keep_alive: bool = key(flag(), False, doc="reuse one HTTP connection")

    def lan_address(self) -> tuple[str | None, int]:
        return self.host, self.port


@attrs.frozen(kw_only=True)
class SerialTerminal(BaseTerminal):
    transport: Literal["serial"] = _transport("serial")
    device: str = key(text(), doc="the serial port, e.g. /dev/ttyUSB0")
    baudrate: int = key(integer(50, 4_000_000), 115200, doc="the line's speed")
    bytesize: int = key(integer(5, 8), 8, doc="data bits")
    parity: str = key(text(choices=("N", "E", "O", "M", "S")), "N", doc="parity")
    stopbits: float = key(number(1, 2, choices=(1, 1.5, 2)), 1.0, doc="stop bits")
    rtscts: bool = key(flag(), False, doc="hardware flow control (RTS/CTS)")
    frame_cmd: int = key(integer(0, 0xFFFF), 0x0006, doc="the frame's command code")
    frame_byteorder: ByteOrder = key(
        text(choices=("big", "little")), "big", doc="the byte order of the frame's length and CRC"
    )
    frame_crc: str = key(
        text(choices=tuple(CRC_VARIANTS)), "crc32", doc="the frame's CRC-32 variant"
    )
    probe_turnaround_s: float = key(
        number(0.05, 30),
        0.5,
        doc="the longest the terminal takes to start a reply (`ecrctl probe` waits this "
        "long after each speed's requests, plus the reply's time on the line)",
    )

    @property
    def frame_format(self) -> FrameFormat:
        return FrameFormat(cmd=self.frame_cmd, byteorder=self.frame_byteorder, crc=self.frame_crc)


@attrs.frozen(kw_only=True)
class CloudTerminal(BaseTerminal):
    transport: Literal["cloud"] = _transport("cloud")

    def check(self) -> None:
        if self.fallback is not None:
            raise Invalid("a different link than transport", self.fallback, ("fallback",))


TerminalConfig = LanTerminal | SerialTerminal | CloudTerminal
TERMINALS: Final[dict[str, type[TerminalConfig]]] = {
    "lan": LanTerminal,
    "serial": SerialTerminal,
    "cloud": CloudTerminal,
}
register_union(TerminalConfig, tagged("transport", TERMINALS))


@attrs.frozen(kw_only=True)
class Config:
    """The whole file: its tables. ``path`` is where it was read from (not a key)."""

    path: str = "<config>"
    daemon: DaemonConfig = key(table(DaemonConfig), factory=DaemonConfig, doc="the daemon itself")
    journal: JournalConfig = key(
        table(JournalConfig), factory=JournalConfig, doc="the transaction journal"
    )
    access: AccessConfig = key(
        table(AccessConfig), factory=AccessConfig, doc="who may do what on the socket"
    )
    cloud: CloudConfig = key(table(CloudConfig), factory=CloudConfig, doc="Wonder's cloud relay")
    terminals: tuple[TerminalConfig, ...] = key(
        tables(TerminalConfig, "[[terminal]]"), (), name="terminal", doc="the payment terminals"
    )
    http: HttpConfig | None = key(
        table(HttpConfig), None, doc="the local HTTP and WebSocket endpoint; unset: off"
    )

    def check(self) -> None:
        unique((t.id for t in self.terminals), "terminal", "id", "terminal")


def parse(data: dict[str, Any], path: str = "<config>") -> Config:
    try:
        cfg: Config = structure(data, Config)
    except Exception as exc:
        raise ConfigError(f"{path}: {explain(exc, Config)}") from None
    return attrs.evolve(cfg, path=path)


def load(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: the config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: TOML syntax error: {exc}") from None
    return parse(data, str(p))
