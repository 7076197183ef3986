"""The Unix socket server: one task per client, one task per request.

Invariants:

* A client never blocks another, nor a payment: replies and events go through a bounded
  per-client queue drained by that client's writer task; a client whose queue overflows
  (it stopped reading) is disconnected.
* Requests on one connection run concurrently (a ``ping`` is answered while a ``sale``
  waits for the customer); replies carry the request's ``id``.
* A request that outlives its client keeps running: money commands live in the payments
  nursery (design.md §3 rule 7). At end of input the requests already read are answered
  and their replies flushed before the connection closes (a client that only shut down its
  sending side still gets them); a reply that cannot be written drops the connection.
* Every line gets exactly one reply (notifications none); bad input gets a JSON-RPC error
  and the connection stays open.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import select
import socket
import struct
from typing import TYPE_CHECKING, Any, Final

import trio

from ecrd import errors
from ecrd.api import jsonrpc
from ecrd.api.methods import METHODS, Params
from ecrd.events import Subscription

if TYPE_CHECKING:
    from ecrd.daemon import Daemon

log = logging.getLogger("ecrd.api")

QUEUE_SIZE: Final = 512


def peer_credentials(sock: trio.socket.SocketType) -> str:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return "uid=? pid=?"
    pid, uid, _gid = struct.unpack("3i", raw)
    return f"uid={uid} pid={pid}"


class Connection:
    def __init__(self, daemon: Daemon, stream: trio.SocketStream) -> None:
        self.daemon = daemon
        self.stream = stream
        self.peer = peer_credentials(stream.socket)
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](QUEUE_SIZE)
        self._subscription: Subscription | None = None
        self._nursery: trio.Nursery | None = None
        self.dropped = False
        self._handling = 0
        # Counted from send() until written: a message handed straight to a waiting
        # writer is in no buffer, yet not on the wire either.
        self._unwritten = 0

    @property
    def busy(self) -> bool:
        """Requests still running, or replies not yet written (used at shutdown)."""
        return self._handling > 0 or self._unwritten > 0

    def connected(self) -> bool:
        """Whether the client is still there to read a reply. A client that only shut down
        its sending side (``echo REQUEST | socat``) is; one that closed the socket is not
        (the kernel reports POLLHUP on a Unix socket whose peer is gone). No checkpoint."""
        if self.dropped:
            return False
        poller = select.poll()
        poller.register(self.stream.socket.fileno(), select.POLLHUP | select.POLLERR)
        try:
            return not poller.poll(0)
        except OSError:
            return False

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._out_send.send_nowait(jsonrpc.encode(message))
            self._unwritten += 1
        except trio.WouldBlock:
            self._drop("it does not read its replies")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _drop(self, why: str) -> None:
        if not self.dropped:
            self.dropped = True
            log.warning("client %s disconnected: %s", self.peer, why)
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()

    def subscribe(self, topics: frozenset[str] | None) -> None:
        if self._subscription is not None:
            self._subscription.close()
        self._subscription = self.daemon.events.subscribe(topics)
        assert self._nursery is not None
        self._nursery.start_soon(self._forward_events, self._subscription)

    async def _forward_events(self, sub: Subscription) -> None:
        async for event in sub.receive:
            self.send(jsonrpc.notification("event", event))
        if sub.overflowed:
            self._drop("its event queue overflowed")

    async def serve(self) -> None:
        self.daemon.connections.add(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                async with trio.open_nursery() as requests:
                    await self._reader(requests)
                # End of input (`echo REQUEST | socat - UNIX-CONNECT:...` shuts down its
                # sending side): the requests read have been answered; flush, then close.
                if self._subscription is not None:
                    self._subscription.close()
                self._out_send.close()
        finally:
            self.daemon.connections.discard(self)
            if self._subscription is not None:
                self._subscription.close()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _writer(self) -> None:
        try:
            async for data in self._out_recv:
                await self.stream.send_all(data)
                self._unwritten -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._drop("the connection broke")

    async def _reader(self, nursery: trio.Nursery) -> None:
        reader = jsonrpc.LineReader(self.daemon.config.daemon.max_line_bytes)
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            for line in reader.feed(data):
                if isinstance(line, jsonrpc.TooLong):
                    self.send(
                        jsonrpc.error(
                            None,
                            jsonrpc.INVALID_REQUEST,
                            f"line longer than {reader.cap} bytes; it was discarded",
                            "line_too_long",
                        )
                    )
                    continue
                parsed = jsonrpc.parse(line)
                if isinstance(parsed, dict):
                    self.send(parsed)
                else:
                    nursery.start_soon(self._handle, parsed)

    async def _handle(self, req: jsonrpc.Request) -> None:
        self._handling += 1
        try:
            reply = await dispatch(self.daemon, self, req)
            if not req.is_notification:
                self.send(reply)
        finally:
            self._handling -= 1


async def dispatch(daemon: Daemon, conn: Connection, req: jsonrpc.Request) -> dict[str, Any]:
    entry = METHODS.get(req.method)
    if entry is None:
        return jsonrpc.error(
            req.id,
            jsonrpc.METHOD_NOT_FOUND,
            f"no method {req.method!r}; see docs/api.md",
            "method_not_found",
        )
    method, allowed = entry
    try:
        value = await method(daemon, conn, Params(req.params, allowed))
    except errors.ApiError as exc:
        body = exc.to_error()
        return {"jsonrpc": "2.0", "id": req.id, "error": body}
    except Exception:
        log.exception("internal error in %s", req.method)
        return jsonrpc.error(
            req.id, jsonrpc.INTERNAL_ERROR, "internal error; see ecrd's log", "internal_error"
        )
    return jsonrpc.result(req.id, value)


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_socket(path: str, group: str | None) -> trio.socket.SocketType:
    """Create the socket 0660 (group from config) in a 0750 directory (design.md §6)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o750, exist_ok=True)
    if _answers(path):
        raise OSError(errno.EADDRINUSE, f"socket {path} is in use by a running process")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left over from a process that died
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)  # never a moment with a world-writable socket
    try:
        raw.bind(path)
    except OSError as exc:
        raw.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(exc.errno, f"socket {path} is in use") from exc
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    if group is not None:
        # ecrd must be a member of that group (systemd: SupplementaryGroups=); the
        # directory gets the group too, or its members could not reach the socket.
        gid = grp.getgrnam(group).gr_gid
        os.chown(path, -1, gid)
        if os.stat(directory).st_uid == os.geteuid():
            os.chown(directory, -1, gid)
    raw.listen(128)
    return trio.socket.from_stdlib_socket(raw)


async def serve(
    daemon: Daemon,
    sock: trio.socket.SocketType,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    listener = trio.SocketListener(sock)
    limit = trio.CapacityLimiter(daemon.config.daemon.max_clients)

    async def handle(stream: trio.SocketStream) -> None:
        if limit.available_tokens == 0:
            # The client may be gone already: that must not end the server.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(
                    jsonrpc.encode(
                        jsonrpc.error(None, -32000, "too many clients", "too_many_clients")
                    )
                )
            await stream.aclose()
            return
        async with limit:
            try:
                await Connection(daemon, stream).serve()
            except Exception:
                # A bug in one connection must not stop the server for everyone else.
                log.exception("connection failed; closing it")

    task_status.started()
    await trio.serve_listeners(handle, [listener])
