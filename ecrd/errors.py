"""ecrd's one error tree: every error has a stable ``reason`` (design.md §2).

``Reasoned`` is the root. Each layer raises its own domain errors under it — the protocol
(``CryptoError``, ``ProtocolError``), the links (``LinkError``: ``NotDelivered`` /
``MaybeDelivered``), the stores (``PairingStoreError``, ``DuplicateReference``) — and the
errors below, which mean the same thing at every layer and reach the socket as they are.
One map at the API edge (``api/errormap.py``) turns the layers' errors into these;
``ApiError.to_error`` is the JSON-RPC error object. The ``code`` groups them;
``data.reason`` is the contract clients switch on. Who is at fault: the caller (fix your
request), the terminal or its link (check the device), or this box (check ecrd's logs).

    Reasoned
    └── ApiError
    ├── InvalidParams              caller   -32602 invalid_params
    ├── TerminalNotFound           caller   -32001 terminal_not_found
    ├── TransactionNotFound        caller   -32002 transaction_not_found
    ├── NotPaired                  admin    -32003 not_paired
    ├── TerminalBusy               caller   -32004 terminal_busy
    ├── UnresolvedTransaction      cashier  -32005 unresolved_transaction
    ├── DuplicateReferenceMismatch caller   -32006 duplicate_reference_mismatch
    ├── InvalidState               caller   -32007 invalid_state
    ├── ActionNotAllowed           caller   -32008 action_not_allowed
    ├── RefundRefused              caller   -32009 original_not_found / original_not_refundable /
    │                                              currency_mismatch / refund_exceeds_original
    ├── LinkDown                   link     -32010 link_down / cloud_not_configured
    ├── OutcomeUnknown             link     -32011 timeout_outcome_unknown
    ├── WrongKeyError              terminal -32012 wrong_key
    ├── TerminalError              terminal -32013 bad_reply / stale_response / wrong_terminal / ...
    ├── PairingFailed              terminal -32014 pairing_failed
    ├── PairingNotSaved            box      -32015 pairing_not_saved
    ├── ConfigError                admin    -32020 config_error
    ├── JournalError               box      -32021 journal_error
    ├── ShuttingDown               box      -32022 shutting_down
    ├── ClientGone                 caller   -32023 client_gone (logged; nobody reads it)
    └── PermissionDenied           caller   -32030 permission_denied (data.role)
"""

from __future__ import annotations

from typing import Any, ClassVar


class Reasoned(Exception):
    """Any error of ecrd's: ``reason`` is a stable string, safe to log and to switch on.
    A class names its usual reason; one error may carry a more precise one of its own
    (``RefundRefused(reason="currency_mismatch")``), and that one is its only reason."""

    reason: str = "error"


def reason_of(exc: BaseException) -> str:
    """The stable reason of any error (a foreign one: its class name, for the logs)."""
    return exc.reason if isinstance(exc, Reasoned) else type(exc).__name__


class ApiError(Reasoned):
    code: ClassVar[int] = -32000
    # The more precise reasons it may carry instead of its own (docs/api.md, "Errors").
    also: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str, *, reason: str | None = None, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.data = data

    def to_error(self) -> dict[str, Any]:
        data = {"reason": self.reason, **self.data}
        return {"code": self.code, "message": self.message, "data": data}


class InvalidParams(ApiError):
    code = -32602
    reason = "invalid_params"


class TerminalNotFound(ApiError):
    code = -32001
    reason = "terminal_not_found"


class TransactionNotFound(ApiError, LookupError):
    code = -32002
    reason = "transaction_not_found"


class NotPaired(ApiError):
    code = -32003
    reason = "not_paired"


class TerminalBusy(ApiError):
    code = -32004
    reason = "terminal_busy"


class UnresolvedTransaction(ApiError):
    code = -32005
    reason = "unresolved_transaction"


class DuplicateReferenceMismatch(ApiError):
    code = -32006
    reason = "duplicate_reference_mismatch"


class InvalidState(ApiError):
    code = -32007
    reason = "invalid_state"


class ActionNotAllowed(ApiError):
    """``terminal.send`` forwards only DeviceInfo, the status action and ``send_actions``."""

    code = -32008
    reason = "action_not_allowed"


class RefundRefused(ApiError):
    """A refund or void the journal does not back (terminal/refunds.py): refused before
    anything was sent or journaled; ``reason`` says which rule."""

    code = -32009
    reason = "original_not_found"
    also = ("original_not_refundable", "currency_mismatch", "refund_exceeds_original")


class LinkDown(ApiError):
    code = -32010
    reason = "link_down"
    also = ("cloud_not_configured", "cloud_refused")


class OutcomeUnknown(ApiError):
    code = -32011
    reason = "timeout_outcome_unknown"


class WrongKeyError(ApiError):
    code = -32012
    reason = "wrong_key"


class TerminalError(ApiError):
    code = -32013
    reason = "terminal_error"
    also = ("timeout", "no_reply", "bad_reply", "stale_response", "wrong_terminal",
            "malformed_message")  # fmt: skip


class PairingFailed(ApiError):
    code = -32014
    reason = "pairing_failed"


class PairingNotSaved(ApiError):
    """The terminal is paired and works, but the pairing could not be written to disk."""

    code = -32015
    reason = "pairing_not_saved"


class ConfigError(ApiError):
    """The configuration file is invalid; the message names the file, key and expectation."""

    code = -32020
    reason = "config_error"


class JournalError(ApiError):
    """The journal could not be read or written, or its file is not the one ecrd opened;
    the command it served was not performed (store/journal.py raises it)."""

    code = -32021
    reason = "journal_error"


class ShuttingDown(ApiError):
    code = -32022
    reason = "shutting_down"


class ClientGone(ApiError):
    """A request waiting for its turn whose client hung up: dropped before anything was
    sent or journaled (design.md §3 rule 5)."""

    code = -32023
    reason = "client_gone"


class PermissionDenied(ApiError):
    """The caller's user does not hold the role the method needs ([access], api/roles.py);
    nothing was sent or journaled."""

    code = -32030
    reason = "permission_denied"
