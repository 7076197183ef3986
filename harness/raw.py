"""The one raw client of the socket API: a plain Unix socket speaking newline-delimited
JSON, for what the client library would never send (bad lines, half lines, floods), and
what a well-formed reply is (docs/api.md), checked on every message it reads.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from ecrd.protocol import strictjson

RECV_BYTES = 262144


def connect(path: str, timeout: float = 10) -> socket.socket:
    """A connected Unix socket whose every call times out after ``timeout`` seconds."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def request(id_: Any, method: str, params: Any = None) -> bytes:
    """One JSON-RPC 2.0 request line (``params`` left out when None)."""
    obj: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        obj["params"] = params
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class Raw:
    """A connection that writes bytes as given and reads whole messages, each checked
    well-formed (``strict_loads`` and ``check_reply``)."""

    def __init__(self, path: str, timeout: float = 20) -> None:
        self.sock = connect(path, timeout)
        self._buf = b""

    def send(self, *writes: bytes) -> None:
        for data in writes:
            self.sock.sendall(data)

    def read(self) -> dict[str, Any] | None:
        """The next message (checked well-formed), or None at end of stream."""
        while b"\n" not in self._buf:
            chunk = self.sock.recv(RECV_BYTES)
            if not chunk:
                assert not self._buf, f"the stream ended inside a line: {self._buf[:200]!r}"
                return None
            self._buf += chunk
        text, self._buf = self._buf.split(b"\n", 1)
        message: dict[str, Any] = strict_loads(text)
        check_reply(message)
        return message

    def reply(self) -> dict[str, Any]:
        """The next reply, skipping event notifications."""
        while True:
            message = self.read()
            assert message is not None, "ecrd closed the connection"
            if "id" in message:
                return message

    def call(self, method: str, id_: str, **params: Any) -> dict[str, Any]:
        self.send(request(id_, method, params))
        message = self.reply()
        assert message["id"] == id_, message
        return message

    def close(self) -> None:
        self.sock.close()


# -- what a well-formed reply is ------------------------------------------------------------


def strict_loads(data: bytes) -> Any:
    """RFC 8259 JSON in UTF-8 as ecrd itself reads it (``ecrd.protocol.strictjson``: no
    NaN/Infinity, no overflowing number, no lone surrogate, no duplicate key, no nesting
    deeper than the interpreter can take), or ValueError."""
    return strictjson.loads(data.decode("utf-8"))


def check_reply(message: Any) -> None:
    """A JSON-RPC 2.0 reply (or event notification) as docs/api.md promises it."""
    assert isinstance(message, dict), message
    assert message.get("jsonrpc") == "2.0", message
    if "method" in message:  # an event notification
        assert set(message) == {"jsonrpc", "method", "params"}, message
        assert message["method"] == "event", message
        assert isinstance(message["params"], dict) and isinstance(
            message["params"].get("topic"), str
        ), message
        return
    assert set(message) in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"}), message
    id_ = message["id"]
    assert id_ is None or isinstance(id_, str) or type(id_) is int, message
    if "error" in message:
        error = message["error"]
        assert isinstance(error, dict) and set(error) == {"code", "message", "data"}, message
        assert type(error["code"]) is int, message
        assert isinstance(error["message"], str) and error["message"], message
        assert isinstance(error["data"], dict), message
        assert isinstance(error["data"].get("reason"), str), message
