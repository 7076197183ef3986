// The whole till: JSON-RPC 2.0 over ecrd's HTTP endpoint (POST /rpc), and its live events
// over a WebSocket (GET /ws, after `subscribe`). docs/api.md is the reference for every
// method, error reason and event used here. A plain ES module: no build step, no library.

const $ = (id) => document.getElementById(id);

// ?endpoint=…&token=…&terminal=… fill the fields (handy for a kiosk bookmark, and the tests).
const query = new URLSearchParams(location.search);
for (const key of ["endpoint", "token", "terminal"]) {
  if (query.has(key)) $(key).value = query.get(key);
}

// What the cashier is told, by the error's `data.reason` (docs/api.md, "Errors"), and for
// the HTTP answers a browser gets before any JSON-RPC is spoken.
const ADVICE = {
  timeout_outcome_unknown:
    "Outcome UNKNOWN: the customer may have been charged. Check the terminal's own list " +
    "before charging again.",
  unresolved_transaction:
    "This terminal has a payment of unknown outcome: a supervisor must settle it first.",
  terminal_busy: "The terminal is busy with another payment: wait, then try again.",
  not_paired: "The terminal is not paired: ask the admin to pair it.",
  link_down: "The terminal cannot be reached (is it on?). Nothing was charged.",
  terminal_not_found: "ecrd has no terminal of that name.",
  permission_denied: "This till's token does not allow that (its roles in [[http.client]]).",
  original_not_refundable: "That sale cannot be refunded (not approved, or voided).",
  refund_exceeds_original: "That would refund more than is left of the sale.",
  currency_mismatch: "A refund must be in the sale's currency.",
  duplicate_reference_mismatch: "That reference was already used for another payment.",
  http_401: "ecrd refused the token (HTTP 401): check the Token field.",
  http_403:
    "ecrd refused this page (HTTP 403): its origin must be in [http] allowed_origins, " +
    "and the endpoint must be ecrd's listen address.",
  no_answer:
    "No answer from ecrd (not running, another endpoint, or this page's origin is not " +
    "allowed). A payment may still have gone through: press Check on its row.",
};

class RpcError extends Error {
  constructor(reason, message, data = {}) {
    super(message);
    this.reason = reason;
    this.data = data;
  }
}

let nextId = 1;

async function rpc(method, params = {}) {
  const request = { jsonrpc: "2.0", id: nextId++, method, params };
  let response;
  try {
    response = await fetch(new URL("/rpc", $("endpoint").value), {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${$("token").value}` },
      body: JSON.stringify(request),
    });
  } catch (e) {
    throw new RpcError("no_answer", String(e)); // the request may have reached ecrd anyway
  }
  const reply = await response.json().catch(() => null);
  if (reply === null) throw new RpcError(`http_${response.status}`, response.statusText);
  if (reply.error) {
    const data = reply.error.data ?? {};
    throw new RpcError(data.reason ?? `http_${response.status}`, reply.error.message, data);
  }
  return reply.result;
}

function fail(error) {
  const box = $("error");
  const field = error.data?.field ? ` (${error.data.field})` : "";
  box.textContent = `${ADVICE[error.reason] ?? error.message}${field} [${error.reason}]`;
  box.dataset.reason = error.reason;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  delete $("error").dataset.reason;
}

// -- the transactions table: one row per reference, updated by replies and by events -----

const known = new Map(); // reference_id -> what we know of it (a transaction record, partly)

function outcome(tx) {
  switch (tx.state) {
    case "succeeded":
      return tx.approved_amount ? `approved (${tx.approved_amount})` : "approved";
    case "failed":
      return `declined: ${tx.reply?.errorMessage ?? tx.reply?.errorCode ?? "by the terminal"}`;
    case "unknown":
      return "UNKNOWN: check the terminal";
    case "pending":
    case "waiting_for_customer":
      return "waiting for the customer…";
    case "no_answer":
      return "no answer: press Check";
    case "refused":
      return `refused: ${tx.reason}`;
    default:
      return tx.state.replaceAll("_", " ");
  }
}

function show(update) {
  const tx = { ...known.get(update.reference_id), ...update };
  known.set(tx.reference_id, tx);
  let row = document.querySelector(`tr[data-ref="${CSS.escape(tx.reference_id)}"]`);
  if (!row) {
    row = $("transactions").tBodies[0].insertRow(0);
    row.dataset.ref = tx.reference_id;
    for (let i = 0; i < 4; i++) row.insertCell();
  }
  row.dataset.state = tx.state;
  row.cells[0].textContent = tx.reference_id;
  row.cells[1].textContent = tx.action;
  row.cells[2].textContent = `${tx.amount} ${tx.currency}`;
  row.cells[3].textContent = outcome(tx);
  if (tx.state === "unknown" || tx.state === "no_answer") {
    const check = row.cells[3].appendChild(document.createElement("button"));
    check.textContent = "Check";
    check.onclick = () => lookUp(tx.reference_id);
  }
}

async function lookUp(reference_id) {
  try {
    show(await rpc("transaction.get", { reference_id }));
  } catch (e) {
    fail(e);
  }
}

// -- selling and refunding ---------------------------------------------------------------

let lastSale = null; // the last approved sale: what "Refund last sale" refunds
let unanswered = null; // a sale sent that got no answer: Sell again retries it

// A real till sends its own order's payment id, and reuses it on a retry (README, "For POS
// developers"); this page makes one per sale.
function newReference() {
  return `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}

async function pay(method, tx, params) {
  clearError();
  show(tx);
  for (const button of [$("sell"), $("refund")]) button.disabled = true;
  try {
    const done = await rpc(method, {
      terminal: $("terminal").value, amount: tx.amount, currency: tx.currency,
      reference_id: tx.reference_id, ...params,
    });
    show(done);
    return done;
  } catch (e) {
    // A money error carries the journaled record; anything else was refused unsent.
    const state = e.reason === "no_answer" ? "no_answer" : "refused";
    show(e.data.transaction ?? { ...tx, state, reason: e.reason });
    fail(e);
    return null;
  } finally {
    $("sell").disabled = false;
    $("refund").disabled = lastSale === null;
  }
}

async function sell() {
  const amount = $("amount").value.trim();
  const currency = $("currency").value.trim().toUpperCase();
  // The same amount again after no answer is a retry: under the same reference, ecrd gives
  // the first attempt's result instead of charging twice (money rule 2).
  const retry = unanswered?.amount === amount && unanswered?.currency === currency;
  const sale = retry
    ? { ...unanswered, state: "pending" }
    : { reference_id: newReference(), action: "Sale", amount, currency, state: "pending" };
  const done = await pay("sale", sale, {});
  unanswered = known.get(sale.reference_id).state === "no_answer" ? sale : null;
  if (done?.state === "succeeded") lastSale = done;
  $("refund").disabled = lastSale === null;
}

async function refundLastSale() {
  const sale = lastSale;
  // One refund per sale, so its reference follows from the sale's: a retry is the same refund.
  const refund = {
    reference_id: `${sale.reference_id}-refund`, action: "Refund",
    amount: sale.approved_amount ?? sale.amount, currency: sale.currency, state: "pending",
  };
  const done = await pay("refund", refund, { original_reference_id: sale.reference_id });
  if (done?.state === "succeeded" && lastSale === sale) lastSale = null;
  $("refund").disabled = lastSale === null;
}

// -- live events ---------------------------------------------------------------------------

let events = null;

function setLive(on, text) {
  $("live").textContent = `events: ${text}`;
  $("live").className = `badge ${on ? "on" : "off"}`;
}

function eventLine(ev) {
  const time = new Date(ev.at * 1000).toLocaleTimeString();
  if (ev.topic === "transaction.state") {
    return `${time}  ${ev.terminal}  ${ev.reference_id}  ${ev.state}${ev.link ? ` (${ev.link})` : ""}`;
  }
  if (ev.topic === "transaction.disputed") {
    return `${time}  ${ev.terminal}  ${ev.reference_id}  DISPUTED: ${ev.why}`;
  }
  const what = ev.link ? `link ${ev.link}` : ev.paired !== undefined ? `paired ${ev.paired}` : "";
  return `${time}  ${ev.terminal}  ${what}`;
}

function onEvent(ev) {
  const item = document.createElement("li");
  item.textContent = eventLine(ev);
  item.dataset.topic = ev.topic;
  if (ev.reference_id) item.dataset.ref = ev.reference_id;
  if (ev.state) item.dataset.state = ev.state;
  $("events").prepend(item);
  if (ev.topic === "transaction.state" && known.has(ev.reference_id)) {
    show({ reference_id: ev.reference_id, state: ev.state });
  }
  if (ev.topic === "terminal" && ev.terminal === $("terminal").value && terminal) {
    showTerminal({ ...terminal, ...(ev.link ? { link: ev.link } : { paired: ev.paired }) });
  }
}

function listen() {
  events?.close();
  const url = new URL("/ws", $("endpoint").value);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // A browser cannot set Authorization on a WebSocket: the token goes as a subprotocol.
  const socket = new WebSocket(url, ["ecrd.jsonrpc", `ecrd.bearer.${$("token").value}`]);
  events = socket;
  setLive(false, "connecting");
  socket.onopen = () => {
    socket.send(JSON.stringify({ jsonrpc: "2.0", id: nextId++, method: "subscribe" }));
  };
  socket.onmessage = (message) => {
    const msg = JSON.parse(message.data);
    if (msg.method === "event") onEvent(msg.params);
    else if (msg.result?.subscribed) setLive(true, "live");
    else if (msg.error) fail(new RpcError(msg.error.data?.reason, msg.error.message, msg.error.data));
  };
  socket.onclose = () => {
    if (events !== socket) return; // replaced by a newer connection
    setLive(false, "off (reconnecting)");
    setTimeout(() => events === socket && listen(), 3000);
  };
}

let terminal = null; // this till's row of terminal.list, kept up to date by events

function showTerminal(t) {
  terminal = t;
  $("terminal-state").textContent =
    `${t.id}: ${t.transport}, ${t.paired ? "paired" : "NOT paired"}, link ${t.link}`;
}

async function connect() {
  clearError();
  try {
    const terminals = await rpc("terminal.list");
    const t = terminals.find((row) => row.id === $("terminal").value);
    if (t) showTerminal(t);
    else $("terminal-state").textContent =
      `no terminal "${$("terminal").value}"; ecrd has ${terminals.map((r) => r.id).join(", ")}`;
    listen();
  } catch (e) {
    $("terminal-state").textContent = "not connected";
    fail(e);
  }
}

$("settings").onsubmit = (event) => {
  event.preventDefault();
  connect();
};
$("till").onsubmit = (event) => {
  event.preventDefault();
  sell();
};
$("refund").onclick = () => refundLastSale();
if ($("token").value) connect();
