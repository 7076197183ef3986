"""``[http]``: the local HTTP and WebSocket endpoint (off unless the table is there).

Rules, each an error naming its key (``http.client[1].token_sha256``):

* ``listen`` is ``HOST:PORT`` (``[v6]:PORT``); HOST is a loopback address, or ``localhost``,
  unless ``tls_cert``, ``tls_key`` and ``client_ca`` are all set (store mode: every client
  shows a certificate signed by ``client_ca``). The three come together or not at all.
* A wildcard HOST (``0.0.0.0``, ``::``) needs ``hosts``: the names the tills use to reach
  ecrd, since no ``Host`` header can be the wildcard (the DNS rebinding check).
* ``allowed_origins`` are exact ``scheme://host[:port]`` (no path, no ``*``).
* Every ``[[http.client]]`` has a unique ``name`` (its identity for roles, audit and
  fairness; in store mode the certificate's subject CN) and ``roles`` from [access]'s set;
  ``token_sha256`` is the SHA-256 of its bearer token, 64 hex digits (optional in store
  mode: the certificate is then the credential).

Pure: it reads a TOML table; checking that the files exist is the daemon's start-up.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

import attrs

from ecrd.errors import ConfigError

ROLES: Final = ("read", "sell", "refund", "admin")  # the roles of [access]
WILDCARDS: Final = ("0.0.0.0", "::")  # noqa: S104 - names to refuse without hosts
NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64_RE: Final = re.compile(r"^[0-9a-fA-F]{64}$")
_ORIGIN_RE: Final = re.compile(r"^(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
_HOST_RE: Final = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
_KEYS: Final = ("listen", "allowed_origins", "hosts", "tls_cert", "tls_key", "client_ca", "client")
_CLIENT_KEYS: Final = ("name", "token_sha256", "roles")


@attrs.frozen
class HttpClient:
    name: str
    roles: frozenset[str]
    token_sha256: str | None = attrs.field(default=None, repr=False)  # lower-case hex


@attrs.frozen
class HttpConfig:
    host: str  # without brackets
    port: int  # 0: any free port (tests)
    allowed_origins: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    clients: tuple[HttpClient, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None

    @property
    def store_mode(self) -> bool:
        return self.client_ca is not None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_http(table: Any, where: str = "<config>") -> HttpConfig | None:
    """``[http]`` of the file ``where`` (None: no table, no endpoint); ``ConfigError``."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [http] must be a table")
    _no_unknown(table, _KEYS, "http", where)
    host, port = _listen(table.get("listen"), where)
    tls = {k: _path(table, k, where) for k in ("tls_cert", "tls_key", "client_ca")}
    given = [k for k, v in tls.items() if v is not None]
    if given and len(given) < 3:
        missing = sorted(set(tls) - set(given))
        raise ConfigError(f"{where}: http.{missing[0]} is needed with http.{given[0]} (store "
                          "mode takes tls_cert, tls_key and client_ca together)")  # fmt: skip
    store = len(given) == 3
    if not store and not is_loopback(host):
        raise ConfigError(
            f"{where}: http.listen may be beyond loopback ({host!r}) only with tls_cert, "
            "tls_key and client_ca (store mode: client certificates)"
        )
    origins = _strings(table, "allowed_origins", where)
    for i, origin in enumerate(origins):
        if not _ORIGIN_RE.match(origin):
            raise ConfigError(f"{where}: http.allowed_origins[{i}] must be exactly "
                              f"scheme://host[:port] (got {origin!r})")  # fmt: skip
    hosts = _strings(table, "hosts", where)
    for i, name in enumerate(hosts):
        if not _HOST_RE.match(name):
            raise ConfigError(f"{where}: http.hosts[{i}] must be host[:port] (got {name!r})")
    if host in WILDCARDS and not hosts:
        raise ConfigError(f"{where}: http.hosts must list the names tills use to reach ecrd "
                          f"when http.listen is a wildcard ({host!r})")  # fmt: skip
    clients = _clients(table.get("client", []), where, store)
    return HttpConfig(host, port, origins, hosts, clients, **tls)


def _listen(value: Any, where: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: http.listen must be a string HOST:PORT (got {value!r})")
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where}: http.listen must be HOST:PORT (got {value!r})")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"{where}: http.listen's host must be an IP address or localhost (got {host!r})"
            ) from None
    return host, int(port)


def _clients(raw: Any, where: str, store: bool) -> tuple[HttpClient, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: HTTP clients are written as [[http.client]] tables")
    clients: list[HttpClient] = []
    for i, entry in enumerate(raw):
        key = f"http.client[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {key} must be a table")
        _no_unknown(entry, _CLIENT_KEYS, key, where)
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"{where}: {key}.name must be letters, digits, '.', '_' or '-' "
                              f"(at most 64; got {name!r})")  # fmt: skip
        if any(c.name == name for c in clients):
            raise ConfigError(f"{where}: {key}.name {name!r} is used twice")
        token = entry.get("token_sha256")
        if token is None and not store:
            raise ConfigError(f"{where}: {key}.token_sha256 is needed (`ecrctl http-token`)")
        if token is not None and not (isinstance(token, str) and _HEX64_RE.match(token)):
            raise ConfigError(f"{where}: {key}.token_sha256 must be 64 hex digits (the "
                              "SHA-256 of the token; `ecrctl http-token` prints it)")  # fmt: skip
        roles = entry.get("roles", [])
        if not isinstance(roles, list) or not all(r in ROLES for r in roles):
            raise ConfigError(f"{where}: {key}.roles must be a list of "
                              f"{', '.join(map(repr, ROLES))} (got {roles!r})")  # fmt: skip
        clients.append(HttpClient(name, frozenset(roles), token.lower() if token else None))
    return tuple(clients)


def _strings(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: http.{key} must be a list of strings (got {value!r})")
    return tuple(value)


def _path(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not (isinstance(value, str) and value.startswith("/")):
        raise ConfigError(f"{where}: http.{key} must be an absolute path (got {value!r})")
    return value


def _no_unknown(table: dict[str, Any], known: tuple[str, ...], where_key: str, where: str) -> None:
    extra = sorted(set(table) - set(known))
    if extra:
        raise ConfigError(f"{where}: unknown key {where_key}.{extra[0]} (check the spelling; "
                          "etc/ecrd.toml lists every option)")  # fmt: skip
