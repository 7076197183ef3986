"""Design.md §3 rule 4: an unknown payment settled by the terminal's own word — its answer
to the ``status_action``, or its late reply on a serial line — and only with proof: the
answer names and matches the payment (``protocol/outcome.py``: ``status_verdict``,
``money_verdict``). A person settles the rest (``Payments.resolve``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import trio

from ecrd.backoff import Backoff
from ecrd.protocol.outcome import money_verdict, status_verdict
from ecrd.store.journal import Journal, JournalError, TransitionRefused, TxRecord
from ecrd.terminal.admission import expected_of
from ecrd.terminal.terminal import Terminal

log = logging.getLogger("ecrd.payments")
SETTLE_RETRY: Final = Backoff(initial=1.0, cap=60.0)  # asking the status action again
Db = Callable[..., Any]  # Payments.db: journal calls on its thread
Publish = Callable[..., None]


class Settler:
    def __init__(
        self, db: Db, journal: Journal, terminals: Mapping[str, Terminal], publish: Publish
    ) -> None:
        self.db = db
        self.journal = journal
        self.terminals = terminals
        self._publish = publish

    async def settle_later(self, term: Terminal, ref: str, attempts: int = 5) -> None:
        """Ask the terminal's status action (protocol.md §8), with backoff, a few times."""
        for _, delay in zip(range(attempts), SETTLE_RETRY.delays(), strict=False):
            if await self.settle(term, ref):
                return
            await trio.sleep(delay)

    async def settle(self, term: Terminal, ref: str) -> bool:
        action = term.cfg.status_action
        if not action or not term.paired:
            return False
        try:
            _, body = await term.exchange(
                action, {"referenceID": ref}, timeout=term.cfg.info_timeout_s
            )
        except Exception as exc:
            log.info("terminal=%s ref=%s status query failed: %s", term.id, ref, exc)
            return False
        record = await self.db(self.journal.get, ref)
        if record is None:
            return False
        verdict = status_verdict(expected_of(record), body, term.cfg.inconclusive_codes)
        if not verdict.settles:
            # Another transaction, still in progress, or an error about the query itself
            # ("unsupported", "not found"): no proof either way (rule 4).
            log.info("terminal=%s ref=%s not settled: %s", term.id, ref, verdict.message)
            return False
        return await self._settle(term.id, ref, verdict.state, body, by=action)

    async def _settle(
        self, tid: str, ref: str, state: str, body: dict[str, Any], by: str, note: str | None = None
    ) -> bool:
        """An unknown payment settled by the terminal's own proven word."""
        try:
            await self.db(self.journal.settle, ref, state=state, reply=body, note=note)
        except (TransitionRefused, JournalError):  # settled meanwhile, or the disk failed
            return False
        log.warning("terminal=%s ref=%s settled as %s by %s", tid, ref, state, by)
        self._publish(ref, tid, state, settled_by=by)
        return True

    async def late_reply(
        self, terminal_id: str, response_id: str, action: str, body: dict[str, Any]
    ) -> None:
        """A reply that came after its exchange gave up (serial): the terminal's own word
        on a payment recorded as unknown. Settles it when it proves an outcome."""

        def find() -> TxRecord | None:
            unknown = self.journal.unknown(terminal_id)
            return next((r for r in unknown if r.request_id == response_id), None)

        record = await self.db(find)
        if record is None or action != record.action:
            return
        # The responseID names the request; the body must name and match the payment too: a
        # stale responseID on another payment's body settles nothing.
        term = self.terminals.get(terminal_id)
        inconclusive = term.cfg.inconclusive_codes if term is not None else ()
        verdict = money_verdict(expected_of(record), body, inconclusive)
        if not verdict.settles or body.get("referenceID") != record.reference_id:
            return
        await self._settle(terminal_id, record.reference_id, verdict.state, body, by="late_reply",
                           note="settled by the terminal's late reply")  # fmt: skip
