"""Which calls are admin actions, and what of each the audit table keeps (store/audit.py).

``server.dispatch`` hands every call of an ``AUDITED`` method that passed its role check to
``Service.audit`` once it has its answer: who (the peer's label), what (the method and the
parameters listed here), when (the call's start), and the result (``ok``, or the error's
reason). A refused call (no role) is not an action: the refusal log says it, rate-limited
(``refusals.py``), and it never costs a journal write. A parameter that is a secret (the
pairing ``code``) or a payload (``terminal.send``'s ``body``) is never kept.
"""

from __future__ import annotations

from typing import Any, Final

AUDITED: Final[dict[str, tuple[str, ...]]] = {
    "terminal.pair": ("terminal",),  # never "code": it is the PIN the terminal takes
    "terminal.unpair": ("terminal",),
    "terminal.probe": ("terminal", "timeout_s"),  # never "code"
    "terminal.trace": ("terminal", "on", "tail"),
    "terminal.send": ("terminal", "action"),  # not "body": a payload, not who or what
    "abort": ("terminal", "reference_id"),
    "transaction.resolve": ("reference_id", "outcome", "note"),
    "config.reload": (),
    "journal.backup": ("path", "with_pairings"),
}
MAX_TEXT: Final = 4096  # what of one text parameter is kept


def detail(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of ``method`` the audit keeps, as plain JSON values."""
    kept: dict[str, Any] = {}
    for name in AUDITED[method]:
        value = params.get(name)
        if isinstance(value, str):
            kept[name] = value[:MAX_TEXT]
        elif isinstance(value, bool | int | float) or value is None:
            if name in params:
                kept[name] = value
        else:
            kept[name] = f"({type(value).__name__})"
    return kept


def result_of(reply: dict[str, Any]) -> str:
    """``ok``, or the stable reason of the error the call got."""
    error = reply.get("error")
    if not isinstance(error, dict):
        return "ok"
    return str((error.get("data") or {}).get("reason", "error"))
