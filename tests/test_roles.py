"""Roles from the peer's credentials ([access], ecrd/api/roles.py): the rule as a pure
function, and the config that names users and groups of this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ecrd import errors
from ecrd.api.methods import METHODS
from ecrd.api.roles import ROLES, Peer, denial, held, holds
from ecrd.config import AccessConfig, parse

ACCESS = AccessConfig(sell=("@audio",), refund=("@video", "backup"), admin=("@dialout",))
NOBODY = Peer(uid=65534, pid=10, user="nobody", groups=frozenset({"nogroup"}))
PRIVILEGED = frozenset({0, 991})


def peer(*groups: str, user: str = "nobody", uid: int = 65534) -> Peer:
    return Peer(uid=uid, pid=10, user=user, groups=frozenset(groups))


def test_every_method_but_ping_needs_a_role_and_reads_need_the_read_role() -> None:
    reads = ("status", "terminal.list", "terminal.info", "transaction.get", "transaction.list",
             "subscribe", "metrics")  # fmt: skip
    assert set(METHODS) - set(ROLES) == {"ping"}
    assert set(ROLES) <= set(METHODS)
    assert {ROLES[m] for m in reads} == {"read"}
    assert {ROLES[m] for m in ("sale", "preauth", "abort")} == {"sell"}
    assert {ROLES[m] for m in ("refund", "void")} == {"refund"}
    admin = ("terminal.pair", "terminal.unpair", "terminal.send", "transaction.resolve",
             "config.reload", "journal.backup", "journal.audit")  # fmt: skip
    assert {ROLES[m] for m in admin} == {"admin"}


def test_the_read_role_is_anyone_by_default_and_every_money_or_admin_role_includes_it() -> None:
    assert holds("read", NOBODY, AccessConfig(), PRIVILEGED)
    assert held(NOBODY, AccessConfig(), PRIVILEGED) == {"read", "sell", "refund"}
    only_pos = AccessConfig(read=("@pos",), sell=("@audio",), refund=(), admin=("@dialout",))
    assert not holds("read", NOBODY, only_pos, PRIVILEGED)  # terminal.info refused
    assert denial("terminal.info", NOBODY, only_pos, PRIVILEGED, "x") is not None
    assert holds("read", peer("audio"), only_pos, PRIVILEGED)  # a cashier sees what it sold
    assert holds("read", peer("dialout"), only_pos, PRIVILEGED)
    assert held(peer("audio"), only_pos, PRIVILEGED) == {"read", "sell"}
    assert denial("ping", NOBODY, only_pos, PRIVILEGED, "x") is None


def test_a_role_is_held_by_user_name_or_by_primary_or_supplementary_group() -> None:
    assert holds("sell", peer("nogroup", "audio"), ACCESS, PRIVILEGED)
    assert holds("refund", peer("video"), ACCESS, PRIVILEGED)
    assert holds("refund", peer(user="backup", uid=34), ACCESS, PRIVILEGED)
    assert not holds("refund", peer("audio"), ACCESS, PRIVILEGED)
    assert not holds("admin", peer("audio", "video"), ACCESS, PRIVILEGED)


def test_root_and_ecrds_own_user_hold_every_role() -> None:
    for uid in PRIVILEGED:
        for role in ("sell", "refund", "admin"):
            assert holds(role, peer(uid=uid, user="x"), AccessConfig(admin=()), PRIVILEGED)


def test_star_is_anyone_who_can_open_the_socket_even_without_a_user_name() -> None:
    anyone = AccessConfig(sell=("*",))
    assert holds("sell", Peer(uid=4242, pid=1), anyone, PRIVILEGED)


def test_without_an_access_table_sell_and_refund_are_anyone_and_admin_nobody() -> None:
    cfg = AccessConfig()
    assert holds("sell", NOBODY, cfg, PRIVILEGED) and holds("refund", NOBODY, cfg, PRIVILEGED)
    assert not holds("admin", NOBODY, cfg, PRIVILEGED)


def test_a_refusal_is_permission_denied_naming_the_role_and_how_to_grant_it() -> None:
    refusal = denial("terminal.unpair", NOBODY, ACCESS, PRIVILEGED, "/etc/ecrd/ecrd.toml")
    assert refusal is not None
    body = refusal.to_error()
    assert body["code"] == -32030
    assert body["data"] == {"reason": "permission_denied", "role": "admin"}
    assert "[access].admin" in body["message"] and "/etc/ecrd/ecrd.toml" in body["message"]
    assert denial("status", NOBODY, ACCESS, PRIVILEGED, "x") is None


def test_the_peer_label_names_uid_user_pid_and_executable_escaped() -> None:
    p = Peer(uid=1000, pid=42, user="alice", exe="/usr/bin/pos\napp")
    assert p.label == "uid=1000 user=alice pid=42 exe=/usr/bin/pos\\napp"


def data(tmp: Path, **access: Any) -> dict[str, Any]:
    return {
        "daemon": {"socket": str(tmp / "run" / "ecrd.sock"), "state_dir": str(tmp / "state")},
        "access": access,
    }


def test_the_access_table_is_read_from_the_config(tmp_path: Path) -> None:
    cfg = parse(data(tmp_path, sell=["@audio", "nobody"], admin=["root"]))
    assert cfg.access == AccessConfig(sell=("@audio", "nobody"), refund=("*",), admin=("root",))
    assert parse(data(tmp_path)).access == AccessConfig()


@pytest.mark.parametrize(
    ("access", "named"),
    [
        ({"sell": ["no-such-user-x"]}, "no-such-user-x"),
        ({"refund": ["@no-such-group-y", "nobody"]}, "@no-such-group-y"),
        ({"admin": ["@audio", "ghost-z"]}, "ghost-z"),
    ],
)
def test_unknown_users_or_groups_in_access_are_a_config_error_naming_them(
    tmp_path: Path, access: dict[str, Any], named: str
) -> None:
    with pytest.raises(errors.ConfigError, match=named):
        parse(data(tmp_path, **access))


@pytest.mark.parametrize("access", [{"sell": "*"}, {"sell": [""]}, {"supervisors": ["*"]}])
def test_a_malformed_access_table_is_a_config_error(tmp_path: Path, access: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError, match=r"access"):
        parse(data(tmp_path, **access))
