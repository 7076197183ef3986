"""``terminal.probe``: under which settings does this terminal answer?

It sends only ``DeviceInfo`` sealed under the pairing code (via the cloud: the seed's
terminal-info request, ``ConnectionInfo``, answered by ``DeviceInfo``) — never ``Pair``,
never a money action — varying the [ASSUMED] knobs of the terminal's entry, the most
likely first, and stops at the first reply that decrypts. Candidates are ordered by how
many knobs differ from the entry (one knob off is found within its first few tries),
then by the order of ``knobs``. A reply that frames but does not decrypt proves the
framing: from then on only the crypto varies.

Every try goes out on a link of the probe's own (``links.probe_link``), built from a copy
of the entry with the tried settings; the terminal's own links and config are never
touched, so cancelling a probe (a client gone, Ctrl-C) leaves the settings in force.
Bounded by ``limit_s`` (at most five minutes) whatever the number of candidates.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final

import attrs
import trio

from ecrd.protocol import crypto
from ecrd.protocol.envelope import Envelope, ProtocolError, check_response, request_message
from ecrd.protocol.frames import CRC_VARIANTS
from ecrd.terminal.links import probe_link
from ecrd.terminal.terminal import Terminal
from ecrd.transport.base import Link, LinkError, first_reply
from ecrd.transport.cloud import CloudLink
from ecrd.transport.serial import SerialLink

log = logging.getLogger("ecrd.terminal")

MAX_LIMIT_S: Final = 300.0
PROBE_HOLD: Final = "probe"  # what the terminal is busy with meanwhile
LAN_PATHS: Final = ("/v2/wonder/payment/ecr", "/wonder-terminal")
LAN_PORT: Final = 8443
BAUDRATES: Final = (115200, 57600, 38400, 19200, 9600)
FRAME_CMDS: Final = (0x0006, 0x0101)
SERIAL_TRY_S: Final = 1.5  # a DeviceInfo reply at 9600 baud takes ~0.4 s on the wire
OTHER_SCHEME: Final = {"v2": "legacy", "legacy": "v2"}
Knobs = list[tuple[str, list[Any]]]
OnTry = Callable[[dict[str, Any]], None]


def _uniq(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def knobs(term: Terminal) -> Knobs:
    """The knobs a probe varies on this terminal's link, each with the entry's value first."""
    cfg = term.cfg
    scheme = ("crypto", [cfg.crypto, OTHER_SCHEME[cfg.crypto]])
    if cfg.transport == "lan":
        return [
            scheme,
            ("path", _uniq([cfg.path, *LAN_PATHS])),
            ("tls", [cfg.tls, not cfg.tls]),
            ("port", _uniq([cfg.port, LAN_PORT])),
        ]
    if cfg.transport == "serial":
        return [
            scheme,
            ("frame_crc", _uniq([cfg.frame_crc, *sorted(CRC_VARIANTS)])),
            ("frame_byteorder", _uniq([cfg.frame_byteorder, "big", "little"])),
            ("frame_cmd", _uniq([cfg.frame_cmd, *FRAME_CMDS])),
            ("baudrate", _uniq([cfg.baudrate, *BAUDRATES])),
        ]
    return [scheme]


def candidates(knob_list: Knobs) -> list[dict[str, Any]]:
    """Every combination, fewest knobs off first (then in the order of ``knob_list``)."""
    combos = itertools.product(*(range(len(values)) for _, values in knob_list))
    ordered = sorted(combos, key=lambda idx: (sum(1 for i in idx if i), [-i for i in idx]))
    return [
        {name: values[i] for (name, values), i in zip(knob_list, idx, strict=True)}
        for idx in ordered
    ]


@attrs.frozen
class Outcome:
    result: str
    framed: bool = False  # a reply came back in this framing
    body: dict[str, Any] | None = None  # the decrypted DeviceInfo
    header: dict[str, Any] | None = None
    untrusted: bool = False  # the TLS handshake failed on the certificate check


@attrs.define
class Probe:
    """What a probe found so far (the result of ``terminal.probe``)."""

    terminal: str
    tried: list[dict[str, Any]] = attrs.Factory(list)
    found: dict[str, Any] | None = None
    device_sn: str | None = None
    framing: dict[str, Any] | None = None  # proven by a reply that did not decrypt

    def result(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "found": self.found,
            "device_sn": self.device_sn,
            "tried": self.tried,
        }


async def probe(
    term: Terminal, pin: str, *, limit_s: float = MAX_LIMIT_S, on_try: OnTry | None = None
) -> dict[str, Any]:
    """Try the candidates within ``limit_s``; the result of ``terminal.probe``."""
    state = Probe(term.id)
    with trio.move_on_after(min(limit_s, MAX_LIMIT_S)) as scope:
        async with _borrowed(term):
            await _try_each(term, pin, state, on_try)
    if scope.cancelled_caught:
        state.tried.append({"settings": {}, "result": f"stopped at the time limit ({limit_s:g} s)"})
    log.info("terminal=%s probe: %d tries, found %s", term.id, len(state.tried), state.found)
    return state.result()


async def _try_each(term: Terminal, pin: str, state: Probe, on_try: OnTry | None) -> None:
    for settings in candidates(knobs(term)):
        framing = state.framing
        if framing is not None and any(settings[k] != v for k, v in framing.items()):
            continue
        outcome = await try_once(term, pin, settings)
        entry = {"settings": settings, "result": outcome.result}
        state.tried.append(entry)
        if on_try is not None:
            on_try(entry)
        if outcome.body is not None:
            header = outcome.header or {}
            state.found = settings
            state.device_sn = str(outcome.body.get("deviceSn") or header.get("serverDeviceSN"))
            return
        if outcome.framed and framing is None:
            state.framing = {k: v for k, v in settings.items() if k != "crypto"}


def _borrowed(term: Terminal) -> contextlib.AbstractAsyncContextManager[None]:
    """Serial: the one port, lent by the terminal's own link for the probe (and given back
    however the probe ends). LAN and cloud: nothing to borrow."""
    own = term.links.get("serial") if term.cfg.transport == "serial" else None
    if isinstance(own, SerialLink):
        return own.lend()
    return contextlib.nullcontext()


def _try_timeout(term: Terminal) -> float:
    if term.cfg.transport == "cloud":
        return min(term.shared.cloud.timeout_s, 10.0)
    if term.cfg.transport == "serial":
        return min(term.cfg.info_timeout_s, SERIAL_TRY_S)
    return min(term.cfg.info_timeout_s, 5.0)


async def try_once(term: Terminal, pin: str, settings: dict[str, Any]) -> Outcome:
    """One DeviceInfo under ``pin`` with ``settings``; a TLS certificate that does not
    verify is tried once more without verification, to tell "https, needs ca_file"."""
    outcome = await _send(term, pin, settings, verify=True)
    if settings.get("tls") and outcome.untrusted:
        unverified = await _send(term, pin, settings, verify=False)
        if unverified.framed:
            return attrs.evolve(unverified, result="https, needs ca_file: " + unverified.result)
    return outcome


async def _send(term: Terminal, pin: str, settings: dict[str, Any], *, verify: bool) -> Outcome:
    scheme: crypto.Scheme = settings["crypto"]
    cfg = attrs.evolve(term.cfg, **settings)
    target = term.target
    cloud = cfg.transport == "cloud"
    # The cloud relays commands only to a known SN: there, the read-only request is the
    # seed's terminal-info (ConnectionInfo under pinCode1, answered by DeviceInfo).
    body = {"businessID": target.business_id} if cloud else None
    message = request_message(body, term.shared.client_sn)
    run = term.shared.workers.run
    sealer = crypto.Sealer(pin, scheme, keys=term.shared.keys)
    sealed = await run(partial(sealer.seal, message))
    envelope = Envelope("ConnectionInfo" if cloud else "DeviceInfo", sealed)
    link: Link = probe_link(cfg, term.shared.cloud, target, verify)
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)  # serial: opens the port with these settings
        try:
            reply = await _exchange(link, envelope, _try_timeout(term))
        except LinkError as exc:
            return Outcome(f"no reply: {exc}", untrusted=_certificate_refused(exc))
        finally:
            with trio.CancelScope(shield=True):
                await link.aclose()
    try:
        plain = await run(partial(crypto.open_, reply.data, pin, scheme, keys=term.shared.keys))
        body = check_response(plain, message["header"]["requestID"])
    except (crypto.CryptoError, ProtocolError) as exc:
        return Outcome(f"a reply, but it does not decrypt: {exc}", framed=True)
    except crypto.NotJson as exc:
        return Outcome(f"a reply that decrypts, but is not JSON: {exc}", framed=True)
    header = plain.get("header")
    return Outcome(
        "answered", framed=True, body=body, header=header if isinstance(header, dict) else None
    )


async def _exchange(link: Link, envelope: Envelope, timeout: float) -> Envelope:
    if isinstance(link, CloudLink):
        reply: Envelope = await link.terminal_info(envelope, timeout=timeout)
        return reply
    # The first reply, whatever it says: one that does not decrypt still proves the framing.
    return await first_reply(link, envelope, timeout=timeout)


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
