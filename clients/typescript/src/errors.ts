// Made by `python -m ecrd.docgen openrpc` from docs/openrpc.json: do not edit.

/** A JSON-RPC error object as ecrd sends it. */
export interface RpcError {
  code: number;
  message: string;
  data?: { reason?: string; [key: string]: unknown };
}

/** An error reply from ecrd: `reason` is the stable string to switch on (the class is the
 * reason's own, e.g. `TimeoutOutcomeUnknown`); `data` holds the rest (`data.transaction`
 * for money errors). */
export class EcrdError extends Error {
  static readonly reason: string = "error";
  readonly code: number;
  readonly reason: string;
  readonly data: { [key: string]: unknown };

  constructor(error: RpcError) {
    super(`${error.message} [${error.data?.reason ?? "error"}]`);
    this.name = new.target.name;
    this.code = error.code;
    this.reason = error.data?.reason ?? (new.target as typeof EcrdError).reason;
    this.data = error.data ?? {};
  }
}

/** The connection ended (or never opened) before the reply came. A payment sent goes on:
 * fetch its outcome with transactionGet (same reference_id) before charging again. */
export class ConnectionLost extends EcrdError {
  static override readonly reason: string = "connection_lost";
  constructor(why: string) {
    super({ code: -32000, message: why, data: { reason: "connection_lost" } });
  }
}

/** The HTTP endpoint refused the request before it reached the API (401: no good token;
 * 403: an origin or host it does not allow; 413: too large). */
export class HttpRefused extends EcrdError {
  static override readonly reason: string = "http_refused";
  readonly status: number;
  constructor(status: number, body: string) {
    super({ code: -32000, message: `HTTP ${status}: ${body.slice(0, 200)}`,
            data: { reason: "http_refused", status } });
    this.status = status;
  }
}

/** `parse_error` (-32700): docs/api.md, "Errors". */
export class ParseError extends EcrdError {
  static override readonly reason: string = "parse_error";
}

/** `internal_error` (-32603): docs/api.md, "Errors". */
export class InternalError extends EcrdError {
  static override readonly reason: string = "internal_error";
}

/** `invalid_params` (-32602): docs/api.md, "Errors". */
export class InvalidParams extends EcrdError {
  static override readonly reason: string = "invalid_params";
}

/** `method_not_found` (-32601): docs/api.md, "Errors". */
export class MethodNotFound extends EcrdError {
  static override readonly reason: string = "method_not_found";
}

/** `invalid_request` (-32600): docs/api.md, "Errors". */
export class InvalidRequest extends EcrdError {
  static override readonly reason: string = "invalid_request";
}

/** `line_too_long` (-32600): docs/api.md, "Errors". */
export class LineTooLong extends EcrdError {
  static override readonly reason: string = "line_too_long";
}

/** `permission_denied` (-32030): docs/api.md, "Errors". */
export class PermissionDenied extends EcrdError {
  static override readonly reason: string = "permission_denied";
}

/** `client_gone` (-32023): docs/api.md, "Errors". */
export class ClientGone extends EcrdError {
  static override readonly reason: string = "client_gone";
}

/** `shutting_down` (-32022): docs/api.md, "Errors". */
export class ShuttingDown extends EcrdError {
  static override readonly reason: string = "shutting_down";
}

/** `journal_error` (-32021): docs/api.md, "Errors". */
export class JournalError extends EcrdError {
  static override readonly reason: string = "journal_error";
}

/** `config_error` (-32020): docs/api.md, "Errors". */
export class ConfigError extends EcrdError {
  static override readonly reason: string = "config_error";
}

/** `pairing_not_saved` (-32015): docs/api.md, "Errors". */
export class PairingNotSaved extends EcrdError {
  static override readonly reason: string = "pairing_not_saved";
}

/** `pairing_failed` (-32014): docs/api.md, "Errors". */
export class PairingFailed extends EcrdError {
  static override readonly reason: string = "pairing_failed";
}

/** `terminal_error` (-32013): docs/api.md, "Errors". */
export class TerminalError extends EcrdError {
  static override readonly reason: string = "terminal_error";
}

/** `timeout` (-32013): docs/api.md, "Errors". */
export class Timeout extends EcrdError {
  static override readonly reason: string = "timeout";
}

/** `no_reply` (-32013): docs/api.md, "Errors". */
export class NoReply extends EcrdError {
  static override readonly reason: string = "no_reply";
}

/** `bad_reply` (-32013): docs/api.md, "Errors". */
export class BadReply extends EcrdError {
  static override readonly reason: string = "bad_reply";
}

/** `stale_response` (-32013): docs/api.md, "Errors". */
export class StaleResponse extends EcrdError {
  static override readonly reason: string = "stale_response";
}

/** `wrong_terminal` (-32013): docs/api.md, "Errors". */
export class WrongTerminal extends EcrdError {
  static override readonly reason: string = "wrong_terminal";
}

/** `malformed_message` (-32013): docs/api.md, "Errors". */
export class MalformedMessage extends EcrdError {
  static override readonly reason: string = "malformed_message";
}

/** `wrong_key` (-32012): docs/api.md, "Errors". */
export class WrongKey extends EcrdError {
  static override readonly reason: string = "wrong_key";
}

/** `timeout_outcome_unknown` (-32011): docs/api.md, "Errors". */
export class TimeoutOutcomeUnknown extends EcrdError {
  static override readonly reason: string = "timeout_outcome_unknown";
}

/** `link_down` (-32010): docs/api.md, "Errors". */
export class LinkDown extends EcrdError {
  static override readonly reason: string = "link_down";
}

/** `cloud_not_configured` (-32010): docs/api.md, "Errors". */
export class CloudNotConfigured extends EcrdError {
  static override readonly reason: string = "cloud_not_configured";
}

/** `cloud_refused` (-32010): docs/api.md, "Errors". */
export class CloudRefused extends EcrdError {
  static override readonly reason: string = "cloud_refused";
}

/** `original_not_found` (-32009): docs/api.md, "Errors". */
export class OriginalNotFound extends EcrdError {
  static override readonly reason: string = "original_not_found";
}

/** `original_not_refundable` (-32009): docs/api.md, "Errors". */
export class OriginalNotRefundable extends EcrdError {
  static override readonly reason: string = "original_not_refundable";
}

/** `currency_mismatch` (-32009): docs/api.md, "Errors". */
export class CurrencyMismatch extends EcrdError {
  static override readonly reason: string = "currency_mismatch";
}

/** `refund_exceeds_original` (-32009): docs/api.md, "Errors". */
export class RefundExceedsOriginal extends EcrdError {
  static override readonly reason: string = "refund_exceeds_original";
}

/** `action_not_allowed` (-32008): docs/api.md, "Errors". */
export class ActionNotAllowed extends EcrdError {
  static override readonly reason: string = "action_not_allowed";
}

/** `invalid_state` (-32007): docs/api.md, "Errors". */
export class InvalidState extends EcrdError {
  static override readonly reason: string = "invalid_state";
}

/** `duplicate_reference_mismatch` (-32006): docs/api.md, "Errors". */
export class DuplicateReferenceMismatch extends EcrdError {
  static override readonly reason: string = "duplicate_reference_mismatch";
}

/** `unresolved_transaction` (-32005): docs/api.md, "Errors". */
export class UnresolvedTransaction extends EcrdError {
  static override readonly reason: string = "unresolved_transaction";
}

/** `terminal_busy` (-32004): docs/api.md, "Errors". */
export class TerminalBusy extends EcrdError {
  static override readonly reason: string = "terminal_busy";
}

/** `not_paired` (-32003): docs/api.md, "Errors". */
export class NotPaired extends EcrdError {
  static override readonly reason: string = "not_paired";
}

/** `transaction_not_found` (-32002): docs/api.md, "Errors". */
export class TransactionNotFound extends EcrdError {
  static override readonly reason: string = "transaction_not_found";
}

/** `terminal_not_found` (-32001): docs/api.md, "Errors". */
export class TerminalNotFound extends EcrdError {
  static override readonly reason: string = "terminal_not_found";
}

/** `too_many_clients` (-32000): docs/api.md, "Errors". */
export class TooManyClients extends EcrdError {
  static override readonly reason: string = "too_many_clients";
}

export const BY_REASON: { readonly [reason: string]: typeof EcrdError } = {
  parse_error: ParseError,
  internal_error: InternalError,
  invalid_params: InvalidParams,
  method_not_found: MethodNotFound,
  invalid_request: InvalidRequest,
  line_too_long: LineTooLong,
  permission_denied: PermissionDenied,
  client_gone: ClientGone,
  shutting_down: ShuttingDown,
  journal_error: JournalError,
  config_error: ConfigError,
  pairing_not_saved: PairingNotSaved,
  pairing_failed: PairingFailed,
  terminal_error: TerminalError,
  timeout: Timeout,
  no_reply: NoReply,
  bad_reply: BadReply,
  stale_response: StaleResponse,
  wrong_terminal: WrongTerminal,
  malformed_message: MalformedMessage,
  wrong_key: WrongKey,
  timeout_outcome_unknown: TimeoutOutcomeUnknown,
  link_down: LinkDown,
  cloud_not_configured: CloudNotConfigured,
  cloud_refused: CloudRefused,
  original_not_found: OriginalNotFound,
  original_not_refundable: OriginalNotRefundable,
  currency_mismatch: CurrencyMismatch,
  refund_exceeds_original: RefundExceedsOriginal,
  action_not_allowed: ActionNotAllowed,
  invalid_state: InvalidState,
  duplicate_reference_mismatch: DuplicateReferenceMismatch,
  unresolved_transaction: UnresolvedTransaction,
  terminal_busy: TerminalBusy,
  not_paired: NotPaired,
  transaction_not_found: TransactionNotFound,
  terminal_not_found: TerminalNotFound,
  too_many_clients: TooManyClients,
};

/** A reason this client does not know yet: the first class with its code. */
export const BY_CODE: { readonly [code: number]: typeof EcrdError } = {
  [-32700]: ParseError,
  [-32603]: InternalError,
  [-32602]: InvalidParams,
  [-32601]: MethodNotFound,
  [-32600]: InvalidRequest,
  [-32030]: PermissionDenied,
  [-32023]: ClientGone,
  [-32022]: ShuttingDown,
  [-32021]: JournalError,
  [-32020]: ConfigError,
  [-32015]: PairingNotSaved,
  [-32014]: PairingFailed,
  [-32013]: TerminalError,
  [-32012]: WrongKey,
  [-32011]: TimeoutOutcomeUnknown,
  [-32010]: LinkDown,
  [-32009]: OriginalNotFound,
  [-32008]: ActionNotAllowed,
  [-32007]: InvalidState,
  [-32006]: DuplicateReferenceMismatch,
  [-32005]: UnresolvedTransaction,
  [-32004]: TerminalBusy,
  [-32003]: NotPaired,
  [-32002]: TransactionNotFound,
  [-32001]: TerminalNotFound,
  [-32000]: TooManyClients,
};

/** The exception of an error reply: its reason's class, else its code's, else the
 * base. */
export function errorFrom(error: RpcError): EcrdError {
  const cls = BY_REASON[error.data?.reason ?? ""] ?? BY_CODE[error.code] ?? EcrdError;
  return new cls(error);
}
