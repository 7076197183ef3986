// Made by `python -m ecrd.docgen openrpc` from docs/openrpc.json: do not edit.


/** ecrd's version */
export interface Ping {
  version: string;
  protocol: number;
}

/** one terminal as ecrd sees it */
export interface TerminalSummary {
  id: string;
  transport: "lan" | "serial" | "cloud";
  fallback: string | null;
  paired: boolean;
  pairing_unconfirmed: boolean;
  device_sn: string | null;
  business_id: string | null;
  link: "up" | "down" | "unknown";
  busy: boolean;
  last_error: string | null;
}

/** the daemon, its terminals and its journal */
export interface Status {
  version: string;
  pid: number;
  uptime_s: number;
  config: string;
  socket: string;
  terminals: Array<TerminalSummary>;
  journal: { [key: string]: number };
  journal_problem: string | null;
  unwritten: Array<string>;
  journal_records: number;
  journal_bytes: number;
  in_flight: number;
  reload_error: string | null;
  stopping: boolean;
}

/** a transaction record (docs/api.md) */
export interface Transaction {
  reference_id: string;
  terminal: string;
  action: "Sale" | "PreAuth" | "Refund" | "Void";
  amount: string | null;
  approved_amount: string | null;
  currency: string | null;
  state: "pending" | "succeeded" | "failed" | "unknown" | "resolved_succeeded" | "resolved_failed" | "disputed";
  reply: { [key: string]: unknown } | null;
  error: { [key: string]: unknown } | null;
  note: string | null;
  resolved_by: string | null;
  created_at: string;
  updated_at: string;
  link: string | null;
  request_id: string | null;
  params: { [key: string]: unknown };
}

/** a record, who started it and its audit trail, oldest first */
export interface TransactionDetail {
  reference_id: string;
  terminal: string;
  action: "Sale" | "PreAuth" | "Refund" | "Void";
  amount: string | null;
  approved_amount: string | null;
  currency: string | null;
  state: "pending" | "succeeded" | "failed" | "unknown" | "resolved_succeeded" | "resolved_failed" | "disputed";
  reply: { [key: string]: unknown } | null;
  error: { [key: string]: unknown } | null;
  note: string | null;
  resolved_by: string | null;
  created_at: string;
  updated_at: string;
  link: string | null;
  request_id: string | null;
  params: { [key: string]: unknown };
  started_by: string | null;
  history: Array<{ [key: string]: unknown }>;
}

/** the terminal paired */
export interface Paired {
  terminal: string;
  device_sn: string;
  info: TerminalReply;
}

/** the terminal unpaired */
export interface Unpaired {
  terminal: string;
  paired: boolean;
}

/** the terminal's reply body, verbatim */
export interface TerminalReply {
  [key: string]: unknown;
}

/** the topics subscribed to */
export interface Subscribed {
  subscribed: Array<string>;
}

/** what a reload changed */
export interface Reloaded {
  added: Array<string>;
  removed: Array<string>;
  changed: Array<string>;
  deferred: Array<string>;
  failed: { [key: string]: string };
  applied?: Array<string>;
  needs_restart?: Array<string>;
}

/** the backup written */
export interface Backup {
  journal: string;
  records: number;
  pairings?: string;
}

/** one admin action or prune */
export interface AuditRow {
  seq: number;
  at: string;
  who: string;
  action: string;
  terminal: string | null;
  detail: { [key: string]: unknown };
  result: string;
}

/** what the probe found (docs/api.md: two modes) */
export interface Probed {
  terminal: string;
  tried: unknown[];
  [key: string]: unknown;
}

/** the trace's state, and its last lines if asked */
export interface Trace {
  terminal: string;
  trace: boolean;
  file: string | null;
  lines?: Array<{ [key: string]: unknown }>;
}

/** a notification's params (method 'event'), after subscribe */
export interface Event {
  topic: "transaction.state" | "transaction.disputed" | "terminal";
  at: number;
  terminal?: string;
  reference_id?: string;
  state?: string;
  [key: string]: unknown;
}

/** is ecrd alive, and which version (ping) */
export interface PingParams {
}

/** the daemon, its terminals and its journal (status) */
export interface StatusParams {
}

/** the terminals (terminal.list) */
export interface TerminalListParams {
}

/** pair a terminal with the code its pairing page shows (terminal.pair) */
export interface TerminalPairParams {
  /** the terminal's id in the config */
  terminal: string;
  /** the pairing code, or the QR code's JSON (text or object) */
  code: string | { [key: string]: unknown };
}

/** forget a terminal's pairing (terminal.unpair) */
export interface TerminalUnpairParams {
  /** the terminal's id in the config */
  terminal: string;
}

/** the terminal's DeviceInfo (shared, cached) (terminal.info) */
export interface TerminalInfoParams {
  /** the terminal's id in the config */
  terminal: string;
}

/** send an allowed read-only action (terminal.send) */
export interface TerminalSendParams {
  /** the terminal's id in the config */
  terminal: string;
  /** DeviceInfo, the status_action or one of send_actions */
  action: string;
  /** the action's body */
  body?: { [key: string]: unknown };
}

/** find the settings a terminal answers under, or its status action (terminal.probe) */
export interface TerminalProbeParams {
  /** the terminal's id in the config */
  terminal: string;
  /** the pairing code (find the settings) */
  code?: string;
  /** bound the probe */
  timeout_s?: number;
  /** which status action a paired terminal knows */
  status?: boolean;
}

/** switch the wire trace, read its last lines (terminal.trace) */
export interface TerminalTraceParams {
  /** the terminal's id in the config */
  terminal: string;
  /** switch it on or off until a reload */
  on?: boolean;
  /** the last lines */
  tail?: number;
}

/** charge the customer (sale) */
export interface SaleParams {
  /** the terminal's id in the config */
  terminal: string;
  /** the amount; a decimal string with two decimals, above 0.00, at most 99999999.99 */
  amount: string;
  /** ISO 4217 code of an active currency (or one of [daemon].extra_currencies) */
  currency: string;
  /** your order's id, for the terminal's records */
  customer_order_id?: string;
  /** how the customer pays */
  payment_method?: "credit_card" | "fps" | "octopus" | "consumer_presented_qr_code";
  /** whether the terminal prints a receipt */
  print?: "YES" | "NO";
  /** further body fields, forwarded unchanged; at most 4096 bytes as compact UTF-8 JSON */
  extra?: { [key: string]: unknown };
  /** the idempotency key: send your own (your order's payment id) and reuse it on a retry; generated if absent */
  reference_id?: string;
  /** seconds to wait for the customer (default: the terminal's timeout_s) */
  timeout_s?: number;
  /** wait while the terminal is busy instead of terminal_busy */
  wait?: boolean;
}

/** hold an amount (preauth) */
export interface PreauthParams {
  /** the terminal's id in the config */
  terminal: string;
  /** the amount; a decimal string with two decimals, above 0.00, at most 99999999.99 */
  amount: string;
  /** ISO 4217 code of an active currency (or one of [daemon].extra_currencies) */
  currency: string;
  /** your order's id, for the terminal's records */
  customer_order_id?: string;
  /** how the customer pays */
  payment_method?: "credit_card" | "fps" | "octopus" | "consumer_presented_qr_code";
  /** whether the terminal prints a receipt */
  print?: "YES" | "NO";
  /** further body fields, forwarded unchanged; at most 4096 bytes as compact UTF-8 JSON */
  extra?: { [key: string]: unknown };
  /** the idempotency key: send your own (your order's payment id) and reuse it on a retry; generated if absent */
  reference_id?: string;
  /** seconds to wait for the customer (default: the terminal's timeout_s) */
  timeout_s?: number;
  /** wait while the terminal is busy instead of terminal_busy */
  wait?: boolean;
}

/** refund (part of) a sale (refund) */
export interface RefundParams {
  /** the terminal's id in the config */
  terminal: string;
  /** the amount; a decimal string with two decimals, above 0.00, at most 99999999.99 */
  amount: string;
  /** ISO 4217 code of an active currency (or one of [daemon].extra_currencies) */
  currency: string;
  /** your order's id, for the terminal's records */
  customer_order_id?: string;
  /** how the customer pays */
  payment_method?: "credit_card" | "fps" | "octopus" | "consumer_presented_qr_code";
  /** whether the terminal prints a receipt */
  print?: "YES" | "NO";
  /** further body fields, forwarded unchanged; at most 4096 bytes as compact UTF-8 JSON */
  extra?: { [key: string]: unknown };
  /** the reference_id of the payment undone */
  original_reference_id: string;
  /** the original was taken on another box (only the terminal checks it) */
  original_elsewhere?: boolean;
  /** the idempotency key: send your own (your order's payment id) and reuse it on a retry; generated if absent */
  reference_id?: string;
  /** seconds to wait for the customer (default: the terminal's timeout_s) */
  timeout_s?: number;
  /** wait while the terminal is busy instead of terminal_busy */
  wait?: boolean;
}

/** undo a payment whole (void) */
export interface VoidParams {
  /** the terminal's id in the config */
  terminal: string;
  /** the reference_id of the payment undone */
  original_reference_id: string;
  /** further body fields, forwarded unchanged; at most 4096 bytes as compact UTF-8 JSON */
  extra?: { [key: string]: unknown };
  /** the original was taken on another box (only the terminal checks it) */
  original_elsewhere?: boolean;
  /** the idempotency key: send your own (your order's payment id) and reuse it on a retry; generated if absent */
  reference_id?: string;
  /** seconds to wait for the customer (default: the terminal's timeout_s) */
  timeout_s?: number;
  /** wait while the terminal is busy instead of terminal_busy */
  wait?: boolean;
}

/** cancel the payment in progress (abort) */
export interface AbortParams {
  /** the terminal's id in the config */
  terminal: string;
  /** the payment (default: the one in progress) */
  reference_id?: string;
}

/** one transaction, who started it and its history (transaction.get) */
export interface TransactionGetParams {
  /** its reference */
  reference_id: string;
}

/** a page of transactions, newest first (transaction.list) */
export interface TransactionListParams {
  /** only this terminal's */
  terminal?: string;
  /** only in this state */
  state?: "pending" | "succeeded" | "failed" | "unknown" | "resolved_succeeded" | "resolved_failed" | "disputed";
  /** created at or after (RFC 3339 with offset) */
  since?: string;
  /** created before (RFC 3339 with offset) */
  until?: string;
  /** the reference_id of the previous page's last */
  before?: string;
  /** at most this many (default 100) */
  limit?: number;
}

/** settle an unknown (or disputed) transaction (transaction.resolve) */
export interface TransactionResolveParams {
  /** its reference */
  reference_id: string;
  /** what the terminal's list shows */
  outcome: "succeeded" | "failed";
  /** why (required for a disputed one) */
  note?: string;
}

/** events on this connection (subscribe) */
export interface SubscribeParams {
  /** default: all */
  topics?: Array<"transaction.state" | "transaction.disputed" | "terminal">;
}

/** re-read the config file (config.reload) */
export interface ConfigReloadParams {
}

/** the Prometheus text (metrics) */
export interface MetricsParams {
}

/** an online copy of the journal (journal.backup) */
export interface JournalBackupParams {
  /** a new file */
  path: string;
  /** also copy pairings.toml (PINs) */
  with_pairings?: boolean;
}

/** the audit table, newest first (journal.audit) */
export interface JournalAuditParams {
  /** at most this many (default 100) */
  limit?: number;
  /** rows older than this seq */
  before?: number;
  /** one method's rows */
  action?: string;
}

/** Each method's params and result. */
export interface Api {
  "ping": { params: PingParams; result: Ping };
  "status": { params: StatusParams; result: Status };
  "terminal.list": { params: TerminalListParams; result: Array<TerminalSummary> };
  "terminal.pair": { params: TerminalPairParams; result: Paired };
  "terminal.unpair": { params: TerminalUnpairParams; result: Unpaired };
  "terminal.info": { params: TerminalInfoParams; result: TerminalReply };
  "terminal.send": { params: TerminalSendParams; result: TerminalReply };
  "terminal.probe": { params: TerminalProbeParams; result: Probed };
  "terminal.trace": { params: TerminalTraceParams; result: Trace };
  "sale": { params: SaleParams; result: Transaction };
  "preauth": { params: PreauthParams; result: Transaction };
  "refund": { params: RefundParams; result: Transaction };
  "void": { params: VoidParams; result: Transaction };
  "abort": { params: AbortParams; result: TerminalReply };
  "transaction.get": { params: TransactionGetParams; result: TransactionDetail };
  "transaction.list": { params: TransactionListParams; result: Array<Transaction> };
  "transaction.resolve": { params: TransactionResolveParams; result: Transaction };
  "subscribe": { params: SubscribeParams; result: Subscribed };
  "config.reload": { params: ConfigReloadParams; result: Reloaded };
  "metrics": { params: MetricsParams; result: string };
  "journal.backup": { params: JournalBackupParams; result: Backup };
  "journal.audit": { params: JournalAuditParams; result: Array<AuditRow> };
}

export type MethodName = keyof Api;

/** The role each method needs ([access]; []: anyone who can connect). */
export const ROLES: { readonly [M in MethodName]: readonly string[] } = {
  "ping": [],
  "status": ["read"],
  "terminal.list": ["read"],
  "terminal.pair": ["admin"],
  "terminal.unpair": ["admin"],
  "terminal.info": ["read"],
  "terminal.send": ["admin"],
  "terminal.probe": ["admin"],
  "terminal.trace": ["admin"],
  "sale": ["sell"],
  "preauth": ["sell"],
  "refund": ["refund"],
  "void": ["refund"],
  "abort": ["sell"],
  "transaction.get": ["read"],
  "transaction.list": ["read"],
  "transaction.resolve": ["admin"],
  "subscribe": ["read"],
  "config.reload": ["admin"],
  "metrics": ["read"],
  "journal.backup": ["admin"],
  "journal.audit": ["admin"],
};
