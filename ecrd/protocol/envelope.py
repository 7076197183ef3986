"""The outer envelope and the inner ``{header, body}`` message (protocol.md §2, §4).

Outer: ``{"version": "2.0", "action": "Sale", "data": "<base64>"}`` on every link.
Inner (the plaintext of ``data``)::

    request  {"header": {"requestID", "clientDeviceSN", "timestamp"}, "body": {...}}
    response {"header": {"responseID", "serverDeviceSN", "timestamp"}, "body": {...}}

Invariants:

* A response is accepted only if its ``responseID`` equals the ``requestID`` in flight
  (``StaleResponse`` otherwise) and, once the terminal is known, its ``serverDeviceSN``
  matches (``WrongTerminal``).
* Amounts are decimal strings with exactly two places; no float ever touches them.

Error tree::

    ProtocolError
    ├── MalformedEnvelope   outer JSON is not an envelope
    ├── MalformedMessage    inner message lacks a header / has wrong types
    ├── StaleResponse       responseID does not match the request in flight
    ├── WrongTerminal       serverDeviceSN is not the paired terminal's
    └── ReplyMismatch       a money reply's envelope action is not the request's
                            (carries the decrypted body, kept as evidence)
    AmountError (ValueError) an amount or currency a caller gave is not acceptable
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import attrs

from ecrd.errors import Reasoned

VERSION: Final = "2.0"
# [ASSUMED] Where a Pair reply carries pinCode2, tried in order (protocol.md §7 step 3).
PIN_FIELDS: Final = ("pinCode2", "pinCode", "newPinCode")
MAX_AMOUNT: Final = Decimal("99999999.99")
# Used with fullmatch: "$" alone would also accept a trailing newline.
AMOUNT_PATTERN: Final = r"(0|[1-9][0-9]{0,7})\.[0-9]{2}"
CURRENCY_PATTERN: Final = r"[A-Z]{3}"
_AMOUNT_RE: Final = re.compile(AMOUNT_PATTERN)
_CURRENCY_RE: Final = re.compile(CURRENCY_PATTERN)


class ProtocolError(Reasoned):
    """The peer sent something this protocol does not allow (remote fault)."""

    reason = "protocol_error"


class MalformedEnvelope(ProtocolError):
    reason = "malformed_envelope"


class MalformedMessage(ProtocolError):
    reason = "malformed_message"


class StaleResponse(ProtocolError):
    """A reply to some other request (stale or replayed)."""

    reason = "stale_response"


class WrongTerminal(ProtocolError):
    """A reply signed by another terminal's serial number."""

    reason = "wrong_terminal"


class ReplyMismatch(ProtocolError):
    """A reply that contradicts its request; ``body`` is what it said, verbatim."""

    reason = "reply_mismatch"

    def __init__(self, message: str, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.body = body


class AmountError(ValueError):
    """A caller's amount or currency is not acceptable (local fault)."""


@attrs.frozen
class Envelope:
    action: str
    data: str
    version: str = VERSION

    def to_obj(self) -> dict[str, str]:
        return {"version": self.version, "action": self.action, "data": self.data}

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON: the RS232 payload and the HTTP body (protocol.md §2)."""
        return json.dumps(self.to_obj(), separators=(",", ":")).encode()

    @classmethod
    def from_obj(cls, obj: object) -> Envelope:
        if not isinstance(obj, dict):
            raise MalformedEnvelope("envelope is not a JSON object")
        fields = {}
        for name in ("version", "action", "data"):
            value = obj.get(name)
            if not isinstance(value, str):
                raise MalformedEnvelope(f"envelope field {name!r} missing or not a string")
            fields[name] = value
        return cls(**fields)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            # RecursionError: deeply nested arrays from the peer must not crash the reader.
            raise MalformedEnvelope("envelope is not UTF-8 JSON") from exc
        return cls.from_obj(obj)


def timestamp(now: datetime | None = None) -> str:
    """RFC 3339 with an explicit offset, seconds precision: ``2025-11-12T10:11:04+00:00``."""
    now = now or datetime.now(UTC)
    if now.utcoffset() is None:
        raise ValueError("timestamp needs a timezone-aware datetime (protocol.md §4)")
    return now.isoformat(timespec="seconds")


def new_request_id() -> str:
    return str(uuid.uuid4())


def request_message(
    body: dict[str, Any] | None,
    client_sn: str,
    *,
    request_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The plaintext of a request; ``body=None`` omits it (DeviceInfo, protocol.md §4)."""
    msg: dict[str, Any] = {
        "header": {
            "requestID": request_id or new_request_id(),
            "clientDeviceSN": client_sn,
            "timestamp": timestamp(now),
        }
    }
    if body is not None:
        msg["body"] = body
    return msg


def response_message(
    request: dict[str, Any], body: dict[str, Any], server_sn: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """The plaintext of a reply to ``request`` (used by the simulator)."""
    return {
        "header": {
            "responseID": request_header(request)["requestID"],
            "serverDeviceSN": server_sn,
            "timestamp": timestamp(now),
        },
        "body": body,
    }


def _header(message: dict[str, Any], fields: tuple[str, ...]) -> dict[str, str]:
    header = message.get("header")
    if not isinstance(header, dict):
        raise MalformedMessage("message has no header object")
    for name in fields:
        if not isinstance(header.get(name), str):
            raise MalformedMessage(f"header field {name!r} missing or not a string")
    body = message.get("body", {})
    if not isinstance(body, dict):
        raise MalformedMessage("message body is not an object")
    return header


def request_header(message: dict[str, Any]) -> dict[str, str]:
    return _header(message, ("requestID", "clientDeviceSN", "timestamp"))


def body_of(message: dict[str, Any]) -> dict[str, Any]:
    body = message.get("body")
    return body if isinstance(body, dict) else {}


def check_response(
    message: dict[str, Any], request_id: str, server_sn: str | None = None
) -> dict[str, Any]:
    """Validate a decrypted reply against the request in flight; return its body."""
    header = _header(message, ("responseID", "serverDeviceSN"))
    if header["responseID"] != request_id:
        raise StaleResponse(f"reply is for request {header['responseID']!r}, not {request_id!r}")
    if server_sn is not None and header["serverDeviceSN"] != server_sn:
        raise WrongTerminal(
            f"reply comes from {header['serverDeviceSN']!r}, expected {server_sn!r}"
        )
    return body_of(message)


def parse_amount(value: object) -> Decimal:
    """Accept only a string like ``"10.20"``: positive, two decimals, no float, no exponent."""
    if not isinstance(value, str):
        raise AmountError(
            f'amount must be a decimal string like "10.20", not {type(value).__name__}'
        )
    if not _AMOUNT_RE.fullmatch(value):
        raise AmountError(f'amount {value!r} must look like "10.20" (two decimals)')
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise AmountError(f"amount {value!r} is not a number") from exc
    if amount <= 0:
        raise AmountError("amount must be greater than zero")
    if amount > MAX_AMOUNT:
        raise AmountError(f"amount must not exceed {MAX_AMOUNT}")
    return amount


def format_amount(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('0.01'))}"


def check_currency(value: object) -> str:
    if not isinstance(value, str) or not _CURRENCY_RE.fullmatch(value):
        raise AmountError(f"currency must be three ISO 4217 capital letters, not {value!r}")
    return value
