"""A wire trace for support: what one terminal's exchanges carried, readable, without
secrets (``ecrctl trace TERMINAL on|off``, or ``trace = true`` in its entry).

Each exchange appends lines to ``STATE_DIR/trace/TERMINAL.jsonl``: time, direction
(``out``/``in``/``error``), link, action, requestID/responseID, the decrypted header and
body, for serial the frame's metadata (``frame``: cmd, payload length, CRC, the 10 header
bytes in hex), for LAN and cloud the HTTP status and headers (told by the link,
``links.tap``). Redacted before writing: values of keys that name a PIN, a code, a key or
a secret; card numbers; every PIN ecrd knows (``logs.redact``, the log's own rules).

The ciphertext is never written, in any form: not the envelope's ``data``, not the frame
that carries it. The PIN is six digits, so a ciphertext in a file that shops send to
support would give the PIN away to an offline search (minutes under PBKDF2, at once under
legacy crypto); the decrypted, redacted content is what support needs.

The file and its directory are private (0600, 0700); it is bounded: past ``max_bytes``
it becomes ``TERMINAL.jsonl.1`` (replacing the older one) and a new file starts.
Writes run on a worker thread, one at a time per terminal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import trio

from ecrd import logs
from ecrd.protocol.envelope import Envelope
from ecrd.protocol.frames import HEADER_LEN, FrameFormat, encode_frame

log = logging.getLogger("ecrd.terminal")

MAX_BYTES: Final = 1024 * 1024
_SECRET_KEY: Final = re.compile(r"pin|code|key|secret|password|pan|cardnumber", re.IGNORECASE)
_CARD: Final = re.compile(r"\d{13,19}")
_KEEP: Final = frozenset({"errorCode", "responseCode", "code"})  # codes that are not secrets


def redacted(value: Any, key: str = "") -> Any:
    """``value`` with every secret replaced (structure kept, so the line stays JSON). An
    identity field's value is kept as it is (``logs.IDENTITY``: a line must still match
    its order); a number is a card number only with a card's length and a good Luhn."""
    if key and logs.is_identity(key) and not isinstance(value, dict | list):
        return value
    if key and key not in _KEEP and _SECRET_KEY.search(key):
        return "[redacted]"
    if isinstance(value, dict):
        return {str(k): redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and _is_card(str(value)):
        return "[number]"
    if isinstance(value, str):
        return logs.redact(value)
    return value


def _is_card(digits: str) -> bool:
    return _CARD.fullmatch(digits) is not None and logs.luhn(digits)


def frame_metadata(envelope: Envelope, fmt: FrameFormat) -> dict[str, Any]:
    """What support needs of an RS232 frame to check the framing settings (protocol.md
    §6): the command, the payload's length, its CRC and the header's bytes (start, cmd,
    length, type, header CRC). The payload itself, the envelope with its ciphertext, and
    the data CRC computed over it stay out."""
    payload = envelope.to_bytes()
    frame = encode_frame(payload, fmt)
    return {
        "cmd": f"0x{fmt.cmd:04x}",
        "length": len(payload),
        "crc": f"{fmt.crc} ok",
        "header_hex": frame[:HEADER_LEN].hex(),
    }


class Trace:
    """One terminal's trace file."""

    def __init__(self, path: Path | None, *, on: bool = False, max_bytes: int = MAX_BYTES) -> None:
        """``path`` None: nowhere to write (no state directory), so never on."""
        self.path = path
        self.on = on
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(1)
        self._wire: dict[str, Any] = {}  # the last HTTP status and headers, for the next line

    def wire(self, info: dict[str, Any]) -> None:
        """What the link saw of the last reply (HTTP status, headers): goes on the next
        ``in`` or ``error`` line."""
        if self.on:
            self._wire = info

    async def record(self, direction: str, **fields: Any) -> None:
        """Append one line if the trace is on; a failure to write never fails the exchange."""
        if not self.on or self.path is None:
            return
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "dir": direction}
        line = json.dumps(redacted({**entry, **fields}), ensure_ascii=False) + "\n"
        try:
            await trio.to_thread.run_sync(self._append, line.encode(), limiter=self._limiter)
        except OSError as exc:
            log.warning("trace %s: %s", self.path, exc)

    def _append(self, data: bytes) -> None:
        assert self.path is not None
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                if self.path.stat().st_size + len(data) > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            except FileNotFoundError:
                pass
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(self.path, flags, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    async def exchange(
        self, kind: str, action: str, message: dict[str, Any], envelope: Envelope, fmt: Any
    ) -> None:
        """The request going out: its decrypted message, and for serial its frame's
        metadata (never its bytes: they carry the ciphertext)."""
        if not self.on:
            return
        extra = {"frame": frame_metadata(envelope, fmt)} if fmt else {}
        header = message.get("header", {})
        await self.record(
            "out", link=kind, action=action, requestID=header.get("requestID"),
            header=header, body=message.get("body"), **extra,
        )  # fmt: skip

    async def reply(self, kind: str, action: str, header: dict[str, Any], body: Any) -> None:
        wire, self._wire = self._wire, {}
        await self.record(
            "in", link=kind, action=action, responseID=header.get("responseID"),
            header=header, body=body, **wire,
        )  # fmt: skip

    async def failure(self, kind: str, action: str, request_id: str, exc: Exception) -> None:
        wire, self._wire = self._wire, {}
        await self.record(
            "error", link=kind, action=action, requestID=request_id,
            reason=getattr(exc, "reason", type(exc).__name__), message=str(exc), **wire,
        )  # fmt: skip

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` lines (synchronous: run it on a thread)."""
        if self.path is None:
            return []
        try:
            with self.path.open(encoding="utf-8") as f:
                last = deque(f, maxlen=n)
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in last if line.strip()]
