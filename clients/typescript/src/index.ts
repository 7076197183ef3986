// ecrd's TypeScript client: `HttpClient` (POST /rpc) and `WsClient` (the WebSocket, with
// events), one typed method per API method, one error class per reason.

export * from "./client.js";
export * from "./errors.js";
export * from "./methods.js";
export * from "./types.js";
