"""JSON-RPC 2.0 framing for the socket: one JSON object per ``\\n``-terminated line.

Sans-IO: ``LineReader`` turns bytes into lines (or "too long" markers) and ``parse``
turns a line into a ``Request``, a ``Batch`` (JSON-RPC 2.0 §6: an array of requests, each
member a ``Request`` or its ready error reply), a ready error reply, or ``None`` (a
notification that cannot run: nothing is ever sent back for a notification).
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs

from ecrd.protocol import strictjson

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

Id = str | int | None


@attrs.frozen
class Request:
    method: str
    params: dict[str, Any]
    id: Id
    is_notification: bool


@attrs.frozen
class Batch:
    members: tuple[Request | dict[str, Any] | None, ...]


MAX_BATCH: Final = 64  # members per batch: the requests one connection may run at once


class TooLong:
    """A line exceeded the cap; the reader skipped to the next newline."""


def error(id_: Id, code: int, message: str, reason: str, **data: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": id_,
        "error": {"code": code, "message": message, "data": {"reason": reason, **data}},
    }


def result(id_: Id, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "result": value}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def encode(message: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (e.g. from a terminal's reply): escape it
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class LineReader:
    """Splits a byte stream into lines of at most ``cap`` bytes.

    A longer line yields one ``TooLong`` and everything up to its newline is discarded,
    so the connection resynchronises on the next line.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | TooLong]:
        out: list[bytes | TooLong] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if not self._skipping and len(self._buf) > self.cap:
                    out.append(TooLong())
                    self._skipping = True
                if self._skipping:
                    self._buf.clear()
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.cap:
                out.append(TooLong())
                continue
            line = line.rstrip(b"\r")
            if line.strip():
                out.append(line)


def parse(line: bytes) -> Request | Batch | dict[str, Any] | None:
    """A ``Request`` or ``Batch``, the error reply to send back for this line, or None."""
    try:
        obj = strictjson.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return error(None, PARSE_ERROR, "the line is not valid UTF-8", "parse_error")
    except ValueError as exc:
        return error(None, PARSE_ERROR, f"the line is not valid JSON: {exc}", "parse_error")
    if not isinstance(obj, list):
        return request(obj)
    if not obj:
        return error(None, INVALID_REQUEST, "an empty batch", "invalid_request")
    if len(obj) > MAX_BATCH:
        return error(
            None, INVALID_REQUEST, f"a batch holds at most {MAX_BATCH} requests", "invalid_request"
        )
    return Batch(tuple(request(member) for member in obj))


def request(obj: Any) -> Request | dict[str, Any] | None:
    """One request object (a line's, or a batch member's)."""
    if not isinstance(obj, dict):
        return error(None, INVALID_REQUEST, "a request must be a JSON object", "invalid_request")
    raw_id = obj.get("id")
    id_ok = (
        "id" not in obj
        or raw_id is None
        or (isinstance(raw_id, str | int) and not isinstance(raw_id, bool))
    )
    id_: Id = raw_id if id_ok else None
    if not id_ok:
        return error(
            None, INVALID_REQUEST, "id must be a string, an integer or null", "invalid_request"
        )
    if obj.get("jsonrpc") != "2.0":
        return error(id_, INVALID_REQUEST, 'jsonrpc must be "2.0"', "invalid_request")
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        return error(id_, INVALID_REQUEST, "method must be a non-empty string", "invalid_request")
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        if "id" not in obj and isinstance(params, list):
            return None  # a notification by position: not one of ours, and never answered
        return error(id_, INVALID_PARAMS, "params must be a JSON object", "invalid_params")
    return Request(method=method, params=params, id=id_, is_notification="id" not in obj)
