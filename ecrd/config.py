"""The admin's TOML file (design.md §5) into frozen, validated records.

Every [ASSUMED] item of protocol.md is a key here with its default, so an integrator with a
real terminal corrects it without a code change. An error names the file, the key
(``terminal[2].port``) and what was expected; an unknown key is an error too, because a
typo in a payment system's config must not silently fall back to a default.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from socket import gethostname
from typing import Any, Final, TypeVar

import attrs

from ecrd import config_rules, errors
from ecrd.http_config import HttpConfig, parse_http
from ecrd.protocol.crypto import Scheme
from ecrd.protocol.envelope import PIN_FIELDS
from ecrd.protocol.frames import CRC_VARIANTS, FrameFormat
from ecrd.text import first_control

T = TypeVar("T")

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
# Amount changes a terminal may make and still prove a payment (money/evidence.py).
AMOUNT_CHANGES: Final = ("tip", "partial")
TRANSPORTS: Final = ("lan", "serial", "cloud")
# [ASSUMED] How LAN and RS232 pairing ask a terminal its serial number under pinCode1:
# DeviceInfo with no body, or the seed's terminal-info request, ConnectionInfo {businessID}.
IDENTIFY_ACTIONS: Final = ("DeviceInfo", "ConnectionInfo")
_FIELD_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


ConfigError = errors.ConfigError  # raised here, defined once with the other errors


@attrs.frozen
class DaemonConfig:
    socket: str = "/run/ecrd/ecrd.sock"
    socket_group: str | None = None
    state_dir: str = "/var/lib/ecrd"
    client_device_sn: str = attrs.field(factory=gethostname)
    log_level: str = "info"
    max_line_bytes: int = 65536
    # design.md §3 rule 4: an unknown outcome blocks new money commands on that terminal.
    block_on_unknown: bool = True
    # SIGTERM: how long in-flight payments may take to finish before they are journaled unknown.
    shutdown_grace_s: float = 30.0
    max_clients: int = 64
    # Fair sharing of the socket (docs/api.md, "Limits"): connections per uid, and how
    # long a connection with nothing in flight and no subscription may stay open.
    max_clients_per_user: int = 16
    idle_timeout_s: float = 300.0
    # Currency codes a terminal uses outside the ISO 4217 list (e.g. a test currency).
    extra_currencies: tuple[str, ...] = ()
    # Prometheus text file for node_exporter's textfile collector; None: no file.
    metrics_file: str | None = None


@attrs.frozen
class JournalConfig:
    # Settled records older than this are pruned once a day; unknown ones never. 0: keep all.
    keep_days: int = 400


@attrs.frozen
class CloudConfig:
    environment: str = "production"
    base_url: str | None = None
    business_id: str | None = None
    command_url: str | None = None
    info_url: str | None = None
    ca_file: str | None = None
    timeout_s: float = 30.0
    # [ASSUMED] HTTP statuses with which the gateway proves it did NOT relay a call (so a
    # payment is failed, not unknown). Empty: every refusal counts as maybe delivered.
    refusal_statuses: tuple[int, ...] = ()


@attrs.frozen
class TerminalConfig:
    id: str
    transport: str
    crypto: Scheme = "v2"
    device_sn: str | None = None
    timeout_s: float = 180.0
    # [ASSUMED] per-action overrides of timeout_s, e.g. {Refund = 60} (protocol.md §1).
    action_timeouts: tuple[tuple[str, float], ...] = ()
    status_action: str | None = None
    # What terminal.send forwards besides DeviceInfo and status_action (read-only actions).
    send_actions: tuple[str, ...] = ()
    # errorCodes of a Failed reply that prove nothing about the payment, on top of
    # money.evidence.INCONCLUSIVE_CODES (DUPLICATE_REFERENCE).
    inconclusive_codes: tuple[str, ...] = ()
    # [ASSUMED] errorCodes with which a Failed *status answer* proves "not charged"; empty:
    # such an answer proves nothing (money/evidence.py). An allowlist, case-insensitive.
    not_charged_codes: tuple[str, ...] = ()
    # Amounts the terminal may change and still prove the payment: "tip" (approved more
    # than asked, a sale), "partial" (approved less, a sale or preauth). Empty: any other
    # amount leaves the payment unknown.
    amount_changes: tuple[str, ...] = ()
    pair_confirm_action: str = "DeviceInfo"
    pin_fields: tuple[str, ...] = PIN_FIELDS
    # [ASSUMED] LAN and serial pairing's serial-number look-up (IDENTIFY_ACTIONS).
    identify_action: str = "DeviceInfo"
    # [ASSUMED] The Pair body's one field, a fresh UUID (the vendor shows no Pair example).
    pair_uuid_field: str = "pairUuid"
    fallback: str | None = None
    probe_interval_s: float = 30.0
    info_timeout_s: float = 15.0
    # terminal.info's answer is kept this long and shared (terminal/info.py); 0: not kept.
    info_cache_s: float = 5.0
    # LAN
    host: str | None = None
    port: int = 8443
    path: str = "/v2/wonder/payment/ecr"
    tls: bool = False
    ca_file: str | None = None
    connect_timeout_s: float = 5.0
    # Reuse one HTTP connection between exchanges [ASSUMED: a terminal may or may not keep
    # it open]. Off by default: a fresh connection per exchange makes "refused" a clean
    # "never sent"; on, a terminal closing the kept connection as a sale arrives leaves that
    # sale unknown (transport/http11.py). Saves a TCP (and TLS) handshake per exchange.
    keep_alive: bool = False
    # serial
    device: str | None = None
    baudrate: int = 115200
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    frame_cmd: int = 0x0006
    frame_byteorder: str = "big"
    frame_crc: str = "crc32"
    trace: bool = False  # the wire trace for support (terminal/trace.py)

    @property
    def frame_format(self) -> FrameFormat:
        return FrameFormat(cmd=self.frame_cmd, byteorder=self.frame_byteorder, crc=self.frame_crc)  # type: ignore[arg-type]

    def timeout_for(self, action: str) -> float:
        return dict(self.action_timeouts).get(action, self.timeout_s)

    @property
    def links(self) -> tuple[str, ...]:
        return (self.transport,) + ((self.fallback,) if self.fallback else ())


@attrs.frozen
class AccessConfig:
    """[access]: who holds each role (docs/api.md, "Roles"): user names, ``@group``, or
    ``*`` (anyone who can open the socket). root and ecrd's own user hold every role."""

    read: tuple[str, ...] = ("*",)  # status, lists, terminal.info, transaction.get, subscribe
    sell: tuple[str, ...] = ("*",)  # sale, preauth, abort
    refund: tuple[str, ...] = ("*",)  # refund, void
    admin: tuple[str, ...] = ()  # pairing, resolve, reload, terminal.send


@attrs.frozen
class Config:
    path: str
    daemon: DaemonConfig
    cloud: CloudConfig
    terminals: tuple[TerminalConfig, ...]
    journal: JournalConfig = JournalConfig()
    access: AccessConfig = AccessConfig()
    http: HttpConfig | None = None  # [http]: ecrd/http_config.py


class _Table:
    """Reads one TOML table, remembering which keys were used, for clear errors."""

    def __init__(self, path: str, where: str, data: object) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: {where} must be a table")
        self.path, self.where, self.data = path, where, data
        self.used: set[str] = set()

    def fail(self, key: str, expected: str) -> ConfigError:
        got = self.data.get(key)
        return ConfigError(f"{self.path}: {self.where}.{key} must be {expected} (got {got!r})")

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: Any, expected: str) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        ok = isinstance(value, kind) and not (
            isinstance(value, bool) and kind in (int, float, (int, float))
        )
        if not ok:
            raise self.fail(key, expected)
        if first_control(value, key) is not None:
            raise self.fail(key, f"{expected} without control characters (newline, tab, ESC...)")
        return value

    def check(self, key: str, problem: str | None) -> None:
        if problem is not None:
            raise self.fail(key, problem)

    def text(self, key: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> Any:
        value = self.get(key, str, default, "a string")
        if choices and value is not None and value not in choices:
            raise self.fail(key, "one of " + ", ".join(repr(c) for c in choices))
        return value

    def number(self, key: str, default: float, *, low: float = 0, high: float = 1e9) -> float:
        value = self.get(key, (int, float), default, "a number")
        if not low <= value <= high:
            raise self.fail(key, f"between {low:g} and {high:g}")
        return float(value)

    def integer(self, key: str, default: int, *, low: int = 0, high: int = 2**31) -> int:
        value = self.get(key, int, default, "an integer")
        if not low <= value <= high:
            raise self.fail(key, f"an integer between {low} and {high}")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        return bool(self.get(key, bool, default, "true or false"))

    def check_unknown(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise ConfigError(
                f"{self.path}: unknown key {self.where}.{extra[0]} (check the spelling; "
                "etc/ecrd.toml lists every option)"
            )


def _daemon(t: _Table) -> DaemonConfig:
    d = DaemonConfig()
    group = t.text("socket_group")
    if group is not None:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise t.fail("socket_group", "an existing group on this machine") from None
    return DaemonConfig(
        socket=t.text("socket", d.socket),
        socket_group=group,
        state_dir=t.text("state_dir", d.state_dir),
        client_device_sn=t.text("client_device_sn", d.client_device_sn),
        log_level=t.text("log_level", d.log_level, choices=LOG_LEVELS),
        max_line_bytes=t.integer("max_line_bytes", d.max_line_bytes, low=1024, high=16 * 2**20),
        block_on_unknown=t.flag("block_on_unknown", d.block_on_unknown),
        shutdown_grace_s=t.number("shutdown_grace_s", d.shutdown_grace_s, high=3600),
        max_clients=t.integer("max_clients", d.max_clients, low=1, high=10000),
        max_clients_per_user=t.integer(
            "max_clients_per_user", d.max_clients_per_user, low=1, high=10000
        ),
        idle_timeout_s=t.number("idle_timeout_s", d.idle_timeout_s, low=1, high=86400),
        extra_currencies=_currencies(t),
        metrics_file=t.text("metrics_file"),
    )


def _journal(t: _Table) -> JournalConfig:
    return JournalConfig(keep_days=t.integer("keep_days", JournalConfig.keep_days, high=36500))


def _currencies(t: _Table) -> tuple[str, ...]:
    value = t.get("extra_currencies", list, [], "a list of currency codes")
    for code in value:
        t.check("extra_currencies", config_rules.currency_problem(code))
    return tuple(value)


def _access(t: _Table) -> AccessConfig:
    d = AccessConfig()
    roles = {}
    for role in ("read", "sell", "refund", "admin"):
        entries = _names(t, role, getattr(d, role), 'user names, "@group" or "*"')
        unknown = [e for e in entries if not _exists(e)]
        if unknown:
            raise t.fail(role, f"users or groups of this machine; unknown: {', '.join(unknown)}")
        roles[role] = entries
    return AccessConfig(**roles)


def _exists(entry: str) -> bool:
    """Whether an [access] entry names a user or ``@group`` of this machine (or is ``*``)."""
    try:
        if entry.startswith("@"):
            grp.getgrnam(entry[1:])
        elif entry != "*":
            pwd.getpwnam(entry)
    except KeyError:
        return False
    return True


def _cloud(t: _Table) -> CloudConfig:
    c = CloudConfig()
    business_id = t.text("business_id")
    if business_id is not None and not _UUID_RE.match(business_id):
        raise t.fail("business_id", "a UUID like 411d6207-1470-4d35-a557-54852463844d")
    cfg = CloudConfig(
        environment=t.text("environment", c.environment, choices=("production", "staging")),
        base_url=t.text("base_url"),
        business_id=business_id,
        command_url=t.text("command_url"),
        info_url=t.text("info_url"),
        ca_file=t.text("ca_file"),
        timeout_s=t.number("timeout_s", c.timeout_s, low=1, high=600),
        refusal_statuses=_statuses(t),
    )
    for key in ("base_url", "command_url", "info_url"):
        url = getattr(cfg, key)
        if url is not None and not url.startswith(("http://", "https://")):
            raise t.fail(key, "an http:// or https:// URL")
    return cfg


def _statuses(t: _Table) -> tuple[int, ...]:
    value = t.get("refusal_statuses", list, [], "a list of HTTP statuses")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 499 for v in value):
        raise t.fail("refusal_statuses", "a list of HTTP 4xx statuses, e.g. [400, 403, 404]")
    return tuple(value)


def _action_timeouts(t: _Table) -> tuple[tuple[str, float], ...]:
    value = t.get("action_timeouts", dict, {}, "a table like {Sale = 180, Refund = 60}")
    for action, seconds in value.items():
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (1 <= seconds <= 3600)
        ):
            raise t.fail("action_timeouts", f"seconds from 1 to 3600 for each action ({action})")
    return tuple((str(a), float(s)) for a, s in sorted(value.items()))


def _terminal(t: _Table) -> TerminalConfig:
    d = TerminalConfig(id="-", transport="lan")
    tid = t.text("id")
    if tid is None or not _ID_RE.match(tid):
        raise t.fail("id", "a name of letters, digits, '.', '_' or '-' (max 64)")
    transport = t.text("transport", choices=TRANSPORTS)
    if transport is None:
        raise t.fail("transport", "one of 'lan', 'serial', 'cloud'")
    cfg = TerminalConfig(
        id=tid,
        transport=transport,
        crypto=t.text("crypto", d.crypto, choices=("v2", "legacy")),
        device_sn=t.text("device_sn"),
        timeout_s=t.number("timeout_s", d.timeout_s, low=1, high=3600),
        action_timeouts=_action_timeouts(t),
        status_action=t.text("status_action"),
        send_actions=_names(t, "send_actions", (), "action names"),
        inconclusive_codes=_names(t, "inconclusive_codes", (), "errorCode strings"),
        not_charged_codes=_names(t, "not_charged_codes", (), "errorCode strings"),
        amount_changes=_choices(t, "amount_changes", AMOUNT_CHANGES),
        pair_confirm_action=t.text("pair_confirm_action", d.pair_confirm_action),
        pin_fields=_names(t, "pin_fields", d.pin_fields, "field names", required=True),
        identify_action=t.text("identify_action", d.identify_action, choices=IDENTIFY_ACTIONS),
        pair_uuid_field=t.text("pair_uuid_field", d.pair_uuid_field),
        fallback=t.text("fallback", choices=("cloud",)),
        probe_interval_s=t.number("probe_interval_s", d.probe_interval_s, high=86400),
        info_timeout_s=t.number("info_timeout_s", d.info_timeout_s, low=0.1, high=600),
        info_cache_s=t.number("info_cache_s", d.info_cache_s, high=3600),
        host=t.text("host"),
        port=t.integer("port", d.port, low=1, high=65535),
        path=t.text("path", d.path),
        tls=t.flag("tls", d.tls),
        ca_file=t.text("ca_file"),
        connect_timeout_s=t.number("connect_timeout_s", d.connect_timeout_s, low=0.1, high=120),
        keep_alive=t.flag("keep_alive", d.keep_alive),
        device=t.text("device"),
        baudrate=t.integer("baudrate", d.baudrate, low=50, high=4_000_000),
        bytesize=t.integer("bytesize", d.bytesize, low=5, high=8),
        parity=t.text("parity", d.parity, choices=("N", "E", "O", "M", "S")),
        stopbits=t.number("stopbits", d.stopbits, low=1, high=2),
        rtscts=t.flag("rtscts", d.rtscts),
        trace=t.flag("trace", d.trace),
        frame_cmd=t.integer("frame_cmd", d.frame_cmd, low=0, high=0xFFFF),
        frame_byteorder=t.text("frame_byteorder", d.frame_byteorder, choices=("big", "little")),
        frame_crc=t.text("frame_crc", d.frame_crc, choices=tuple(CRC_VARIANTS)),
    )
    _check_terminal(t, cfg)
    return cfg


def _names(
    t: _Table, key: str, default: tuple[str, ...], what: str, *, required: bool = False
) -> tuple[str, ...]:
    """A list of non-empty strings (non-empty itself when ``required``)."""
    value = t.get(key, list, list(default), f"a list of {what}")
    if (required and not value) or not all(isinstance(v, str) and v for v in value):
        raise t.fail(key, f"a {'non-empty ' if required else ''}list of non-empty {what}")
    return tuple(value)


def _choices(t: _Table, key: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """A list of some of ``choices``, each at most once."""
    value = _names(t, key, (), "names")
    if not set(value) <= set(choices) or len(set(value)) != len(value):
        raise t.fail(key, "a list of " + ", ".join(repr(c) for c in choices) + ", each once")
    return value


def _check_terminal(t: _Table, cfg: TerminalConfig) -> None:
    if cfg.stopbits not in (1, 1.5, 2):
        raise t.fail("stopbits", "1, 1.5 or 2")
    if cfg.transport == "lan" and not cfg.host:
        raise t.fail("host", 'set for transport = "lan" (the terminal\'s IP address)')
    if cfg.transport == "serial" and not cfg.device:
        raise t.fail("device", 'set for transport = "serial" (e.g. /dev/ttyUSB0)')
    if cfg.fallback == cfg.transport:
        raise t.fail("fallback", "a different link than transport")
    if cfg.host is not None:
        t.check("host", config_rules.host_problem(cfg.host))
    t.check("path", config_rules.path_problem(cfg.path))
    if cfg.status_action is not None:
        t.check("status_action", config_rules.action_problem(cfg.status_action))
    t.check("pair_confirm_action", config_rules.action_problem(cfg.pair_confirm_action))
    if not _FIELD_RE.match(cfg.pair_uuid_field):
        raise t.fail("pair_uuid_field", 'a JSON field name of letters, digits and "_"')
    for action in cfg.send_actions:
        t.check("send_actions", config_rules.action_problem(action))


def parse(data: dict[str, Any], path: str = "<config>") -> Config:
    top = _Table(path, "(top level)", data)
    tables: list[_Table] = []

    def section(key: str, build: Callable[[_Table], Any], default: Any) -> Any:
        top.used.add(key)
        if key not in data:
            return default
        table = _Table(path, f"[{key}]", data[key])
        tables.append(table)
        return build(table)

    daemon = section("daemon", _daemon, DaemonConfig())
    problem = config_rules.socket_problem(daemon.socket, daemon.state_dir)
    if problem is not None:
        raise ConfigError(f"{path}: [daemon].socket must be {problem} (got {daemon.socket!r})")
    cloud = section("cloud", _cloud, CloudConfig())
    journal = section("journal", _journal, JournalConfig())
    access = section("access", _access, AccessConfig())
    top.used.add("http")
    top.used.add("terminal")
    raw_terminals = data.get("terminal", [])
    if not isinstance(raw_terminals, list):
        raise ConfigError(f"{path}: terminals are written as [[terminal]] tables")
    terminals = []
    for i, raw in enumerate(raw_terminals):
        table = _Table(path, f"terminal[{i}]", raw)
        terminals.append(_terminal(table))
        tables.append(table)
    for table in [top, *tables]:
        table.check_unknown()
    seen: set[str] = set()
    for i, term in enumerate(terminals):
        if term.id in seen:
            raise ConfigError(f"{path}: terminal[{i}].id {term.id!r} is used twice")
        seen.add(term.id)
    return Config(
        path=path,
        daemon=daemon,
        cloud=cloud,
        terminals=tuple(terminals),
        journal=journal,
        access=access,
        http=parse_http(data.get("http"), path),
    )


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
