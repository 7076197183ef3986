"""The redaction filter: one place that keeps secrets out of every log line."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from ecrd import logs


@pytest.fixture
def captured() -> list[str]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.addFilter(logs.Redactor())
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield lines
    log.removeHandler(handler)


def test_a_registered_pin_never_reaches_a_line(captured: list[str]) -> None:
    logs.register_secret("731046")
    logging.getLogger("test.redaction").info("paired with pin %s ok", "731046")
    assert "731046" not in captured[0]
    assert "[pin]" in captured[0]


def test_card_numbers_ciphertexts_and_qr_codes_are_removed(captured: list[str]) -> None:
    log = logging.getLogger("test.redaction")
    log.info("pan 4111 1111 1111 1111 seen")
    log.info("data=paWlpaWlpaWlpaWlpaWlpVpaWlpaWlpaWlpaWlpaWlocTlmsuOvrV9ZqSO2ab7DMn7")
    log.info('qr {"deviceId":"X","pairCode":"672633","port":8443}')
    log.info('reply {"pinCode2": "123987"}')
    text = "\n".join(captured)
    for secret in ("4111 1111 1111 1111", "paWlpaWlpaWl", "672633", "123987"):
        assert secret not in text


def test_exceptions_are_redacted_too(captured: list[str]) -> None:
    logs.register_secret("555111")
    try:
        raise ValueError("bad pin 555111")
    except ValueError:
        logging.getLogger("test.redaction").exception("failed")
    assert "555111" not in captured[0] and "ValueError" in captured[0]


def test_ordinary_lines_are_left_alone(captured: list[str]) -> None:
    logging.getLogger("test.redaction").info("terminal=counter-1 ref=abc sale 10.20 HKD port 8443")
    assert captured[0] == "terminal=counter-1 ref=abc sale 10.20 HKD port 8443"


def test_control_characters_from_a_terminal_cannot_forge_a_log_line(
    captured: list[str],
) -> None:
    reply = {"errorMessage": "declined\nCRITICAL ecrd: forged\x1b[2J"}
    logging.getLogger("test.redaction").warning("terminal=t1 reply %s", reply["errorMessage"])
    (line,) = captured
    assert "\n" not in line and "\x1b" not in line
    assert "declined\\nCRITICAL ecrd: forged\\x1b[2J" in line


def test_every_pin_of_a_fleet_is_redacted_as_a_whole_token() -> None:
    """With a hundred terminals' PINs known, each is found (as a whole run of digits, or a
    whole word in any case for a code with letters) and nothing else is touched."""
    pins = [f"{400000 + i * 7919}" for i in range(100)]
    for pin in pins:
        logs.register_secret(pin)
    logs.register_secret("Qr7Zk2")
    for pin in pins:
        assert (
            logs.redact(f"sale ok with {pin}, again {pin}.") == "sale ok with [pin], again [pin]."
        )
        assert logs.redact(f"x{pin}y") == "x[pin]y"  # digits: a whole run, letters around
        assert logs.redact(f"{pin}1 or 1{pin}") == f"{pin}1 or 1{pin}"  # in a longer number
    assert logs.redact("code qr7zk2 / QR7ZK2 / xqr7zk2") == "code [pin] / [pin] / xqr7zk2"


class _Stream(io.StringIO):
    """stderr as the log thread sees it; ``gate`` holds every write until it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.writing = threading.Event()  # set once a write has begun

    def write(self, text: str) -> int:
        self.writing.set()
        self.gate.wait(10)
        return super().write(text)


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Stream]:
    """The stream; each test puts it in place itself (pytest swaps sys.stderr between a
    test's setup and its call)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = _Stream()
    yield stream
    logs.stop()
    root.handlers[:], root.level = saved[0], saved[1]


def test_lines_are_written_by_the_log_thread_in_order_and_redacted(
    stderr: _Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr)
    logs.setup("info")
    logs.register_secret("583920")
    log = logging.getLogger("ecrd.test")
    for i in range(50):
        log.info("line %d pin 583920", i)
    logs.stop()  # what the CLI does before it exits: everything queued is written
    lines = stderr.getvalue().splitlines()
    assert lines == [f"INFO ecrd.test: line {i} pin [pin]" for i in range(50)]


def test_a_full_queue_drops_lines_and_the_next_line_says_how_many(
    stderr: _Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that stalls never stalls the loop: lines beyond the queue are counted."""
    monkeypatch.setattr(logs, "QUEUE_LINES", 1)
    monkeypatch.setattr(sys, "stderr", stderr)
    logs.setup("info")
    stderr.gate.clear()  # nothing reads: the log thread blocks on its first line
    stderr.writing.clear()
    log = logging.getLogger("ecrd.test")
    log.info("first")
    assert stderr.writing.wait(5)  # the log thread has taken "first" and waits in write()
    for i in range(5):
        log.info("more %d", i)  # "more 0" fills the queue, the others are dropped
    stderr.gate.set()
    logs.stop()
    assert stderr.getvalue().splitlines() == [
        "INFO ecrd.test: first",
        "WARNING ecrd.logs: 4 log line(s) dropped: nothing read ecrd's output fast enough",
        "INFO ecrd.test: more 0",
    ]


def test_identity_fields_are_never_redacted(captured: list[str]) -> None:
    """By key: an audit line must still match its order, however its id looks."""
    long_id = "ORDER" + "Ab1" * 15  # 50 characters of the base64 alphabet
    lines = [
        "terminal=counter-1 ref=4111111111111111 sale requested by uid=0 user=root",
        f"terminal=counter-1 ref={long_id} accepted",
        '{"referenceID": "4111111111111111", "customerOrderID": "5500 0000 0000 0004", '
        f'"rrn": "{long_id}"}}',
        "{'customer_order_id': '4111111111111111', 'originalReferenceID': '5500000000000004'}",
    ]
    for line in lines:
        logging.getLogger("test.redaction").info("%s", line)
    assert captured == lines


def test_outside_identity_fields_cards_and_ciphertexts_are_still_removed() -> None:
    line = logs.redact(
        'ref=ok note 4111111111111111 {"memo": "5500000000000004"} data=' + "Qk" * 30
    )
    assert line == 'ref=ok note [number] {"memo": "[number]"} data=[data]'


def test_a_digit_run_is_a_card_number_only_with_a_card_length_and_a_good_luhn() -> None:
    """By proof: order numbers, timestamps and phone numbers of 13-19 digits stay."""
    kept = ["1234567890123", "2026112700001043", "1234 5678 9012 3456", "17951234567890123",
            "12345678901234567890", "411111111111"]  # fmt: skip
    for number in kept:
        assert logs.redact(f"order {number} paid") == f"order {number} paid"
    for card in ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004",
                 "4222222222222", "6011000990139424"]:  # fmt: skip
        assert logs.redact(f"card {card} paid") == "card [number] paid"
