"""``[http]``'s rules (ecrd/http_config.py): each refusal names its key; beyond loopback
only in store mode."""

from __future__ import annotations

from typing import Any

import pytest

from ecrd.config import ConfigError, parse
from ecrd.http_config import HttpClient, parse_http

HASH = "ab" * 32
CLIENT = {"name": "web-pos", "token_sha256": HASH, "roles": ["sell"]}
TLS = {"tls_cert": "/etc/ecrd/http.crt", "tls_key": "/etc/ecrd/http.key",
       "client_ca": "/etc/ecrd/tills-ca.crt"}  # fmt: skip


def http(**table: Any) -> dict[str, Any]:
    return {"listen": "127.0.0.1:8765", "client": [CLIENT], **table}


def refusal(table: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_http(table, "ecrd.toml")
    return str(info.value)


def test_no_table_no_endpoint_and_the_issue_example_parses() -> None:
    assert parse_http(None) is None
    cfg = parse_http(http(allowed_origins=["http://localhost:3000"]))
    assert cfg is not None and (cfg.host, cfg.port) == ("127.0.0.1", 8765)
    assert cfg.clients == (HttpClient("web-pos", frozenset({"sell"}), HASH),)
    assert not cfg.store_mode


def test_the_config_file_takes_it_as_its_http_key() -> None:
    cfg = parse({"http": http()}, "/etc/ecrd/ecrd.toml")
    assert cfg.http is not None and cfg.http.clients[0].name == "web-pos"
    assert parse({}, "x").http is None


@pytest.mark.parametrize("listen", ["0.0.0.0:8765", "192.168.1.10:8765", "[::]:8765"])
def test_beyond_loopback_only_with_tls_cert_key_and_client_ca(listen: str) -> None:
    assert "only with tls_cert, tls_key and client_ca" in refusal(http(listen=listen))
    cfg = parse_http(http(listen=listen, hosts=["pos.shop.lan:8765"], **TLS))
    assert cfg is not None and cfg.store_mode


def test_loopback_with_tls_is_store_mode_too_and_the_three_come_together() -> None:
    cfg = parse_http(http(listen="[::1]:8765", **TLS))
    assert cfg is not None and cfg.store_mode and cfg.host == "::1"
    assert "http.tls_key is needed with http.tls_cert" in refusal(
        http(client_ca=TLS["client_ca"], tls_cert=TLS["tls_cert"])
    )


def test_a_wildcard_listen_needs_the_hosts_tills_use() -> None:
    assert "http.hosts must list" in refusal(http(listen="0.0.0.0:8765", **TLS))


@pytest.mark.parametrize(
    ("client", "key"),
    [({**CLIENT, "name": "b", "token_sha256": "abc"}, "http.client[1].token_sha256"),
     ({**CLIENT, "name": "b", "token_sha256": "zz" * 32}, "http.client[1].token_sha256"),
     ({"name": "b", "roles": []}, "http.client[1].token_sha256"),
     ({**CLIENT, "name": "b", "roles": ["sell", "root"]}, "http.client[1].roles"),
     ({**CLIENT, "name": "bad name"}, "http.client[1].name"),
     (CLIENT, "http.client[1].name 'web-pos' is used twice"),
     ({**CLIENT, "name": "b", "token": "x"}, "unknown key http.client[1].token")],
    ids=["short-hash", "not-hex", "no-hash", "unknown-role", "bad-name", "twice", "typo"],
)  # fmt: skip
def test_each_client_rule_names_its_key(client: dict[str, Any], key: str) -> None:
    assert key in refusal(http(client=[CLIENT, client]))


@pytest.mark.parametrize(
    "origin", ["*", "http://localhost:3000/", "localhost:3000", "http://a.example/app", "ftp://a"]
)
def test_an_origin_is_exactly_scheme_host_and_port(origin: str) -> None:
    assert "http.allowed_origins[0] must be exactly" in refusal(http(allowed_origins=[origin]))


@pytest.mark.parametrize("listen", ["8765", "localhost", "127.0.0.1:99999", "pos.lan:80", 8765])
def test_listen_is_an_address_and_a_port(listen: Any) -> None:
    assert "http.listen" in refusal(http(listen=listen))


def test_in_store_mode_a_client_may_go_without_a_token() -> None:
    cfg = parse_http(http(client=[{"name": "till-1", "roles": ["sell"]}], **TLS))
    assert cfg is not None and cfg.clients[0].token_sha256 is None


def test_the_hash_is_never_in_a_repr() -> None:
    cfg = parse_http(http())
    assert HASH not in repr(cfg)
