"""Pairing codes with letters (older vendor pages: six uppercase characters): accepted as
six of A-Z and 0-9, typed lowercase taken as the uppercase the terminal shows, in the plain
code and in the QR's ``pairCode``; anything else refused with a clear message. Proven on
both crypto schemes and all three links against a simulator that makes up such codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from stack import call_error, start_stack, wait_link_up

from ecrd import errors, logs
from ecrd.client import open_trio_client
from ecrd.sim.codes import LETTERS, valid_code
from ecrd.sim.terminal import SimTerminal
from ecrd.terminal.pairing import parse_pairing_code

LINKS = ("lan", "serial", "cloud")


@pytest.mark.parametrize("scheme", ["v2", "legacy"])
@pytest.mark.parametrize("link", LINKS)
async def test_a_letter_code_typed_in_lowercase_pairs_and_sells(
    nursery: trio.Nursery, tmp_path: Path, link: str, scheme: str
) -> None:
    stack = await start_stack(
        nursery, tmp_path, sim_kw={"scheme": scheme, "letter_codes": True}, crypto=scheme
    )
    term = stack.terminal(link)
    code = term.show_pairing_page()
    assert valid_code(code)
    code = term.show_pairing_page("K7Q2ZD")  # surely letters, whatever the draw was
    async with open_trio_client(stack.socket) as c:
        await wait_link_up(c, f"{link}-1")
        paired = await c.call("terminal.pair", terminal=f"{link}-1", code=" k7q2zd ")
        assert paired["device_sn"] == term.sn
        tx = await c.call(
            "sale", terminal=f"{link}-1", amount="10.20", currency="HKD", reference_id="lc-1"
        )
    assert tx["state"] == "succeeded"
    assert stack.charges(link, "lc-1") == 1
    assert term.pin2 is not None and all(ch in LETTERS for ch in term.pin2)


@pytest.mark.parametrize("scheme", ["v2", "legacy"])
async def test_a_qr_pair_code_with_letters_pairs_in_either_case(
    nursery: trio.Nursery, tmp_path: Path, scheme: str
) -> None:
    stack = await start_stack(
        nursery, tmp_path, sim_kw={"scheme": scheme, "letter_codes": True}, crypto=scheme
    )
    term = stack.terminal("lan")
    term.show_pairing_page("AB12CD")
    qr = {**term.qr(), "pairCode": "ab12cd"}
    async with open_trio_client(stack.socket) as c:
        paired = await c.call("terminal.pair", terminal="lan-1", code=json.dumps(qr))
    assert paired["device_sn"] == term.sn


@pytest.mark.parametrize("code", ["12345", "1234567", "AB-12C", "ÄB12CD", "ßßAB12", "", "AB 12C"])
def test_anything_but_six_of_a_z_and_0_9_is_refused_with_the_rule(code: str) -> None:
    for given in (code, json.dumps({"pairCode": code})):
        with pytest.raises(errors.InvalidParams) as caught:
            parse_pairing_code(given)
        assert "A-Z and 0-9" in str(caught.value)


def test_a_code_is_kept_as_the_terminal_shows_it() -> None:
    assert parse_pairing_code("672633").pin == "672633"
    assert parse_pairing_code("k7q2zd").pin == "K7Q2ZD"
    assert parse_pairing_code('{"pairCode": "k7Q2zd"}').pin == "K7Q2ZD"


async def test_a_malformed_code_is_refused_over_the_socket_and_changes_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        err = await call_error(c, "terminal.pair", terminal="lan-1", code="AB-12C")
    assert err.reason == "invalid_params"
    assert "A-Z and 0-9" in err.message
    assert stack.terminal("lan").stats.requests == 0


def test_a_letter_code_never_reaches_a_log_line_in_any_case() -> None:
    logs.register_secret("Q9W8E7")
    assert "Q9W8E7" not in logs.redact("code Q9W8E7 and q9w8e7 typed")
    assert "q9w8e7" not in logs.redact("code Q9W8E7 and q9w8e7 typed").lower()
    assert logs.redact('{"pairCode": "ab12cd"}') == '{"pairCode": "[redacted]"}'


def test_the_simulator_refuses_a_code_a_terminal_could_not_show() -> None:
    with pytest.raises(ValueError, match="A-Z and 0-9"):
        SimTerminal(pin1="ab12cd")
