"""Made by ``python -m ecrd.docgen openrpc`` from docs/openrpc.json: do not edit.

The API's methods, typed (``Methods``, which ``Client`` completes with a transport),
the shapes of their results, and one exception class per error reason.
"""

from typing import Any, Literal, Optional, TypedDict, Union, cast

from ecrd_client._base import EcrdError


class ParseError(EcrdError):
    """``parse_error`` (-32700): docs/api.md, "Errors"."""

    reason_ = "parse_error"


class InternalError(EcrdError):
    """``internal_error`` (-32603): docs/api.md, "Errors"."""

    reason_ = "internal_error"


class InvalidParams(EcrdError):
    """``invalid_params`` (-32602): docs/api.md, "Errors"."""

    reason_ = "invalid_params"


class MethodNotFound(EcrdError):
    """``method_not_found`` (-32601): docs/api.md, "Errors"."""

    reason_ = "method_not_found"


class InvalidRequest(EcrdError):
    """``invalid_request`` (-32600): docs/api.md, "Errors"."""

    reason_ = "invalid_request"


class LineTooLong(EcrdError):
    """``line_too_long`` (-32600): docs/api.md, "Errors"."""

    reason_ = "line_too_long"


class PermissionDenied(EcrdError):
    """``permission_denied`` (-32030): docs/api.md, "Errors"."""

    reason_ = "permission_denied"


class ClientGone(EcrdError):
    """``client_gone`` (-32023): docs/api.md, "Errors"."""

    reason_ = "client_gone"


class ShuttingDown(EcrdError):
    """``shutting_down`` (-32022): docs/api.md, "Errors"."""

    reason_ = "shutting_down"


class JournalError(EcrdError):
    """``journal_error`` (-32021): docs/api.md, "Errors"."""

    reason_ = "journal_error"


class ConfigError(EcrdError):
    """``config_error`` (-32020): docs/api.md, "Errors"."""

    reason_ = "config_error"


class PairingNotSaved(EcrdError):
    """``pairing_not_saved`` (-32015): docs/api.md, "Errors"."""

    reason_ = "pairing_not_saved"


class PairingFailed(EcrdError):
    """``pairing_failed`` (-32014): docs/api.md, "Errors"."""

    reason_ = "pairing_failed"


class TerminalError(EcrdError):
    """``terminal_error`` (-32013): docs/api.md, "Errors"."""

    reason_ = "terminal_error"


class Timeout(EcrdError):
    """``timeout`` (-32013): docs/api.md, "Errors"."""

    reason_ = "timeout"


class NoReply(EcrdError):
    """``no_reply`` (-32013): docs/api.md, "Errors"."""

    reason_ = "no_reply"


class BadReply(EcrdError):
    """``bad_reply`` (-32013): docs/api.md, "Errors"."""

    reason_ = "bad_reply"


class StaleResponse(EcrdError):
    """``stale_response`` (-32013): docs/api.md, "Errors"."""

    reason_ = "stale_response"


class WrongTerminal(EcrdError):
    """``wrong_terminal`` (-32013): docs/api.md, "Errors"."""

    reason_ = "wrong_terminal"


class MalformedMessage(EcrdError):
    """``malformed_message`` (-32013): docs/api.md, "Errors"."""

    reason_ = "malformed_message"


class WrongKey(EcrdError):
    """``wrong_key`` (-32012): docs/api.md, "Errors"."""

    reason_ = "wrong_key"


class TimeoutOutcomeUnknown(EcrdError):
    """``timeout_outcome_unknown`` (-32011): docs/api.md, "Errors"."""

    reason_ = "timeout_outcome_unknown"


class LinkDown(EcrdError):
    """``link_down`` (-32010): docs/api.md, "Errors"."""

    reason_ = "link_down"


class CloudNotConfigured(EcrdError):
    """``cloud_not_configured`` (-32010): docs/api.md, "Errors"."""

    reason_ = "cloud_not_configured"


class CloudRefused(EcrdError):
    """``cloud_refused`` (-32010): docs/api.md, "Errors"."""

    reason_ = "cloud_refused"


class OriginalNotFound(EcrdError):
    """``original_not_found`` (-32009): docs/api.md, "Errors"."""

    reason_ = "original_not_found"


class OriginalNotRefundable(EcrdError):
    """``original_not_refundable`` (-32009): docs/api.md, "Errors"."""

    reason_ = "original_not_refundable"


class CurrencyMismatch(EcrdError):
    """``currency_mismatch`` (-32009): docs/api.md, "Errors"."""

    reason_ = "currency_mismatch"


class RefundExceedsOriginal(EcrdError):
    """``refund_exceeds_original`` (-32009): docs/api.md, "Errors"."""

    reason_ = "refund_exceeds_original"


class ActionNotAllowed(EcrdError):
    """``action_not_allowed`` (-32008): docs/api.md, "Errors"."""

    reason_ = "action_not_allowed"


class InvalidState(EcrdError):
    """``invalid_state`` (-32007): docs/api.md, "Errors"."""

    reason_ = "invalid_state"


class DuplicateReferenceMismatch(EcrdError):
    """``duplicate_reference_mismatch`` (-32006): docs/api.md, "Errors"."""

    reason_ = "duplicate_reference_mismatch"


class UnresolvedTransaction(EcrdError):
    """``unresolved_transaction`` (-32005): docs/api.md, "Errors"."""

    reason_ = "unresolved_transaction"


class TerminalBusy(EcrdError):
    """``terminal_busy`` (-32004): docs/api.md, "Errors"."""

    reason_ = "terminal_busy"


class NotPaired(EcrdError):
    """``not_paired`` (-32003): docs/api.md, "Errors"."""

    reason_ = "not_paired"


class TransactionNotFound(EcrdError):
    """``transaction_not_found`` (-32002): docs/api.md, "Errors"."""

    reason_ = "transaction_not_found"


class TerminalNotFound(EcrdError):
    """``terminal_not_found`` (-32001): docs/api.md, "Errors"."""

    reason_ = "terminal_not_found"


class TooManyClients(EcrdError):
    """``too_many_clients`` (-32000): docs/api.md, "Errors"."""

    reason_ = "too_many_clients"


BY_REASON: dict[str, type[EcrdError]] = {
    "parse_error": ParseError,
    "internal_error": InternalError,
    "invalid_params": InvalidParams,
    "method_not_found": MethodNotFound,
    "invalid_request": InvalidRequest,
    "line_too_long": LineTooLong,
    "permission_denied": PermissionDenied,
    "client_gone": ClientGone,
    "shutting_down": ShuttingDown,
    "journal_error": JournalError,
    "config_error": ConfigError,
    "pairing_not_saved": PairingNotSaved,
    "pairing_failed": PairingFailed,
    "terminal_error": TerminalError,
    "timeout": Timeout,
    "no_reply": NoReply,
    "bad_reply": BadReply,
    "stale_response": StaleResponse,
    "wrong_terminal": WrongTerminal,
    "malformed_message": MalformedMessage,
    "wrong_key": WrongKey,
    "timeout_outcome_unknown": TimeoutOutcomeUnknown,
    "link_down": LinkDown,
    "cloud_not_configured": CloudNotConfigured,
    "cloud_refused": CloudRefused,
    "original_not_found": OriginalNotFound,
    "original_not_refundable": OriginalNotRefundable,
    "currency_mismatch": CurrencyMismatch,
    "refund_exceeds_original": RefundExceedsOriginal,
    "action_not_allowed": ActionNotAllowed,
    "invalid_state": InvalidState,
    "duplicate_reference_mismatch": DuplicateReferenceMismatch,
    "unresolved_transaction": UnresolvedTransaction,
    "terminal_busy": TerminalBusy,
    "not_paired": NotPaired,
    "transaction_not_found": TransactionNotFound,
    "terminal_not_found": TerminalNotFound,
    "too_many_clients": TooManyClients,
}
# A reason this client does not know yet: the class of the first with its code.
BY_CODE: dict[int, type[EcrdError]] = {
    -32700: ParseError,
    -32603: InternalError,
    -32602: InvalidParams,
    -32601: MethodNotFound,
    -32600: InvalidRequest,
    -32030: PermissionDenied,
    -32023: ClientGone,
    -32022: ShuttingDown,
    -32021: JournalError,
    -32020: ConfigError,
    -32015: PairingNotSaved,
    -32014: PairingFailed,
    -32013: TerminalError,
    -32012: WrongKey,
    -32011: TimeoutOutcomeUnknown,
    -32010: LinkDown,
    -32009: OriginalNotFound,
    -32008: ActionNotAllowed,
    -32007: InvalidState,
    -32006: DuplicateReferenceMismatch,
    -32005: UnresolvedTransaction,
    -32004: TerminalBusy,
    -32003: NotPaired,
    -32002: TransactionNotFound,
    -32001: TerminalNotFound,
    -32000: TooManyClients,
}


TerminalReply = dict[str, Any]  # the terminal's reply body, verbatim (open)


Probed = dict[str, Any]  # what the probe found (docs/api.md: two modes) (open)


Event = dict[str, Any]  # a notification's params (method 'event'), after subscribe (open)


class Ping(TypedDict):
    """ecrd's version"""

    version: str
    protocol: int


class TerminalSummary(TypedDict):
    """one terminal as ecrd sees it"""

    id: str
    transport: Literal["lan", "serial", "cloud"]
    fallback: Optional[str]
    paired: bool
    pairing_unconfirmed: bool
    device_sn: Optional[str]
    business_id: Optional[str]
    link: Literal["up", "down", "unknown"]
    busy: bool
    last_error: Optional[str]


class Status(TypedDict):
    """the daemon, its terminals and its journal"""

    version: str
    pid: int
    uptime_s: float
    config: str
    socket: str
    terminals: list[TerminalSummary]
    journal: dict[str, int]
    journal_problem: Optional[str]
    unwritten: list[str]
    journal_records: int
    journal_bytes: int
    in_flight: int
    reload_error: Optional[str]
    stopping: bool


class Transaction(TypedDict):
    """a transaction record (docs/api.md)"""

    reference_id: str
    terminal: str
    action: Literal["Sale", "PreAuth", "Refund", "Void"]
    amount: Optional[str]
    approved_amount: Optional[str]
    currency: Optional[str]
    state: Literal[
        "pending",
        "succeeded",
        "failed",
        "unknown",
        "resolved_succeeded",
        "resolved_failed",
        "disputed",
    ]
    reply: Optional[dict[str, Any]]
    error: Optional[dict[str, Any]]
    note: Optional[str]
    resolved_by: Optional[str]
    created_at: str
    updated_at: str
    link: Optional[str]
    request_id: Optional[str]
    params: dict[str, Any]


class TransactionDetail(TypedDict):
    """a record, who started it and its audit trail, oldest first"""

    reference_id: str
    terminal: str
    action: Literal["Sale", "PreAuth", "Refund", "Void"]
    amount: Optional[str]
    approved_amount: Optional[str]
    currency: Optional[str]
    state: Literal[
        "pending",
        "succeeded",
        "failed",
        "unknown",
        "resolved_succeeded",
        "resolved_failed",
        "disputed",
    ]
    reply: Optional[dict[str, Any]]
    error: Optional[dict[str, Any]]
    note: Optional[str]
    resolved_by: Optional[str]
    created_at: str
    updated_at: str
    link: Optional[str]
    request_id: Optional[str]
    params: dict[str, Any]
    started_by: Optional[str]
    history: list[dict[str, Any]]


class Paired(TypedDict):
    """the terminal paired"""

    terminal: str
    device_sn: str
    info: TerminalReply


class Unpaired(TypedDict):
    """the terminal unpaired"""

    terminal: str
    paired: bool


class Subscribed(TypedDict):
    """the topics subscribed to"""

    subscribed: list[str]


class _ReloadedKeys(TypedDict):
    """what a reload changed"""

    added: list[str]
    removed: list[str]
    changed: list[str]
    deferred: list[str]
    failed: dict[str, str]


class Reloaded(_ReloadedKeys, total=False):
    applied: list[str]
    needs_restart: list[str]


class _BackupKeys(TypedDict):
    """the backup written"""

    journal: str
    records: int


class Backup(_BackupKeys, total=False):
    pairings: str


class AuditRow(TypedDict):
    """one admin action or prune"""

    seq: int
    at: str
    who: str
    action: str
    terminal: Optional[str]
    detail: dict[str, Any]
    result: str


class _TraceKeys(TypedDict):
    """the trace's state, and its last lines if asked"""

    terminal: str
    trace: bool
    file: Optional[str]


class Trace(_TraceKeys, total=False):
    lines: list[dict[str, Any]]


__all__ = [
    "BY_CODE",
    "BY_REASON",
    "ActionNotAllowed",
    "AuditRow",
    "Backup",
    "BadReply",
    "ClientGone",
    "CloudNotConfigured",
    "CloudRefused",
    "ConfigError",
    "CurrencyMismatch",
    "DuplicateReferenceMismatch",
    "Event",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "InvalidState",
    "JournalError",
    "LineTooLong",
    "LinkDown",
    "MalformedMessage",
    "MethodNotFound",
    "Methods",
    "NoReply",
    "NotPaired",
    "OriginalNotFound",
    "OriginalNotRefundable",
    "Paired",
    "PairingFailed",
    "PairingNotSaved",
    "ParseError",
    "PermissionDenied",
    "Ping",
    "Probed",
    "RefundExceedsOriginal",
    "Reloaded",
    "ShuttingDown",
    "StaleResponse",
    "Status",
    "Subscribed",
    "TerminalBusy",
    "TerminalError",
    "TerminalNotFound",
    "TerminalReply",
    "TerminalSummary",
    "Timeout",
    "TimeoutOutcomeUnknown",
    "TooManyClients",
    "Trace",
    "Transaction",
    "TransactionDetail",
    "TransactionNotFound",
    "Unpaired",
    "UnresolvedTransaction",
    "WrongKey",
    "WrongTerminal",
]


class Methods:
    """One typed method per API method; ``call`` drops the params that are None."""

    def call(self, method: str, params: Optional[dict[str, Any]] = None) -> Any:
        raise NotImplementedError

    def ping(self) -> Ping:
        """is ecrd alive, and which version.

        ``ping``, role: none."""
        return cast(Ping, self.call("ping", {}))

    def status(self) -> Status:
        """the daemon, its terminals and its journal.

        ``status``, role: read."""
        return cast(Status, self.call("status", {}))

    def terminal_list(self) -> list[TerminalSummary]:
        """the terminals.

        ``terminal.list``, role: read."""
        return cast(list[TerminalSummary], self.call("terminal.list", {}))

    def terminal_pair(self, terminal: str, code: Union[str, dict[str, Any]]) -> Paired:
        """pair a terminal with the code its pairing page shows.

        ``terminal.pair``, role: admin."""
        return cast(Paired, self.call("terminal.pair", {"terminal": terminal, "code": code}))

    def terminal_unpair(self, terminal: str) -> Unpaired:
        """forget a terminal's pairing.

        ``terminal.unpair``, role: admin."""
        return cast(Unpaired, self.call("terminal.unpair", {"terminal": terminal}))

    def terminal_info(self, terminal: str) -> TerminalReply:
        """the terminal's DeviceInfo (shared, cached).

        ``terminal.info``, role: read."""
        return cast(TerminalReply, self.call("terminal.info", {"terminal": terminal}))

    def terminal_send(
        self, terminal: str, action: str, *, body: Optional[dict[str, Any]] = None
    ) -> TerminalReply:
        """send an allowed read-only action.

        ``terminal.send``, role: admin."""
        return cast(
            TerminalReply,
            self.call("terminal.send", {"terminal": terminal, "action": action, "body": body}),
        )

    def terminal_probe(
        self,
        terminal: str,
        *,
        code: Optional[str] = None,
        timeout_s: Optional[float] = None,
        status: Optional[bool] = None,
    ) -> Probed:
        """find the settings a terminal answers under, or its status action.

        ``terminal.probe``, role: admin."""
        return cast(
            Probed,
            self.call(
                "terminal.probe",
                {"terminal": terminal, "code": code, "timeout_s": timeout_s, "status": status},
            ),
        )

    def terminal_trace(
        self, terminal: str, *, on: Optional[bool] = None, tail: Optional[int] = None
    ) -> Trace:
        """switch the wire trace, read its last lines.

        ``terminal.trace``, role: admin."""
        return cast(
            Trace, self.call("terminal.trace", {"terminal": terminal, "on": on, "tail": tail})
        )

    def sale(
        self,
        terminal: str,
        amount: str,
        currency: str,
        *,
        customer_order_id: Optional[str] = None,
        payment_method: Optional[
            Literal["credit_card", "fps", "octopus", "consumer_presented_qr_code"]
        ] = None,
        print: Optional[Literal["YES", "NO"]] = None,
        extra: Optional[dict[str, Any]] = None,
        reference_id: Optional[str] = None,
        timeout_s: Optional[float] = None,
        wait: Optional[bool] = None,
    ) -> Transaction:
        """charge the customer.

        ``sale``, role: sell."""
        return cast(
            Transaction,
            self.call(
                "sale",
                {
                    "terminal": terminal,
                    "amount": amount,
                    "currency": currency,
                    "customer_order_id": customer_order_id,
                    "payment_method": payment_method,
                    "print": print,
                    "extra": extra,
                    "reference_id": reference_id,
                    "timeout_s": timeout_s,
                    "wait": wait,
                },
            ),
        )

    def preauth(
        self,
        terminal: str,
        amount: str,
        currency: str,
        *,
        customer_order_id: Optional[str] = None,
        payment_method: Optional[
            Literal["credit_card", "fps", "octopus", "consumer_presented_qr_code"]
        ] = None,
        print: Optional[Literal["YES", "NO"]] = None,
        extra: Optional[dict[str, Any]] = None,
        reference_id: Optional[str] = None,
        timeout_s: Optional[float] = None,
        wait: Optional[bool] = None,
    ) -> Transaction:
        """hold an amount.

        ``preauth``, role: sell."""
        return cast(
            Transaction,
            self.call(
                "preauth",
                {
                    "terminal": terminal,
                    "amount": amount,
                    "currency": currency,
                    "customer_order_id": customer_order_id,
                    "payment_method": payment_method,
                    "print": print,
                    "extra": extra,
                    "reference_id": reference_id,
                    "timeout_s": timeout_s,
                    "wait": wait,
                },
            ),
        )

    def refund(
        self,
        terminal: str,
        amount: str,
        currency: str,
        original_reference_id: str,
        *,
        customer_order_id: Optional[str] = None,
        payment_method: Optional[
            Literal["credit_card", "fps", "octopus", "consumer_presented_qr_code"]
        ] = None,
        print: Optional[Literal["YES", "NO"]] = None,
        extra: Optional[dict[str, Any]] = None,
        original_elsewhere: Optional[bool] = None,
        reference_id: Optional[str] = None,
        timeout_s: Optional[float] = None,
        wait: Optional[bool] = None,
    ) -> Transaction:
        """refund (part of) a sale.

        ``refund``, role: refund."""
        return cast(
            Transaction,
            self.call(
                "refund",
                {
                    "terminal": terminal,
                    "amount": amount,
                    "currency": currency,
                    "customer_order_id": customer_order_id,
                    "payment_method": payment_method,
                    "print": print,
                    "extra": extra,
                    "original_reference_id": original_reference_id,
                    "original_elsewhere": original_elsewhere,
                    "reference_id": reference_id,
                    "timeout_s": timeout_s,
                    "wait": wait,
                },
            ),
        )

    def void(
        self,
        terminal: str,
        original_reference_id: str,
        *,
        extra: Optional[dict[str, Any]] = None,
        original_elsewhere: Optional[bool] = None,
        reference_id: Optional[str] = None,
        timeout_s: Optional[float] = None,
        wait: Optional[bool] = None,
    ) -> Transaction:
        """undo a payment whole.

        ``void``, role: refund."""
        return cast(
            Transaction,
            self.call(
                "void",
                {
                    "terminal": terminal,
                    "original_reference_id": original_reference_id,
                    "extra": extra,
                    "original_elsewhere": original_elsewhere,
                    "reference_id": reference_id,
                    "timeout_s": timeout_s,
                    "wait": wait,
                },
            ),
        )

    def abort(self, terminal: str, *, reference_id: Optional[str] = None) -> TerminalReply:
        """cancel the payment in progress.

        ``abort``, role: sell."""
        return cast(
            TerminalReply, self.call("abort", {"terminal": terminal, "reference_id": reference_id})
        )

    def transaction_get(self, reference_id: str) -> TransactionDetail:
        """one transaction, who started it and its history.

        ``transaction.get``, role: read."""
        return cast(TransactionDetail, self.call("transaction.get", {"reference_id": reference_id}))

    def transaction_list(
        self,
        *,
        terminal: Optional[str] = None,
        state: Optional[
            Literal[
                "pending",
                "succeeded",
                "failed",
                "unknown",
                "resolved_succeeded",
                "resolved_failed",
                "disputed",
            ]
        ] = None,
        since: Optional[str] = None,
        until: Optional[str] = None,
        before: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> list[Transaction]:
        """a page of transactions, newest first.

        ``transaction.list``, role: read."""
        return cast(
            list[Transaction],
            self.call(
                "transaction.list",
                {
                    "terminal": terminal,
                    "state": state,
                    "since": since,
                    "until": until,
                    "before": before,
                    "limit": limit,
                },
            ),
        )

    def transaction_resolve(
        self,
        reference_id: str,
        outcome: Literal["succeeded", "failed"],
        *,
        note: Optional[str] = None,
    ) -> Transaction:
        """settle an unknown (or disputed) transaction.

        ``transaction.resolve``, role: admin."""
        return cast(
            Transaction,
            self.call(
                "transaction.resolve",
                {"reference_id": reference_id, "outcome": outcome, "note": note},
            ),
        )

    def subscribe(
        self,
        *,
        topics: Optional[
            list[Literal["transaction.state", "transaction.disputed", "terminal"]]
        ] = None,
    ) -> Subscribed:
        """events on this connection.

        ``subscribe``, role: read."""
        return cast(Subscribed, self.call("subscribe", {"topics": topics}))

    def config_reload(self) -> Reloaded:
        """re-read the config file.

        ``config.reload``, role: admin."""
        return cast(Reloaded, self.call("config.reload", {}))

    def metrics(self) -> str:
        """the Prometheus text.

        ``metrics``, role: read."""
        return cast(str, self.call("metrics", {}))

    def journal_backup(self, path: str, *, with_pairings: Optional[bool] = None) -> Backup:
        """an online copy of the journal.

        ``journal.backup``, role: admin."""
        return cast(
            Backup, self.call("journal.backup", {"path": path, "with_pairings": with_pairings})
        )

    def journal_audit(
        self,
        *,
        limit: Optional[int] = None,
        before: Optional[int] = None,
        action: Optional[str] = None,
    ) -> list[AuditRow]:
        """the audit table, newest first.

        ``journal.audit``, role: admin."""
        return cast(
            list[AuditRow],
            self.call("journal.audit", {"limit": limit, "before": before, "action": action}),
        )
