"""Who gets a connection: fair sharing of the socket between local users.

* At most ``max_clients`` connections in all, and at most ``max_clients_per_user`` from one
  uid (``SO_PEERCRED``), so that one user's idle or runaway connections cannot lock the
  others out.
* ``RESERVE`` more connections are kept for root and ecrd's own user, over both limits:
  whatever the other users do, an admin can always connect to look (``ecrctl status``)
  and fix things.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Final

import attrs

from ecrd.config import DaemonConfig

RESERVE: Final = 4


@attrs.frozen
class Ticket:
    uid: int
    reserved: bool


class Refused(Exception):
    """No connection for this peer; the message says which limit and how to fix it."""


class Admission:
    def __init__(self, limits: Callable[[], DaemonConfig]) -> None:
        # A callable, so that a reload's new limits apply to the next connection.
        self._limits = limits
        self._privileged = {0, os.geteuid()}
        self._per_uid: Counter[int] = Counter()
        self._open = 0
        self._reserved = 0

    def admit(self, uid: int) -> Ticket:
        cfg = self._limits()
        per_user = min(cfg.max_clients_per_user, cfg.max_clients)
        if self._open < cfg.max_clients and self._per_uid[uid] < per_user:
            self._open += 1
            self._per_uid[uid] += 1
            return Ticket(uid, reserved=False)
        if uid in self._privileged and self._reserved < RESERVE:
            self._reserved += 1
            return Ticket(uid, reserved=True)
        if self._open >= cfg.max_clients:
            raise Refused(f"too many clients: {cfg.max_clients} connections are open (max_clients)")
        raise Refused(
            f"too many clients: uid {uid} has {self._per_uid[uid]} connections open "
            f"(max_clients_per_user = {per_user}); close idle ones"
        )

    def release(self, ticket: Ticket) -> None:
        if ticket.reserved:
            self._reserved -= 1
        else:
            self._open -= 1
            self._per_uid[ticket.uid] -= 1
            if not self._per_uid[ticket.uid]:
                del self._per_uid[ticket.uid]
