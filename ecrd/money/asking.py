"""Design.md §3 rule 4: an unknown payment settled by asking the terminal itself.

With a ``status_action`` configured (protocol.md §8, [ASSUMED]: none is documented for
2.0), ecrd asks about a payment whose outcome is unknown, a few times with backoff. The
answer is evidence like any other: ``Authority.record`` keeps it, and it settles the payment
only when it proves the outcome (``evidence.classify``: it names and describes the payment;
a ``Failed`` proves "not charged" only with an errorCode on ``not_charged_codes``). A person
settles the rest (``ecrctl resolve``).
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from ecrd.backoff import Backoff
from ecrd.money.authority import Authority
from ecrd.money.evidence import StatusAnswer
from ecrd.store.journal import JournalError
from ecrd.terminal.terminal import Terminal

log = logging.getLogger("ecrd.payments")
ASK_AGAIN: Final = Backoff(initial=1.0, cap=60.0)


class StatusQueries:
    def __init__(self, authority: Authority) -> None:
        self.authority = authority

    async def settle_later(self, term: Terminal, ref: str, attempts: int = 5) -> None:
        """Ask the terminal's status action, with backoff, a few times."""
        for _, delay in zip(range(attempts), ASK_AGAIN.delays(), strict=False):
            if await self.ask(term, ref):
                return
            await trio.sleep(delay)

    async def ask(self, term: Terminal, ref: str) -> bool:
        """One question; True when the answer settled the payment."""
        action = term.cfg.status_action
        if not action or not term.paired:
            return False
        try:
            answer = await term.exchange(
                action, {"referenceID": ref}, timeout=term.cfg.info_timeout_s
            )
        except Exception as exc:
            log.info("terminal=%s ref=%s status query failed: %s", term.id, ref, exc)
            return False
        try:
            record = await self.authority.record(ref, StatusAnswer(action, answer.body))
        except JournalError:
            return False  # kept, and written when the journal takes writes again
        return record.state != "unknown"
