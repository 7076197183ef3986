"""Who may do what on the socket: roles from the peer's credentials (docs/api.md, "Roles").

* ``Peer``: who is at the other end of a connection, as the kernel says at ``connect``:
  ``SO_PEERCRED`` (uid, gid, pid) and ``SO_PEERGROUPS`` (its supplementary groups; where
  the kernel lacks it, the user's groups from the group database), the user name, and the
  executable (``/proc/PID/exe``) for the logs.
* ``ROLES``: the role each method needs; ``ping`` alone needs none (is ecrd alive?).
  ``read`` (reading the terminals and the journal) is held by whoever ``[access].read``
  lists (default ``*``: anyone who can open the socket) and by every holder of a money or
  admin role, who must be able to see what they did (``transaction.get`` after a
  timeout).
* ``denial``: a pure function of the peer and the ``[access]`` table, checked by the server
  before a method runs, so a refused call sends and journals nothing. The table is read per
  call, so a reload applies to every call that starts after it. root and the user ecrd
  runs as hold every role.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from collections.abc import Collection
from typing import Final, Protocol

import attrs

from ecrd import errors, http_config
from ecrd.config import AccessConfig
from ecrd.text import escape

ROLES: Final = {
    # read: terminal.info asks the terminal itself (a DeviceInfo exchange: terminal/info.py
    # coalesces and caches it); the others read what the journal and the terminals hold.
    "status": "read",
    "terminal.list": "read",
    "terminal.info": "read",
    "transaction.get": "read",
    "transaction.list": "read",
    "subscribe": "read",
    "metrics": "read",
    "sale": "sell",
    "preauth": "sell",
    "abort": "sell",
    "refund": "refund",
    "void": "refund",
    "terminal.pair": "admin",
    "terminal.unpair": "admin",
    "terminal.probe": "admin",
    "terminal.trace": "admin",  # the trace holds decrypted traffic (redacted, but still)
    "terminal.send": "admin",
    "transaction.resolve": "admin",
    "config.reload": "admin",
    "journal.backup": "admin",  # a copy of every money record (and, on request, the PINs)
    "journal.audit": "admin",  # who administered what: the admin actions' own record
}
# Every role; the money and admin roles include ``read``.
ALL_ROLES: Final = http_config.ROLES  # [access]'s, and those of an [[http.client]]
INCLUDE_READ: Final = ("sell", "refund", "admin")
SO_PEERGROUPS: Final = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13
MAX_GROUPS: Final = 256  # the most getsockopt can return (1024 bytes)
UNKNOWN_UID: Final = -1


class Socket(Protocol):
    """A connected Unix socket (the standard library's or trio's)."""

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


@attrs.frozen
class Peer:
    uid: int
    pid: int
    user: str | None = None
    groups: frozenset[str] = frozenset()
    exe: str | None = None

    @property
    def label(self) -> str:
        """``uid=… user=… pid=… exe=…``: for the logs and the journal's audit trail."""
        user = escape(self.user) if self.user else "?"
        exe = escape(self.exe) if self.exe else "?"
        uid = "?" if self.uid == UNKNOWN_UID else self.uid
        pid = "?" if self.pid <= 0 else self.pid
        return f"uid={uid} user={user} pid={pid} exe={exe}"


def identify(sock: Socket) -> Peer:
    """The peer of a Unix socket connection (``Peer(UNKNOWN_UID, 0)`` if the kernel does
    not say)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return Peer(UNKNOWN_UID, 0)
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        user: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    gids = {gid, *_peer_groups(sock, user, gid)}
    try:
        exe: str | None = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    return Peer(uid, pid, user, frozenset(_group_names(gids)), exe)


def _peer_groups(sock: Socket, user: str | None, gid: int) -> list[int]:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, MAX_GROUPS * 4)
    except OSError:  # an older kernel: the user's groups as the group database has them
        return os.getgrouplist(user, gid) if user else []
    return list(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))


def _group_names(gids: Collection[int]) -> list[str]:
    names = []
    for gid in gids:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def holds(role: str, peer: Peer, access: AccessConfig, privileged: Collection[int]) -> bool:
    if peer.uid in privileged:
        return True
    if role == "read" and any(holds(r, peer, access, privileged) for r in INCLUDE_READ):
        return True
    for entry in getattr(access, role):
        if entry == "*" or entry == peer.user:
            return True
        if entry.startswith("@") and entry[1:] in peer.groups:
            return True
    return False


def held(peer: Peer, access: AccessConfig, privileged: Collection[int]) -> frozenset[str]:
    """Every role ``peer`` holds under ``access`` (the socket's sharing reserves by role)."""
    return frozenset(r for r in ALL_ROLES if holds(r, peer, access, privileged))


def denial(
    method: str, peer: Peer, access: AccessConfig, privileged: Collection[int], config: str
) -> errors.PermissionDenied | None:
    """The refusal of ``method`` for ``peer``, or None when it may run."""
    role = ROLES.get(method)
    if role is None or holds(role, peer, access, privileged):
        return None
    who = f"uid {peer.uid} ({escape(peer.user) if peer.user else 'no user name'})"
    fix = f'add the user (or "@group" of one of its groups) to [access].{role} in {config}'
    return refusal(method, role, who, fix)


def denial_by_roles(
    method: str, held: frozenset[str], who: str, fix: str
) -> errors.PermissionDenied | None:
    """The refusal of ``method`` for a caller that holds ``held`` (an HTTP client's roles,
    ``[[http.client]]``; a money or admin role includes ``read`` there too)."""
    role = ROLES.get(method)
    if role is None or role in held or (role == "read" and held & set(INCLUDE_READ)):
        return None
    return refusal(method, role, who, fix.format(role=role))


def refusal(method: str, role: str, who: str, fix: str) -> errors.PermissionDenied:
    return errors.PermissionDenied(
        f"{method} needs the {role} role, which {who} does not hold: {fix}, then `ecrctl reload`",
        role=role,
    )
