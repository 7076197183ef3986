"""The JSON-RPC socket API (docs/api.md): the server, the methods, the one error map."""
