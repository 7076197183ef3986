// The transports: ecrd's HTTP endpoint (POST /rpc, one request per call) and its
// WebSocket (GET /ws: concurrent calls on one connection, and events after subscribe).
// Both have the typed methods of `Methods` (methods.ts, made from docs/openrpc.json) and
// throw the error class of each reason (errors.ts). Nothing but the platform's own `fetch`
// and `WebSocket` (a browser's, or Node's: 22 and later, 20 with --experimental-websocket).

import { ConnectionLost, HttpRefused, errorFrom, type RpcError } from "./errors.js";
import { Methods } from "./methods.js";
import type { Api, Event, MethodName } from "./types.js";

interface Reply {
  jsonrpc: "2.0";
  id?: number | string | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: RpcError;
}

/** The subprotocols a WebSocket offers: a browser cannot set `Authorization` on one. */
export const WS_PROTOCOL = "ecrd.jsonrpc";
export const wsBearer = (token: string): string => `ecrd.bearer.${token}`;

function endpoint(base: string, path: string, scheme?: "ws"): string {
  const url = new URL(path, base.endsWith("/") ? base : `${base}/`);
  if (scheme === "ws") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function parsed(text: string): Reply | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" ? (value as Reply) : undefined;
  } catch {
    return undefined;
  }
}

export interface HttpOptions {
  /** The bearer token of an [[http.client]] (`ecrctl http-token`). */
  token: string;
  /** Another `fetch` (default: the global one). */
  fetch?: typeof fetch;
}

/** ecrd's HTTP endpoint, e.g. `new HttpClient("http://127.0.0.1:8765", { token })`. */
export class HttpClient extends Methods {
  readonly url: string;
  private ids = 0;

  constructor(
    readonly base: string,
    private readonly options: HttpOptions,
  ) {
    super();
    this.url = endpoint(base, "rpc");
  }

  async call<M extends MethodName>(method: M, params: Api[M]["params"]): Promise<Api[M]["result"]> {
    const request = { jsonrpc: "2.0", id: ++this.ids, method, params };
    let response: Response;
    try {
      response = await (this.options.fetch ?? fetch)(this.url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.options.token}` },
        body: JSON.stringify(request),
      });
    } catch (error) {
      throw new ConnectionLost(`ecrd's HTTP endpoint ${this.url}: ${String(error)}`);
    }
    const text = await response.text();
    const reply = parsed(text);
    if (reply?.error) throw errorFrom(reply.error);
    if (!response.ok || reply === undefined || !("result" in reply)) {
      throw new HttpRefused(response.status, text);
    }
    return reply.result as Api[M]["result"];
  }

  /** The OpenRPC document the endpoint serves (`GET /openrpc.json`). */
  async openrpc(): Promise<{ [key: string]: unknown }> {
    const response = await (this.options.fetch ?? fetch)(endpoint(this.base, "openrpc.json"));
    const text = await response.text();
    if (!response.ok) throw new HttpRefused(response.status, text);
    return JSON.parse(text) as { [key: string]: unknown };
  }
}

export interface WsOptions {
  token: string;
  /** Another WebSocket class (default: the global one). */
  WebSocket?: typeof WebSocket;
}

type Waiting = { resolve: (value: unknown) => void; reject: (error: Error) => void };

/** ecrd's WebSocket: `await WsClient.open("http://127.0.0.1:8765", { token })`. Calls may
 * overlap (a ping is answered while a sale waits for the customer); after `subscribe()`,
 * every listener given to `onEvent` gets each event. */
export class WsClient extends Methods {
  private ids = 0;
  private readonly waiting = new Map<number, Waiting>();
  private readonly listeners = new Set<(event: Event) => void>();
  private closed: ConnectionLost | undefined;

  private constructor(private readonly socket: WebSocket) {
    super();
    socket.addEventListener("message", (message) => this.receive(String(message.data)));
    socket.addEventListener("close", () => this.end(new ConnectionLost("ecrd closed the WebSocket")));
  }

  static open(base: string, options: WsOptions): Promise<WsClient> {
    const Socket = options.WebSocket ?? WebSocket;
    const socket = new Socket(endpoint(base, "ws", "ws"), [WS_PROTOCOL, wsBearer(options.token)]);
    return new Promise((resolve, reject) => {
      const refused = () => reject(new ConnectionLost("the WebSocket was refused or closed"));
      socket.addEventListener("open", () => resolve(new WsClient(socket)), { once: true });
      socket.addEventListener("error", refused, { once: true });
      socket.addEventListener("close", refused, { once: true });
    });
  }

  call<M extends MethodName>(method: M, params: Api[M]["params"]): Promise<Api[M]["result"]> {
    if (this.closed) return Promise.reject(this.closed);
    const id = ++this.ids;
    const reply = new Promise<unknown>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    return reply as Promise<Api[M]["result"]>;
  }

  /** Call `listener` with each event's params; the function returned stops it. */
  onEvent(listener: (event: Event) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.socket.close(1000);
    this.end(new ConnectionLost("closed by this client"));
  }

  private receive(text: string): void {
    const message = parsed(text);
    for (const one of Array.isArray(message) ? (message as Reply[]) : message ? [message] : []) {
      if (one.method === "event" && one.id === undefined) {
        for (const listener of this.listeners) listener(one.params as Event);
        continue;
      }
      const waiting = typeof one.id === "number" ? this.waiting.get(one.id) : undefined;
      if (waiting === undefined) continue;
      this.waiting.delete(one.id as number);
      if (one.error) waiting.reject(errorFrom(one.error));
      else waiting.resolve(one.result);
    }
  }

  private end(why: ConnectionLost): void {
    this.closed ??= why;
    for (const waiting of this.waiting.values()) waiting.reject(why);
    this.waiting.clear();
  }
}
