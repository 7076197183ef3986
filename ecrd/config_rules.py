"""Value rules of the config file that take more than a type and a range.

``config.parse`` applies them, and ``check-config``, ``run`` and ``config.reload`` all go
through ``config.load``: a value that passes here is one that start-up and reload can use
(a host httpx will take, a path that starts with ``/``), so a file that passes
``check-config`` never ends in a traceback at start nor in a terminal that silently vanishes
at reload.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
from typing import Final

from ecrd.protocol.actions import CONTROL_ACTIONS, MONEY_ACTIONS, money_like
from ecrd.text import first_control

_LABEL: Final = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")
_FIELD: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def host_problem(host: str) -> str | None:
    """Why ``host`` is not a bare IP address or host name (None if it is one)."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.split(".")
    # A last label of digits only ("1.2.3.999") is a bad address, not a host name.
    if len(host) <= 253 and all(map(_LABEL.match, labels)) and not labels[-1].isdigit():
        return None
    return (
        "a bare IP address or host name, without scheme, port or path "
        '(e.g. "192.168.1.50"; the port goes in port = ...)'
    )


def path_problem(path: str) -> str | None:
    if not path.startswith("/") or any(c.isspace() for c in path) or first_control(path, ""):
        return 'a URL path starting with "/", without spaces (e.g. "/v2/wonder/payment/ecr")'
    return None


def action_problem(action: str) -> str | None:
    """A status query, a pairing confirmation or a ``terminal.send`` action is sent on its
    own, outside the money rules: it must never be able to charge, refund, capture, adjust,
    cancel or re-pair (design.md §3; ``protocol/actions.py`` says which names may)."""
    if money_like(action):
        return (
            "a read-only action: never one that may move money, pair or cancel ("
            + ", ".join((*MONEY_ACTIONS, *CONTROL_ACTIONS))
            + ", PreAuthCompletion, Capture, TipAdjust...)"
        )
    return None


def currency_problem(code: str) -> str | None:
    if not _CURRENCY.match(code):
        return "a list of three-letter upper-case currency codes"
    return None


def socket_problem(socket: str, state_dir: str) -> str | None:
    """The socket must not be inside state_dir: binding it may remove a stale socket
    there, and nothing in the state directory may ever be removed that way."""
    sock, state = os.path.abspath(socket), os.path.abspath(state_dir)
    if os.path.commonpath([sock, state]) == state:
        return f"outside state_dir ({state_dir}), e.g. /run/ecrd/ecrd.sock"
    return None


def group_problem(group: str) -> str | None:
    try:
        grp.getgrnam(group)
    except KeyError:
        return "an existing group on this machine"
    return None


def access_problem(entries: tuple[str, ...]) -> str | None:
    """[access] entries must name users or ``@group``s of this machine (or be ``*``)."""
    unknown = [e for e in entries if not _exists(e)]
    if unknown:
        return f"users or groups of this machine; unknown: {', '.join(unknown)}"
    return None


def _exists(entry: str) -> bool:
    try:
        if entry.startswith("@"):
            grp.getgrnam(entry[1:])
        elif entry != "*":
            pwd.getpwnam(entry)
    except KeyError:
        return False
    return True


def uuid_problem(value: str) -> str | None:
    if not _UUID.match(value):
        return "a UUID like 411d6207-1470-4d35-a557-54852463844d"
    return None


def url_problem(url: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return "an http:// or https:// URL"
    return None


def id_problem(tid: str) -> str | None:
    if not _ID.match(tid):
        return "a name of letters, digits, '.', '_' or '-' (max 64)"
    return None


def field_problem(name: str) -> str | None:
    if not _FIELD.match(name):
        return 'a JSON field name of letters, digits and "_"'
    return None
