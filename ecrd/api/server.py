"""The Unix socket server: one task per client, one task per request.

Invariants:

* A client never blocks another, nor a payment: replies and events go through a
  per-client queue drained by that client's writer task.
* Back-pressure: a client that does not read its replies stops being read. While more
  than ``MAX_UNSENT`` bytes wait to be written (or, done, wait for the rest of their
  batch), or ``MAX_IN_FLIGHT`` requests run, no new line is taken from it; journal reads
  (listings) run one at a time per connection, each only once its earlier replies are out,
  and a listing's page is bounded in bytes (``PAGE_BYTES``, less what the connection's
  batches already hold, and at least one record); events wait for room too, and a
  subscription that falls its queue (256 events) behind is disconnected. So a connection
  holds a bounded amount of memory whatever its peer does: about ``MAX_UNSENT`` plus a
  page or two.
* A connection that makes no progress (no complete line read, no reply written) for
  ``idle_timeout_s`` is closed if nothing runs for it and it has no subscription, or if
  replies wait for it unread all that time (its payments go on: design.md §3 rule 7).
* Requests on one connection run concurrently (a ``ping`` is answered while a ``sale``
  waits for the customer); replies carry the request's ``id``.
* A request that outlives its client keeps running: money commands live in the payments
  nursery (design.md §3 rule 7). At end of input the requests already read are answered
  and their replies flushed before the connection closes (a client that only shut down its
  sending side still gets them); a reply that cannot be written drops the connection.
* Every line gets exactly one reply (notifications none); bad input gets a JSON-RPC error
  and the connection stays open.
* Refusals (no role, too many clients, money as a notification) are logged per peer at
  most a few an interval, then summed up (``refusals.py``); every admin action that passed
  its role check is written to the audit table once it has its answer, before the answer
  goes out (``audit.py``), never limited.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import math
import os
import select
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Final

import trio

from ecrd import errors, ownership
from ecrd.api import audit, jsonrpc, roles
from ecrd.api.caller import Caller
from ecrd.api.methods import METHODS
from ecrd.api.refusals import RefusalLog
from ecrd.api.service import Service
from ecrd.api.sharing import Admission, Refused
from ecrd.events import Subscription
from ecrd.protocol.actions import MONEY_METHODS
from ecrd.store.journal_view import PAGE_BYTES

log = logging.getLogger("ecrd.api")

MAX_UNSENT: Final = 256 * 1024
MAX_IN_FLIGHT: Final = 64
# Only reachable if a bug let replies pile up despite the limits above.
HARD_UNSENT: Final = 64 * 2**20


class Connection:
    def __init__(
        self,
        daemon: Service,
        stream: trio.abc.Stream,
        who: Caller,
        registry: set[Connection] | None = None,
        refusals: RefusalLog | None = None,
        present: Callable[[], bool] | None = None,
    ) -> None:
        """``stream``: the socket's, or one that carries lines another way (HTTP, WebSocket:
        api/http.py), whose ``present`` then says whether its client is still there."""
        self.daemon = daemon
        self.refusals = refusals or RefusalLog(log)  # shared by the server's connections
        # The open connections, for the daemon's shutdown to wait on their replies.
        self._registry: set[Connection] = set() if registry is None else registry
        self.stream = stream
        self._present = present
        self.who = who
        self.peer = who.label
        # Unbounded in messages, bounded in effect by the back-pressure rules above.
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](math.inf)
        self._subscription: Subscription | None = None
        self._nursery: trio.Nursery | None = None
        self.dropped = False
        self._handling = 0
        # Counted from send() until written: a message handed straight to a waiting
        # writer is in no buffer, yet not on the wire either.
        self._unwritten = 0
        self._unsent_bytes = 0
        # Replies of batch members that are done, held until their batch is: not yet in
        # the writer's queue, but in memory all the same.
        self._held_bytes = 0
        self._room = trio.lowlevel.ParkingLot()
        self._reads = trio.Lock()
        self._progress = trio.current_time()
        self._idle_scope = trio.CancelScope()

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
        if self._present is not None:
            return self._present()
        assert isinstance(self.stream, trio.SocketStream)
        poller = select.poll()
        poller.register(self.stream.socket.fileno(), select.POLLHUP | select.POLLERR)
        try:
            return not poller.poll(0)
        except OSError:
            return False

    def send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        self._send_bytes(jsonrpc.encode(message))

    def _send_bytes(self, data: bytes) -> None:
        try:
            self._out_send.send_nowait(data)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        self._unwritten += 1
        self._unsent_bytes += len(data)
        if self._unsent_bytes > HARD_UNSENT:
            self._drop("it does not read its replies")

    def _has_room(self, held: bool) -> bool:
        """Room for another request. ``held``: counting the replies batches hold (the
        reader does; a batch starting its own members does not: it would wait for itself)."""
        pending = self._unsent_bytes + (self._held_bytes if held else 0)
        return pending < MAX_UNSENT and self._handling < MAX_IN_FLIGHT

    async def _wait_room(self, *, held: bool = True) -> None:
        while not self._has_room(held):
            await self._room.park()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[int]:
        """A journal read for this client: one at a time, once its replies are out. Gives
        the bytes a listing's page may take: ``PAGE_BYTES`` less what its batches hold."""
        async with self._reads:
            while self._unsent_bytes >= MAX_UNSENT:
                await self._room.park()
            yield max(1, PAGE_BYTES - self._held_bytes)

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
            # Waiting here lets the subscription's own queue fill: a client that does not
            # read its events is then disconnected (below), not buffered without end.
            while self._unsent_bytes >= MAX_UNSENT:
                await self._room.park()
            self.send(jsonrpc.notification("event", event))
        if sub.overflowed:
            self._drop("its event queue overflowed")

    async def serve(self) -> None:
        self._registry.add(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                nursery.start_soon(self._idle_watch)
                async with trio.open_nursery() as requests:
                    await self._reader(requests)
                # End of input (`echo REQUEST | socat - UNIX-CONNECT:...` shuts down its
                # sending side): the requests read have been answered; flush, then close.
                if self._subscription is not None:
                    self._subscription.close()
                self._out_send.close()
        finally:
            self._registry.discard(self)
            if self._subscription is not None:
                self._subscription.close()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _writer(self) -> None:
        try:
            async for data in self._out_recv:
                await self.stream.send_all(data)
                self._unwritten -= 1
                self._unsent_bytes -= len(data)
                self._progress = trio.current_time()
                self._room.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._drop("the connection broke")
        self._idle_scope.cancel()  # all flushed at end of input: nothing left to watch

    async def _idle_watch(self) -> None:
        with self._idle_scope:
            await self._close_when_idle()

    async def _close_when_idle(self) -> None:
        while True:
            timeout = self.daemon.config.daemon.idle_timeout_s
            now = trio.current_time()
            if now < self._progress + timeout:
                await trio.sleep(self._progress + timeout - now)
            elif (self._handling or self._subscription is not None) and not self._unsent_bytes:
                self._progress = now  # in use: look again a full period later
            else:
                why = "its replies went unread" if self._unsent_bytes else "idle"
                log.info("client %s disconnected: %s for %gs", self.peer, why, timeout)
                self.dropped = True
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return

    async def _reader(self, nursery: trio.Nursery) -> None:
        reader = jsonrpc.LineReader(self.daemon.config.daemon.max_line_bytes)
        while True:
            await self._wait_room()
            try:
                data = bytes(await self.stream.receive_some(65536))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            for line in reader.feed(data):
                await self._wait_room()
                self._progress = trio.current_time()
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
                elif isinstance(parsed, jsonrpc.Request):
                    self._start(nursery, self._handle, parsed, self.send)
                elif isinstance(parsed, jsonrpc.Batch):
                    self._start(nursery, self._batch, parsed)

    def _start(self, nursery: trio.Nursery, fn: Any, *args: Any) -> None:
        self._handling += 1  # counted at once, so that the reader sees the limit
        nursery.start_soon(self._counted, fn, *args)

    async def _counted(self, fn: Any, *args: Any) -> None:
        try:
            await fn(*args)
        finally:
            self._handling -= 1
            self._room.unpark_all()

    async def _handle(self, req: jsonrpc.Request, reply_to: Any) -> None:
        if req.is_notification and req.method in MONEY_METHODS:
            # Money needs a caller who hears the answer: a notification gets none (JSON-RPC
            # 2.0 §4.1), so its client could never learn the reference it charged under.
            line = f"client {self.peer} sent {req.method} as a notification (no id): not executed"
            self.refusals.refused(self.who.key, self.peer, f"{req.method} notification", line)
            self.daemon.count("money_notification")
            return
        reply = await dispatch(self.daemon, self, req)
        if not req.is_notification:
            reply_to(reply)

    async def _batch(self, batch: jsonrpc.Batch) -> None:
        """JSON-RPC 2.0 §6: each member runs like a line of its own (and counts as one
        running request); the replies go back together, notifications' none, and nothing
        at all when there is no reply."""
        parts = [jsonrpc.encode(m)[:-1] for m in batch.members if isinstance(m, dict)]
        held = 0

        def hold(reply: dict[str, Any]) -> None:  # encoded now: its bytes are counted
            nonlocal held
            parts.append(part := jsonrpc.encode(reply)[:-1])
            held += len(part)
            self._held_bytes += len(part)

        try:
            async with trio.open_nursery() as members:
                for member in batch.members:
                    if isinstance(member, jsonrpc.Request):
                        await self._wait_room(held=False)
                        self._start(members, self._handle, member, hold)
        finally:
            self._held_bytes -= held
            self._room.unpark_all()
        if parts:
            self._send_bytes(b"[" + b",".join(parts) + b"]\n")


async def dispatch(daemon: Service, conn: Connection, req: jsonrpc.Request) -> dict[str, Any]:
    """The reply to one request: its role checked first, an admin action audited after —
    also one cut short (its client went away: ``cancelled``), and shielded, so that no
    cancellation loses the row."""
    started = datetime.now(UTC)
    reply: dict[str, Any] | None = None
    try:
        reply = await _dispatch(daemon, conn, req)
        return reply
    finally:
        result = "cancelled" if reply is None else audit.result_of(reply)
        if req.method in audit.AUDITED and result != errors.PermissionDenied.reason:
            terminal = req.params.get("terminal")
            with trio.CancelScope(shield=True):
                await daemon.audit(
                    who=conn.peer, action=req.method, result=result, started=started,
                    terminal=terminal if isinstance(terminal, str) else None,
                    detail=audit.detail(req.method, req.params),
                )  # fmt: skip


async def _dispatch(daemon: Service, conn: Connection, req: jsonrpc.Request) -> dict[str, Any]:
    entry = METHODS.get(req.method)
    if entry is None:
        return jsonrpc.error(
            req.id,
            jsonrpc.METHOD_NOT_FOUND,
            f"no method {req.method!r}; see docs/api.md",
            "method_not_found",
        )
    method, spec = entry
    cfg = daemon.config  # read once per call: a reload applies to the calls after it
    denied = conn.who.denial(req.method, cfg)
    if denied is not None:
        role = denied.data["role"]
        line = f"client {conn.peer} refused {req.method}: no {role} role"
        conn.refusals.refused(conn.who.key, conn.peer, f"{req.method} (no {role} role)", line)
        daemon.count("permission_denied")
        return {"jsonrpc": "2.0", "id": req.id, "error": denied.to_error()}
    try:
        value = await method(daemon, conn, spec.validate(req.params))
    except errors.ApiError as exc:
        body = exc.to_error()
        return {"jsonrpc": "2.0", "id": req.id, "error": body}
    except Exception:
        log.exception("internal error in %s", req.method)
        return jsonrpc.error(
            req.id, jsonrpc.INTERNAL_ERROR, "internal error; see ecrd's log", "internal_error"
        )
    return jsonrpc.result(req.id, value)


def bind_socket(path: str, group: str | None) -> trio.socket.SocketType:
    """Create the socket 0660 (group from config) in a 0750 directory of ecrd's own
    (design.md §6, ecrd/ownership.py)."""
    gid = None if group is None else grp.getgrnam(group).gr_gid
    # ecrd must be a member of that group (systemd: SupplementaryGroups=); the directory
    # gets the group too, or its members could not reach the socket.
    ownership.own_directory(os.path.dirname(path) or ".", ownership.SOCKET_DIR_MODE, gid)
    problem = ownership.socket_path_problem(path)
    if problem is not None:
        raise ownership.CannotStart(problem)
    if ownership.answers(path):
        raise OSError(errno.EADDRINUSE, f"socket {path} is in use by a running process")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket left over from a process that died (checked above)
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
    os.chmod(path, 0o660)  # our own socket, in our own directory
    if gid is not None:
        os.chown(path, -1, gid, follow_symlinks=False)
    raw.listen(128)
    return trio.socket.from_stdlib_socket(raw)


async def _refuse(stream: trio.SocketStream, message: str) -> None:
    # The client may be gone already: that must not end the server.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        with trio.move_on_after(1):  # nor may one that does not read hold this task
            await stream.send_all(
                jsonrpc.encode(jsonrpc.error(None, -32000, message, "too_many_clients"))
            )
    await stream.aclose()


async def serve(
    daemon: Service,
    sock: trio.socket.SocketType,
    connections: set[Connection],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    listener = trio.SocketListener(sock)
    admission = Admission(lambda: daemon.config.daemon)
    refusals = RefusalLog(log)

    async def handle(stream: trio.SocketStream) -> None:
        # User and group names may come from NSS (LDAP, sssd): never on the event loop.
        who = Caller.of_peer(await trio.to_thread.run_sync(roles.identify, stream.socket))
        try:
            ticket = admission.admit(who.key, who.held(daemon.config))
        except Refused as exc:
            refusals.refused(who.key, who.label, "connection (too many clients)",
                             f"client {who.label} refused: {exc}")  # fmt: skip
            daemon.count("too_many_clients")
            await _refuse(stream, str(exc))
            return
        try:
            await Connection(daemon, stream, who, connections, refusals).serve()
        except Exception:
            # A bug in one connection must not stop the server for everyone else.
            log.exception("connection failed; closing it")
        finally:
            admission.release(ticket)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refusals.run)
        task_status.started()
        await trio.serve_listeners(handle, [listener])
