"""The redaction filter: one place that keeps secrets out of every log line."""

from __future__ import annotations

import logging

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
