"""Named pauses for crash tests, in the spirit of etcd's gofail.

Off unless the environment sets ``ECRD_FAILPOINTS``, e.g. ``after_begin=30`` (seconds;
several separated by commas). The tests use them to SIGKILL the daemon at an exact stage
of a payment (design.md §3 rule 6). A hit is logged, so a failpoint left on in production
is visible.

Points: ``after_begin`` (journaled pending, nothing sent), ``before_finish`` (reply in
hand, not journaled), ``after_finish`` (journaled, not yet returned to the client).
"""

from __future__ import annotations

import logging
import os

import trio

log = logging.getLogger("ecrd.failpoints")


def _parse(spec: str) -> dict[str, float]:
    points = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, seconds = item.partition("=")
        points[name] = float(seconds or "3600")
    return points


POINTS = _parse(os.environ.get("ECRD_FAILPOINTS", ""))


async def hit(name: str) -> None:
    seconds = POINTS.get(name)
    if seconds is not None:
        log.warning("failpoint %s: pausing %.1f s", name, seconds)
        await trio.sleep(seconds)
