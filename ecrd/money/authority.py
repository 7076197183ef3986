"""The one authority that changes a payment's state: evidence in, a journaled change out.

``Authority.record(ref, evidence)`` is the only way a payment's state changes after
``begin``: the pure ``settlement.settle`` decides inside the journal's write transaction
(``Journal.apply``), and the change is then said — a log line, an event on the bus — with a
``disputed`` record raised loudly (ERROR, ``transaction.disputed``). Callers: the payment's
own exchange (``Payments``), the terminal's late replies (``late_reply``), status answers
(``asking.py``), recovery at start (``recover``) and a person (``resolve``).

Invariants:

* Journal calls run on one writer thread, in order; never on the event loop.
* Evidence is never dropped. When its write fails (disk full, I/O error), it is kept in
  memory (``unwritten``), written again with backoff and before any later evidence about the
  same payment, and its payment is shown as unknown with cause ``journal_error`` meanwhile
  (``seen``). A person's resolve first writes what is kept: it cannot overrule an answer
  the terminal already gave.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Final, TypeVar

import trio

from ecrd.backoff import Backoff
from ecrd.events import EventBus
from ecrd.money.evidence import (
    Evidence,
    LateReply,
    NoAnswer,
    NotSent,
    Outcome,
    Policy,
    Resolved,
    StatusAnswer,
    Stopped,
    kind_of,
)
from ecrd.money.notes import NOTE_UNWRITTEN
from ecrd.money.settlement import settle
from ecrd.store.journal import Journal, JournalError, TxRecord
from ecrd.workers import Workers

log = logging.getLogger("ecrd.payments")
T = TypeVar("T")
RETRY: Final = Backoff(initial=1.0, cap=30.0)
PolicyOf = Callable[[str], Policy]  # terminal id -> its policy (terminals change at reload)


class Authority:
    def __init__(self, journal: Journal, events: EventBus, policy_of: PolicyOf) -> None:
        self.journal = journal
        self.events = events
        self.policy_of = policy_of
        self._writer = Workers(threads=1, nice=0, name="ecrd-journal")
        # Evidence whose write failed, oldest first, by reference (see the docstring).
        self.unwritten: dict[str, list[Evidence]] = {}
        self._more = trio.Event()

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Journal calls run in one worker thread, in order (design.md §1)."""
        try:
            return await self._writer.run(partial(fn, *args, **kwargs))
        except JournalError as exc:
            log.error("journal error: %s", exc)
            raise

    def close(self) -> None:
        self._writer.close()  # a later call (the drain's last word) starts it again

    async def record(self, ref: str, evidence: Evidence, *, keep: bool = True) -> TxRecord:
        """What ``evidence`` does to payment ``ref``, journaled and said. Raises
        ``JournalError`` when it cannot be written; then, with ``keep``, it is kept and
        written later (module docstring)."""
        try:
            await self._flush(ref)
            record = await self._apply(ref, evidence)
        except JournalError:
            if keep:
                self.unwritten.setdefault(ref, []).append(evidence)
                self._more.set()
                log.error("ref=%s %s NOT JOURNALED, kept to write again", ref, kind_of(evidence))
            raise
        return record

    async def _apply(self, ref: str, evidence: Evidence) -> TxRecord:
        def decide(current: TxRecord) -> Any:
            return settle(current, evidence, self.policy_of(current.terminal))

        before, after = await self.db(self.journal.apply, ref, decide)
        self._announce(before, after, evidence)
        return after

    async def _flush(self, ref: str) -> None:
        """Write the evidence kept for ``ref``, oldest first; stop at the first failure."""
        kept = self.unwritten.get(ref)
        while kept:
            await self._apply(ref, kept[0])
            kept.pop(0)
        self.unwritten.pop(ref, None)

    async def write_kept(self) -> None:
        """Write the kept evidence again, with backoff, for as long as the daemon runs."""
        while True:
            await self._more.wait()
            for delay in RETRY.delays():
                await trio.sleep(delay)
                for ref in list(self.unwritten):
                    try:
                        await self._flush(ref)
                    except JournalError:
                        break
                    log.warning("ref=%s the evidence kept is journaled now", ref)
                if not self.unwritten:
                    break
            self._more = trio.Event()

    def seen(self, record: TxRecord) -> dict[str, Any]:
        """``record`` as the API shows it: one whose evidence waits to be written is unknown,
        cause ``journal_error``, with the terminal's reply in hand."""
        api = record.to_api()
        kept = self.unwritten.get(record.reference_id)
        if not kept or record.state != "pending":
            return api
        reply = next((e.body for e in kept if hasattr(e, "body")), None)
        why = "the journal does not take writes"
        error = {"reason": "journal_error", "message": f"{kind_of(kept[0])} not journaled: {why}"}
        extra = {"reply": dict(reply)} if reply is not None else {}
        return {**api, "state": "unknown", "error": error, "note": NOTE_UNWRITTEN.format(why=why),
                **extra}  # fmt: skip

    async def recover(self) -> list[TxRecord]:
        """At start: every pending record was in flight when ecrd stopped (rule 6)."""
        why = "ecrd stopped before the terminal's reply was recorded"
        stopped = Stopped("daemon_restarted", why)

        def decide(current: TxRecord) -> Any:
            return settle(current, stopped, self.policy_of(current.terminal))

        return await self.db(self.journal.recover, decide)

    async def late_reply(
        self, terminal_id: str, response_id: str, action: str, body: dict[str, Any]
    ) -> None:
        """A reply that came after its exchange gave up: evidence about the payment whose
        request it names, whatever that payment's state (a settled one may be disputed)."""
        record = await self.db(self.journal.by_request, response_id)
        if record is None or record.terminal != terminal_id:
            log.info("terminal=%s a late %s reply names no payment of it", terminal_id, action)
            return
        await self.record(record.reference_id, LateReply(action, body))

    async def resolve(self, ref: str, outcome: Outcome, note: str, who: str) -> TxRecord:
        """A person's word (rule 4). What the terminal said and is kept is written first;
        a resolve that cannot be written now is refused, never kept for later."""
        return await self.record(ref, Resolved(outcome, note, who), keep=False)

    # -- what the journal learned, said ---------------------------------------------------------

    def _announce(self, before: TxRecord, after: TxRecord, evidence: Evidence) -> None:
        ref, tid = after.reference_id, after.terminal
        if before.state == after.state:
            log.info("terminal=%s ref=%s %s kept as evidence (%s stays %s)",
                     tid, ref, kind_of(evidence), ref, after.state)  # fmt: skip
            return
        more: dict[str, Any] = {}
        if isinstance(evidence, NotSent | NoAnswer | Stopped):
            more["reason"] = evidence.reason
        elif isinstance(evidence, Resolved):
            more["resolved_by"] = evidence.who
            log.warning("ref=%s resolved as %s by %s: %s", ref, evidence.outcome, evidence.who,
                        evidence.note)  # fmt: skip
        elif after.state == "unknown":
            more["reason"] = (after.error or {}).get("reason")
        elif before.state != "pending":
            more["settled_by"] = _by(evidence)
            if after.state != "disputed":
                log.warning("terminal=%s ref=%s settled as %s by %s", tid, ref, after.state,
                            more["settled_by"])  # fmt: skip
        if after.state == "unknown":
            log.error("ref=%s outcome UNKNOWN (%s: %s)", ref, more.get("reason"),
                      (after.error or {}).get("message"))  # fmt: skip
        self.events.publish("transaction.state", reference_id=ref, terminal=tid,
                            state=after.state, **more)  # fmt: skip
        if after.state == "disputed":
            self._dispute(before, after, evidence)

    def _dispute(self, before: TxRecord, after: TxRecord, evidence: Evidence) -> None:
        why = (after.error or {}).get("message", "")
        log.error("terminal=%s ref=%s DISPUTED: %s (was %s); check it, then `ecrctl resolve %s "
                  "succeeded|failed --note WHY`", after.terminal, after.reference_id, why,
                  before.state, after.reference_id)  # fmt: skip
        self.events.publish("transaction.disputed", reference_id=after.reference_id,
                            terminal=after.terminal, was=before.state, why=why,
                            evidence=kind_of(evidence))  # fmt: skip


def _by(evidence: Evidence) -> str:
    if isinstance(evidence, StatusAnswer):
        return evidence.action
    return "late_reply" if isinstance(evidence, LateReply) else kind_of(evidence)
