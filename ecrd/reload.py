"""A configuration reload as a plan: old config, new config → what changes (design.md §5).

``plan`` is pure: it decides, the daemon applies. What it decides:

* ``[daemon]`` keys a running daemon cannot take (``RESTART_KEYS``: the socket, its group,
  the state directory, the client SN every terminal was built with) keep their old value
  and are listed in ``needs_restart``; every other changed key is ``applied``.
* Per terminal, one step: ``add``, ``remove`` or ``change`` (a different table; or any
  table when ``[cloud]`` changed, since every terminal's cloud client depends on it).
  ``moved`` marks a change of ``host``/``port``: the admin's address then replaces the
  last known one. Removals first, then changes, then additions.
* ``[http]``: its clients, tokens, roles, origins and hosts are ``applied`` (``http``: the
  endpoint reads them per request); a change of where or how it listens (``listen``, the
  TLS files, or adding or removing the table) keeps the old table whole and is
  ``needs_restart`` (``http``).
"""

from __future__ import annotations

from typing import Final, Literal

import attrs

from ecrd.config import Config, DaemonConfig, TerminalConfig
from ecrd.http_config import HttpConfig

RESTART_KEYS: Final = ("socket", "socket_group", "state_dir", "client_device_sn")


@attrs.frozen
class TerminalStep:
    terminal: str
    kind: Literal["add", "remove", "change"]
    new: TerminalConfig | None  # None for "remove"
    moved: bool = False


@attrs.frozen
class Plan:
    daemon: DaemonConfig  # what to run with: the new table, restart-only keys kept
    applied: tuple[str, ...]
    needs_restart: tuple[str, ...]
    steps: tuple[TerminalStep, ...]
    http: HttpConfig | None = None  # what to run with


def plan(old: Config, new: Config) -> Plan:
    current = old.daemon
    differ = [
        f.name
        for f in attrs.fields(DaemonConfig)
        if getattr(new.daemon, f.name) != getattr(current, f.name)
    ]
    needs_restart = tuple(k for k in differ if k in RESTART_KEYS)
    daemon = attrs.evolve(new.daemon, **{k: getattr(current, k) for k in needs_restart})
    applied = tuple(k for k in differ if k not in RESTART_KEYS)
    http = new.http
    if old.http != new.http:
        if _listening(old.http) != _listening(new.http):
            http, needs_restart = old.http, (*needs_restart, "http")
        else:
            applied = (*applied, "http")
    return Plan(daemon, applied, needs_restart, _terminal_steps(old, new), http)


def _listening(cfg: HttpConfig | None) -> tuple[object, ...] | None:
    return None if cfg is None else (cfg.host, cfg.port, cfg.tls_cert, cfg.tls_key, cfg.client_ca)


def _terminal_steps(old: Config, new: Config) -> tuple[TerminalStep, ...]:
    before = {t.id: t for t in old.terminals}
    after = {t.id: t for t in new.terminals}
    cloud_changed = new.cloud != old.cloud
    steps = [TerminalStep(tid, "remove", None) for tid in sorted(set(before) - set(after))]
    for tid in sorted(set(before) & set(after)):
        was, now = before[tid], after[tid]
        if was != now or cloud_changed:
            moved = (was.host, was.port) != (now.host, now.port)
            steps.append(TerminalStep(tid, "change", now, moved))
    steps += [TerminalStep(tid, "add", after[tid]) for tid in sorted(set(after) - set(before))]
    return tuple(steps)
