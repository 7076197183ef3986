"""The money rules of design.md §3, in one place.

1. Write ahead: ``journal.begin`` (durable, ``pending``, with the requestID and the first
   link) happens before the request is sealed; a fallback link is journaled
   (``mark_sending``) before its attempt.
2. ``reference_id`` is the idempotency key: in flight → attach; finished → the stored
   record; other parameters → ``duplicate_reference_mismatch``.
3. Never resend: a ``MaybeDelivered`` (or an unreadable reply) makes the record
   ``unknown``; only ``NotDelivered`` may move to the fallback link (terminal.py).
   A reply settles only what it proves (``protocol/outcome.py``): one that contradicts its
   request, an odd status, or an inconclusive error code (``DUPLICATE_REFERENCE``) leaves
   the record ``unknown``, with the reply kept verbatim as evidence.
4. Unknown blocks new money commands on that terminal until settled: by a person
   (``resolve``), or by the terminal's own word (``settling.py``: its ``status_action``,
   or its late reply on a serial line) — each only with a reply that names and matches it.
5. One money command per terminal; a second one gets ``terminal_busy`` (or waits; a
   waiting one whose client has gone is dropped unsent and unjournaled).
6. Start-up turns ``pending`` into ``unknown`` before the socket takes money commands.
7. Money commands run in this object's nursery, not in the client's task: a client that
   disconnects does not cancel the payment.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import attrs
import trio

from ecrd import errors, failpoints
from ecrd.events import EventBus
from ecrd.protocol.crypto import CryptoError
from ecrd.protocol.envelope import ProtocolError, ReplyMismatch, new_request_id
from ecrd.protocol.outcome import Verdict, money_verdict
from ecrd.store.journal import (
    DuplicateReference,
    Journal,
    JournalError,
    TxRecord,
)
from ecrd.terminal import refunds
from ecrd.terminal.admission import (
    Facts,
    Go,
    PaymentRequest,
    Refuse,
    Replay,
    admit,
    expected_of,
    mismatch,
)
from ecrd.terminal.notes import NOTE_NOT_SENT, NOTE_RESTARTED, NOTE_UNKNOWN, NOTE_UNPROVEN
from ecrd.terminal.settling import Settler
from ecrd.terminal.terminal import Terminal
from ecrd.transport.base import MaybeDelivered, NotDelivered
from ecrd.workers import Workers

log = logging.getLogger("ecrd.payments")
T = TypeVar("T")


@attrs.define
class _InFlight:
    request: PaymentRequest
    record: TxRecord | None = None  # None until begin() has journaled it
    done: trio.Event = attrs.field(factory=trio.Event)
    # Set when the outcome could not be journaled (disk full): every waiter gets it.
    error: errors.ApiError | None = None


class Payments:
    def __init__(
        self,
        journal: Journal,
        terminals: dict[str, Terminal],
        events: EventBus,
        *,
        block_on_unknown: bool = True,
    ) -> None:
        self.journal = journal
        self.terminals = terminals
        self.events = events
        self.block_on_unknown = block_on_unknown
        self.accepting = True
        self._inflight: dict[str, _InFlight] = {}
        self._idle: dict[str, trio.Event] = {}
        self._writer = Workers(threads=1, nice=0, name="ecrd-journal")
        self._nursery: trio.Nursery | None = None
        self.settler = Settler(self.db, journal, terminals, self._publish)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Journal calls run in one worker thread, in order (design.md §1)."""
        try:
            return await self._writer.run(partial(fn, *args, **kwargs))
        except JournalError as exc:
            log.error("journal error: %s", exc)
            raise

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover (rule 6), then host the money tasks until cancelled."""
        recovered = await self.db(self.journal.recover, NOTE_RESTARTED)
        for rec in recovered:
            log.warning(
                "terminal=%s ref=%s was in flight at the last stop: now unknown",
                rec.terminal,
                rec.reference_id,
            )
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for rec in await self.db(self.journal.unknown):
                term = self.terminals.get(rec.terminal)
                if term is not None and term.cfg.status_action:
                    nursery.start_soon(self.settler.settle_later, term, rec.reference_id)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._writer.close()  # a later call (the drain's last word) starts it again

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def drain(self, grace: float) -> None:
        """SIGTERM: stop taking money commands, give in-flight ones ``grace`` seconds."""
        self.accepting = False
        with trio.move_on_after(grace):
            for flight in list(self._inflight.values()):
                await flight.done.wait()

    # -- rule 2, 4, 5: admission ---------------------------------------------------------------

    async def money(
        self,
        request: PaymentRequest,
        *,
        peer: str = "",
        wait: bool = False,
        timeout_s: float | None = None,
        still_wanted: Callable[[], bool] = lambda: True,
    ) -> TxRecord:
        """Admit a money command (rules 2, 4, 5: ``admission.admit``), run it (rules 1, 3,
        7), return its record.

        ``still_wanted`` says whether the caller is still there; it is asked after any wait
        and right before the command is journaled, so a request whose client hung up while
        it waited for a busy terminal is dropped, never sent.
        """
        term = self.terminals.get(request.terminal)
        if term is None:
            raise errors.TerminalNotFound(f"no terminal {request.terminal!r} in the configuration")
        ref = request.reference_id
        while True:
            flight = self._inflight.get(ref)
            if flight is not None:
                return await self._attach(flight, request)
            facts = await self._facts(request, term)
            if ref in self._inflight:
                continue  # someone started it while we looked: attach on the next turn
            decision = admit(request, facts, wait=wait)
            if isinstance(decision, Replay):
                log.info("terminal=%s ref=%s asked again by %s: answered from the journal",
                         term.id, ref, peer or "?")  # fmt: skip
                return decision.record
            if isinstance(decision, Refuse):
                raise decision.error
            if isinstance(decision, Go):
                break
            await self._idle.setdefault(term.id, trio.Event()).wait()
        if not still_wanted():
            log.warning(
                "terminal=%s ref=%s dropped unsent: its client hung up while it waited",
                term.id,
                ref,
            )
            raise errors.ClientGone(f"the client of {ref!r} hung up; nothing was sent")
        # No checkpoint from the facts to the registration in _start: admission is atomic.
        return await self._start(term, request, peer, timeout_s)

    async def _facts(self, request: PaymentRequest, term: Terminal) -> Facts:
        """What admission needs: the journal's word (one call), then the live state."""
        ref, tid = request.reference_id, request.terminal

        def lookup() -> tuple[TxRecord | None, list[TxRecord]]:
            record = self.journal.get(ref)
            if record is not None:
                return record, []
            pending = [r for r in self.journal.pending() if r.terminal == tid]
            return None, self.journal.unknown(tid) + pending

        stored, blocking = await self.db(lookup)
        return Facts(
            stored=stored,
            # A pending row with no payment in flight is one whose outcome could not be
            # journaled (disk full): as unresolved as an unknown one.
            blocking=[r for r in blocking if r.reference_id not in self._inflight],
            busy_with=term.busy_with,
            paired=term.paired,
            pairing_unconfirmed=term.pending is not None,
            accepting=self.accepting,
            block_on_unknown=self.block_on_unknown,
        )

    async def _attach(self, flight: _InFlight, request: PaymentRequest) -> TxRecord:
        """The same reference is running (rule 2): the same request waits for its result."""
        if not request.same_as(flight.request):
            raise mismatch(request, flight.record or flight.request)
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        if flight.record is None:  # begin() itself failed: nothing was journaled
            ref = request.reference_id
            raise errors.JournalError(f"reference_id {ref!r} could not be journaled")
        return flight.record

    async def _start(
        self, term: Terminal, request: PaymentRequest, peer: str, timeout_s: float | None
    ) -> TxRecord:
        """Rule 1: journal it, then send it in this object's nursery (rule 7)."""
        ref = request.reference_id
        term.busy_with = ref
        flight = self._inflight[ref] = _InFlight(request)
        try:
            flight.record = await self.db(
                self.journal.begin,
                reference_id=ref,
                terminal=request.terminal,
                action=request.action,
                params=request.params(),
                amount=request.amount,
                currency=request.currency,
                who=peer or "ecrd",
                request_id=new_request_id(),
                link=term.cfg.transport,
                guard=refunds.journal_guard(request),
            )
        except BaseException as exc:
            self._release(term, ref)
            if isinstance(exc, errors.ApiError):  # a refused refund: every waiter hears why
                flight.error = exc
            flight.done.set()
            if isinstance(exc, DuplicateReference):
                flight.record = exc.existing
                if not request.same_as(PaymentRequest.of(exc.existing)):
                    raise mismatch(request, exc.existing) from None
                return exc.existing
            raise
        # No checkpoint from begin() to start_soon(): a caller cancelled now (its client
        # hung up) cannot leave a journaled payment that nobody sends (rule 7).
        elsewhere = request.original_elsewhere and " (original elsewhere: not checked)"
        log.info(
            "terminal=%s ref=%s %s %s %s accepted from %s%s",
            term.id, ref, request.action, request.amount or "", request.currency or "",
            peer or "?", elsewhere or "",
        )  # fmt: skip
        assert self._nursery is not None
        self._nursery.start_soon(self._execute, term, flight, timeout_s)
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.record is not None
        return flight.record

    async def wait_idle(self, term: Terminal) -> None:
        while term.busy_with is not None:
            await self._idle.setdefault(term.id, trio.Event()).wait()

    @asynccontextmanager
    async def holding(self, term: Terminal, holder: str) -> AsyncIterator[None]:
        """The terminal busy with something else than a payment (pairing, a probe): no
        payment starts on it meanwhile (rule 5), and a busy one is refused at once."""
        if term.busy_with is not None:
            raise errors.TerminalBusy(
                f"terminal {term.id!r} is busy with {term.busy_with}", busy_with=term.busy_with
            )
        term.busy_with = holder
        try:
            yield
        finally:
            self._release(term, holder)

    def payment_on(self, term: Terminal) -> str | None:
        """The reference of the payment running on ``term`` (not a pairing's or probe's hold)."""
        ref = term.busy_with
        return ref if ref is not None and ref in self._inflight else None

    def _release(self, term: Terminal, reference_id: str) -> None:
        self._inflight.pop(reference_id, None)
        if term.busy_with == reference_id:
            term.busy_with = None
        idle = self._idle.pop(term.id, None)
        if idle is not None:
            idle.set()

    # -- rule 1, 3: execution -----------------------------------------------------------------

    async def _execute(self, term: Terminal, flight: _InFlight, timeout_s: float | None) -> None:
        assert flight.record is not None  # journaled by _start before this task starts
        ref = flight.record.reference_id
        try:
            await self._exchange(term, flight, timeout_s)
        except Exception as exc:
            # The outcome is not on disk (the row stays pending: it blocks the terminal, and
            # is unknown after a restart). Tell every waiter, with the terminal's reply if
            # there was one, and keep serving everyone else.
            log.error(
                "terminal=%s ref=%s outcome NOT JOURNALED: %s", term.id, ref, exc, exc_info=exc
            )
            flight.error = errors.OutcomeUnknown(
                f"the outcome of {ref} could not be recorded ({exc}); the terminal may have "
                f"charged: check it, then settle with `ecrctl resolve {ref} succeeded|failed`",
                cause="journal_error" if isinstance(exc, errors.JournalError) else "internal",
                reply=getattr(exc, "data", {}).get("reply"),
                transaction=flight.record.to_api(),
            )
        finally:
            self._release(term, ref)
            flight.done.set()
        if (
            flight.record is not None
            and flight.record.state == "unknown"
            and term.cfg.status_action
        ):
            assert self._nursery is not None
            self._nursery.start_soon(self.settler.settle_later, term, ref)

    async def _exchange(self, term: Terminal, flight: _InFlight, timeout_s: float | None) -> None:
        """Send it (rule 1: it is journaled) and record what the outcome is — or is not —
        from what came back (rule 3)."""
        rec = flight.record
        assert rec is not None
        ref = rec.reference_id
        sent = False

        async def on_sending(request_id: str, link: str) -> None:
            nonlocal sent
            if link != rec.link:  # begin() journaled the primary link already
                await self.db(self.journal.mark_sending, ref, request_id=request_id, link=link)
            sent = True
            self._publish(ref, term.id, "waiting_for_customer", link=link)

        self._publish(ref, term.id, "pending", action=rec.action)
        await failpoints.hit("after_begin")
        try:
            _, body = await term.exchange(
                rec.action,
                flight.request.body(),
                timeout=timeout_s or term.cfg.timeout_for(rec.action),
                on_sending=on_sending,
                request_id=rec.request_id,
            )
        except (NotDelivered, errors.NotPaired) as exc:
            flight.record = await self._finish(ref, "failed", exc, NOTE_NOT_SENT)
        except ReplyMismatch as exc:
            verdict = Verdict("unknown", exc.reason, str(exc))
            flight.record = await self._unproven(rec, verdict, exc.body)
        except (MaybeDelivered, CryptoError, ProtocolError) as exc:
            flight.record = await self._finish(ref, "unknown", exc, NOTE_UNKNOWN.format(ref=ref))
        except Exception as exc:
            state, note = (
                ("unknown", NOTE_UNKNOWN.format(ref=ref)) if sent else ("failed", NOTE_NOT_SENT)
            )
            log.exception("terminal=%s ref=%s unexpected error", term.id, ref)
            flight.record = await self._finish(ref, state, exc, note)
        except BaseException:
            # Cancelled (shutdown past its grace): the outcome is unknown if anything left.
            with trio.CancelScope(shield=True):
                state, note = ("unknown", NOTE_RESTARTED) if sent else ("failed", NOTE_NOT_SENT)
                err = errors.ShuttingDown("ecrd stopped while waiting for the terminal")
                flight.record = await self._finish(ref, state, err, note)
            raise
        else:
            await failpoints.hit("before_finish")
            flight.record = await self._conclude(term, rec, body)
            await failpoints.hit("after_finish")

    async def _conclude(self, term: Terminal, rec: TxRecord, body: dict[str, Any]) -> TxRecord:
        """A reply came: it settles the payment only if it proves its outcome."""
        verdict = money_verdict(expected_of(rec), body, term.cfg.inconclusive_codes)
        try:
            if not verdict.settles:
                return await self._unproven(rec, verdict, body)
            record = await self.db(
                self.journal.finish, rec.reference_id, state=verdict.state, reply=body
            )
        except errors.JournalError as exc:
            exc.data["reply"] = body  # what the terminal said, so nobody has to guess
            raise
        self._publish(rec.reference_id, term.id, verdict.state)
        return record

    async def _unproven(self, rec: TxRecord, verdict: Verdict, body: dict[str, Any]) -> TxRecord:
        """A reply came, but it does not prove this payment's outcome: unknown, with the
        reply kept verbatim as the evidence a person will check."""
        ref = rec.reference_id
        log.error("ref=%s outcome UNKNOWN (%s: %s)", ref, verdict.cause, verdict.message)
        record = await self.db(
            self.journal.finish,
            ref,
            state="unknown",
            reply=body,
            error={"reason": verdict.cause, "message": verdict.message},
            note=NOTE_UNPROVEN.format(ref=ref, why=verdict.message),
        )
        self._publish(ref, rec.terminal, "unknown", reason=verdict.cause)
        return record

    async def _finish(self, ref: str, state: str, exc: BaseException, note: str) -> TxRecord:
        reason = errors.reason_of(exc)
        if state == "unknown":
            log.error("ref=%s outcome UNKNOWN (%s: %s)", ref, reason, exc)
        record = await self.db(
            self.journal.finish,
            ref,
            state=state,
            error={"reason": reason, "message": str(exc)},
            note=note,
        )
        self._publish(ref, record.terminal, state, reason=reason)
        return record

    def _publish(self, ref: str, terminal: str, state: str, **more: Any) -> None:
        self.events.publish(
            "transaction.state", reference_id=ref, terminal=terminal, state=state, **more
        )

    # -- rule 4: settled by a person (the terminal's own word: settling.py) ------------------

    async def resolve(self, ref: str, outcome: str, note: str, who: str) -> TxRecord:
        record = await self.db(self.journal.get, ref)
        if record is None:
            raise errors.TransactionNotFound(f"no transaction with reference_id {ref!r}")
        if record.state == "pending" and ref not in self._inflight:
            # Its outcome could not be journaled (disk full): it becomes unknown first.
            record = await self.db(
                self.journal.finish,
                ref,
                state="unknown",
                error={"reason": "journal_error", "message": "outcome not journaled"},
                note=NOTE_UNKNOWN.format(ref=ref),
            )
        if record.state != "unknown":
            raise errors.InvalidState(
                f"transaction {ref!r} is {record.state}; only unknown ones can be resolved",
                transaction=record.to_api(),
            )
        # TransitionRefused (settled by the status action meanwhile) is said as it is.
        record = await self.db(self.journal.resolve, ref, outcome=outcome, note=note, who=who)
        log.warning("ref=%s resolved as %s by %s: %s", ref, outcome, who, note)
        self._publish(ref, record.terminal, record.state, resolved_by=who)
        return record
