"""The daemon: the root nursery, start-up order, signals, reload, systemd.

Start-up order (each step before the next):
1. state directory (0700, ecrd/ownership.py), pairings loaded, journal opened; a problem
   there is ``CannotStart`` (one line, exit status 2, no restart loop);
2. journal recovery: ``pending`` → ``unknown`` (design.md §3 rule 6);
3. one supervised task tree per terminal (a crash restarts that terminal only);
4. the socket is bound and served; then READY=1 to systemd.

SIGHUP reloads the config (validated whole first; the old one stays on error; the reply
says which ``[daemon]`` keys were applied and which need a restart, and a terminal whose
new configuration cannot be built keeps its old one). SIGTERM
and SIGINT stop taking money commands, give in-flight ones ``shutdown_grace_s``, journal the
rest as ``unknown`` and exit 0. A second SIGTERM or SIGINT cuts the grace short.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import logging
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs
import trio

from ecrd import __version__, errors, housekeeping, logs, ownership
from ecrd.api import http, server
from ecrd.backoff import Backoff
from ecrd.config import Config, ConfigError, TerminalConfig, load
from ecrd.events import EventBus
from ecrd.metrics import Metrics, Snapshot
from ecrd.money.payments import Payments
from ecrd.ownership import CannotStart
from ecrd.reload import Plan
from ecrd.reload import plan as reload_plan
from ecrd.sdnotify import Notifier, watchdog_interval
from ecrd.store.journal import Journal, JournalError, format_time
from ecrd.store.journal_view import JournalView
from ecrd.store.pairings import Pairing, PairingStore, PairingStoreError
from ecrd.terminal.shared import Shared
from ecrd.terminal.terminal import Terminal
from ecrd.transport.http11 import tls_context

log = logging.getLogger("ecrd")
T = TypeVar("T")
_REPORTED = {"add": "added", "remove": "removed", "change": "changed"}


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


# Loaded on a thread once the socket answers, not before: a ``ping`` needs none of them,
# the first payment all (the LAN link's HTTP, AES).
WARM_UP: Final = ("h11", "Crypto.Cipher.AES")


def warm_up() -> None:
    for name in WARM_UP:
        importlib.import_module(name)


class Daemon:
    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.started = time.monotonic()
        self.events = EventBus()
        pairings, pending = self._open_state(config.daemon.state_dir)
        for pairing in [*pairings.values(), *pending.values()]:
            for secret in pairing.secrets:
                logs.register_secret(secret)
        self.journal_view = JournalView(self.journal.path)
        self.shared = Shared(
            client_sn=config.daemon.client_device_sn,
            cloud=config.cloud,
            pairings=self.pairing_store,
            events=self.events,
            trace_dir=Path(config.daemon.state_dir) / "trace",
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
        self.shared.late_reply = self.payments.authority.late_reply
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self.reload_error: str | None = None
        self.stopping = False
        self._unknown_count = 0
        self._disputed_count = 0
        self._hurry = trio.CancelScope()  # cancelled by a second stop signal
        self._replacing: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)
        self.connections: set[server.Connection] = set()
        self.metrics = Metrics(__version__)
        self.refusals: Counter[str] = Counter()  # ecrd_refusals_total{kind}
        self.prunes_skipped = 0  # ecrd_retention_skipped_total: an implausible clock

    def _open_state(self, state: str) -> tuple[dict[str, Pairing], dict[str, Pairing]]:
        """Step 1 of the start-up order; a corrupt file is ``CannotStart``, one line."""
        ownership.own_directory(state, ownership.STATE_DIR_MODE)
        self._lock_fd = lock_state_dir(state)
        self.pairing_store = PairingStore(os.path.join(state, "pairings.toml"))
        try:
            pairings = self.pairing_store.load()
            pending = self.pairing_store.pending()
            self.journal = Journal(os.path.join(state, "journal.sqlite3"))
        except PairingStoreError as exc:
            os.close(self._lock_fd)
            raise CannotStart(
                f"{exc} (restore it from a backup, or move it away and pair the terminals again)"
            ) from exc
        except JournalError as exc:
            os.close(self._lock_fd)
            # Never "start afresh" silently: the journal is the memory of past payments.
            raise CannotStart(f"{exc} (restore the journal from a backup)") from exc
        return pairings, pending

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Bound first, so "in use" fails the start plainly; clients that connect now wait
        # in the backlog until recovery is done and serving starts (design.md §3 rule 6).
        sock = server.bind_socket(self.config.daemon.socket, self.config.daemon.socket_group)
        self.http = http.bind(self.config.http)  # [http], if any: bound before serving too
        bound = ownership.identity(self.config.daemon.socket)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.payments.run)
                for term in self.terminals.values():
                    self._start_terminal(term)
                await nursery.start(server.serve, self, sock, self.connections)
                await nursery.start(http.serve, self, self.connections, self.http)
                nursery.start_soon(self._signals, nursery)
                nursery.start_soon(self._status_loop)
                self._start_housekeeping(nursery)
                log.info(
                    "ecrd %s ready on %s with %d terminal(s)",
                    __version__,
                    self.config.daemon.socket,
                    len(self.terminals),
                )
                self.notifier.ready(self.status_line())
                nursery.start_soon(trio.to_thread.run_sync, warm_up)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                for term in self.terminals.values():
                    await term.aclose()
                await trio.to_thread.run_sync(self.journal_view.close)
                await trio.to_thread.run_sync(self.journal.close)
            self.notifier.close()
            self.shared.workers.close()
            os.close(self._lock_fd)
            sock.close()
            ownership.remove_own_socket(self.config.daemon.socket, bound)

    def _start_housekeeping(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(
            housekeeping.publish_metrics, self.metrics, self.events, self.metrics_snapshot,
            lambda: self.config.daemon.metrics_file,
        )  # fmt: skip
        nursery.start_soon(
            housekeeping.prune_daily, self.journal.path,
            lambda: self.config.journal.keep_days, lambda: datetime.now(UTC),
            self._prune_skipped,
        )  # fmt: skip

    async def metrics_snapshot(self) -> Snapshot:
        tally = await self.read(self.journal_view.tally)
        return Snapshot(
            tally=tally,
            terminals=[t.summary() for t in self.terminals.values()],
            clients=len(self.connections),
            derivations=self.shared.keys.misses,
            journal_bytes=await self.read(self.journal_view.size_bytes),
            refusals=dict(self.refusals),
            unwritten=len(self.payments.authority.unwritten),
            prunes_skipped=self.prunes_skipped,
        )

    async def backup(self, path: str, with_pairings: bool) -> dict[str, Any]:
        """A consistent online copy of the journal (and of pairings.toml), both 0600."""
        records = await self.read(self.journal_view.backup, path)
        result: dict[str, Any] = {"journal": path, "records": records}
        if with_pairings:
            copy = path + ".pairings.toml"
            await self.shared.store(self.pairing_store.copy_to, copy)
            result["pairings"] = copy
        log.warning("journal backed up to %s (%d records)", path, records)
        return result

    async def metrics_text(self) -> str:
        render = self.metrics.renderer(await self.metrics_snapshot())
        return (await trio.to_thread.run_sync(render)).decode()

    def _start_terminal(self, term: Terminal) -> None:
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._scopes[term.id] = scope
        self._nursery.start_soon(self._supervise, term, scope)

    async def _supervise(self, term: Terminal, scope: trio.CancelScope) -> None:
        """Restart one terminal's task tree with capped backoff; never take others down, also
        when it fails as it is removed or stopped (``except*``: only the cancellation goes on)."""
        delays = Backoff(initial=1.0, cap=60.0).delays()
        with scope:
            while True:
                delay = next(delays)
                try:
                    await term.run()
                    return
                except* Exception as group:
                    log.exception("terminal=%s crashed, restarting in %.0fs", term.id, delay)
                    term.last_error = f"internal: {type(group.exceptions[0]).__name__}"
                await trio.sleep(delay)

    async def _signals(self, nursery: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    await self._reload_on_signal()
                elif not self.stopping:
                    nursery.start_soon(self.shutdown, nursery)
                else:
                    # A second SIGTERM/Ctrl-C: stop waiting; what is still in flight is
                    # journaled unknown on the way out, as after the grace period.
                    log.warning("second stop signal: not waiting for payments in flight")
                    self._hurry.cancel()

    async def _reload_on_signal(self) -> None:
        """SIGHUP (``systemctl reload``): a reload like ``config.reload``, audited too, by
        the signal (the kernel does not say who sent it). A bad file is logged and shown
        in STATUS=; the daemon carries on."""
        started, result = datetime.now(UTC), "ok"
        try:
            await self.reload()
        except ConfigError as exc:
            result = exc.reason
        await self.audit(who="signal SIGHUP", action="config.reload", terminal=None,
                         detail={}, result=result, started=started)  # fmt: skip

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
        """The watchdog, and systemd's STATUS= line: every tick, and as soon as a payment's
        state changes (a new unknown or dispute is said at once)."""
        interval = watchdog_interval()
        tick = min(interval, 10.0) if interval else 10.0
        last = ""
        changed = [trio.Event()]
        unwatch = self.events.watch(
            frozenset({"transaction.state"}), lambda _event: changed[0].set()
        )
        try:
            while True:
                last = await self._status_round(bool(interval), last)
                with trio.move_on_after(tick):
                    await changed[0].wait()
                changed[0] = trio.Event()
        finally:
            unwatch()

    async def _status_round(self, watchdog: bool, last: str) -> str:
        if watchdog:
            self.notifier.watchdog()
        try:
            counts = await self.read(self.journal_view.counts)
            self._unknown_count = counts.get("unknown", 0)
            self._disputed_count = counts.get("disputed", 0)
        except errors.JournalError:
            pass  # already logged; the watchdog must go on (a disk error is not a hang)
        await self._check_journal_file()
        line = self.status_line()
        if line != last:
            self.notifier.status(line)
        return line

    async def _check_journal_file(self) -> None:
        """A journal deleted or replaced under us is said once, loudly (it stops payments)."""
        if self.journal.problem is not None:
            return
        try:
            await trio.to_thread.run_sync(self.journal.check_file)  # a stat(): disk I/O
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
        if self._disputed_count:
            line += f", {self._disputed_count} DISPUTED (ecrctl tx --state disputed)"
        unwritten = len(self.payments.authority.unwritten)
        if unwritten:
            line += f", {unwritten} outcome(s) NOT JOURNALED yet (disk?)"
        if self.reload_error:
            line += f"; config reload FAILED, old config kept: {self.reload_error}"
        return line

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A journal read on the read-only connection (never queued with payment writes)."""
        try:
            return await self.journal_view.run(fn, *args, **kwargs)
        except JournalError as exc:
            log.error("journal error: %s", exc)
            raise

    async def status(self) -> dict[str, Any]:
        counts = await self.read(self.journal_view.counts)
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "config": self.config.path,
            "socket": self.config.daemon.socket,
            "terminals": [t.summary() for t in self.terminals.values()],
            "journal": counts,
            "journal_problem": self.journal.problem,
            # Outcomes in hand that the journal did not take yet (disk full): shown unknown.
            "unwritten": sorted(self.payments.authority.unwritten),
            "journal_records": sum(counts.values()),
            "journal_bytes": await self.read(self.journal_view.size_bytes),
            "in_flight": self.payments.in_flight,
            "reload_error": self.reload_error,
            "stopping": self.stopping,
        }

    def log_peer(self, what: str, terminal: str, peer: str, ref: str = "-") -> None:
        log.info("terminal=%s ref=%s %s requested by %s", terminal, ref, what, peer)

    def count(self, refusal: str) -> None:
        self.refusals[refusal] += 1

    def _prune_skipped(self) -> None:
        self.prunes_skipped += 1

    async def audit(
        self, *, who: str, action: str, terminal: str | None, detail: dict[str, Any],
        result: str, started: datetime,
    ) -> None:  # fmt: skip
        """An admin action, committed to the audit table by the journal's writer thread."""
        row = dict(who=who, action=action, terminal=terminal, detail=detail, result=result,
                   at=format_time(started))  # fmt: skip
        try:
            await self.payments.db(self.journal.audit, **row)
        except Exception as exc:  # the action is done: the row is said, never lost silently
            log.error("audit row NOT JOURNALED (%s): %s", exc, row)

    # -- reload ----------------------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Validate the whole file first; keep the old config on any error (design.md §5).
        The reply says exactly what was applied (docs/api.md, ``config.reload``)."""
        try:
            new = await trio.to_thread.run_sync(load, self.config.path)
        except ConfigError as exc:
            self.reload_error = str(exc)
            log.error("config reload failed, keeping the old config: %s", exc)
            self.notifier.status(self.status_line())
            raise ConfigError(f"reload failed, the old config stays in force: {exc}") from exc
        self.reload_error = None
        tls_context.cache_clear()  # CA files may have changed too
        steps = reload_plan(self.config, new)
        self._apply_daemon(steps)
        access = ["access"] if new.access != self.config.access else []
        self.config = attrs.evolve(new, daemon=steps.daemon, http=steps.http)  # the next calls
        self.shared.cloud = new.cloud
        report = await self._apply_terminals(steps)
        report.update(applied=[*steps.applied, *access], needs_restart=list(steps.needs_restart))
        log.info("config reloaded: %s", report)
        self.notifier.status(self.status_line())
        return report

    def _apply_daemon(self, steps: Plan) -> None:
        """The [daemon] keys a running daemon takes: the log level and the money rule's
        switch here; max_clients, max_clients_per_user, idle_timeout_s, max_line_bytes and
        extra_currencies are read from self.config where they are used."""
        if "log_level" in steps.applied:
            logging.getLogger().setLevel(steps.daemon.log_level.upper())
        self.payments.block_on_unknown = steps.daemon.block_on_unknown

    async def _apply_terminals(self, steps: Plan) -> dict[str, Any]:
        """One terminal at a time; a busy one after its payment (deferred)."""
        report: dict[str, Any] = {"added": [], "removed": [], "changed": [], "deferred": []}
        failed: dict[str, str] = {}
        assert self._nursery is not None
        for step in steps.steps:
            tid = step.terminal
            term = self.terminals.get(tid)
            if (term is not None and term.busy_with is not None) or self._replacing[tid].locked():
                report["deferred"].append(tid)  # after its payment (or the one under way)
                self._nursery.start_soon(self._replace, tid, step.new, step.moved)
                problem = None
            else:
                problem = await self._replace(tid, step.new, step.moved)
            if problem is not None:
                failed[tid] = problem
            else:
                report[_REPORTED[step.kind]].append(tid)
        for key in ("added", "removed", "changed"):
            report[key].sort()
        return {**report, "failed": failed}

    async def _build(self, cfg: TerminalConfig, *, address_changed: bool) -> Terminal:
        store = self.shared.store
        pairing = await store(self.pairing_store.get, cfg.id)
        if pairing is not None and address_changed and pairing.host is not None:
            # The admin gave a new address: it replaces the last known one.
            pairing = attrs.evolve(pairing, host=None, port=None)
            term = Terminal(cfg, self.shared, pairing)
            await store(self.pairing_store.put, pairing)
            return term
        return Terminal(cfg, self.shared, pairing)

    async def _replace(
        self, tid: str, cfg: TerminalConfig | None, moved: bool = False
    ) -> str | None:
        """Build a terminal's new configuration, then stop its old tree (a busy one first
        finishes its payment) and start the new one. One replacement per terminal at a
        time, in the order the reloads asked for them. If the new one cannot be built, the
        old one stays and the problem is returned (and shown in ``status``); never fatal."""
        async with self._replacing[tid]:
            term = self.terminals.get(tid)
            try:
                if term is not None:
                    await self.payments.wait_idle(term)
                new = None if cfg is None else await self._build(cfg, address_changed=moved)
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}; its old configuration stays in force"
                self.reload_error = f"terminal {tid}: {problem}"
                log.exception("reload: terminal=%s cannot be rebuilt, keeping it as it was", tid)
                return problem
            if term is not None:
                self.terminals.pop(tid, None)
                scope = self._scopes.pop(tid, None)
                if scope is not None:
                    scope.cancel()
                with contextlib.suppress(Exception):
                    await term.aclose()
            if new is not None:
                self.terminals[tid] = new
                self._start_terminal(new)
            return None


async def main(config: Config) -> None:
    daemon = Daemon(config)
    await daemon.run()
