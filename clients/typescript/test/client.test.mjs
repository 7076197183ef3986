// The TypeScript client against a real ecrd and its simulator, over the HTTP endpoint
// and the WebSocket. Run by tests/test_client_typescript.py, which starts them and gives:
// ECRD_URL (the endpoint), ECRD_TOKEN (a client with the sell and refund roles), ECRD_READ_TOKEN (read
// only), ECRD_TERMINAL (a paired terminal), ECRD_CLIENT (the compiled index.js).
import assert from "node:assert/strict";
import { test } from "node:test";

const ecrd = await import(process.env.ECRD_CLIENT ?? "../dist/index.js");
const URL = process.env.ECRD_URL;
const TERMINAL = process.env.ECRD_TERMINAL;
const http = new ecrd.HttpClient(URL, { token: process.env.ECRD_TOKEN });
const reader = new ecrd.HttpClient(URL, { token: process.env.ECRD_READ_TOKEN });
// Node has a WebSocket from 22 on (20: with --experimental-websocket; 18: none).
const ws = { skip: typeof WebSocket !== "function" && "this node has no WebSocket" };

test("a sale over HTTP, and the same reference again gets the same record", async () => {
  const sale = { terminal: TERMINAL, amount: "10.20", currency: "HKD", reference_id: "ts-1" };
  const tx = await http.sale(sale);
  assert.equal(tx.state, "succeeded");
  assert.equal(tx.reference_id, "ts-1");
  assert.equal(tx.reply.status, "Success");
  const again = await http.sale(sale);
  assert.equal(again.created_at, tx.created_at);
  const got = await reader.transactionGet({ reference_id: "ts-1" });
  assert.equal(got.state, "succeeded");
  assert.ok(got.history.length > 0);
});

test("a declined card is a result, not an error", async () => {
  const tx = await http.sale({ terminal: TERMINAL, amount: "1.91", currency: "HKD", reference_id: "ts-d" });
  assert.equal(tx.state, "failed");
});

test("each error is its reason's class, with the code and data ecrd sent", async () => {
  const bad = await http.sale({ terminal: TERMINAL, amount: "1.0", currency: "HKD" }).catch((e) => e);
  assert.ok(bad instanceof ecrd.InvalidParams, String(bad));
  assert.ok(bad instanceof ecrd.EcrdError);
  assert.equal(bad.reason, "invalid_params");
  assert.equal(bad.code, -32602);
  assert.equal(bad.data.field, "amount");
  const none = await http.terminalInfo({ terminal: "nope" }).catch((e) => e);
  assert.ok(none instanceof ecrd.TerminalNotFound, String(none));
  const orphan = await http
    .refund({ terminal: TERMINAL, amount: "1.00", currency: "HKD", original_reference_id: "never" })
    .catch((e) => e);
  assert.ok(orphan instanceof ecrd.OriginalNotFound, String(orphan));
  const denied = await reader.sale({ terminal: TERMINAL, amount: "1.00", currency: "HKD" }).catch((e) => e);
  assert.ok(denied instanceof ecrd.PermissionDenied, String(denied));
  assert.equal(denied.data.role, "sell");
});

test("a wrong token is refused by the endpoint: HttpRefused with its status", async () => {
  const stranger = new ecrd.HttpClient(URL, { token: "not-a-token" });
  const refused = await stranger.ping().catch((e) => e);
  assert.ok(refused instanceof ecrd.HttpRefused, String(refused));
  assert.equal(refused.status, 401);
});

test("nothing listening is ConnectionLost", async () => {
  const gone = new ecrd.HttpClient("http://127.0.0.1:1", { token: "t" });
  assert.ok((await gone.ping().catch((e) => e)) instanceof ecrd.ConnectionLost);
});

test("the served OpenRPC document names the methods and reasons the client was made from", async () => {
  const doc = await http.openrpc();
  assert.equal(doc.openrpc, "1.2.6");
  assert.deepEqual(doc.methods.map((m) => m.name), Object.keys(ecrd.ROLES));
  for (const m of doc.methods) assert.deepEqual(m["x-roles"], ecrd.ROLES[m.name]);
  for (const [reason, e] of Object.entries(doc.components.errors)) {
    const cls = ecrd.BY_REASON[reason];
    assert.ok(cls, reason);
    assert.equal(cls.reason, reason);
    assert.ok(ecrd.errorFrom({ code: e.code, message: "m", data: { reason } }) instanceof cls);
  }
});

test("WebSocket: calls overlap, and a sale's events arrive after subscribe", ws, async () => {
  const client = await ecrd.WsClient.open(URL, { token: process.env.ECRD_TOKEN });
  try {
    assert.deepEqual(await client.subscribe({ topics: ["transaction.state"] }), {
      subscribed: ["transaction.state"],
    });
    const events = [];
    const settled = new Promise((resolve) =>
      client.onEvent((event) => {
        if (event.reference_id !== "ts-ws") return;
        events.push(event);
        if (event.state === "succeeded") resolve();
      }),
    );
    // x.92: the simulator's customer takes a moment; a ping is answered meanwhile.
    const sale = client.sale({ terminal: TERMINAL, amount: "3.92", currency: "HKD", reference_id: "ts-ws" });
    const order = [];
    await Promise.all([sale.then(() => order.push("sale")), client.ping().then(() => order.push("ping"))]);
    assert.deepEqual(order, ["ping", "sale"]);
    assert.equal((await sale).state, "succeeded");
    await settled;
    assert.ok(events.some((e) => e.state === "pending"));
    for (const e of events) assert.equal(e.topic, "transaction.state");
  } finally {
    client.close();
  }
  const after = await client.ping().catch((e) => e);
  assert.ok(after instanceof ecrd.ConnectionLost);
});

test("WebSocket: a wrong token is refused at the handshake", ws, async () => {
  const refused = await ecrd.WsClient.open(URL, { token: "not-a-token" }).catch((e) => e);
  assert.ok(refused instanceof ecrd.ConnectionLost, String(refused));
});
