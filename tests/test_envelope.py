"""The outer envelope and the inner {header, body} message (protocol.md §2, §4)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from ecrd.protocol.envelope import (
    VERSION,
    AmountError,
    Envelope,
    MalformedEnvelope,
    MalformedMessage,
    StaleResponse,
    WrongTerminal,
    check_currency,
    check_response,
    format_amount,
    parse_amount,
    request_message,
    response_message,
    timestamp,
)

TERMINAL_SN = "NEXGO-N96-1170270945"
REQUEST_ID = "2c7f32e1-b9e4-4b34-96cc-15c51289f69b"


def reply(
    response_id: str = REQUEST_ID, server_sn: str = TERMINAL_SN, **body: Any
) -> dict[str, Any]:
    return {
        "header": {
            "responseID": response_id,
            "serverDeviceSN": server_sn,
            "timestamp": "2025-11-12T10:12:04+00:00",
        },
        "body": body,
    }


# --- outer envelope ----------------------------------------------------------------------


def test_envelope_from_an_official_vector(official_v2: dict[str, Any]) -> None:
    env = Envelope.from_obj(official_v2["envelope"])
    assert env.version == "2.0"
    assert env.to_obj() == official_v2["envelope"]


def test_envelope_serialises_compactly() -> None:
    raw = Envelope("Abort", "").to_bytes()
    assert raw == b'{"version":"2.0","action":"Abort","data":""}'


def test_envelope_round_trips_through_bytes() -> None:
    env = Envelope("Sale", "QUJD")
    assert Envelope.from_bytes(env.to_bytes()) == env


def test_default_version_is_2_0() -> None:
    assert Envelope("Sale", "x").version == VERSION == "2.0"


@pytest.mark.parametrize("obj", [[], "Sale", 42, None, ["version", "action", "data"]])
def test_envelope_must_be_an_object(obj: object) -> None:
    with pytest.raises(MalformedEnvelope):
        Envelope.from_obj(obj)


@pytest.mark.parametrize("missing", ["version", "action", "data"])
def test_envelope_requires_every_field(missing: str) -> None:
    obj = {"version": "2.0", "action": "Sale", "data": "x"}
    del obj[missing]
    with pytest.raises(MalformedEnvelope, match=missing):
        Envelope.from_obj(obj)


@pytest.mark.parametrize("field", ["version", "action", "data"])
def test_envelope_fields_must_be_strings(field: str) -> None:
    obj: dict[str, Any] = {"version": "2.0", "action": "Sale", "data": "x"}
    obj[field] = 2.0
    with pytest.raises(MalformedEnvelope, match=field):
        Envelope.from_obj(obj)


@pytest.mark.parametrize("raw", [b"", b"not json", b"\xff\xfe", b"[]", b'"Sale"', b"[" * 100_000])
def test_envelope_bytes_must_be_a_json_object(raw: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        Envelope.from_bytes(raw)


def test_envelope_keeps_an_action_it_does_not_model() -> None:
    env = Envelope.from_bytes(b'{"version":"2.0","action":"FutureThing","data":"x"}')
    assert env.action == "FutureThing"


# --- request message ---------------------------------------------------------------------


def test_request_header_carries_a_fresh_uuid4_request_id() -> None:
    first = request_message({}, "POS-1")["header"]["requestID"]
    second = request_message({}, "POS-1")["header"]["requestID"]
    assert uuid.UUID(first).version == 4
    assert first != second


def test_request_header_carries_the_client_device_sn() -> None:
    assert request_message({}, "POS-0001")["header"]["clientDeviceSN"] == "POS-0001"


def test_request_timestamp_is_rfc3339_with_offset() -> None:
    stamp = request_message({}, "POS-1")["header"]["timestamp"]
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() is not None
    assert abs(datetime.now(UTC) - parsed) < timedelta(minutes=1)


def test_timestamp_has_seconds_precision_and_keeps_the_offset() -> None:
    hk = timezone(timedelta(hours=8))
    now = datetime(2025, 11, 12, 18, 11, 4, 123456, tzinfo=hk)
    assert timestamp(now) == "2025-11-12T18:11:04+08:00"


def test_timestamp_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone"):
        timestamp(datetime(2025, 11, 12, 10, 11, 4))


def test_request_message_matches_the_seed_example(vectors: dict[str, Any]) -> None:
    inner = json.loads(vectors["crypto_v2"][0]["plaintext"])  # the ConnectionInfo request
    header = inner["header"]
    msg = request_message(
        inner["body"],
        header["clientDeviceSN"],
        request_id=header["requestID"],
        now=datetime.fromisoformat(header["timestamp"]),
    )
    assert msg == inner


def test_request_body_is_omitted_when_none() -> None:
    assert "body" not in request_message(None, "POS-1")


def test_request_body_is_kept_when_empty() -> None:
    assert request_message({}, "POS-1")["body"] == {}


# --- response checks ---------------------------------------------------------------------


def test_matching_response_yields_its_body() -> None:
    assert check_response(reply(deviceSn=TERMINAL_SN), REQUEST_ID, TERMINAL_SN) == {
        "deviceSn": TERMINAL_SN
    }


def test_response_for_another_request_is_stale() -> None:
    with pytest.raises(StaleResponse):
        check_response(reply(response_id=str(uuid.uuid4())), REQUEST_ID, TERMINAL_SN)


def test_response_from_another_terminal_is_refused() -> None:
    with pytest.raises(WrongTerminal):
        check_response(reply(server_sn="PAX-A930-1170270945"), REQUEST_ID, TERMINAL_SN)


def test_any_terminal_is_accepted_before_the_sn_is_known() -> None:
    check_response(reply(server_sn="PAX-A930-1170270945"), REQUEST_ID)


def test_response_without_body_has_an_empty_body() -> None:
    message = reply()
    del message["body"]
    assert check_response(message, REQUEST_ID) == {}


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"header": "x"},
        {"header": {"serverDeviceSN": TERMINAL_SN}},
        {"header": {"responseID": REQUEST_ID}},
        {"header": {"responseID": 1, "serverDeviceSN": TERMINAL_SN}},
        {"header": {"responseID": REQUEST_ID, "serverDeviceSN": TERMINAL_SN}, "body": []},
    ],
)
def test_malformed_response_is_refused(message: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage):
        check_response(message, REQUEST_ID)


def test_the_official_response_answers_the_official_request(vectors: dict[str, Any]) -> None:
    request, response = (json.loads(v["plaintext"]) for v in vectors["crypto_v2"][:2])
    body = check_response(response, request["header"]["requestID"], TERMINAL_SN)
    assert body["deviceSn"] == TERMINAL_SN


def test_response_message_answers_its_request() -> None:
    request = request_message(None, "POS-1")
    response = response_message(request, {"status": "Success"}, TERMINAL_SN)
    rid = request["header"]["requestID"]
    assert check_response(response, rid, TERMINAL_SN) == {"status": "Success"}


# --- amounts and currencies (protocol.md §4: decimal strings, never floats) --------------


@pytest.mark.parametrize("text", ["10.20", "0.01", "1.00", "99999999.99"])
def test_amount_accepts_two_decimal_strings(text: str) -> None:
    assert parse_amount(text) == Decimal(text)


@pytest.mark.parametrize("value", [10.2, 10.20, 10, Decimal("10.20"), None, True])
def test_amount_refuses_non_strings(value: object) -> None:
    with pytest.raises(AmountError):
        parse_amount(value)


@pytest.mark.parametrize(
    "text",
    [
        "10.2",
        "10.200",
        "10",
        "-1.00",
        "+1.00",
        "0.00",
        "1e3",
        "1.00e0",
        " 1.00",
        "1.00 ",
        "1.00\n",
        "01.00",
        ".50",
        "1,00",
        "\u0661.\u0660\u0660",  # Arabic-Indic digits: Decimal would accept them
        "100000000.00",
        "NaN",
        "",
    ],
)
def test_amount_refuses_other_spellings(text: str) -> None:
    with pytest.raises(AmountError):
        parse_amount(text)


def test_amount_errors_are_value_errors() -> None:
    assert issubclass(AmountError, ValueError)


def test_format_amount_gives_two_decimals() -> None:
    assert format_amount(Decimal("10.2")) == "10.20"
    assert format_amount(parse_amount("0.01")) == "0.01"


@pytest.mark.parametrize("code", ["HKD", "USD"])
def test_currency_accepts_iso_4217_letters(code: str) -> None:
    assert check_currency(code) == code


@pytest.mark.parametrize("code", ["hkd", "HK", "HKDD", "HKD\n", " HKD", "344", 344, None])
def test_currency_refuses_anything_else(code: object) -> None:
    with pytest.raises(AmountError):
        check_currency(code)
