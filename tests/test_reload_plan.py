"""A reload as a pure plan (ecrd/reload.py): old config, new config → steps, without trio."""

from __future__ import annotations

from typing import Any

from ecrd.config import Config, parse
from ecrd.reload import plan


def config(*terminals: dict[str, Any], daemon: dict[str, Any] | None = None,
           cloud: dict[str, Any] | None = None) -> Config:  # fmt: skip
    data: dict[str, Any] = {"daemon": daemon or {}, "terminal": list(terminals)}
    if cloud:
        data["cloud"] = cloud
    return parse(data)


LAN = {"id": "a", "transport": "lan", "host": "127.0.0.1"}
SERIAL = {"id": "b", "transport": "serial", "device": "/dev/ttyS0"}


def test_an_unchanged_file_plans_nothing() -> None:
    steps = plan(config(LAN, SERIAL), config(LAN, SERIAL))
    assert (steps.applied, steps.needs_restart, steps.steps) == ((), (), ())


def test_restart_only_daemon_keys_keep_their_old_value_and_are_listed() -> None:
    old = config(LAN, daemon={"socket": "/run/a.sock", "log_level": "info"})
    new = config(LAN, daemon={"socket": "/run/b.sock", "log_level": "debug"})
    steps = plan(old, new)
    assert steps.needs_restart == ("socket",)
    assert steps.applied == ("log_level",)
    assert (steps.daemon.socket, steps.daemon.log_level) == ("/run/a.sock", "debug")


def test_terminals_are_removed_then_changed_then_added() -> None:
    old = config(LAN, SERIAL)
    new = config({**LAN, "timeout_s": 60}, {**SERIAL, "id": "c", "device": "/dev/ttyS1"})
    assert [(s.terminal, s.kind) for s in plan(old, new).steps] == [
        ("b", "remove"), ("a", "change"), ("c", "add"),
    ]  # fmt: skip


def test_a_new_address_is_a_move_and_another_key_is_not() -> None:
    moved = plan(config(LAN), config({**LAN, "port": 9})).steps[0]
    assert moved.kind == "change" and moved.moved
    retimed = plan(config(LAN), config({**LAN, "timeout_s": 60})).steps[0]
    assert retimed.kind == "change" and not retimed.moved


def test_a_changed_cloud_table_changes_every_terminal() -> None:
    old = config(LAN, SERIAL, cloud={"command_url": "http://127.0.0.1:1/a"})
    new = config(LAN, SERIAL, cloud={"command_url": "http://127.0.0.1:1/b"})
    assert [(s.terminal, s.kind) for s in plan(old, new).steps] == [
        ("a", "change"), ("b", "change"),
    ]  # fmt: skip


def _with_http(**table: Any) -> Config:
    client = {"name": "web-pos", "token_sha256": "ab" * 32, "roles": ["sell"]}
    return parse({"http": {"listen": "127.0.0.1:8765", "client": [client], **table}})


def test_http_clients_and_origins_are_applied_where_it_listens_needs_a_restart() -> None:
    old = _with_http()
    steps = plan(old, _with_http(allowed_origins=["http://localhost:3000"]))
    assert (steps.applied, steps.needs_restart) == (("http",), ())
    assert steps.http is not None and steps.http.allowed_origins == ("http://localhost:3000",)
    for new in (_with_http(listen="127.0.0.1:9000"), config()):
        steps = plan(old, new)
        assert (steps.applied, steps.needs_restart, steps.http) == ((), ("http",), old.http)
    assert plan(config(), old).needs_restart == ("http",)
