"""Pairing a terminal (protocol.md §7): the steps, in the order that keeps a shop's
pairing safe (``pairing.py`` states the order and why). A failed pairing changes nothing in
the terminal actor: the steps talk through a link of their own where the QR code says so,
and only ``Terminal.adopt`` makes a new pairing take effect."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import attrs
import trio

from ecrd import errors, logs
from ecrd.config import IDENTIFY_ACTIONS
from ecrd.store.pairings import Pairing
from ecrd.terminal.links import Target, aimed_at, retarget, tap
from ecrd.terminal.pairing import PairingCode, identify_body, new_pin_of, parse_pairing_code
from ecrd.terminal.replies import ANY_TERMINAL
from ecrd.terminal.terminal import Terminal
from ecrd.transport.base import Link

log = logging.getLogger("ecrd.terminal")


async def pair(term: Terminal, code: object) -> dict[str, Any]:
    parsed = parse_pairing_code(code)
    logs.register_secret(parsed.pin)
    _check_business(term, parsed)
    via = _pairing_link(term, parsed)
    try:
        pairing, info = await _pair_steps(term, parsed, via)
    except BaseException:
        # Nothing changed here. If the terminal gave a new PIN before the failure, it
        # was saved as pending; the terminal itself tells whether it uses it.
        with trio.CancelScope(shield=True):
            await term.check_pending()
        raise
    finally:
        if via is not None:
            with trio.CancelScope(shield=True):
                await via.aclose()
    term.adopt(pairing)
    log.info("terminal=%s paired with %s", term.id, pairing.device_sn)
    term.shared.events.publish(
        "terminal", terminal=term.id, paired=True, device_sn=pairing.device_sn
    )
    if not await term.save_pairing(partial(term.shared.pairings.commit, pairing)):
        raise errors.PairingNotSaved(
            f"terminal {term.id!r} is paired and works, but the pairing could not be "
            f"saved to {term.shared.pairings.path}: fix the file or the disk, then pair "
            "again before ecrd restarts (the new PIN is kept as pending if it could be)"
        )
    info = {k: v for k, v in info.items() if not k.lower().startswith("pin")}
    return {"terminal": term.id, "device_sn": pairing.device_sn, "info": info}


def _check_business(term: Terminal, parsed: PairingCode) -> None:
    """A QR code of another business than the configured one: refused before anything is
    sent (the terminal would take the shop's sales for that business)."""
    configured = term.shared.cloud.business_id
    if parsed.business_id and configured and parsed.business_id.lower() != configured.lower():
        raise errors.PairingFailed(
            f"the QR code is for business {parsed.business_id}, but [cloud].business_id is "
            f"{configured}: bind the terminal to this shop's business in the Wonder App, or "
            "fix [cloud].business_id"
        )


def _pairing_target(term: Terminal, parsed: PairingCode) -> Target:
    """Where pairing talks to: the QR code's address (for a terminal that has one), SN and
    business."""
    target = term.target
    if parsed.device_id:
        target = attrs.evolve(target, device_sn=parsed.device_id)
    if parsed.business_id and not term.shared.cloud.business_id:
        target = attrs.evolve(target, business_id=parsed.business_id)
    if parsed.ip and target.host:
        return attrs.evolve(target, host=parsed.ip, port=parsed.port or term.cfg.lan_address()[1])
    return target


def _pairing_link(term: Terminal, parsed: PairingCode) -> Link | None:
    """A link of pairing's own where it must differ from the terminal's (another
    address, another SN). The terminal's links stay as they are until it succeeds."""
    primary = term.link(term.cfg.transport)
    link = aimed_at(primary, _pairing_target(term, parsed), term.cfg, term.shared.cloud)
    if link is not None:
        tap(link, term.trace.wire)  # its HTTP status and headers in the trace, as the own link's
    return link


async def _pair_steps(
    term: Terminal, parsed: PairingCode, via: Link | None
) -> tuple[Pairing, dict[str, Any]]:
    pin1, t = parsed.pin, term.cfg.info_timeout_s
    links = (term.cfg.transport,)
    sn, info = await _identify(term, parsed, via)
    target = attrs.evolve(_pairing_target(term, parsed), device_sn=sn)
    if via is not None:
        retarget(via, target)
    # Before Pair: after it the terminal may take only the new PIN, which must be saved.
    await term.store(term.shared.pairings.check_writable)
    reply = await term.exchange(
        "Pair", {term.cfg.pair_uuid_field: str(uuid.uuid4())}, pin=pin1, timeout=t,
        links=links, expect_sn=sn, via=via,
    )  # fmt: skip
    pin2 = new_pin_of(reply.body, term.cfg.pin_fields)
    logs.register_secret(pin2)
    pairing = _new_pairing(term, target, pin2, parsed.pin, info.get("businessID"))
    await term.save_pairing(partial(term.shared.pairings.put_pending, pairing))
    confirm_body: dict[str, Any] | None = (
        None if term.cfg.pair_confirm_action == "DeviceInfo" else {}
    )
    confirmed = await term.exchange(
        term.cfg.pair_confirm_action, confirm_body, pin=pin2, timeout=t, links=links,
        expect_sn=sn, via=via,
    )  # fmt: skip
    return pairing, {**info, **confirmed.body}


async def _identify(
    term: Terminal, parsed: PairingCode, via: Link | None
) -> tuple[str, dict[str, Any]]:
    """The terminal's SN, asked under pinCode1 (protocol.md §7 step 2): via the cloud its
    terminal-info; on LAN and RS232 the entry's ``identify_action`` [ASSUMED]."""
    pin1, target = parsed.pin, _pairing_target(term, parsed)
    action = term.cfg.identify_action
    if term.cfg.transport == "cloud":
        info = await term.terminal_info(
            pin1, device_sn=target.device_sn, business_id=target.business_id
        )
        sn = str(info.get("deviceSn") or "")
    else:
        # Under pinCode1: the SN, not known yet (maybe a swapped device).
        response = await term.exchange(
            action, identify_body(action, target.business_id), pin=pin1,
            timeout=term.cfg.info_timeout_s, links=(term.cfg.transport,),
            expect_sn=ANY_TERMINAL, via=via,
        )  # fmt: skip
        info = response.body
        refused = str(info.get("status", "success")).lower() != "success"
        sn = "" if refused else str(info.get("deviceSn") or response.header.get("serverDeviceSN"))
    if not sn:
        raise errors.PairingFailed(_no_sn(term, info, action))
    return sn, info


def _no_sn(term: Terminal, info: dict[str, Any], action: str) -> str:
    """Why pairing stopped at its first step (no SN, or a look-up the terminal refused),
    with the terminal's own words and the knob that may fix it."""
    said = {k: info[k] for k in ("status", "errorCode", "errorMessage") if k in info}
    hint = ""
    if term.cfg.transport != "cloud":
        other = next(a for a in IDENTIFY_ACTIONS if a != action)
        hint = (
            f"; if it does not take {action} under the pairing code, set "
            f"identify_action = {other!r}"
        )
    return f"the terminal did not tell its serial number (it answered {said or info}){hint}"


def _new_pairing(
    term: Terminal, target: Target, pin: str, pin1: str, reported_business: object
) -> Pairing:
    """The pairing to keep: pinCode2, and pinCode1 for terminal-info (the seed seals it
    under pinCode1); the business the terminal reports, else the QR's."""
    assert target.device_sn is not None
    business = (
        reported_business if isinstance(reported_business, str) and reported_business else None
    )
    return Pairing(
        terminal_id=term.id,
        device_sn=target.device_sn,
        pin=pin,
        scheme=term.cfg.crypto,
        host=target.host,
        port=target.port,
        paired_at=datetime.now(UTC).isoformat(timespec="seconds"),
        pin1=pin1,
        info_pin="pin1" if term.cfg.transport == "cloud" else None,
        business_id=business or target.business_id,
    )
