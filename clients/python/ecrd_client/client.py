"""``Client``: the typed methods of ``_api.Methods`` over a transport — ecrd's Unix socket
(``Client()``, the default) or its HTTP endpoint (``Client.http(url, token)``).

Both are blocking and serialise their calls (a lock): one request at a time per
``Client``; open one per thread for concurrent calls. On the socket, events arrive after
``subscribe`` as notifications: ``events`` keeps those received while waiting for a reply
and ``iter_events`` yields them as they come. HTTP has no events (ecrd's WebSocket does).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

from ecrd_client._api import BY_CODE, BY_REASON, Methods
from ecrd_client._base import ConnectionLost, EcrdError, HttpRefused

DEFAULT_SOCKET = "/run/ecrd/ecrd.sock"


def error_from(error: dict[str, Any]) -> EcrdError:
    """The exception of an error reply: its reason's class, else its code's, else the base."""
    reason = (error.get("data") or {}).get("reason")
    cls = BY_REASON.get(reason or "") or BY_CODE.get(error.get("code", 0)) or EcrdError
    return cls(error)


class Client(Methods):
    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float | None = None) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []  # notifications received while waiting
        self._url: str | None = None
        self._token: str | None = None
        self._timeout = timeout
        self._sock: socket.socket | None = None
        if path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(path)
            except OSError:
                self._sock.close()
                raise
            self._file = self._sock.makefile("rb")

    @classmethod
    def http(cls, url: str, token: str, timeout: float | None = None) -> Client:
        """ecrd's HTTP endpoint: ``url`` is its ``/rpc`` (``http://127.0.0.1:8765/rpc``)."""
        client = cls("", timeout)
        client._url, client._token = url, token
        return client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._file.close()
            self._sock.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method``; params that are None are left out (the server's default)."""
        sent = {k: v for k, v in (params or {}).items() if v is not None}
        with self._lock:
            rid = next(self._ids)
            request = {"jsonrpc": "2.0", "id": rid, "method": method, "params": sent}
            reply = self._post(request) if self._url else self._exchange(request)
        if "error" in reply:
            raise error_from(reply["error"])
        return reply.get("result")

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._sock is not None
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read()
            if "method" in message and "id" not in message:
                self.events.append(message.get("params", {}))
            elif message.get("id") == request["id"]:
                return message

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ConnectionLost("ecrd closed the connection")
        message: dict[str, Any] = json.loads(line)
        return message

    def _post(self, request: dict[str, Any]) -> dict[str, Any]:
        # Imported here: an app on the socket alone never loads http.client, ssl, email...
        import urllib.error
        import urllib.request

        assert self._url is not None
        # ecrd is on this box or the shop's LAN: never through a proxy the environment names.
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        post = urllib.request.Request(  # noqa: S310 - the caller's own ecrd URL
            self._url,
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {self._token}"},
            method="POST",
        )  # fmt: skip
        try:
            with direct.open(post, timeout=self._timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:  # an endpoint that answers in JSON-RPC even with an HTTP error status
                message: dict[str, Any] = json.loads(text)
            except ValueError:
                raise HttpRefused(exc.code, text) from None
            if not isinstance(message, dict) or "error" not in message:
                raise HttpRefused(exc.code, text) from None
            return message
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionLost(f"ecrd's HTTP endpoint: {exc}") from exc
        message = json.loads(body)
        return message

    def iter_events(self) -> Iterator[dict[str, Any]]:
        """After ``subscribe()`` on the socket: the events' params, forever."""
        while self.events:
            yield self.events.pop(0)
        while True:
            message = self._read()
            if "method" in message and "id" not in message:
                yield message.get("params", {})
