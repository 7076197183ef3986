"""Logging to stderr, one line per event, with secrets redacted in one place (design.md §6).

``Redactor`` is a logging filter installed on the root handler. It removes, from every
record's final message: the PINs ecrd knows (registered when loaded or typed), card
numbers, long base64 runs (ciphertexts, keys), and a pairing QR's ``pairCode``. Code still
must not log secrets; this is the safety net.

It redacts by key and by proof, so that an audit line can still be matched to its order:

* by key: the value of an identity field (``IDENTITY``: ``ref=``, ``terminal=``,
  ``reference_id``, ``customer_order_id``, ``rrn``, ... as ``key=value`` or
  ``"key": "value"``) is never touched. Those values are chosen by the POS or the terminal
  and kept in the journal and the exports anyway; hiding one (say an order number that
  happens to equal a PIN) would only point at it.
* by proof: a run of digits is a card number only if it has a card's length (13-19
  digits, spaces or dashes between them allowed) and passes the Luhn check; any other
  long number (an order number, a timestamp) stays.

The same filter escapes control characters in the message (``ecrd.text.escape``): a
reference id or a terminal's reply can never start a line of its own (a forged
``CRITICAL ...``) nor send escape sequences to whoever reads the log. A traceback keeps its
own line breaks.

The event loop does not write log lines itself: ``setup`` puts a ``QueueHandler`` on the
root logger, which freezes each record's message and hands it to one log thread that
redacts, formats and writes it. Writing to stderr is a system call, and a stalled reader
(journald under load, a full pipe) would otherwise stall every payment with it. The queue is
bounded (``QUEUE_LINES``): beyond it lines are dropped and counted, and the next line
written says how many. ``stop`` writes what is queued (the CLI calls it before it exits).
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import re
import sys
import threading
from typing import Final

from ecrd.text import escape

_PAN: Final = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# Identity fields, compared without case and underscores (``customerOrderID`` is
# ``customer_order_id``): never redacted (module docstring).
IDENTITY: Final = frozenset(
    {"ref", "terminal", "referenceid", "originalreferenceid", "customerorderid", "rrn", "brn",
     "authcode", "requestid", "responseid", "exe"}
)  # fmt: skip
_KEY_VALUE: Final = re.compile(
    r"""(?<![A-Za-z0-9_])["']?([A-Za-z_]+)["']?\s*[:=]\s*("[^"]*"|'[^']*'|[^\s,;)}\]]+)"""
)
_B64: Final = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
_PAIRCODE: Final = re.compile(r'("?pair_?code"?\s*[:=]\s*"?)[A-Za-z0-9]+', re.IGNORECASE)
_PIN_KEY: Final = re.compile(r'("?pin(?:Code\d?|_?code)?"?\s*[:=]\s*"?)[A-Za-z0-9]+', re.IGNORECASE)

_DIGIT_RUN: Final = re.compile(r"\d+")
_WORD: Final = re.compile(r"[A-Za-z0-9]+")

_secrets: set[str] = set()
_lock = threading.Lock()


class _Known:
    """The registered secrets, sorted by how they are found: a PIN of digits is a whole
    run of digits, a code of letters and digits a whole word (any case), anything else its
    own pattern. Looking a run up in a set costs the same with 1 PIN or 100 terminals'."""

    def __init__(self, secrets: set[str]) -> None:
        self.digits = frozenset(s for s in secrets if s.isdigit())
        self.words = frozenset(s.lower() for s in secrets if s.isalnum() and not s.isdigit())
        self.others = [
            _secret_re(s) for s in sorted(secrets, key=len, reverse=True) if not s.isalnum()
        ]

    def redact(self, text: str) -> str:
        for pattern in self.others:
            text = pattern.sub("[pin]", text)
        words, digits = self.words, self.digits
        # findall first: most lines hold no secret, and then nothing is rebuilt.
        if words and not words.isdisjoint(w.lower() for w in _WORD.findall(text)):
            text = _WORD.sub(lambda m: "[pin]" if m[0].lower() in words else m[0], text)
        if digits and not digits.isdisjoint(_DIGIT_RUN.findall(text)):
            text = _DIGIT_RUN.sub(lambda m: "[pin]" if m[0] in digits else m[0], text)
        return text


_known = _Known(set())


def register_secret(secret: str) -> None:
    """A PIN that must never appear in a log line from now on."""
    global _known
    if secret:
        with _lock:
            if secret not in _secrets:
                _secrets.add(secret)
                _known = _Known(_secrets)


def _secret_re(secret: str) -> re.Pattern[str]:
    """A PIN as a whole token: digits not inside a longer number; a code with letters in
    any case (a typed lowercase code is the same code) and not inside a longer word."""
    if secret.isdigit():
        return re.compile(rf"(?<!\d){re.escape(secret)}(?!\d)")
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", re.IGNORECASE)


def is_identity(key: str) -> bool:
    """Whether ``key`` names an identity field (``IDENTITY``), whatever its spelling."""
    return key.replace("_", "").lower() in IDENTITY


def luhn(digits: str) -> bool:
    """The Luhn check every payment card number passes (ISO/IEC 7812)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = match[0].replace(" ", "").replace("-", "")
    return "[number]" if 13 <= len(digits) <= 19 and luhn(digits) else match[0]


def redact(text: str) -> str:
    """``text`` with every secret replaced, identity fields' values kept as they are."""
    kept = [m.span(2) for m in _KEY_VALUE.finditer(text) if is_identity(m[1])]
    if not kept:
        return _redact(text)
    parts, start = [], 0
    for begin, end in kept:
        parts += [_redact(text[start:begin]), text[begin:end]]
        start = end
    return "".join([*parts, _redact(text[start:])])


def _redact(text: str) -> str:
    lowered = text.lower()
    if "pair" in lowered:  # both key patterns need their key's name in the text
        text = _PAIRCODE.sub(r"\1[redacted]", text)
    if "pin" in lowered:
        text = _PIN_KEY.sub(r"\1[redacted]", text)
    text = _known.redact(text)
    text = _B64.sub("[data]", text)
    return _PAN.sub(_card, text)


class Redactor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = escape(record.getMessage())
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = redact(message), None
        return True


QUEUE_LINES: Final = 10_000


class _Handoff(logging.handlers.QueueHandler):
    """What the logging thread (usually the event loop) pays: the %-formatting of the
    message, so that arguments changed after the call cannot change the line."""

    def __init__(self, lines: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(lines)
        self.dropped = 0
        self._lock = threading.Lock()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def take_dropped(self) -> int:
        with self._lock:
            n, self.dropped = self.dropped, 0
        return n


class _Writer(logging.StreamHandler):  # type: ignore[type-arg]
    """The log thread's handler: says first how many lines the full queue dropped."""

    def __init__(self, handoff: _Handoff) -> None:
        super().__init__(sys.stderr)
        self.handoff = handoff

    def emit(self, record: logging.LogRecord) -> None:
        dropped = self.handoff.take_dropped()
        if dropped:
            note = logging.LogRecord(
                "ecrd.logs", logging.WARNING, __file__, 0,
                "%d log line(s) dropped: nothing read ecrd's output fast enough", (dropped,),
                None,
            )  # fmt: skip
            super().emit(note)
        super().emit(record)


class _Listener(logging.handlers.QueueListener):
    def __init__(self, lines: queue.Queue[logging.LogRecord | None], writer: _Writer) -> None:
        super().__init__(lines, writer, respect_handler_level=False)
        self._lines = lines

    def enqueue_sentinel(self) -> None:
        self._lines.put(None)  # the stdlib's sentinel, put when there is room: it is bounded


_listener: _Listener | None = None


def setup(level: str = "info") -> None:
    global _listener
    stop()
    lines: queue.Queue[logging.LogRecord | None] = queue.Queue(QUEUE_LINES)
    handoff = _Handoff(lines)
    writer = _Writer(handoff)
    writer.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    writer.addFilter(Redactor())
    _listener = _Listener(lines, writer)
    _listener.start()
    root = logging.getLogger()
    root.handlers[:] = [handoff]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; ours are enough.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def stop() -> None:
    """Write every queued line and end the log thread (idempotent)."""
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()
