"""Fault injection for the simulated terminal: what can go wrong, and when it fires.

A fault is armed by name (``FAULTS`` is the catalogue) and fires on a later request:

* **one-shot** (the default): fires on the next request it applies to, then disarms;
* **sticky**: fires on every request it applies to until cleared.

Which requests a fault applies to is its *scope*: the customer faults (``delay``,
``decline``, ``never_answer``) and ``drop`` apply to money actions (Sale, PreAuth, Refund,
Void); the reply faults apply to any reply. Some only make sense on one kind of link
(``garbage``/``bad_crc`` on serial, ``dribble`` on LAN and serial, ``business_mismatch`` on
the cloud gateway); on other links they neither fire nor disarm. An explicit ``actions``
list replaces the default scope.

Invariants:

* ``take`` is the only place a one-shot fault is consumed, so a fault never fires twice
  and never fires for a request outside its scope.
* Parameters are validated when the fault is armed, never when it fires: a bad control
  API call fails at once with a message, not later inside a request.
* Magic amounts (see ``MAGIC_CENTS``) produce the same ``Fault`` objects, one-shot, for
  the one request that carries them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ecrd.protocol import actions
from ecrd.protocol.envelope import AmountError, parse_amount

MONEY_ACTIONS: Final = frozenset(actions.MONEY_ACTIONS)
ALL_LINKS: Final = frozenset({"lan", "serial", "cloud"})
MISMATCH_FIELDS: Final = (
    "referenceID",
    "amount",
    "currency",
    "transactionType",
    "action",
    "duplicate_keys",
)


@attrs.frozen
class FaultKind:
    """One entry of the catalogue: where a fault can fire and which parameters it takes."""

    help: str
    links: frozenset[str] = ALL_LINKS
    money_only: bool = False
    params: Mapping[str, float | str] = attrs.field(factory=dict)


FAULTS: Final[Mapping[str, FaultKind]] = {
    "delay": FaultKind(
        "the customer takes `seconds` before the terminal answers; Abort ends it ABORTED",
        money_only=True,
        params={"seconds": 1.0},
    ),
    "decline": FaultKind(
        "the card is declined: status Failed, not charged",
        money_only=True,
        params={"error_code": "DECLINED", "error_message": "Card declined"},
    ),
    "never_answer": FaultKind(
        "the terminal holds the request until Abort, reboot, or the connection closes",
        money_only=True,
    ),
    "drop": FaultKind(
        "the charge is recorded, then no reply: LAN closes the TCP connection, serial "
        "sends nothing, the cloud gateway answers 502",
        money_only=True,
    ),
    "wrong_key": FaultKind("the reply is sealed under a key the client cannot have"),
    "not_json": FaultKind(
        "the reply is sealed under the right key, but what it seals is `text`, not JSON",
        params={"text": "<html><body>500 Internal Server Error</body></html>"},
    ),
    "stale_response": FaultKind("the reply's responseID names an earlier request"),
    "garbage": FaultKind(
        "`bytes` bytes of noise (including a false 0x55 start) before the reply frame",
        links=frozenset({"serial"}),
        params={"bytes": 16.0},
    ),
    "bad_crc": FaultKind(
        "the reply frame's data CRC is corrupted, so a receiver must drop it",
        links=frozenset({"serial"}),
    ),
    "dribble": FaultKind(
        "the reply is written at `bytes_per_s`",
        links=frozenset({"lan", "serial"}),
        params={"bytes_per_s": 200.0},
    ),
    "mismatch": FaultKind(
        "the terminal charges, then its Success reply contradicts the request in `field`: "
        "referenceID, amount, currency, transactionType, action (the envelope's), or "
        'duplicate_keys (a "status":"Failed" before the real "status")',
        money_only=True,
        params={"field": "referenceID"},
    ),
    "business_mismatch": FaultKind(
        "the cloud gateway refuses: the terminal is bound to another business",
        links=frozenset({"cloud"}),
    ),
    "tip": FaultKind(
        "the customer adds a tip of `amount` on the terminal: the sale is approved and "
        "charged for more than asked (amount = total, tipAmount = the tip)",
        money_only=True,
        params={"amount": "2.00"},
    ),
    "partial": FaultKind(
        "the card approves only `amount` of the sale or preauth (a partial approval): "
        "charged that much, and the reply's amount says so",
        money_only=True,
        params={"amount": "1.00"},
    ),
    "status_answer": FaultKind(
        "the status action answers `status` with `error_code` (any casing) instead of the "
        'transaction, echoing its referenceID and transactionType when `echo` is "yes"',
        params={"status": "Failed", "error_code": "TRANSACTION_NOT_FOUND", "echo": "yes"},
    ),
}

# Amounts whose cents select a fault for that one request (Sale, PreAuth, Refund).
# .87-.89 and .91-.98 rather than round numbers, so that ordinary prices (.00, .50, .99) stay
# ordinary.
MAGIC_CENTS: Final[Mapping[int, str]] = {
    91: "decline",
    92: "delay",
    93: "never_answer",
    94: "drop",
    95: "wrong_key",
    96: "stale_response",
    97: "garbage",
    98: "bad_crc",
    89: "mismatch",  # the field: MISMATCH_FIELDS[whole units % 6]
    88: "tip",  # of 1.00
    87: "partial",  # 1.00 approved
}


class FaultError(ValueError):
    """A fault that cannot be armed (unknown name, bad parameter)."""


@attrs.frozen
class Fault:
    name: str
    params: Mapping[str, float | str]
    sticky: bool = False
    actions: frozenset[str] | None = None  # None: the kind's default scope

    def applies(self, action: str, link: str) -> bool:
        kind = FAULTS[self.name]
        if link not in kind.links:
            return False
        if self.actions is not None:
            return action in self.actions
        return not kind.money_only or action in MONEY_ACTIONS

    def to_obj(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": dict(self.params),
            "sticky": self.sticky,
            "actions": sorted(self.actions) if self.actions is not None else None,
        }


def make_fault(
    name: str,
    *,
    sticky: bool = False,
    actions: Iterable[str] | None = None,
    params: Mapping[str, object] | None = None,
) -> Fault:
    """Validate and build a fault; raises ``FaultError`` with a message for a person."""
    kind = FAULTS.get(name)
    if kind is None:
        raise FaultError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
    merged: dict[str, float | str] = dict(kind.params)
    for key, value in (params or {}).items():
        default = kind.params.get(key)
        if default is None:
            raise FaultError(f"fault {name!r} takes no parameter {key!r}")
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise FaultError(f"{name}.{key} must be a non-negative number")
            merged[key] = float(value)
        else:
            if not isinstance(value, str):
                raise FaultError(f"{name}.{key} must be a string")
            merged[key] = value
    if name == "mismatch" and merged["field"] not in MISMATCH_FIELDS:
        raise FaultError(f"mismatch.field must be one of {', '.join(MISMATCH_FIELDS)}")
    if name == "dribble" and float(merged["bytes_per_s"]) <= 0:
        raise FaultError("dribble.bytes_per_s must be greater than zero")
    if name in ("tip", "partial"):
        try:
            parse_amount(merged["amount"])
        except AmountError as exc:
            raise FaultError(f"{name}.amount: {exc}") from None
    if name == "status_answer" and merged["echo"] not in ("yes", "no"):
        raise FaultError('status_answer.echo must be "yes" or "no"')
    scope = None
    if actions is not None:
        scope = frozenset(actions)
        if not all(isinstance(a, str) for a in scope):
            raise FaultError("actions must be a list of action names")
    return Fault(name, merged, sticky, scope)


def magic_fault(amount: object, delay_s: float) -> Fault | None:
    """The fault an amount's cents ask for, if any (see ``MAGIC_CENTS``)."""
    try:
        value = parse_amount(amount)
    except AmountError:
        return None
    name = MAGIC_CENTS.get(int(value * 100 % 100))
    if name is None:
        return None
    params: dict[str, object] | None = None
    if name == "delay":
        params = {"seconds": delay_s}
    elif name == "mismatch":
        params = {"field": MISMATCH_FIELDS[int(value) % len(MISMATCH_FIELDS)]}
    elif name in ("tip", "partial"):
        params = {"amount": "1.00"}
    return make_fault(name, params=params)


class FaultBook:
    """The faults armed on one terminal."""

    def __init__(self) -> None:
        self._armed: list[Fault] = []

    def arm(self, fault: Fault) -> Fault:
        """Arm ``fault``, replacing any armed fault of the same name."""
        self.clear(fault.name)
        self._armed.append(fault)
        return fault

    def clear(self, name: str | None = None) -> int:
        """Disarm one fault by name, or all; returns how many were disarmed."""
        before = len(self._armed)
        self._armed = [f for f in self._armed if name is not None and f.name != name]
        return before - len(self._armed)

    def armed(self) -> list[Fault]:
        return list(self._armed)

    def take(self, action: str, link: str, names: Iterable[str]) -> dict[str, Fault]:
        """The armed faults among ``names`` that fire for this request; one-shots disarm."""
        wanted = set(names)
        fired: dict[str, Fault] = {}
        keep: list[Fault] = []
        for fault in self._armed:
            if fault.name in wanted and fault.applies(action, link):
                fired[fault.name] = fault
                if fault.sticky:
                    keep.append(fault)
            else:
                keep.append(fault)
        self._armed = keep
        return fired
