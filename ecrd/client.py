"""ecrd's own client: ``open_trio_client`` (Trio: ``ecrctl`` and the tests) and ``Client``
(blocking). A POS app takes the light ``ecrd_client`` (clients/python) instead: the same
API with typed methods and one exception per reason, on the standard library alone, where
importing this module pulls in trio (and the daemon package with its dependencies).

    from ecrd.client import Client, EcrdError
    with Client("/run/ecrd/ecrd.sock") as ecr:
        try:
            tx = ecr.call("sale", terminal="counter-1", amount="10.20", currency="HKD",
                          reference_id=order.payment_id)
        except EcrdError as e:
            if e.reason == "timeout_outcome_unknown":
                ...  # ask the cashier to check the terminal; retry with the SAME reference_id
        else:
            print(tx["state"])   # "succeeded" or "failed" (declined)

Always send your own ``reference_id`` (e.g. your order's payment id) and reuse it when you
retry after a crash or timeout: ecrd then returns the first attempt's result instead of
charging again (design.md §3 rule 2).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import trio

DEFAULT_SOCKET = "/run/ecrd/ecrd.sock"


class EcrdError(Exception):
    """A JSON-RPC error from the daemon. ``reason`` is the stable string to switch on."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.code: int = error.get("code", -32603)
        self.message: str = error.get("message", "")
        self.data: dict[str, Any] = error.get("data") or {}
        self.reason: str = self.data.get("reason", "error")
        super().__init__(f"{self.message} [{self.reason}]")


class ConnectionLost(EcrdError):
    def __init__(self, why: str) -> None:
        super().__init__({"code": -32000, "message": why, "data": {"reason": "connection_lost"}})


class Client:
    """Blocking client. Not thread-safe: one call at a time per ``Client``."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float | None = None) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise
        self._file = self._sock.makefile("rb")
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []  # notifications received while waiting

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ConnectionLost("ecrd closed the connection")
        message: dict[str, Any] = json.loads(line)
        return message

    def call(self, method: str, **params: Any) -> Any:
        rid = next(self._ids)
        request = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read()
            if "method" in message and "id" not in message:
                self.events.append(message.get("params", {}))
                continue
            if message.get("id") != rid:
                continue
            if "error" in message:
                raise EcrdError(message["error"])
            return message.get("result")

    def iter_events(self) -> Iterator[dict[str, Any]]:
        """After ``call("subscribe")``: yields event params forever."""
        while self.events:
            yield self.events.pop(0)
        while True:
            message = self._read()
            if "method" in message and "id" not in message:
                yield message.get("params", {})


class TrioClient:
    """Trio client: concurrent calls on one connection, and an event channel."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._events_send, self.events = trio.open_memory_channel[dict[str, Any]](1024)
        self._lock = trio.Lock()

    async def _reader(self) -> None:
        buf = b""
        try:
            while True:
                data = await self._stream.receive_some(65536)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._dispatch(json.loads(line))
        finally:
            for chan in self._waiting.values():
                chan.close()
            self._events_send.close()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" in message and "id" not in message:
            # An app that does not read its events loses some, rather than its replies.
            with contextlib.suppress(trio.WouldBlock):
                self._events_send.send_nowait(message.get("params", {}))
            return
        chan = self._waiting.pop(message.get("id"), None)  # type: ignore[arg-type]
        if chan is not None:
            chan.send_nowait(message)

    async def call(self, method: str, **params: Any) -> Any:
        rid = next(self._ids)
        send, recv = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[rid] = send
        request = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        async with self._lock:
            await self._stream.send_all(json.dumps(request).encode() + b"\n")
        try:
            message = await recv.receive()
        except trio.EndOfChannel:
            raise ConnectionLost("ecrd closed the connection") from None
        if "error" in message:
            raise EcrdError(message["error"])
        return message.get("result")


@asynccontextmanager
async def open_trio_client(path: str = DEFAULT_SOCKET) -> AsyncIterator[TrioClient]:
    stream = await trio.open_unix_socket(path)
    client = TrioClient(stream)
    # The caller's exception is re-raised as itself, not wrapped in the nursery's
    # ExceptionGroup, so ``except EcrdError`` works around ``async with``.
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client._reader)
        try:
            yield client
        except BaseException as exc:
            error = exc
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await stream.aclose()
    if error is not None:
        raise error
