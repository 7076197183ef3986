"""Pairing (protocol.md §7) without I/O: the codes a person types, the PIN a reply carries.

The steps themselves run in ``pairing_flow.pair``; their order is the safety argument:

1. DeviceInfo under pinCode1 (or the cloud's terminal-info): the terminal's SN. Sent on a
   link of its own when the QR code names another address, so a wrong code or address
   leaves the terminal's link exactly as it was.
2. The pairing store proves it can be written (``PairingStore.check_writable``) *before*
   ``Pair``: after ``Pair`` the terminal may accept only the new PIN, and a PIN that cannot
   be saved would be lost with the next restart.
3. ``Pair`` → pinCode2, written at once as a *pending* pairing (0600, like every PIN).
4. Confirmation under pinCode2, then ``commit``: the pending pairing becomes the pairing.
5. Only then does the terminal adopt it: new PIN, SN, address. A failure at any step before
   changes nothing in memory; a pending PIN left on disk is settled at the next start
   (``Terminal`` tries it: the terminal answers under it → committed; wrong key → dropped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from ecrd import errors

# A pairing code is six of A-Z and 0-9 (older vendor pages: six uppercase characters;
# current terminals show digits). Terminals show uppercase, so typed lowercase is taken
# as uppercase: the legacy scheme hashes the code exactly as the terminal shows it.
_CODE_RE: Final = re.compile(r"[A-Z0-9]{6}")
_NEW_PIN_RE: Final = re.compile(r"[A-Za-z0-9]{4,12}")
CODE_RULE: Final = "6 characters, A-Z and 0-9"


def port_number(value: object) -> int | None:
    """A TCP port from a terminal's JSON (an int, or a string such as ``"8858"``)."""
    text = str(value)
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


@attrs.frozen
class PairingCode:
    pin: str = attrs.field(repr=False)
    device_id: str | None = None
    ip: str | None = None
    port: int | None = None
    business_id: str | None = None


def pairing_pin(text: object) -> str | None:
    """The pairing code as the terminal shows it (uppercase), or None if ``text`` is not
    six of A-Z, a-z and 0-9 (surrounding spaces ignored)."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        return None
    shown = str(text).strip()
    return shown.upper() if shown.isascii() and _CODE_RE.fullmatch(shown.upper()) else None


def parse_pairing_code(code: object) -> PairingCode:
    """Accept ``"672633"``, ``"K7Q2ZD"`` or the QR JSON of the pairing page (protocol.md
    §7.1)."""
    if isinstance(code, str) and (pin := pairing_pin(code)) is not None:
        return PairingCode(pin=pin)
    qr: object = code
    if isinstance(code, str):
        try:
            qr = json.loads(code)
        except ValueError:
            raise _bad_code(
                f"code must be the pairing code shown on the terminal ({CODE_RULE}), or its QR JSON"
            ) from None
    pin = pairing_pin(qr.get("pairCode")) if isinstance(qr, dict) else None
    if not isinstance(qr, dict) or pin is None:
        raise _bad_code(f"QR JSON must carry a pairCode of {CODE_RULE}")
    port = qr.get("port")
    return PairingCode(
        pin=pin,
        device_id=qr.get("deviceId") if isinstance(qr.get("deviceId"), str) else None,
        ip=qr.get("ip") if isinstance(qr.get("ip"), str) else None,
        port=port_number(port) if isinstance(port, int | str) else None,
        business_id=qr.get("businessId") if isinstance(qr.get("businessId"), str) else None,
    )


def _bad_code(message: str) -> errors.InvalidParams:
    return errors.InvalidParams(message, field="code")


def new_pin_of(reply: Mapping[str, Any], fields: Sequence[str]) -> str:
    """pinCode2 from the Pair reply: the first of ``fields`` that holds one (protocol.md
    §7 step 3, [ASSUMED] field names)."""
    for field in fields:
        value = reply.get(field, "")
        if isinstance(value, str | int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and _NEW_PIN_RE.fullmatch(value):
            return value
    status = reply.get("status")
    if isinstance(status, str) and status.lower() != "success":
        said = {k: reply[k] for k in ("status", "errorCode", "errorMessage") if k in reply}
        raise errors.PairingFailed(
            f"the terminal refused the Pair request: {said} (if it names a missing field, "
            "set pair_uuid_field in the config)"
        )
    raise errors.PairingFailed(
        "the Pair reply carries no new PIN in any of the fields "
        + ", ".join(fields)
        + " (set pin_fields in the config)"
    )


def identify_body(action: str, business_id: str | None) -> dict[str, Any] | None:
    """The body of the serial-number look-up under pinCode1 (``identify_action``):
    DeviceInfo has none; ConnectionInfo names the business (the seed's §4.1 request)."""
    if action == "DeviceInfo":
        return None
    if not business_id:
        raise errors.PairingFailed(
            f"identify_action = {action!r} names the business, and none is known: set "
            "[cloud].business_id, or pair with the QR code (it carries the businessId)"
        )
    return {"businessID": business_id}


def not_paired_message(terminal_id: str, unconfirmed: bool) -> str:
    """Why a terminal takes no money yet, and what to do about it."""
    if unconfirmed:
        return (
            f"terminal {terminal_id!r} is finishing an interrupted pairing (asking it which "
            "PIN it uses); try again in a moment, or pair it again"
        )
    return (
        f"terminal {terminal_id!r} is not paired: run `ecrctl pair {terminal_id} CODE` with "
        "the code the terminal shows"
    )
