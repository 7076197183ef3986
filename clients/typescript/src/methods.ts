// Made by `python -m ecrd.docgen openrpc` from docs/openrpc.json: do not edit.

import type { Api, MethodName, AbortParams, AuditRow, Backup, ConfigReloadParams, JournalAuditParams, JournalBackupParams, MetricsParams, Paired, Ping, PingParams, PreauthParams, Probed, RefundParams, Reloaded, SaleParams, Status, StatusParams, SubscribeParams, Subscribed, TerminalInfoParams, TerminalListParams, TerminalPairParams, TerminalProbeParams, TerminalReply, TerminalSendParams, TerminalSummary, TerminalTraceParams, TerminalUnpairParams, Trace, Transaction, TransactionDetail, TransactionGetParams, TransactionListParams, TransactionResolveParams, Unpaired, VoidParams } from "./types.js";

/** One typed method per API method, over the transport's `call`. */
export abstract class Methods {
  abstract call<M extends MethodName>(method: M, params: Api[M]["params"]): Promise<Api[M]["result"]>;

  /** is ecrd alive, and which version (role: none) */
  ping(params: PingParams = {}): Promise<Ping> {
    return this.call("ping", params);
  }

  /** the daemon, its terminals and its journal (role: read) */
  status(params: StatusParams = {}): Promise<Status> {
    return this.call("status", params);
  }

  /** the terminals (role: read) */
  terminalList(params: TerminalListParams = {}): Promise<Array<TerminalSummary>> {
    return this.call("terminal.list", params);
  }

  /** pair a terminal with the code its pairing page shows (role: admin) */
  terminalPair(params: TerminalPairParams): Promise<Paired> {
    return this.call("terminal.pair", params);
  }

  /** forget a terminal's pairing (role: admin) */
  terminalUnpair(params: TerminalUnpairParams): Promise<Unpaired> {
    return this.call("terminal.unpair", params);
  }

  /** the terminal's DeviceInfo (shared, cached) (role: read) */
  terminalInfo(params: TerminalInfoParams): Promise<TerminalReply> {
    return this.call("terminal.info", params);
  }

  /** send an allowed read-only action (role: admin) */
  terminalSend(params: TerminalSendParams): Promise<TerminalReply> {
    return this.call("terminal.send", params);
  }

  /** find the settings a terminal answers under, or its status action (role: admin) */
  terminalProbe(params: TerminalProbeParams): Promise<Probed> {
    return this.call("terminal.probe", params);
  }

  /** switch the wire trace, read its last lines (role: admin) */
  terminalTrace(params: TerminalTraceParams): Promise<Trace> {
    return this.call("terminal.trace", params);
  }

  /** charge the customer (role: sell) */
  sale(params: SaleParams): Promise<Transaction> {
    return this.call("sale", params);
  }

  /** hold an amount (role: sell) */
  preauth(params: PreauthParams): Promise<Transaction> {
    return this.call("preauth", params);
  }

  /** refund (part of) a sale (role: refund) */
  refund(params: RefundParams): Promise<Transaction> {
    return this.call("refund", params);
  }

  /** undo a payment whole (role: refund) */
  void(params: VoidParams): Promise<Transaction> {
    return this.call("void", params);
  }

  /** cancel the payment in progress (role: sell) */
  abort(params: AbortParams): Promise<TerminalReply> {
    return this.call("abort", params);
  }

  /** one transaction, who started it and its history (role: read) */
  transactionGet(params: TransactionGetParams): Promise<TransactionDetail> {
    return this.call("transaction.get", params);
  }

  /** a page of transactions, newest first (role: read) */
  transactionList(params: TransactionListParams = {}): Promise<Array<Transaction>> {
    return this.call("transaction.list", params);
  }

  /** settle an unknown (or disputed) transaction (role: admin) */
  transactionResolve(params: TransactionResolveParams): Promise<Transaction> {
    return this.call("transaction.resolve", params);
  }

  /** events on this connection (role: read) */
  subscribe(params: SubscribeParams = {}): Promise<Subscribed> {
    return this.call("subscribe", params);
  }

  /** re-read the config file (role: admin) */
  configReload(params: ConfigReloadParams = {}): Promise<Reloaded> {
    return this.call("config.reload", params);
  }

  /** the Prometheus text (role: read) */
  metrics(params: MetricsParams = {}): Promise<string> {
    return this.call("metrics", params);
  }

  /** an online copy of the journal (role: admin) */
  journalBackup(params: JournalBackupParams): Promise<Backup> {
    return this.call("journal.backup", params);
  }

  /** the audit table, newest first (role: admin) */
  journalAudit(params: JournalAuditParams = {}): Promise<Array<AuditRow>> {
    return this.call("journal.audit", params);
  }
}
