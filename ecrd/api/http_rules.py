"""Who may use the HTTP endpoint, as pure functions of a request's headers and ``[http]``.

Invariants (each checked before a request's body is read, in this order):

* ``host_ok``: the ``Host`` header is the listen address (or ``localhost`` with its port,
  or one of ``http.hosts``), else 403: a page whose name a DNS rebinding points at
  127.0.0.1 sends its own name as ``Host``, never ours.
* ``origin_ok``: a browser's ``Origin`` must be one of ``allowed_origins`` exactly, else
  403; a request without ``Origin`` (curl, another program) passes.
* ``client_by_token``: the ``Authorization: Bearer`` token whose SHA-256 is some client's
  ``token_sha256``, compared with ``hmac.compare_digest`` against every client (the time
  taken does not say which one, nor how much of a hash matched); None is a 401. Neither
  the token nor its hash is ever logged or said back.
* ``client_by_certificate``: in store mode, the client whose ``name`` is the subject CN
  of the certificate the TLS handshake verified; one that also has ``token_sha256``
  must send that token too (both factors).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final

from ecrd.http_config import HttpClient, HttpConfig

BEARER: Final = "bearer "
# A browser cannot set Authorization on a WebSocket: it offers the token as a subprotocol
# ``ecrd.bearer.TOKEN`` next to ``ecrd.jsonrpc``, which the server selects.
WS_PROTOCOL: Final = "ecrd.jsonrpc"
WS_BEARER: Final = "ecrd.bearer."


def host_ok(host: str | None, cfg: HttpConfig, port: int) -> bool:
    """``port``: the bound one (the configured one, unless that was 0)."""
    if host is None:
        return False
    listen = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    names = {f"{listen}:{port}", *cfg.hosts}
    if cfg.host in ("127.0.0.1", "::1", "localhost"):
        names.add(f"localhost:{port}")
    return host.lower() in {n.lower() for n in names}


def origin_ok(origin: str | None, cfg: HttpConfig) -> bool:
    return origin is None or origin in cfg.allowed_origins


def token_of(headers: Mapping[str, str]) -> str | None:
    """The bearer token of ``Authorization``, else of the WebSocket subprotocols."""
    auth = headers.get("authorization", "")
    if auth[: len(BEARER)].lower() == BEARER:
        return auth[len(BEARER) :].strip() or None
    for offer in headers.get("sec-websocket-protocol", "").split(","):
        offer = offer.strip()
        if offer.startswith(WS_BEARER):
            return offer[len(WS_BEARER) :] or None
    return None


def _matches(token: str, client: HttpClient) -> bool:
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
    return hmac.compare_digest(digest, client.token_sha256 or "")


def client_by_token(token: str | None, cfg: HttpConfig) -> HttpClient | None:
    found = None
    for client in cfg.clients:  # every one, whichever matches
        if token is not None and client.token_sha256 is not None and _matches(token, client):
            found = client
    return found


def client_by_certificate(
    cert: dict[str, Any] | None, token: str | None, cfg: HttpConfig
) -> HttpClient | None:
    name = common_name(cert)
    client = next((c for c in cfg.clients if c.name == name), None)
    if client is None or client.token_sha256 is None:
        return client
    return client if token is not None and _matches(token, client) else None


def common_name(cert: dict[str, Any] | None) -> str | None:
    """The subject CN of ``ssl.SSLSocket.getpeercert()``'s dict (the last one, if many)."""
    name = None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
    return name


def cors_headers(origin: str | None, cfg: HttpConfig) -> list[tuple[str, str]]:
    if origin is None or origin not in cfg.allowed_origins:
        return []
    return [("access-control-allow-origin", origin), ("vary", "Origin")]


def preflight_headers(origin: str) -> list[tuple[str, str]]:
    return [
        ("access-control-allow-origin", origin),
        ("access-control-allow-methods", "POST, GET, OPTIONS"),
        ("access-control-allow-headers", "authorization, content-type"),
        ("access-control-max-age", "600"),
        ("vary", "Origin"),
    ]
