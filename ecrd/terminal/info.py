"""``terminal.info`` for everyone at once: one DeviceInfo in flight per terminal, its
answer shared by every caller waiting for it and kept ``info_cache_s`` seconds.

Each DeviceInfo is an exchange with the terminal (and, for a reply under a new salt, a key
derivation): callers asking faster than the terminal answers must not queue one exchange
each, or a sale behind them hits its own timeout and becomes unknown. So:

* One flight per terminal. A caller that finds one under way waits for it and gets its
  answer, or its error; a flight whose caller went away (cancelled) is not an answer, and
  the next waiting caller starts a new one.
* A good answer is kept for ``[[terminal]] info_cache_s`` seconds (0: not kept; callers
  at the same moment still share one flight), and only while the terminal keeps the
  pairing it was fetched under (a new pairing, or none, forgets it). Errors are never kept.
* Never ahead of a payment: a flight first waits for its turn (``turn``, given by the
  caller: no payment running or waiting on that terminal, ``Payments.wait_quiet``), so a
  DeviceInfo never goes out while a payment is in progress or queued.

The caches live beside their terminals (a ``WeakKeyDictionary``): a terminal replaced at a
reload starts with an empty one.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from ecrd.terminal.terminal import Terminal

Turn = Callable[[], Awaitable[None]]


@attrs.define
class _Flight:
    done: trio.Event = attrs.field(factory=trio.Event)
    answer: dict[str, Any] | None = None
    error: Exception | None = None


class InfoCache:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[dict[str, Any]]],
        keep_s: Callable[[], float],
        under: Callable[[], object] = lambda: None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        """``under``: what a kept answer is valid under (the terminal's pairing)."""
        self._fetch = fetch
        self._keep_s = keep_s
        self._under = under
        self._clock = clock
        self._flight: _Flight | None = None
        self._kept: tuple[float, object, dict[str, Any]] | None = None  # (until, under, answer)
        self.exchanges = 0  # flights started, for the tests and the curious

    async def get(self, turn: Turn) -> dict[str, Any]:
        """The terminal's DeviceInfo body: kept, shared, or fetched after ``turn``."""
        while True:
            kept = self._kept
            if kept is not None and self._clock() < kept[0] and kept[1] is self._under():
                await trio.lowlevel.checkpoint()
                return dict(kept[2])
            flight = self._flight
            if flight is None:
                return await self._fly(turn)
            await flight.done.wait()
            if flight.error is not None:
                raise _shared(flight.error)
            if flight.answer is not None:
                return dict(flight.answer)
            # Its caller was cancelled: no answer; loop and start (or join) another.

    async def _fly(self, turn: Turn) -> dict[str, Any]:
        flight = self._flight = _Flight()
        try:
            await turn()
            self.exchanges += 1
            under = self._under()
            answer = await self._fetch()
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            self._flight = None
            flight.done.set()
        flight.answer = answer
        keep = self._keep_s()
        self._kept = (self._clock() + keep, under, dict(answer)) if keep > 0 else None
        return dict(answer)


def _shared(error: Exception) -> Exception:
    """The flight's error for another caller: the same class and message, a traceback of
    its own (one exception object raised in two tasks would grow one traceback)."""
    try:
        copy = type(error)(*error.args)
    except Exception:  # a class whose constructor wants more than its args
        return error
    copy.__dict__.update(error.__dict__)
    copy.__cause__ = error
    return copy


_caches: weakref.WeakKeyDictionary[Terminal, InfoCache] = weakref.WeakKeyDictionary()


def cache_of(term: Terminal) -> InfoCache:
    """The terminal's one cache (made at its first ``terminal.info``)."""
    cache = _caches.get(term)
    if cache is None:
        cache = _caches[term] = InfoCache(
            term.info, lambda: term.cfg.info_cache_s, lambda: term.pairing
        )
    return cache


async def info(term: Terminal, turn: Turn) -> dict[str, Any]:
    """``terminal.info``: the terminal's DeviceInfo body, coalesced and kept."""
    return await cache_of(term).get(turn)
