"""What a simulated terminal's reply looks like on the wire, faults included: the ``Reply``
a link sends back, and the reply faults that reshape it (``mismatch``, ``garbage``,
``bad_crc``, ``dribble``)."""

from __future__ import annotations

import secrets
from typing import Any, Final

import attrs

from ecrd.protocol import crypto
from ecrd.protocol.envelope import Envelope
from ecrd.sim.faults import Fault


@attrs.frozen
class Reply:
    """What a link sends back for one request."""

    envelope: Envelope | None  # None: say nothing (drop after charging, reboot)
    garbage: bytes = b""  # serial: noise written before the frame
    corrupt_crc: bool = False  # serial: break the frame's data CRC
    bytes_per_s: float | None = None  # write the reply this slowly


_OTHER: Final[dict[str, str]] = {
    "referenceID": "someone-elses-order",
    "amount": "0.01",
    "currency": "JPY",
    "transactionType": "Refund",
}


def contradict(field: str, message: dict[str, Any], action: str) -> tuple[bytes, str]:
    """The ``mismatch`` fault: the plaintext (and envelope action) of a reply that
    contradicts its request in ``field``."""
    if field == "action":
        return crypto.dumps(message), "Refund" if action != "Refund" else "Sale"
    if field == "duplicate_keys":
        # {"status":"Failed", ...,"status":"Success"}: a lenient parser keeps the last one.
        text = crypto.dumps(message).decode()
        return text.replace('"body":{', '"body":{"status":"Failed",', 1).encode(), action
    body = dict(message["body"])
    if field == "transactionType" and action == "Refund":
        body[field] = "Sale"
    else:
        body[field] = _OTHER[field]
    return crypto.dumps({**message, "body": body}), action


def shape(envelope: Envelope, faults: dict[str, Fault]) -> Reply:
    garbage = b""
    if "garbage" in faults:
        n = max(2, int(float(faults["garbage"].params["bytes"])))
        # A false start byte in the middle makes a receiver prove it resynchronises.
        noise = secrets.token_bytes(n - 1)
        garbage = noise[: n // 2] + b"\x55" + noise[n // 2 :]
    rate = float(faults["dribble"].params["bytes_per_s"]) if "dribble" in faults else None
    return Reply(envelope, garbage, "bad_crc" in faults, rate)
