"""What each socket API method takes and returns, declared once (design.md §2, docs/api.md).

``SPECS``: each method's params (``api/params.py``: the one validator, run by
``server.dispatch``) and its result; ``SCHEMAS``: the named shapes results and events
share (JSON Schema). ``api/openrpc.py`` makes the OpenRPC document of them
(``docs/openrpc.json``), from which the clients' types are made.
"""

from __future__ import annotations

from typing import Any, Final

from ecrd.api.params import MethodSpec, Param
from ecrd.protocol.actions import MONEY_ACTIONS
from ecrd.store.journal import STATES
from ecrd.store.journal_view import MAX_PAGE
from ecrd.terminal.probe import MAX_LIMIT_S

PROTOCOL_VERSION: Final = 1
TOPICS: Final = ("transaction.state", "transaction.disputed", "terminal")
PAYMENT_METHODS: Final = ("credit_card", "fps", "octopus", "consumer_presented_qr_code")
# A payment's ``extra``, as compact UTF-8 JSON: it is journaled with the payment and comes
# back in every listing, so it is bounded like the rest of a record (docs/api.md).
MAX_EXTRA_BYTES: Final = 4096

# -- the params ---------------------------------------------------------------------------

TERMINAL = Param("terminal", "string", "the terminal's id in the config", required=True)
TERMINAL_FILTER = Param("terminal", "string", "only this terminal's")
AMOUNT = Param("amount", "string", "the amount", required=True, format="amount")
CURRENCY = Param(
    "currency", "string", "ISO 4217 code of an active currency (or one of "
    "[daemon].extra_currencies)", required=True, format="currency",
)  # fmt: skip
REFERENCE = Param(
    "reference_id", "string", "the idempotency key: send your own (your order's payment "
    "id) and reuse it on a retry; generated if absent",
)  # fmt: skip
ORIGINAL = Param(
    "original_reference_id", "string", "the reference_id of the payment undone", required=True
)
ELSEWHERE = Param(
    "original_elsewhere", "boolean", "the original was taken on another box (only the "
    "terminal checks it)",
)  # fmt: skip
MONEY_TIMEOUT = Param(
    "timeout_s", "number", "seconds to wait for the customer (default: the terminal's "
    "timeout_s)", low=1, high=3600,
)  # fmt: skip
EXTRA = Param(
    "extra", "object", "further body fields, forwarded unchanged", max_bytes=MAX_EXTRA_BYTES
)
WAIT = Param("wait", "boolean", "wait while the terminal is busy instead of terminal_busy")
SALE_PARAMS: Final = (
    TERMINAL,
    AMOUNT,
    CURRENCY,
    Param("customer_order_id", "string", "your order's id, for the terminal's records"),
    Param("payment_method", "string", "how the customer pays", choices=PAYMENT_METHODS),
    Param("print", "string", "whether the terminal prints a receipt", choices=("YES", "NO")),
    EXTRA,
    REFERENCE,
    MONEY_TIMEOUT,
    WAIT,
)
REFUND_PARAMS: Final = (*SALE_PARAMS[:7], ORIGINAL, ELSEWHERE, *SALE_PARAMS[7:])
VOID_PARAMS: Final = (TERMINAL, ORIGINAL, EXTRA, ELSEWHERE, REFERENCE, MONEY_TIMEOUT, WAIT)
LIMIT = Param("limit", "integer", "at most this many (default 100)", low=1, high=MAX_PAGE)


def _time(name: str, doc: str) -> Param:
    return Param(name, "string", doc, max_len=40, format="date-time")


# -- the shapes ---------------------------------------------------------------------------


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def shape(
    title: str, doc: str, props: dict[str, Any], *, optional: tuple[str, ...] = (),
    open_: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """An object: every key of ``props`` is always there but those ``optional``; ``open_``:
    it may hold others (the terminal's own fields)."""
    return {
        "title": title, "description": doc, "type": "object", "properties": props,
        "required": [k for k in props if k not in optional], "additionalProperties": open_,
    }  # fmt: skip


def opt(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


STR: Final = {"type": "string"}
INT: Final = {"type": "integer"}
BOOL: Final = {"type": "boolean"}
OBJ: Final = {"type": "object"}
STRS: Final = {"type": "array", "items": STR}
TERMINAL_REPLY = shape("TerminalReply", "the terminal's reply body, verbatim", {}, open_=True)

TRANSACTION: Final = {
    "reference_id": STR,
    "terminal": STR,
    "action": {"type": "string", "enum": list(MONEY_ACTIONS)},
    "amount": opt("string"),
    "approved_amount": opt("string"),
    "currency": opt("string"),
    "state": {"type": "string", "enum": list(STATES)},
    "reply": opt("object"),
    "error": opt("object"),
    "note": opt("string"),
    "resolved_by": opt("string"),
    "created_at": STR,
    "updated_at": STR,
    "link": opt("string"),
    "request_id": opt("string"),
    "params": OBJ,
}
SUMMARY: Final = {
    "id": STR,
    "transport": {"type": "string", "enum": ["lan", "serial", "cloud"]},
    "fallback": opt("string"),
    "paired": BOOL,
    "pairing_unconfirmed": BOOL,
    "device_sn": opt("string"),
    "business_id": opt("string"),
    "link": {"type": "string", "enum": ["up", "down", "unknown"]},
    "busy": BOOL,
    "last_error": opt("string"),
}
SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "Ping": shape("Ping", "ecrd's version", {"version": STR, "protocol": INT}),
    "TerminalSummary": shape("TerminalSummary", "one terminal as ecrd sees it", SUMMARY),
    "Status": shape("Status", "the daemon, its terminals and its journal", {
        "version": STR, "pid": INT, "uptime_s": {"type": "number"}, "config": STR,
        "socket": STR, "terminals": {"type": "array", "items": ref("TerminalSummary")},
        "journal": {"type": "object", "additionalProperties": INT}, "journal_problem":
        opt("string"), "unwritten": STRS, "journal_records": INT, "journal_bytes": INT,
        "in_flight": INT, "reload_error": opt("string"), "stopping": BOOL,
    }),
    "Transaction": shape("Transaction", "a transaction record (docs/api.md)", TRANSACTION),
    "TransactionDetail": shape("TransactionDetail", "a record, who started it and its "
        "audit trail, oldest first", {**TRANSACTION, "started_by": opt("string"),
        "history": {"type": "array", "items": OBJ}}),
    "Paired": shape("Paired", "the terminal paired", {
        "terminal": STR, "device_sn": STR, "info": ref("TerminalReply")}),
    "Unpaired": shape("Unpaired", "the terminal unpaired", {"terminal": STR, "paired": BOOL}),
    "TerminalReply": TERMINAL_REPLY,
    "Subscribed": shape("Subscribed", "the topics subscribed to", {"subscribed": STRS}),
    "Reloaded": shape("Reloaded", "what a reload changed", {
        "added": STRS, "removed": STRS, "changed": STRS, "deferred": STRS,
        "failed": {"type": "object", "additionalProperties": STR}, "applied": STRS,
        "needs_restart": STRS}, optional=("applied", "needs_restart")),
    "Backup": shape("Backup", "the backup written", {
        "journal": STR, "records": INT, "pairings": STR}, optional=("pairings",)),
    "AuditRow": shape("AuditRow", "one admin action or prune", {
        "seq": INT, "at": STR, "who": STR, "action": STR, "terminal": opt("string"),
        "detail": OBJ, "result": STR}),
    "Probed": shape("Probed", "what the probe found (docs/api.md: two modes)",
                    {"terminal": STR, "tried": {"type": "array"}}, open_=True),
    "Trace": shape("Trace", "the trace's state, and its last lines if asked", {
        "terminal": STR, "trace": BOOL, "file": opt("string"),
        "lines": {"type": "array", "items": OBJ}}, optional=("lines",)),
    "Event": shape("Event", "a notification's params (method 'event'), after subscribe", {
        "topic": {"type": "string", "enum": list(TOPICS)}, "at": {"type": "number"},
        "terminal": STR, "reference_id": STR, "state": STR}, optional=("terminal",
        "reference_id", "state"), open_=True),
}  # fmt: skip


def _spec(name: str, summary: str, result: dict[str, Any], *params: Param) -> MethodSpec:
    return MethodSpec(name, summary, params, result)


MONEY_RESULT: Final = ref("Transaction")
SPECS: Final[dict[str, MethodSpec]] = {
    spec.name: spec
    for spec in (
        _spec("ping", "is ecrd alive, and which version", ref("Ping")),
        _spec("status", "the daemon, its terminals and its journal", ref("Status")),
        _spec("terminal.list", "the terminals", {
            "type": "array", "items": ref("TerminalSummary")}),
        _spec("terminal.pair", "pair a terminal with the code its pairing page shows",
              ref("Paired"), TERMINAL, Param("code", "code", "the pairing code, or the QR "
              "code's JSON (text or object)", required=True)),
        _spec("terminal.unpair", "forget a terminal's pairing", ref("Unpaired"), TERMINAL),
        _spec("terminal.info", "the terminal's DeviceInfo (shared, cached)",
              ref("TerminalReply"), TERMINAL),
        _spec("terminal.send", "send an allowed read-only action", ref("TerminalReply"),
              TERMINAL, Param("action", "string", "DeviceInfo, the status_action or one of "
              "send_actions", required=True, max_len=64),
              Param("body", "object", "the action's body")),
        _spec("terminal.probe", "find the settings a terminal answers under, or its status "
              "action", ref("Probed"), TERMINAL,
              Param("code", "string", "the pairing code (find the settings)", max_len=1024),
              Param("timeout_s", "number", "bound the probe", low=1, high=MAX_LIMIT_S),
              Param("status", "boolean", "which status action a paired terminal knows")),
        _spec("terminal.trace", "switch the wire trace, read its last lines", ref("Trace"),
              TERMINAL, Param("on", "boolean", "switch it on or off until a reload"),
              Param("tail", "integer", "the last lines", low=1, high=1000)),
        _spec("sale", "charge the customer", MONEY_RESULT, *SALE_PARAMS),
        _spec("preauth", "hold an amount", MONEY_RESULT, *SALE_PARAMS),
        _spec("refund", "refund (part of) a sale", MONEY_RESULT, *REFUND_PARAMS),
        _spec("void", "undo a payment whole", MONEY_RESULT, *VOID_PARAMS),
        _spec("abort", "cancel the payment in progress", ref("TerminalReply"), TERMINAL,
              Param("reference_id", "string", "the payment (default: the one in progress)")),
        _spec("transaction.get", "one transaction, who started it and its history",
              ref("TransactionDetail"), Param("reference_id", "string", "its reference",
              required=True)),
        _spec("transaction.list", "a page of transactions, newest first", {
              "type": "array", "items": MONEY_RESULT}, TERMINAL_FILTER,
              Param("state", "string", "only in this state", choices=STATES),
              _time("since", "created at or after (RFC 3339 with offset)"),
              _time("until", "created before (RFC 3339 with offset)"),
              Param("before", "string", "the reference_id of the previous page's last"),
              LIMIT),
        _spec("transaction.resolve", "settle an unknown (or disputed) transaction",
              MONEY_RESULT, Param("reference_id", "string", "its reference", required=True),
              Param("outcome", "string", "what the terminal's list shows", required=True,
              choices=("succeeded", "failed")),
              Param("note", "string", "why (required for a disputed one)", max_len=1000)),
        _spec("subscribe", "events on this connection", ref("Subscribed"),
              Param("topics", "array", "default: all", choices=TOPICS)),
        _spec("config.reload", "re-read the config file", ref("Reloaded")),
        _spec("metrics", "the Prometheus text", STR),
        _spec("journal.backup", "an online copy of the journal", ref("Backup"),
              Param("path", "string", "a new file", required=True, max_len=4096,
              format="absolute-path"),
              Param("with_pairings", "boolean", "also copy pairings.toml (PINs)")),
        _spec("journal.audit", "the audit table, newest first", {
              "type": "array", "items": ref("AuditRow")}, LIMIT,
              Param("before", "integer", "rows older than this seq", low=1, high=2**62),
              Param("action", "string", "one method's rows", max_len=64)),
    )
}  # fmt: skip
