"""The wire trace for support: on and off per terminal (API, ecrctl, the entry's ``trace``
key), one JSON line per step of each exchange in ``STATE_DIR/trace/TERMINAL.jsonl``
(0600), bounded with rotation, and never a PIN, a card number or a key in any line."""

from __future__ import annotations

import base64
import binascii
import json
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import trio
from stack import PIN1, Stack, start_stack, wait_link_up

from ecrd.client import open_trio_client
from ecrd.protocol import crypto
from ecrd.terminal.trace import Trace, redacted

CARD = "4111111111111111"
ORDER = "2026112700001043"  # an order number of a card's length (it fails Luhn)


def trace_file(stack: Stack, tid: str) -> Path:
    return stack.tmp / "state" / "trace" / f"{tid}.jsonl"


async def traced_pairing_and_sale(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    """Every link paired and one sale on it, each with its trace on."""
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        await wait_link_up(c, "serial-1")
        for link in ("lan", "serial", "cloud"):
            res = await c.call("terminal.trace", terminal=f"{link}-1", on=True)
            assert res["trace"] is True
            await c.call("terminal.pair", terminal=f"{link}-1", code=PIN1[link])
            await c.call(
                "sale", terminal=f"{link}-1", amount="4.00", currency="HKD",
                reference_id=f"t-{link}", customer_order_id=ORDER,
                extra={"memo": f"card {CARD}"},
            )  # fmt: skip
    return stack


async def test_a_trace_records_each_exchange_with_no_pin_card_number_or_key(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await traced_pairing_and_sale(nursery, tmp_path)
    for link in ("lan", "serial", "cloud"):
        path = trace_file(stack, f"{link}-1")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        text = path.read_text()
        lines = [json.loads(line) for line in text.splitlines()]
        assert [line["action"] for line in lines if line["dir"] == "out"][-1] == "Sale"
        sale_in = [line for line in lines if line["dir"] == "in" and line["action"] == "Sale"]
        assert sale_in and sale_in[0]["body"]["referenceID"] == f"t-{link}"
        assert all(line["link"] for line in lines)
        sim = stack.terminal(link)
        for secret in (PIN1[link], sim.pin2, CARD):
            assert secret and secret not in text, f"{link}: a secret in the trace"
        assert '"pinCode2": "[redacted]"' in text  # the Pair reply, its new PIN hidden
        assert f'"customerOrderID": "{ORDER}"' in text  # an identity field: never hidden
        words = " ".join(json.dumps(line) for line in lines).replace('"', " ").split()
        assert all(len(w) < 40 for w in words)  # no key, no ciphertext
        if link == "serial":  # the frame's metadata, never its bytes
            frame = next(line["frame"] for line in lines if line["action"] == "Sale")
            assert frame["header_hex"].startswith("550006") and frame["crc"] == "crc32 ok"
            assert frame["cmd"] == "0x0006" and frame["length"] > 0
            assert not any("frame_hex" in line for line in lines)
        else:  # the HTTP status and headers of the reply, and the cloud's request headers
            assert sale_in[0]["http_status"] == 200 and sale_in[0]["http_headers"]
        if link == "cloud":
            sent = sale_in[0]["request_headers"]
            assert sent["x-device-sn"] == sim.sn and sent["x-request-id"]


async def test_trace_off_writes_nothing_and_the_entry_key_turns_it_on(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await start_stack(nursery, tmp_path)
    async with open_trio_client(stack.socket) as c:
        await c.call("terminal.pair", terminal="lan-1", code=PIN1["lan"])
        assert not trace_file(stack, "lan-1").exists()
        await c.call("terminal.trace", terminal="lan-1", on=True)
        await c.call("terminal.info", terminal="lan-1")
        await c.call("terminal.trace", terminal="lan-1", on=False)
        await c.call("terminal.info", terminal="lan-1")
        res = await c.call("terminal.trace", terminal="lan-1", tail=10)
    assert [line["dir"] for line in res["lines"]] == ["out", "in"]
    assert res["trace"] is False and res["file"].endswith("trace/lan-1.jsonl")
    on_by_entry = await start_stack(nursery, tmp_path / "b", trace=True)
    async with open_trio_client(on_by_entry.socket) as c:
        await c.call("terminal.pair", terminal="lan-1", code=PIN1["lan"])
    assert trace_file(on_by_entry, "lan-1").read_text().count('"dir": "out"') == 3


async def test_the_trace_is_bounded_by_rotation(tmp_path: Path) -> None:
    trace = Trace(tmp_path / "trace" / "t.jsonl", on=True, max_bytes=2000)
    for i in range(100):
        await trace.record("out", action="DeviceInfo", n=i, pad="x" * 50)
    assert (tmp_path / "trace" / "t.jsonl").stat().st_size <= 2000
    assert (tmp_path / "trace" / "t.jsonl.1").stat().st_size <= 2000
    assert trace.tail(1)[0]["n"] == 99
    assert not (tmp_path / "trace" / "t.jsonl.2").exists()


def test_redaction_keeps_the_shape_and_hides_pins_cards_and_keys() -> None:
    out = redacted(
        {"pinCode2": 123456, "pinCode": "ABC123", "newPinCode": "9", "aesKey": "k",
         "pan": "5500000000000004", "amount": "1.00", "errorCode": "E1",
         "note": f"paid with {CARD}", "n": 4111111111111111, "nested": [{"pairCode": "1"}]}
    )  # fmt: skip
    assert out == {
        "pinCode2": "[redacted]", "pinCode": "[redacted]", "newPinCode": "[redacted]",
        "aesKey": "[redacted]", "pan": "[redacted]", "amount": "1.00", "errorCode": "E1",
        "note": "paid with [number]", "n": "[number]", "nested": [{"pairCode": "[redacted]"}],
    }  # fmt: skip


async def test_ecrctl_trace_switches_and_tails(nursery: trio.Nursery, tmp_path: Path) -> None:
    stack = await start_stack(nursery, tmp_path)
    ctl = [str(Path(sys.executable).parent / "ecrctl"), "--socket", stack.socket, "trace"]
    on = await trio.run_process([*ctl, "lan-1", "on"], capture_stdout=True)
    assert on.stdout.decode().startswith("trace on for lan-1")
    async with open_trio_client(stack.socket) as c:
        await c.call("terminal.pair", terminal="lan-1", code=PIN1["lan"])
    tail = await trio.run_process([*ctl, "lan-1", "--tail", "2"], capture_stdout=True)
    lines = tail.stdout.decode().splitlines()
    assert len(lines) == 2 and json.loads(lines[-1])["dir"] == "in"
    off = await trio.run_process([*ctl, "lan-1", "off"], capture_stdout=True)
    assert off.stdout.decode().startswith("trace off")


def test_redaction_keeps_identity_fields_and_numbers_that_are_not_cards() -> None:
    out = redacted(
        {"referenceID": "4111111111111111", "customerOrderID": 4111111111111111,
         "rrn": "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9v", "authCode": "123456",
         "orderNo": 2026112700001043, "receipt": "order 2026112700001043",
         "card": 4111111111111111, "pinCode2": "123456"}
    )  # fmt: skip
    assert out == {
        "referenceID": "4111111111111111", "customerOrderID": 4111111111111111,
        "rrn": "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9v", "authCode": "123456",
        "orderNo": 2026112700001043, "receipt": "order 2026112700001043",
        "card": "[number]", "pinCode2": "[redacted]",
    }  # fmt: skip


B64_RUN = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")
HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){12,}")


def blobs(data: bytes, depth: int = 0) -> Iterator[str]:
    """Every base64 text a trace could hide a ciphertext in: each base64 run (and its
    longest whole-quantum prefix), each hex run's bytes as base64, and the base64 runs
    inside those bytes (a frame holds the envelope, which holds ``data``)."""
    for run in B64_RUN.findall(data):
        yield run.decode()
        if len(run) % 4:
            yield run[: len(run) - len(run) % 4].decode()
    for run in HEX_RUN.findall(data):
        raw = binascii.unhexlify(run)
        yield base64.b64encode(raw).decode()
        if depth == 0:
            yield from blobs(raw, depth + 1)


def opens(blob: str, pin: str, keys: crypto.KeyCache) -> bool:
    for scheme in crypto.SCHEMES:
        try:
            crypto.open_(blob, pin, scheme, keys=keys)
        except crypto.CryptoError:
            continue
        except Exception:  # decrypted, but not a JSON object: the key fitted all the same
            return True
        return True
    return False


async def test_no_blob_in_a_trace_opens_under_any_pin(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A trace of a pairing and a sale on every link, as a shop would send it to support:
    every hex and base64 run in it is tried against every PIN the terminals had (pinCode1,
    pinCode2), with both schemes. None may open: the PIN would then fall to an offline
    search of 10^6 candidates."""
    stack = await traced_pairing_and_sale(nursery, tmp_path)
    keys = crypto.KeyCache(size=4096)
    for link in ("lan", "serial", "cloud"):
        data = trace_file(stack, f"{link}-1").read_bytes()
        pins = [PIN1[link], stack.terminal(link).pin2]
        tried = sorted(set(blobs(data)))
        assert tried, "no run found at all: the search is broken"
        opened = [b for b in tried for pin in pins if pin and opens(b, pin, keys)]
        assert opened == [], f"{link}: {len(opened)} blob(s) in the trace open under a PIN"
