"""Capped, jittered exponential backoff for reconnect loops (design.md §1).

Invariants:

* Every delay lies in ``[initial * (1 - jitter), cap]``; the un-jittered base doubles
  (``factor``) from ``initial`` until it reaches ``cap`` and stays there.
* Jitter only ever shortens a delay, so ``cap`` is a hard upper bound an admin can rely on,
  and links that lost their device at the same instant do not retry in lockstep.
* A ``Backoff`` is an immutable recipe; each outage draws a fresh iterator from
  ``delays()``, so a link that came back starts again from ``initial``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import attrs


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be greater than zero, not {value!r}")


@attrs.frozen
class Backoff:
    initial: float = attrs.field(default=0.2, validator=_positive)
    cap: float = attrs.field(default=10.0, validator=_positive)
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    jitter: float = attrs.field(
        default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    # Jitter spreads retries; it is not security relevant, so the stdlib PRNG is fine.
    rng: Callable[[], float] = attrs.field(
        default=random.random,
        eq=False,
        repr=False,
    )

    def __attrs_post_init__(self) -> None:
        if self.cap < self.initial:
            raise ValueError(f"cap ({self.cap}) must not be below initial ({self.initial})")

    def delays(self) -> Iterator[float]:
        """An endless sequence of delays for one outage."""
        base = self.initial
        while True:
            yield base * (1.0 - self.jitter * self.rng())
            base = min(self.cap, base * self.factor)
