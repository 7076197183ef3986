"""Refusals, said without flooding: per peer (uid), the first ``FIRST`` in each
``INTERVAL_S`` are logged one line each, the rest counted and said in one summary line
when the interval is over.

A refused call costs ecrd nothing but its log line, and one user in the socket's group can
send ten thousand a second: unlimited, those lines would push everything else (the audit
lines of the log, a payment's story) out of journald's rate limit or ecrd's own log queue.
What an admin did is kept in the audit table (``store/audit.py``), which no limiter
touches; a refused call is not an admin action and is never written there.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Final

import attrs
import trio

FIRST: Final = 5
INTERVAL_S: Final = 60.0
SHOWN: Final = 5  # kinds named in a summary line


@attrs.define
class _Window:
    start: float
    label: str
    said: int = 0
    held: Counter[str] = attrs.field(factory=Counter)


class RefusalLog:
    def __init__(
        self,
        log: logging.Logger,
        *,
        first: int | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        """``first``, ``interval_s``: ``FIRST``, ``INTERVAL_S`` as they are when it is made."""
        self._log = log
        self._first = FIRST if first is None else first
        self._interval = INTERVAL_S if interval_s is None else interval_s
        self._clock = clock
        self._peers: dict[int | str, _Window] = {}

    def refused(self, uid: int | str, label: str, kind: str, line: str) -> None:
        """One refusal of ``kind`` (e.g. ``sale: no sell role``) for the peer ``uid`` (or
        an HTTP client's ``http:NAME``): ``line`` is logged if its quota allows, else
        counted."""
        now = self._clock()
        window = self._peers.get(uid)
        if window is None or now - window.start >= self._interval:
            if window is not None:
                self._summary(window)
            window = self._peers[uid] = _Window(now, label)
        window.label = label
        if window.said < self._first:
            window.said += 1
            self._log.warning("%s", line)
        else:
            window.held[kind] += 1

    def flush(self) -> None:
        """The summary of every window that is over (and forget it)."""
        now = self._clock()
        for uid, window in list(self._peers.items()):
            if now - window.start >= self._interval:
                self._summary(window)
                del self._peers[uid]

    async def run(self) -> None:
        """``flush`` as windows end, so a flood that stops is still summed up."""
        while True:
            await trio.sleep(self._interval / 4)
            self.flush()

    def _summary(self, window: _Window) -> None:
        total = sum(window.held.values())
        if not total:
            return
        kinds = ", ".join(f"{kind} x{n}" for kind, n in window.held.most_common(SHOWN))
        more = len(window.held) - SHOWN
        also = f" and {more} more kind(s)" if more > 0 else ""
        self._log.warning(
            "client %s: %d more refusal(s) in %gs not logged one by one: %s%s",
            window.label, total, self._interval, kinds, also,
        )  # fmt: skip
