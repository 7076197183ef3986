"""``[http]``: the local HTTP and WebSocket endpoint (off unless the table is there),
declared key by key like every other table (``config_decl.py``).

Rules, each an error naming its key (``[http].client[1].token_sha256``):

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

import re
from typing import Any, Final

import attrs

from ecrd.config_decl import Invalid, Kind, key, strings, tables, text, unique

ROLES: Final = ("read", "sell", "refund", "admin")  # the roles of [access]
WILDCARDS: Final = ("0.0.0.0", "::")  # noqa: S104 - names to refuse without hosts
NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64_RE: Final = re.compile(r"^[0-9a-fA-F]{64}$")
_ORIGIN_RE: Final = re.compile(r"^(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
_HOST_RE: Final = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
_TLS: Final = ("tls_cert", "tls_key", "client_ca")


def _ip(host: str) -> Any:
    """``ipaddress.ip_address``, imported only with an [http] table: every ``ecrd`` and
    ``ecrctl`` start reads config.py, and most have none."""
    import ipaddress

    return ipaddress.ip_address(host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return bool(_ip(host).is_loopback)
    except ValueError:
        return False


def split_listen(value: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[v6]:PORT``) as (host without brackets, port), or None."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    if host != "localhost":
        try:
            _ip(host)
        except ValueError:
            return None
    return host, int(port)


def _listen_problem(value: str) -> str | None:
    ok = split_listen(value) is not None
    return None if ok else "HOST:PORT, HOST an IP address or localhost, PORT 0 to 65535"


def _name_problem(value: str) -> str | None:
    return None if NAME_RE.match(value) else "letters, digits, '.', '_' or '-' (at most 64)"


def _origin_problem(value: str) -> str | None:
    return None if _ORIGIN_RE.match(value) else "exactly scheme://host[:port] (no path, no *)"


def _host_problem(value: str) -> str | None:
    return None if _HOST_RE.match(value) else "host[:port] names"


def _path_problem(value: str) -> str | None:
    return None if value.startswith("/") else "an absolute path"


def _token_hash(value: object) -> str:
    """64 hex digits, kept in lower case (the form ``hashlib`` compares with)."""
    if not isinstance(value, str) or not _HEX64_RE.match(value):
        raise Invalid(_HEX_EXPECTED, value)
    return value.lower()


_HEX_EXPECTED: Final = "64 hex digits (the SHA-256 of the token; `ecrctl http-token` prints it)"


@attrs.frozen(kw_only=True)
class HttpClient:
    name: str = key(
        text(rule=_name_problem, expected="a name"),
        doc="the client's name: its identity for roles, audit and fairness",
        example="web-pos",
    )
    token_sha256: str | None = key(
        Kind(_HEX_EXPECTED, _token_hash),
        None,
        doc="the SHA-256 of its bearer token (needed unless store mode)",
        example="<64 hex digits from ecrctl http-token>",
        repr=False,
    )
    roles: tuple[str, ...] = key(
        strings("roles", choices=ROLES), (), doc="the roles it holds", example=["sell"]
    )


@attrs.frozen(kw_only=True)
class HttpConfig:
    listen: str = key(
        text(rule=_listen_problem), "127.0.0.1:8765", doc="where it listens", reload="restart"
    )
    allowed_origins: tuple[str, ...] = key(
        strings("origins", each=_origin_problem),
        (),
        doc="the browser origins that may call it",
        example=["http://localhost:3000"],
    )
    hosts: tuple[str, ...] = key(
        strings("host names", each=_host_problem),
        (),
        doc="the Host names tills use, beyond listen's",
        example=["pos.shop.lan:8765"],
    )
    tls_cert: str | None = key(
        text(rule=_path_problem), None, doc="store mode: the server's certificate", reload="restart"
    )
    tls_key: str | None = key(
        text(rule=_path_problem), None, doc="store mode: its private key", reload="restart"
    )
    client_ca: str | None = key(
        text(rule=_path_problem), None, doc="store mode: the tills' CA", reload="restart"
    )
    clients: tuple[HttpClient, ...] = key(
        tables(HttpClient, "[[http.client]]"), (), name="client", doc="the HTTP clients"
    )

    @property
    def host(self) -> str:  # without brackets
        return _split(self.listen)[0]

    @property
    def port(self) -> int:  # 0: any free port (tests)
        return _split(self.listen)[1]

    @property
    def store_mode(self) -> bool:
        return self.client_ca is not None

    def check(self) -> None:
        given = [k for k in _TLS if getattr(self, k) is not None]
        if given and len(given) < len(_TLS):
            missing = next(k for k in _TLS if k not in given)
            why = f"set with {given[0]} (store mode takes tls_cert, tls_key and client_ca)"
            raise Invalid(why, within=(missing,))
        if not self.store_mode and not is_loopback(self.host):
            beyond = (
                "a loopback address, or beyond loopback only with tls_cert, tls_key and client_ca"
            )
            raise Invalid(beyond, self.listen, within=("listen",))
        if self.host in WILDCARDS and not self.hosts:
            raise Invalid(f"the names tills use to reach ecrd (listen is {self.host!r})",
                          within=("hosts",))  # fmt: skip
        unique((c.name for c in self.clients), "client", "name", "client")
        for i, client in enumerate(self.clients):
            if client.token_sha256 is None and not self.store_mode:
                need = "set (`ecrctl http-token` prints it; only store mode goes without)"
                raise Invalid(need, within=("client", i, "token_sha256"))


def _split(listen: str) -> tuple[str, int]:
    found = split_listen(listen)
    if found is None:  # a record built in code with a bad listen
        raise ValueError(f"listen must be HOST:PORT, not {listen!r}")
    return found
