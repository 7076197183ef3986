"""The cloud's reply wrapper, ``{"code", "message", "data"}``: one definition for every link
that may meet it — the cloud always (protocol.md §5), the LAN when a terminal wraps its
reply the same way (the vendor's LAN section refers to "the response data structure", which
may be read either way).

The two shapes a reply body may have cannot be mistaken for each other:

* a bare envelope is an object whose ``version``, ``action`` and ``data`` are strings
  (``data`` is the base64 ciphertext);
* a wrapper is any other object with a ``code``, a ``message`` or a non-string ``data``;
  its ``data`` holds the envelope as an object (or, an accepted alias [ASSUMED], as a
  JSON string of one), or nothing when the gateway answers for itself.

The wrapper's ``code`` and ``message`` are kept verbatim: which code means success is not
documented, so an envelope inside is the terminal's answer whatever the code says, and a
wrapper without one is reported with both, unchanged.

Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ecrd.protocol.envelope import Envelope, MalformedEnvelope


@attrs.frozen
class Wrapped:
    """A wrapper as it came: its ``code`` and ``message`` verbatim, the envelope if any."""

    code: object
    message: str | None
    envelope: Envelope | None

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Wrapped:
        message = obj.get("message")
        return cls(
            obj.get("code"), None if message is None else str(message), envelope_in(obj.get("data"))
        )

    @classmethod
    def from_body(cls, body: bytes) -> Wrapped | None:
        """A reply body read as a wrapper; None if it is not a JSON object."""
        obj = json_object(body)
        return None if obj is None else cls.of(obj)

    def said(self) -> dict[str, Any]:
        """What the wrapper itself said (for a trace): ``code`` and ``message``."""
        return {"code": self.code, "message": self.message}


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, or None if it is not one."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def envelope_in(data: object) -> Envelope | None:
    """The envelope a wrapper's ``data`` holds (an object, or a JSON string of one)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            return None
    try:
        return Envelope.from_obj(data)
    except MalformedEnvelope:
        return None


def is_wrapper(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` (not a bare envelope) has the wrapper's shape."""
    return "code" in obj or "message" in obj or ("data" in obj and not isinstance(obj["data"], str))


def bare_or_wrapped(obj: dict[str, Any]) -> Envelope | Wrapped | None:
    """A bare envelope, else the wrapper (with or without an envelope), else None."""
    try:
        return Envelope.from_obj(obj)
    except MalformedEnvelope:
        pass
    return Wrapped.of(obj) if is_wrapper(obj) else None
