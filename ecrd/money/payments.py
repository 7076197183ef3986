"""The money rules of design.md §3, run: admission, write ahead, one exchange, its evidence.

1. Write ahead: ``journal.begin`` (durable, ``pending``, with the requestID and the first
   link) happens before the request is sealed; a fallback link is journaled
   (``mark_sending``) before its attempt — the one moment the exchange reaches back up
   (``before_send``).
2. ``reference_id`` is the idempotency key (``admission.admit``): in flight → attach;
   finished → the stored record; other parameters → ``duplicate_reference_mismatch``.
3. Never resend: what the exchange ends with is evidence (``NotSent``, ``NoAnswer``,
   ``Reply``) handed to the one authority (``authority.py`` → ``settlement.settle``); only
   ``NotDelivered`` may move to the fallback link (terminal.py).
4. Unknown blocks new money commands on that terminal until settled — by the terminal's
   own word (its late reply, its status answer: ``asking.py``) or a person's — each only on
   proof (``evidence.classify``).
5. One money command per terminal; a second one gets ``terminal_busy`` (or waits; a
   waiting one whose client has gone is dropped unsent and unjournaled).
6. Start-up turns ``pending`` into ``unknown`` before the socket takes money commands.
7. Money commands run in this object's nursery, not in the client's task: a client that
   disconnects does not cancel the payment.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ecrd import errors, failpoints
from ecrd.events import EventBus
from ecrd.money.admission import Facts, Go, Refuse, Replay, admit
from ecrd.money.asking import StatusQueries
from ecrd.money.authority import Authority
from ecrd.money.evidence import Evidence, NoAnswer, NotSent, Outcome, Policy, Reply, Stopped
from ecrd.money.refunds import journal_guard
from ecrd.money.request import PaymentRequest, mismatch
from ecrd.protocol.crypto import CryptoError, NotJson
from ecrd.protocol.envelope import ProtocolError, new_request_id
from ecrd.store.journal import DuplicateReference, Journal, JournalError, TxRecord
from ecrd.terminal.terminal import Terminal
from ecrd.transport.base import MaybeDelivered, NotDelivered

log = logging.getLogger("ecrd.payments")


@attrs.define
class _InFlight:
    request: PaymentRequest
    record: TxRecord | None = None  # None until begin() has journaled it
    done: trio.Event = attrs.field(factory=trio.Event)
    # Set when the outcome could not be journaled (disk full): every waiter gets it.
    error: errors.ApiError | None = None
    sent: bool = False  # the first byte may have left (before_send was called)


def policy_of(term: Terminal | None) -> Policy:
    """What a terminal's answers prove depends on these settings (evidence.py)."""
    if term is None:  # removed by a reload since: the defaults, which prove least
        return Policy()
    cfg = term.cfg
    return Policy.of(cfg.inconclusive_codes, cfg.not_charged_codes, cfg.amount_changes)


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
        self.authority = Authority(journal, events, lambda tid: policy_of(terminals.get(tid)))
        self.queries = StatusQueries(self.authority)
        self.db = self.authority.db
        self._inflight: dict[str, _InFlight] = {}
        self._idle: dict[str, trio.Event] = {}
        self._waiting: Counter[str] = Counter()  # payments waiting for a busy terminal
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover (rule 6), then host the money tasks until cancelled."""
        for rec in await self.authority.recover():
            log.warning("terminal=%s ref=%s was in flight at the last stop: now unknown",
                        rec.terminal, rec.reference_id)  # fmt: skip
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.authority.write_kept)
            for rec in await self.db(self.journal.unknown):
                self._ask_later(rec.terminal, rec.reference_id)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self.authority.close()

    def _ask_later(self, terminal_id: str, ref: str) -> None:
        term = self.terminals.get(terminal_id)
        if term is not None and term.cfg.status_action and self._nursery is not None:
            self._nursery.start_soon(self.queries.settle_later, term, ref)

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
        ref, waiting = request.reference_id, False
        try:
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
                waiting = waiting or self._queue(term.id, 1)
                await self._idle.setdefault(term.id, trio.Event()).wait()
        finally:
            if waiting:  # no checkpoint from here to _start's busy_with: wait_quiet sees one
                self._queue(term.id, -1)
        if not still_wanted():
            log.warning("terminal=%s ref=%s dropped unsent: its client hung up while it waited",
                        term.id, ref)  # fmt: skip
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
                self.journal.begin, reference_id=ref, terminal=request.terminal,
                action=request.action, params=request.params(), amount=request.amount,
                currency=request.currency, who=peer or "ecrd", request_id=new_request_id(),
                link=term.cfg.transport, guard=journal_guard(request),
            )  # fmt: skip
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
        elsewhere = request.original_elsewhere and " (original elsewhere, says the caller)"
        log.info("terminal=%s ref=%s %s %s %s accepted from %s%s", term.id, ref,
                 request.action, request.amount or "", request.currency or "", peer or "?",
                 elsewhere or "")  # fmt: skip
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

    async def wait_quiet(self, term: Terminal) -> None:
        """Until no payment runs on ``term`` nor waits for it (``"wait": true``): what is
        not a payment (``terminal.info``) goes behind the payments, never ahead of one."""
        while term.busy_with is not None or self._waiting[term.id]:
            await self._idle.setdefault(term.id, trio.Event()).wait()

    def _queue(self, terminal_id: str, n: int) -> bool:
        """A payment starts (1) or stops (-1) waiting for its terminal; stopping wakes
        whoever waits for the terminal to be quiet."""
        self._waiting[terminal_id] += n
        if not self._waiting[terminal_id]:
            del self._waiting[terminal_id]
            idle = self._idle.pop(terminal_id, None)
            if idle is not None:
                idle.set()
        return True

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
            self._publish(ref, term.id, "pending", action=flight.record.action)
            await failpoints.hit("after_begin")
            try:
                evidence = await self._send(term, flight, timeout_s)
            except BaseException:
                # Cancelled (shutdown past its grace): unknown if anything may have left.
                with trio.CancelScope(shield=True):
                    await self._conclude(term, flight, self._stopped(flight))
                raise
            await failpoints.hit("before_finish")
            await self._conclude(term, flight, evidence)
            await failpoints.hit("after_finish")
        finally:
            self._release(term, ref)
            flight.done.set()
        if flight.record.state == "unknown":
            self._ask_later(term.id, ref)

    @staticmethod
    def _stopped(flight: _InFlight) -> Evidence:
        why = "ecrd stopped while waiting for the terminal"
        return Stopped("shutting_down", why) if flight.sent else NotSent("shutting_down", why)

    async def _conclude(self, term: Terminal, flight: _InFlight, evidence: Evidence) -> None:
        """The evidence to the one authority; a write that fails leaves the outcome kept in
        memory (written later) and every waiter told, with the terminal's reply if any."""
        assert flight.record is not None
        ref = flight.record.reference_id
        try:
            flight.record = await self.authority.record(ref, evidence)
        except JournalError as exc:
            reply = evidence.body if isinstance(evidence, Reply) else None
            flight.error = errors.OutcomeUnknown(
                f"the outcome of {ref} could not be recorded ({exc}); ecrd writes it as soon as "
                "the journal takes writes again; check the terminal before charging again",
                cause="journal_error", reply=None if reply is None else dict(reply),
                transaction=self.authority.seen(flight.record),
            )  # fmt: skip

    async def _send(self, term: Terminal, flight: _InFlight, timeout_s: float | None) -> Evidence:
        """Send it (rule 1: it is journaled); what came back, or did not, is the evidence."""
        rec = flight.record
        assert rec is not None
        ref = rec.reference_id

        async def before_send(request_id: str, link: str) -> None:
            if link != rec.link:  # begin() journaled the primary link already
                await self.db(self.journal.mark_sending, ref, request_id=request_id, link=link)
            flight.sent = True
            self._publish(ref, term.id, "waiting_for_customer", link=link)

        try:
            response = await term.exchange(
                rec.action, flight.request.body(),
                timeout=timeout_s or term.cfg.timeout_for(rec.action),
                before_send=before_send, request_id=rec.request_id,
            )  # fmt: skip
        except (NotDelivered, errors.NotPaired) as exc:
            return NotSent(errors.reason_of(exc), str(exc))
        except (MaybeDelivered, CryptoError, NotJson, ProtocolError) as exc:
            return NoAnswer(errors.reason_of(exc), str(exc))
        except Exception as exc:
            log.exception("terminal=%s ref=%s unexpected error", term.id, ref)
            evidence = NoAnswer if flight.sent else NotSent
            return evidence(errors.reason_of(exc), str(exc))
        return Reply(response.action, response.body)

    def _publish(self, ref: str, terminal: str, state: str, **more: Any) -> None:
        self.events.publish(
            "transaction.state", reference_id=ref, terminal=terminal, state=state, **more
        )

    # -- rule 4: a person's word (the terminal's own: authority.late_reply, asking.py) -------

    async def resolve(self, ref: str, outcome: str, note: str, who: str) -> TxRecord:
        if outcome not in ("succeeded", "failed"):
            raise errors.InvalidParams("outcome must be succeeded or failed", field="outcome")
        said: Outcome = "succeeded" if outcome == "succeeded" else "failed"
        return await self.authority.resolve(ref, said, note, who)
