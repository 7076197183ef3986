"""The daemon: the root nursery, start-up order, signals, reload, systemd.

Start-up order (each step before the next):
1. state directory (0700), pairings loaded, journal opened;
2. journal recovery: ``pending`` → ``unknown`` (design.md §3 rule 6);
3. one supervised task tree per terminal (a crash restarts that terminal only);
4. the socket is bound and served; then READY=1 to systemd.

SIGHUP reloads the config (validated whole first; the old one stays on error). SIGTERM
and SIGINT stop taking money commands, give in-flight ones ``shutdown_grace_s``, journal the
rest as ``unknown`` and exit 0. A second SIGTERM or SIGINT cuts the grace short.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import time
from collections import defaultdict
from functools import partial
from typing import Any

import attrs
import trio

from ecrd import __version__, errors, logs
from ecrd.api import server
from ecrd.config import Config, ConfigError, TerminalConfig, load
from ecrd.errors import ConfigProblem
from ecrd.events import EventBus
from ecrd.sdnotify import Notifier, watchdog_interval
from ecrd.store.journal import Journal, JournalError
from ecrd.store.pairings import PairingStore
from ecrd.terminal.payments import Payments
from ecrd.terminal.terminal import Shared, Terminal
from ecrd.transport.lan import tls_context

log = logging.getLogger("ecrd")


def lock_state_dir(state_dir: str) -> int:
    """One ecrd per state directory: a second one would turn the first one's payments in
    flight into unknowns at its start-up recovery (design.md §3 rule 6)."""
    fd = os.open(os.path.join(state_dir, "ecrd.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(
            errno.EBUSY, f"another ecrd is already running with state_dir {state_dir}"
        ) from None
    return fd


class Daemon:
    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.started = time.monotonic()
        self.events = EventBus()
        state = config.daemon.state_dir
        os.makedirs(state, mode=0o700, exist_ok=True)
        self._lock_fd = lock_state_dir(state)
        self.pairing_store = PairingStore(os.path.join(state, "pairings.toml"))
        pairings = self.pairing_store.load()
        pending = self.pairing_store.pending()
        for pairing in [*pairings.values(), *pending.values()]:
            logs.register_secret(pairing.pin)
        self.journal = Journal(os.path.join(state, "journal.sqlite3"))
        self.shared = Shared(
            client_sn=config.daemon.client_device_sn,
            cloud=config.cloud,
            pairings=self.pairing_store,
            events=self.events,
        )
        self.terminals: dict[str, Terminal] = {
            t.id: Terminal(t, self.shared, pairings.get(t.id), pending.get(t.id))
            for t in config.terminals
        }
        self.payments = Payments(
            self.journal,
            self.terminals,
            self.events,
            block_on_unknown=config.daemon.block_on_unknown,
        )
        self.shared.late_reply = self.payments.late_reply
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self.reload_error: str | None = None
        self.stopping = False
        self._unknown_count = 0
        self._hurry = trio.CancelScope()  # cancelled by a second stop signal
        self._replacing: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)
        self.connections: set[server.Connection] = set()

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Bound first, so "in use" fails the start plainly; clients that connect now wait
        # in the backlog until recovery is done and serving starts (design.md §3 rule 6).
        sock = server.bind_socket(self.config.daemon.socket, self.config.daemon.socket_group)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.payments.run)
                for term in self.terminals.values():
                    self._start_terminal(term)
                await nursery.start(server.serve, self, sock)
                nursery.start_soon(self._signals, nursery)
                nursery.start_soon(self._status_loop)
                log.info(
                    "ecrd %s ready on %s with %d terminal(s)",
                    __version__,
                    self.config.daemon.socket,
                    len(self.terminals),
                )
                self.notifier.ready(self.status_line())
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                for term in self.terminals.values():
                    await term.aclose()
                await trio.to_thread.run_sync(self.journal.close)
            self.notifier.close()
            self.shared.workers.close()
            os.close(self._lock_fd)
            with contextlib.suppress(OSError):
                os.unlink(self.config.daemon.socket)

    def _start_terminal(self, term: Terminal) -> None:
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._scopes[term.id] = scope
        self._nursery.start_soon(self._supervise, term, scope)

    async def _supervise(self, term: Terminal, scope: trio.CancelScope) -> None:
        """Restart one terminal's task tree with capped backoff; never take others down."""
        delay = 1.0
        with scope:
            while True:
                try:
                    await term.run()
                    return
                except Exception as exc:
                    log.exception("terminal=%s crashed, restarting in %.0fs", term.id, delay)
                    term.last_error = f"internal: {type(exc).__name__}"
                await trio.sleep(delay)
                delay = min(delay * 2, 60)

    async def _signals(self, nursery: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    # A bad file is logged and shown in STATUS=; the daemon carries on.
                    with contextlib.suppress(ConfigProblem):
                        await self.reload()
                elif not self.stopping:
                    nursery.start_soon(self.shutdown, nursery)
                else:
                    # A second SIGTERM/Ctrl-C: stop waiting; what is still in flight is
                    # journaled unknown on the way out, as after the grace period.
                    log.warning("second stop signal: not waiting for payments in flight")
                    self._hurry.cancel()

    async def shutdown(self, nursery: trio.Nursery) -> None:
        self.stopping = True
        grace = self.config.daemon.shutdown_grace_s
        log.info(
            "stopping: %d payment(s) in flight get up to %.0fs", self.payments.in_flight, grace
        )
        self.notifier.stopping("stopping: finishing in-flight payments")
        with self._hurry:
            await self.payments.drain(grace)
        # Let the clients of the payments that just finished get their replies.
        with trio.move_on_after(2):
            while any(c.busy for c in self.connections):  # noqa: ASYNC110 - bounded poll
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()

    async def _status_loop(self) -> None:
        interval = watchdog_interval()
        tick = min(interval, 10.0) if interval else 10.0
        last = ""
        while True:
            if interval:
                self.notifier.watchdog()
            try:
                counts = await self.payments.db(self.journal.counts)
                self._unknown_count = counts.get("unknown", 0)
            except errors.JournalFailure:
                pass  # already logged; the watchdog must go on (a disk error is not a hang)
            self._check_journal_file()
            line = self.status_line()
            if line != last:
                self.notifier.status(line)
                last = line
            await trio.sleep(tick)

    def _check_journal_file(self) -> None:
        """A journal deleted or replaced under us is said once, loudly (it stops payments)."""
        if self.journal.problem is not None:
            return
        try:
            self.journal.check_file()  # one stat(): no need for the journal thread
        except JournalError as exc:
            log.critical("%s", exc)

    # -- views ---------------------------------------------------------------------------

    def status_line(self) -> str:
        terms = list(self.terminals.values())
        up = sum(t.link_state == "up" for t in terms)
        paired = sum(t.paired for t in terms)
        unknown = self._unknown_count
        line = f"{len(terms)} terminal(s), {paired} paired, {up} link(s) up"
        if self.journal.problem:
            line = f"NO PAYMENTS: {self.journal.problem}; " + line
        if self.payments.in_flight:
            line += f", {self.payments.in_flight} payment(s) in flight"
        if unknown:
            line += f", {unknown} transaction(s) of UNKNOWN outcome (ecrctl tx --state unknown)"
        if self.reload_error:
            line += f"; config reload FAILED, old config kept: {self.reload_error}"
        return line

    async def status(self) -> dict[str, Any]:
        counts = await self.payments.db(self.journal.counts)
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "config": self.config.path,
            "socket": self.config.daemon.socket,
            "terminals": [t.summary() for t in self.terminals.values()],
            "journal": counts,
            "journal_problem": self.journal.problem,
            "in_flight": self.payments.in_flight,
            "reload_error": self.reload_error,
            "stopping": self.stopping,
        }

    def log_peer(self, what: str, terminal: str, peer: str, ref: str = "-") -> None:
        log.info("terminal=%s ref=%s %s requested by %s", terminal, ref, what, peer)

    # -- reload ----------------------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Validate the whole file first; keep the old config on any error (design.md §5)."""
        try:
            new = await trio.to_thread.run_sync(load, self.config.path)
        except ConfigError as exc:
            self.reload_error = str(exc)
            log.error("config reload failed, keeping the old config: %s", exc)
            self.notifier.status(self.status_line())
            raise ConfigProblem(f"reload failed, the old config stays in force: {exc}") from exc
        self.reload_error = None
        tls_context.cache_clear()  # CA files may have changed too
        old = {t.id: t for t in self.config.terminals}
        fresh = {t.id: t for t in new.terminals}
        added = sorted(set(fresh) - set(old))
        removed = sorted(set(old) - set(fresh))
        # A changed [cloud] table changes every terminal's cloud client (link or address
        # lookup), so they are all rebuilt.
        cloud_changed = new.cloud != self.config.cloud
        changed = sorted(k for k in set(old) & set(fresh) if old[k] != fresh[k] or cloud_changed)
        ignored = [
            key
            for key in ("socket", "socket_group", "state_dir")
            if getattr(new.daemon, key) != getattr(self.config.daemon, key)
        ]
        self.config = attrs.evolve(
            new,
            daemon=attrs.evolve(new.daemon, **{k: getattr(self.config.daemon, k) for k in ignored}),
        )
        self.shared.cloud = new.cloud
        self.payments.block_on_unknown = new.daemon.block_on_unknown
        deferred = []
        assert self._nursery is not None
        for tid in removed + changed + added:
            moved = (
                tid in old
                and tid in fresh
                and ((old[tid].host, old[tid].port) != (fresh[tid].host, fresh[tid].port))
            )
            term = self.terminals.get(tid)
            if (term is not None and term.busy_with is not None) or self._replacing[tid].locked():
                deferred.append(tid)  # after its payment (or the replacement under way)
                self._nursery.start_soon(self._replace, tid, fresh.get(tid), moved)
            else:
                await self._replace(tid, fresh.get(tid), moved)
        log.info(
            "config reloaded: added=%s removed=%s changed=%s (after their payment: %s)",
            added,
            removed,
            changed,
            deferred,
        )
        self.notifier.status(self.status_line())
        return {
            "added": added,
            "removed": removed,
            "changed": changed,
            "deferred": deferred,
            "needs_restart": ignored,
        }

    async def _add(self, cfg: TerminalConfig, *, address_changed: bool = False) -> None:
        store = partial(trio.to_thread.run_sync, limiter=self.shared.store_limiter)
        pairing = await store(self.pairing_store.get, cfg.id)
        if pairing is not None and address_changed and pairing.host is not None:
            # The admin gave a new address: it replaces the last known one.
            pairing = attrs.evolve(pairing, host=None, port=None)
            await store(self.pairing_store.put, pairing)
        term = Terminal(cfg, self.shared, pairing)
        self.terminals[cfg.id] = term
        self._start_terminal(term)

    async def _replace(self, tid: str, cfg: TerminalConfig | None, moved: bool = False) -> None:
        """Stop a terminal's tree (a busy one first finishes its payment), then start its
        new configuration, if any. One replacement per terminal at a time, in the order
        the reloads asked for them; a failure is logged, never fatal to the daemon."""
        async with self._replacing[tid]:
            try:
                term = self.terminals.get(tid)
                if term is not None:
                    await self.payments.wait_idle(term)
                    self.terminals.pop(tid, None)
                    scope = self._scopes.pop(tid, None)
                    if scope is not None:
                        scope.cancel()
                    await term.aclose()
                if cfg is not None:
                    await self._add(cfg, address_changed=moved)
            except Exception as exc:
                self.reload_error = f"terminal {tid}: {exc}"
                log.exception("reload: terminal=%s could not be (re)started", tid)


async def main(config: Config) -> None:
    daemon = Daemon(config)
    await daemon.run()
