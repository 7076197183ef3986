"""Who a request comes from, whatever it came on: the part of a connection that roles,
refusals, fairness and the audit trail need, and nothing of its transport.

* On the Unix socket, the kernel's word (``roles.Peer``, ``SO_PEERCRED``): roles from
  ``[access]``, keyed by uid.
* Over HTTP, a ``[[http.client]]`` (its bearer token, or in store mode its certificate):
  roles from that table, keyed by ``http:NAME``. Looked up in the config of each call, so
  a reload applies to the calls after it, as on the socket; a client a reload removed
  holds no role.
"""

from __future__ import annotations

import os
from typing import Final

import attrs

from ecrd import errors
from ecrd.api import roles
from ecrd.api.roles import Peer
from ecrd.config import Config
from ecrd.text import escape

# root and the user ecrd runs as: every role, and the reserve of connections.
PRIVILEGED: Final = frozenset({0, os.geteuid()})


@attrs.frozen
class Caller:
    key: int | str  # the refusal log's and the sharing's: a uid, or "http:NAME"
    label: str  # for the logs and the audit trail
    peer: Peer | None = None  # the socket's peer
    http_client: str | None = None  # the HTTP client's name

    @classmethod
    def of_peer(cls, peer: Peer) -> Caller:
        return cls(peer.uid, peer.label, peer=peer)

    @classmethod
    def of_http(cls, name: str, how: str) -> Caller:
        """``how``: ``token`` or ``certificate`` (said in the label)."""
        return cls(f"http:{name}", f"http client={escape(name)} ({how})", http_client=name)

    def held(self, cfg: Config) -> frozenset[str]:
        """Every role this caller holds under ``cfg``."""
        if self.peer is not None:
            return roles.held(self.peer, cfg.access, PRIVILEGED)
        clients = cfg.http.clients if cfg.http is not None else ()
        return next((c.roles for c in clients if c.name == self.http_client), frozenset())

    def denial(self, method: str, cfg: Config) -> errors.PermissionDenied | None:
        """The refusal of ``method``, or None when it may run."""
        if self.peer is not None:
            return roles.denial(method, self.peer, cfg.access, PRIVILEGED, cfg.path)
        who = f"HTTP client {escape(self.http_client or '?')!r}"
        fix = f'add "{{role}}" to its [[http.client]] roles in {cfg.path}'
        return roles.denial_by_roles(method, self.held(cfg), who, fix)
