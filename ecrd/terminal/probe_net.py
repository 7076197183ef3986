"""The LAN and cloud probes: one HTTP exchange per try, on a link of the try's own.

LAN, in two rounds, each run concurrently (at most ``PARALLEL`` tries at once): first
every address — ``path`` × ``tls`` × ``port`` — with the entry's crypto and look-up,
until the first reply that is an envelope (the others are cancelled: each is only a
look-up); that proves its address, and the second round varies ``crypto`` ×
``identify_action`` there, every combination to its end, the fewest knobs off winning.
So a terminal is found in about two round trips, and nothing answering ends after one
try's timeout (``TRY_S``), twice at most. An https address whose certificate does not
verify is tried once more without verification, to say "https, needs ca_file".

Cloud: ``crypto`` only, one try after the other (the gateway's terminal-info).

Every try builds its link from a copy of the entry with the tried settings
(``links.probe_link``): the terminal's own links and config are never touched.
"""

from __future__ import annotations

import ssl
from typing import Any, Final

import attrs
import trio

from ecrd.config import LanTerminal
from ecrd.terminal.links import probe_link
from ecrd.terminal.probing import (
    LAN_PATHS,
    LAN_PORT,
    OTHER_SCHEME,
    Ask,
    Probe,
    Reading,
    ask,
    describe,
    fewest_off_first,
    read,
    uniq,
)
from ecrd.terminal.terminal import Terminal
from ecrd.transport.base import Link, LinkError, first_reply
from ecrd.transport.cloud import CloudLink

NO_CLOUD_BUSINESS: Final = (
    "the cloud's terminal-info names the business: set [cloud].business_id, or probe with "
    "the QR code instead of the bare code"
)
PARALLEL: Final = 8  # tries in flight at once: every LAN address of the first round
TRY_S: Final = 5.0


@attrs.frozen
class Outcome:
    result: str
    reading: Reading | None = None  # an envelope came back (the address is proven)
    untrusted: bool = False  # the TLS handshake failed on the certificate check


async def probe_lan(term: Terminal, state: Probe) -> None:
    cfg = term.cfg
    assert isinstance(cfg, LanTerminal)
    addresses = fewest_off_first(
        [("path", uniq([cfg.path, *LAN_PATHS])), ("tls", [cfg.tls, not cfg.tls]),
         ("port", uniq([cfg.port, LAN_PORT]))]
    )  # fmt: skip
    identifies = state.identify_actions(cfg.identify_action)
    first = {"crypto": cfg.crypto, "identify_action": identifies[0]}
    hit = await _round(term, state, [first | a for a in addresses])
    if hit is None or hit[1].kind == "answered":
        return
    settings, reading = hit
    cryptos = [settings["crypto"]] if reading.kind == "refused" else uniq(
        [settings["crypto"], OTHER_SCHEME[settings["crypto"]]]
    )  # fmt: skip
    others = [
        settings | {"crypto": c, "identify_action": i}
        for c in cryptos
        for i in identifies
        if (c, i) != (settings["crypto"], settings["identify_action"])
    ]
    if others:
        await _round(term, state, others, until="answered")


async def probe_cloud(term: Terminal, state: Probe) -> None:
    cfg = term.cfg
    if not state.business_id:
        state.note({}, "not tried: " + NO_CLOUD_BUSINESS)
        return
    for scheme in (cfg.crypto, OTHER_SCHEME[cfg.crypto]):
        settings = {"crypto": scheme}
        outcome = await try_once(term, state, settings)
        state.note(settings, outcome.result)
        if outcome.reading is not None and outcome.reading.kind == "answered":
            state.answered(settings, outcome.reading)
            return


async def _round(
    term: Terminal, state: Probe, tries: list[dict[str, Any]], until: str = "envelope"
) -> tuple[dict[str, Any], Reading] | None:
    """``tries`` concurrently. ``until="envelope"``: until the first that got an envelope
    back (the others are cancelled); ``"answered"``: all of them, and the first in the
    order of ``tries`` (the fewest knobs off) that answered. Returns it with how it read
    (an answer also becomes ``state.found``), or None."""
    limiter = trio.CapacityLimiter(PARALLEL)
    got: dict[int, Reading] = {}

    async def one(i: int, settings: dict[str, Any], nursery: trio.Nursery) -> None:
        async with limiter:
            outcome = await try_once(term, state, settings)
        state.note(settings, outcome.result)
        if outcome.reading is not None and (until == "envelope" or outcome.reading.kind == until):
            got[i] = outcome.reading
            if until == "envelope":
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for i, settings in enumerate(tries):
            nursery.start_soon(one, i, settings, nursery)
    if not got:
        return None
    first = min(got)
    if got[first].kind == "answered":
        state.answered(tries[first], got[first])
    return tries[first], got[first]


async def try_once(term: Terminal, state: Probe, settings: dict[str, Any]) -> Outcome:
    """One look-up with ``settings``; a TLS certificate that does not verify is tried
    once more without verification, to tell "https, needs ca_file"."""
    outcome = await _send(term, state, settings, verify=True)
    if settings.get("tls") and outcome.untrusted:
        unverified = await _send(term, state, settings, verify=False)
        if unverified.reading is not None:
            return attrs.evolve(unverified, result="https, needs ca_file: " + unverified.result)
    return outcome


async def _send(term: Terminal, state: Probe, settings: dict[str, Any], *, verify: bool) -> Outcome:
    cfg = attrs.evolve(term.cfg, **settings)
    cloud = cfg.transport == "cloud"
    request: Ask = await ask(term, state, settings, cloud=cloud)
    link: Link = probe_link(cfg, term.shared.cloud, term.target, verify)
    timeout = min(term.shared.cloud.timeout_s if cloud else cfg.info_timeout_s, TRY_S)
    try:
        if isinstance(link, CloudLink):
            reply = await link.terminal_info(
                request.envelope, timeout=timeout, business_id=state.business_id
            )
        else:  # the first reply, whatever it says: one that does not decrypt proves the way
            reply = await first_reply(link, request.envelope, timeout=timeout)
    except LinkError as exc:
        return Outcome(f"no reply: {exc}", untrusted=_certificate_refused(exc))
    finally:
        with trio.CancelScope(shield=True):
            await link.aclose()
    reading = await read(term, state, settings["crypto"], reply, request)
    return Outcome(describe(reading), reading)


def _certificate_refused(exc: BaseException) -> bool:
    """Whether a failed exchange failed on the TLS certificate check (the cause chain)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
