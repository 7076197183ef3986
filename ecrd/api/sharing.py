"""Who gets a connection: fair sharing of the socket between local users and their roles.

* At most ``max_clients`` connections in all, and at most ``max_clients_per_user`` from one
  uid (``SO_PEERCRED``), so that one user's idle or runaway connections cannot lock the
  others out.
* Each money and admin role keeps ``ROLE_RESERVE`` connections of its own, over
  ``max_clients``: when the shared ones are all taken, a user who holds that role still
  gets in (within its own ``max_clients_per_user``), so a flood from users without it (a
  reporting tool, a stray script) never locks out the cashier's app. The reserve is only
  as sharp as the roles are: with the default ``sell = ["*"]`` every user holds ``sell``;
  then the per-user limit is what keeps a flooding user (at its limit) out of it.
* ``RESERVE`` more connections are kept for root and ecrd's own user, over every limit:
  whatever the other users do, an admin can always connect to look (``ecrctl status``)
  and fix things.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Collection
from typing import Final

import attrs

from ecrd.config import DaemonConfig

RESERVE: Final = 4
ROLE_RESERVE: Final = 4
# The roles with a reserve: those that move money or administer. ``read`` has none: every
# user holds it by default, so its reserve would be anyone's.
RESERVED_ROLES: Final = ("sell", "refund", "admin")
SHARED: Final = "shared"
PRIVILEGED_POOL: Final = "privileged"


@attrs.frozen
class Ticket:
    uid: int | str  # or an HTTP client's "http:NAME" (api/caller.py)
    pool: str  # SHARED, PRIVILEGED_POOL, or the role whose reserve it came from

    @property
    def reserved(self) -> bool:
        return self.pool != SHARED


class Refused(Exception):
    """No connection for this peer; the message says which limit and how to fix it."""


class Admission:
    def __init__(self, limits: Callable[[], DaemonConfig]) -> None:
        # A callable, so that a reload's new limits apply to the next connection.
        self._limits = limits
        self._privileged = {0, os.geteuid()}
        self._per_uid: Counter[int | str] = Counter()  # shared and role-reserved, by uid
        self._taken: Counter[str] = Counter()  # by pool

    def admit(self, uid: int | str, roles: Collection[str] = ()) -> Ticket:
        """A connection for ``uid``, who holds ``roles`` (roles.held), or ``Refused``."""
        cfg = self._limits()
        per_user = min(cfg.max_clients_per_user, cfg.max_clients)
        mine = self._per_uid[uid]
        if self._taken[SHARED] < cfg.max_clients and mine < per_user:
            return self._take(uid, SHARED)
        if uid in self._privileged and self._taken[PRIVILEGED_POOL] < RESERVE:
            return self._take(uid, PRIVILEGED_POOL)
        if mine < per_user:
            for role in RESERVED_ROLES:
                if role in roles and self._taken[role] < ROLE_RESERVE:
                    return self._take(uid, role)
        if mine >= per_user:
            raise Refused(
                f"too many clients: uid {uid} has {mine} connections open "
                f"(max_clients_per_user = {per_user}); close idle ones"
            )
        raise Refused(f"too many clients: {cfg.max_clients} connections are open (max_clients)")

    def _take(self, uid: int | str, pool: str) -> Ticket:
        self._taken[pool] += 1
        if pool != PRIVILEGED_POOL:
            self._per_uid[uid] += 1
        return Ticket(uid, pool)

    def release(self, ticket: Ticket) -> None:
        self._taken[ticket.pool] -= 1
        if ticket.pool != PRIVILEGED_POOL:
            self._per_uid[ticket.uid] -= 1
            if not self._per_uid[ticket.uid]:
                del self._per_uid[ticket.uid]
