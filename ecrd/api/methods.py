"""The methods of the socket API (design.md §2, documented in docs/api.md).

Each method gets its params checked against its declaration (``api/declarations.py``, by
``MethodSpec.validate`` in ``server.dispatch``), checks what depends on the configuration
(the terminal, the box's currencies), and calls the daemon. Exceptions from lower layers
are translated into ``ApiError``s with stable reasons in ``translate``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

import trio

from ecrd import __version__, errors
from ecrd.api.declarations import MAX_EXTRA_BYTES as MAX_EXTRA_BYTES  # where tests look
from ecrd.api.declarations import PROTOCOL_VERSION, SPECS, TOPICS
from ecrd.api.errormap import money_result, translate
from ecrd.api.params import MethodSpec, Params
from ecrd.api.service import Client, Service
from ecrd.currencies import is_known
from ecrd.money.request import PaymentRequest
from ecrd.protocol.actions import MONEY_METHODS, money_like
from ecrd.store.journal_view import UnknownCursor
from ecrd.terminal.info import info as device_info
from ecrd.terminal.pairing import parse_pairing_code
from ecrd.terminal.pairing_flow import pair
from ecrd.terminal.probe import MAX_LIMIT_S, PROBE_HOLD, discover_status, probe
from ecrd.terminal.terminal import Terminal

Method = Callable[[Service, Client, Params], Awaitable[Any]]


# -- methods ------------------------------------------------------------------------------


async def ping(daemon: Service, conn: Client, p: Params) -> Any:
    return {"version": __version__, "protocol": PROTOCOL_VERSION}


async def status(daemon: Service, conn: Client, p: Params) -> Any:
    async with conn.reading():  # it counts the journal: a read like the listings
        return await daemon.status()


async def terminal_list(daemon: Service, conn: Client, p: Params) -> Any:
    return [t.summary() for t in daemon.terminals.values()]


async def terminal_pair(daemon: Service, conn: Client, p: Params) -> Any:
    term = p.terminal(daemon)
    code = p["code"]
    daemon.log_peer("pair", term.id, conn.peer)
    async with daemon.payments.holding(term, "pairing"):  # no sale under a changing PIN
        try:
            return await pair(term, code)
        except Exception as exc:
            raise translate(exc, pairing=True) from exc


async def terminal_unpair(daemon: Service, conn: Client, p: Params) -> Any:
    term = p.terminal(daemon)
    daemon.log_peer("unpair", term.id, conn.peer)
    async with daemon.payments.holding(term, "unpairing"):
        await term.unpair()
    return {"terminal": term.id, "paired": False}


async def terminal_info(daemon: Service, conn: Client, p: Params) -> Any:
    """One DeviceInfo in flight per terminal, shared and kept a few seconds, and never
    sent ahead of a payment on it (terminal/info.py)."""
    term = p.terminal(daemon)
    try:
        return await device_info(term, partial(daemon.payments.wait_quiet, term))
    except Exception as exc:
        raise translate(exc) from exc


def _currency(p: Params, extra: tuple[str, ...]) -> str:
    currency: str = p["currency"]
    if not is_known(currency, extra):
        raise errors.InvalidParams(
            f"currency {currency!r} is not an ISO 4217 currency (a terminal's own code can be "
            "allowed with [daemon].extra_currencies)",
            field="currency",
        )
    return currency


def _money_params(p: Params, action: str, currencies: tuple[str, ...]) -> dict[str, Any]:
    if action == "Void":
        return {
            "original_reference_id": p["original_reference_id"],
            "extra": p["extra"],
            "original_elsewhere": p["original_elsewhere"] or None,
        }
    params = {
        "amount": p["amount"],
        "currency": _currency(p, currencies),
        "customer_order_id": p["customer_order_id"],
        "payment_method": p["payment_method"],
        "print": p["print"],
        "extra": p["extra"],
    }
    if action == "Refund":
        params["original_reference_id"] = p["original_reference_id"]
        params["original_elsewhere"] = p["original_elsewhere"] or None
    return params


def money(name: str) -> Method:
    action = MONEY_METHODS[name]

    async def method(daemon: Service, conn: Client, p: Params) -> Any:
        term = p.terminal(daemon)
        params = _money_params(p, action, daemon.config.daemon.extra_currencies)
        params = {k: v for k, v in params.items() if v is not None}
        ref = p["reference_id"] or str(uuid.uuid4())
        timeout = p["timeout_s"]
        wait = bool(p["wait"])
        request = PaymentRequest(term.id, action, ref, **params)
        try:  # an accepted one is logged once, by Payments ("accepted from ...")
            record = await daemon.payments.money(
                request,
                peer=conn.peer,
                wait=wait,
                timeout_s=timeout,
                still_wanted=conn.connected,
            )
        except errors.ApiError as exc:
            why = errors.reason_of(exc)
            daemon.log_peer(f"{name} refused ({why})", term.id, conn.peer, ref=ref)
            raise
        return money_result(record)

    method.__name__ = name
    return method


async def abort(daemon: Service, conn: Client, p: Params) -> Any:
    term = p.terminal(daemon)
    ref = p["reference_id"] or daemon.payments.payment_on(term)
    daemon.log_peer("abort", term.id, conn.peer, ref=ref or "-")
    try:
        response = await term.exchange(
            "Abort", {"referenceID": ref} if ref else {}, timeout=term.cfg.info_timeout_s
        )
    except Exception as exc:
        raise translate(exc) from exc
    return response.body


async def transaction_get(daemon: Service, conn: Client, p: Params) -> Any:
    ref = p["reference_id"]
    view = daemon.journal_view
    async with conn.reading():
        record = await daemon.read(view.get, ref)
        if record is None:
            raise errors.TransactionNotFound(f"no transaction with reference_id {ref!r}")
        started_by = await daemon.read(view.started_by, ref)
        history = await daemon.read(view.history, ref)
    seen = daemon.payments.authority.seen(record)
    return {**seen, "started_by": started_by, "history": history}


async def transaction_list(daemon: Service, conn: Client, p: Params) -> Any:
    """One page, newest first (docs/api.md, "Paging")."""
    state = p["state"]
    authority = daemon.payments.authority
    query = {
        "terminal": p["terminal"],
        "state": state,
        # Unknown to the API, pending in the journal: their evidence waits to be written.
        "also": list(authority.unwritten) if state == "unknown" else [],
        "since": p["since"],
        "until": p["until"],
        "before": p["before"],
        "limit": p["limit"] or 100,
    }
    try:
        async with conn.reading() as max_bytes:
            # Records become API dicts on the reader thread too: a page is up to 500 of them.
            return await daemon.read(
                lambda: [
                    authority.seen(r)
                    for r in daemon.journal_view.page(**query, max_bytes=max_bytes)
                ]
            )
    except UnknownCursor:
        raise errors.InvalidParams(
            "before must be the reference_id of a journaled transaction (the last one of the "
            "previous page)",
            field="before",
        ) from None


async def transaction_resolve(daemon: Service, conn: Client, p: Params) -> Any:
    ref, outcome, note = p["reference_id"], p["outcome"], p["note"] or ""
    daemon.log_peer(f"resolve {outcome}", "-", conn.peer, ref=ref)
    record = await daemon.payments.resolve(ref, outcome, note, who=conn.peer)
    return record.to_api()


async def terminal_send(daemon: Service, conn: Client, p: Params) -> Any:
    term = p.terminal(daemon)
    action, body = p["action"], p["body"]
    allowed = send_actions(term)
    if action not in allowed:
        raise errors.ActionNotAllowed(
            f"terminal.send forwards to {term.id!r} only {', '.join(allowed)}; money and "
            "pairing go through their own methods (sale, refund, void, terminal.pair), and "
            "another read-only action can be listed in the terminal's send_actions",
            field="action",
            allowed=list(allowed),
        )
    daemon.log_peer(f"send {action}", term.id, conn.peer)
    try:
        response = await term.exchange(action, body, timeout=term.cfg.info_timeout_s)
    except Exception as exc:
        raise translate(exc) from exc
    return response.body


def send_actions(term: Terminal) -> tuple[str, ...]:
    """What ``terminal.send`` forwards to ``term``: an allowlist, never a deny list — and
    never a money-like action, whatever a config says (``protocol/actions.py``, the one
    definition check-config and reload apply too)."""
    status = (term.cfg.status_action,) if term.cfg.status_action else ()
    listed = dict.fromkeys(("DeviceInfo", *status, *term.cfg.send_actions))
    return tuple(action for action in listed if not money_like(action))


async def terminal_probe(daemon: Service, conn: Client, p: Params) -> Any:
    """Which settings the terminal answers under (``code``: only its look-up, on links of
    the probe's own), or with ``status`` which status action a paired terminal knows
    (read-only actions about a reference never used); the terminal is busy meanwhile."""
    term = p.terminal(daemon)
    status, code = bool(p["status"]), p["code"]
    if not status and code is None:
        raise errors.InvalidParams("code is required", field="code")
    if status and code is not None:
        raise errors.InvalidParams(
            "give code (find the settings, on the pairing page) or status (a paired "
            "terminal), not both", field="code",
        )  # fmt: skip
    limit = p["timeout_s"] or MAX_LIMIT_S
    parsed = parse_pairing_code(code) if code is not None else None
    daemon.log_peer("probe --status" if status else "probe", term.id, conn.peer)
    async with daemon.payments.holding(term, PROBE_HOLD):
        progress = partial(daemon.events.publish, "terminal", terminal=term.id)
        on_try = lambda t: progress(probe=t)  # noqa: E731
        if parsed is None:
            return await discover_status(term, limit_s=limit, on_try=on_try)
        return await probe(
            term, parsed.pin, business_id=parsed.business_id, limit_s=limit, on_try=on_try
        )


async def terminal_trace(daemon: Service, conn: Client, p: Params) -> Any:
    """Turn a terminal's wire trace on or off (until a reload or restart: the entry's
    ``trace`` key is the lasting setting), and/or read its last ``tail`` lines."""
    term = p.terminal(daemon)
    on = p["on"]
    if on is not None:
        term.trace.on = on
        daemon.log_peer(f"trace {'on' if on else 'off'}", term.id, conn.peer)
    tail = p["tail"]
    result: dict[str, Any] = {
        "terminal": term.id,
        "trace": term.trace.on,
        "file": str(term.trace.path) if term.trace.path else None,
    }
    if tail is not None:
        result["lines"] = await trio.to_thread.run_sync(term.trace.tail, tail)
    return result


async def subscribe(daemon: Service, conn: Client, p: Params) -> Any:
    topics = p["topics"]
    chosen = frozenset(topics) if topics else None
    conn.subscribe(chosen)
    return {"subscribed": sorted(chosen or TOPICS)}


async def metrics(daemon: Service, conn: Client, p: Params) -> Any:
    """The Prometheus text (the same as ``[daemon] metrics_file``)."""
    async with conn.reading():
        return await daemon.metrics_text()


async def journal_backup(daemon: Service, conn: Client, p: Params) -> Any:
    path = p["path"]
    daemon.log_peer("journal.backup", "-", conn.peer, ref=path)
    try:
        return await daemon.backup(path, bool(p["with_pairings"]))
    except FileExistsError:
        raise errors.InvalidParams(
            f"{path} exists; a backup never overwrites", field="path"
        ) from None
    except OSError as exc:
        raise errors.InvalidParams(f"cannot write {path}: {exc.strerror}", field="path") from None


async def journal_audit(daemon: Service, conn: Client, p: Params) -> Any:
    """The audit table, newest first: who administered what, when, with what result (and
    every prune of the journal). Paged like ``transaction.list``, ``before`` a ``seq``."""
    async with conn.reading() as max_bytes:
        return await daemon.read(
            daemon.journal_view.audit, limit=p["limit"] or 100, action=p["action"],
            before=p["before"], max_bytes=max_bytes,
        )  # fmt: skip


async def config_reload(daemon: Service, conn: Client, p: Params) -> Any:
    daemon.log_peer("config.reload", "-", conn.peer)
    return await daemon.reload()


IMPLEMENTATIONS: Final[dict[str, Method]] = {
    "ping": ping,
    "status": status,
    "terminal.list": terminal_list,
    "terminal.pair": terminal_pair,
    "terminal.unpair": terminal_unpair,
    "terminal.info": terminal_info,
    "terminal.send": terminal_send,
    "terminal.probe": terminal_probe,
    "terminal.trace": terminal_trace,
    "sale": money("sale"),
    "preauth": money("preauth"),
    "refund": money("refund"),
    "void": money("void"),
    "abort": abort,
    "transaction.get": transaction_get,
    "transaction.list": transaction_list,
    "transaction.resolve": transaction_resolve,
    "subscribe": subscribe,
    "config.reload": config_reload,
    "metrics": metrics,
    "journal.backup": journal_backup,
    "journal.audit": journal_audit,
}
# Each method with its declaration (api/declarations.py): one without the other is a bug.
assert set(IMPLEMENTATIONS) == set(SPECS), set(IMPLEMENTATIONS) ^ set(SPECS)
METHODS: Final[dict[str, tuple[Method, MethodSpec]]] = {
    name: (IMPLEMENTATIONS[name], spec) for name, spec in SPECS.items()
}
