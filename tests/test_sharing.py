"""Who gets a connection (ecrd/api/sharing.py), as a pure rule: limits, the admin reserve,
and each money and admin role's reserve."""

from __future__ import annotations

import pytest

from ecrd.api.sharing import RESERVE, ROLE_RESERVE, Admission, Refused
from ecrd.config import DaemonConfig

EVERYONE = frozenset({"read", "sell", "refund"})  # the roles of anyone without [access]


def admission(**limits: int) -> Admission:
    cfg = DaemonConfig(**limits)  # type: ignore[arg-type]
    return Admission(lambda: cfg)


def test_the_issues_flood_4_uids_x_16_still_lets_the_cashier_in_with_default_roles() -> None:
    """4 uids x 16 connections fill max_clients = 64; every one of them holds sell (the
    default "*"), but each is at its own limit, so the cashier's app takes the reserve."""
    gate = admission(max_clients=64, max_clients_per_user=16)
    for uid in (2001, 2002, 2003, 2004):
        for _ in range(16):
            gate.admit(uid, EVERYONE)
    with pytest.raises(Refused):
        gate.admit(2001, EVERYONE)  # a flooder: at its own limit
    cashier = gate.admit(1000, EVERYONE)
    assert cashier.reserved and cashier.pool == "sell"


def test_a_role_reserve_is_for_its_holders_only_and_bounded() -> None:
    gate = admission(max_clients=2, max_clients_per_user=8)
    gate.admit(3000, {"read"})
    gate.admit(3001, {"read"})
    with pytest.raises(Refused, match="max_clients"):
        gate.admit(3002, {"read"})  # holds no reserved role
    taken = [gate.admit(1000 + i, {"read", "sell"}) for i in range(ROLE_RESERVE)]
    assert {t.pool for t in taken} == {"sell"}
    assert gate.admit(2000, {"read", "sell", "refund"}).pool == "refund"  # sell's is full
    with pytest.raises(Refused):
        gate.admit(2001, {"read", "sell"})
    gate.release(taken[0])
    assert gate.admit(2001, {"read", "sell"}).pool == "sell"  # given back, taken again


def test_root_keeps_its_own_reserve_over_everything() -> None:
    gate = admission(max_clients=1, max_clients_per_user=1)
    gate.admit(0)
    assert all(gate.admit(0).pool == "privileged" for _ in range(RESERVE))
    with pytest.raises(Refused):
        gate.admit(0)  # root holds every role, but its per-user limit (1) is reached
