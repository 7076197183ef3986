"""The strict simulator: what the vendor's document marks required (Y) must be there.

Off by default (``SimTerminal(strict=True)``, ``serve_cloud(strict=True)``, ``ecrd-sim
--strict``). With it, a request that lacks a required item is refused, naming the item:

* the envelope's ``version``, ``action`` and ``data`` (§3.1 "Request body"): empty
  strings too (a missing one is no envelope at all, refused in either mode);
* the request header's ``requestID``, ``clientDeviceSN`` and ``timestamp`` (§4.1 example):
  present, non-empty, the timestamp RFC 3339 with an offset;
* ConnectionInfo's ``businessID`` (§4.1 "Request data.body": UUID, Y);
* the cloud's three headers ``x-p-business-id``, ``x-device-sn`` and ``x-request-id`` on
  every call, terminal-info included (§3.1 "Request header", all Y).

The terminal refuses with ``status: Failed``, ``errorCode: MISSING_FIELD`` and an
``errorMessage`` naming the field; the LAN endpoint with 400, the serial line by silence
(a terminal has nobody to answer a frame it cannot use), the gateway with 400/40001
(headers) or 400/40002 (body).

Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from ecrd.protocol.envelope import Envelope

MISSING_FIELD: Final = "MISSING_FIELD"
CLOUD_HEADERS: Final = ("x-p-business-id", "x-device-sn", "x-request-id")
REQUEST_HEADER: Final = ("requestID", "clientDeviceSN", "timestamp")
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def envelope_problem(envelope: Envelope) -> str | None:
    for name, value in envelope.to_obj().items():
        if not value:
            return f"the envelope's {name} is required"
    return None


def message_problem(action: str, message: dict[str, Any]) -> str | None:
    """What a decrypted request lacks of what the document requires, or None."""
    header = message.get("header")
    if not isinstance(header, dict):
        return "the request header is required"
    for name in REQUEST_HEADER:
        if not isinstance(header.get(name), str) or not header[name]:
            return f"header.{name} is required"
    if not _rfc3339(header["timestamp"]):
        return "header.timestamp must be RFC 3339 with an offset"
    if action == "ConnectionInfo":
        body = message.get("body")
        business = body.get("businessID") if isinstance(body, dict) else None
        if not isinstance(business, str) or not _UUID.fullmatch(business):
            return "body.businessID (a UUID) is required"
    return None


def headers_problem(headers: dict[str, str] | Any) -> str | None:
    for name in CLOUD_HEADERS:
        if not headers.get(name):
            return f"header {name} is required"
    return None


def _rfc3339(text: str) -> bool:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text and stamp.utcoffset() is not None
