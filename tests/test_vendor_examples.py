"""The vendor document's own examples (tests/data/vendor-examples.json, copied verbatim),
each checked against the code by its literal text, never by the modules' constants: the
QR code pairs a terminal (on every link, against a strict simulator), the cloud link sends
the header table's names, the URLs are the document's, and both ciphertexts open to the
document's plaintexts."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trio
from stack import SIM_KEYS, call_error, wait_link_up

from ecrd.client import TrioClient, open_trio_client
from ecrd.config import parse
from ecrd.daemon import Daemon
from ecrd.protocol import crypto
from ecrd.protocol.envelope import check_response, request_message
from ecrd.sim.cloud import COMMAND_PATH, Gateway
from ecrd.sim.http import HttpRequest, HttpResponse, serve_http
from ecrd.sim.lan import serve_lan
from ecrd.sim.serial import serve_serial
from ecrd.sim.terminal import SimTerminal
from ecrd.terminal.links import cloud_link, lan_link
from ecrd.terminal.pairing import parse_pairing_code
from ecrd.transport.cloud import cloud_urls

DATA = Path(__file__).resolve().parent / "data"
DOC: dict[str, Any] = json.loads((DATA / "vendor-examples.json").read_text())
VECTORS: dict[str, Any] = json.loads((DATA / "ecr-vectors.json").read_text())
QR: dict[str, Any] = json.loads(DOC["qr"])
HEADERS = [row["variable"] for row in DOC["cloud_request_header"]]


def test_the_qr_code_parses_into_every_value_it_prints() -> None:
    parsed = parse_pairing_code(DOC["qr"])
    assert parsed.pin == "672633" == QR["pairCode"]
    assert parsed.device_id == "NEXGO-N62-N620W318000"
    assert (parsed.ip, parsed.port) == ("172.16.91.29", 8443)
    assert parsed.business_id == "411d6207-1470-4d35-a557-54852463844d"


async def test_the_terminal_info_urls_are_the_documents() -> None:
    for environment in ("production", "staging"):
        assert cloud_urls(environment)[0] == DOC["terminal_info_urls"][environment]
        cfg = parse({"cloud": {"environment": environment, "business_id": QR["businessId"]}})
        link = cloud_link(cfg.cloud, QR["deviceId"])  # as ecrd builds it from the config
        try:
            assert link.info_url == DOC["terminal_info_urls"][environment]
        finally:
            await link.aclose()


async def test_the_lan_url_is_the_documents_template_filled_with_the_qr_address() -> None:
    url = (
        DOC["lan_url"]
        .replace("<ECR terminal device IP address>", QR["ip"])
        .replace("<ECR terminal device port>", str(QR["port"]))
    )
    entry = {"id": "t", "transport": "lan", "host": QR["ip"], "port": QR["port"]}
    cfg = parse({"terminal": [entry]}).terminals[0]  # the entry's defaults: path, tls
    assert cfg.host is not None
    link = lan_link(cfg, cfg.host, cfg.port)
    try:
        assert link.url == url == "http://172.16.91.29:8443/v2/wonder/payment/ecr"
    finally:
        await link.aclose()


@pytest.mark.real_kdf
def test_both_ciphertexts_open_to_the_documents_plaintexts() -> None:
    official = [v for v in VECTORS["crypto_v2"] if "official" in v["source"]]
    examples = (DOC["connection_info_request"], DOC["device_info_response"])
    for example, vector in zip(examples, official, strict=True):
        for field in ("version", "action"):
            assert vector["envelope"][field] == example["envelope"][field]
        message = crypto.open_(vector["envelope"]["data"], vector["pin"])
        printed = json.loads(example["plaintext"])
        assert message["header"] == printed["header"]
        assert printed["body"].items() <= message["body"].items()
    # The one difference: the printed response omits the businessID its ciphertext holds.
    response = crypto.open_(official[1]["envelope"]["data"], official[1]["pin"])
    assert set(response["body"]) - set(json.loads(examples[1]["plaintext"])["body"]) == {
        "businessID"
    }


def test_ecrd_builds_the_documents_request_and_takes_its_response() -> None:
    """The ConnectionInfo plaintext ecrd seals, given the example's values, is the printed
    one key for key; the printed response answers it."""
    request = json.loads(DOC["connection_info_request"]["plaintext"])
    header = request["header"]
    built = request_message(
        request["body"],
        header["clientDeviceSN"],
        request_id=header["requestID"],
        now=datetime.fromisoformat(header["timestamp"]).astimezone(UTC),
    )
    assert built == request
    response = json.loads(DOC["device_info_response"]["plaintext"])
    assert check_response(response, header["requestID"])["deviceSn"] == "NEXGO-N96-1170270945"


def qr_terminal() -> SimTerminal:
    """A strict terminal whose SN, pairing code and business are the QR code's."""
    return SimTerminal(
        QR["deviceId"], business_id=QR["businessId"], pin1=QR["pairCode"], keys=SIM_KEYS,
        reply_salt_reuse=True, strict=True, magic_delay=0.3,
    )  # fmt: skip


async def qr_stack(
    nursery: trio.Nursery, tmp: Path, *, business: bool = False
) -> tuple[str, list[dict[str, str]], int]:
    """Three strict terminals with the QR's identity (LAN on loopback, serial on a pty,
    cloud behind a strict gateway that records every call's headers); a daemon with no
    [cloud].business_id (unless ``business``), so the QR's is used. Returns the socket,
    the headers seen and the LAN terminal's port."""
    seen: list[dict[str, str]] = []
    gateway = Gateway([qr_terminal()], strict=True)

    async def recording(request: HttpRequest) -> HttpResponse:
        seen.append(dict(request.headers))
        return await gateway.handle(request)

    cloud_port = await nursery.start(partial(serve_http, recording, "127.0.0.1", 0, name="gw"))
    lan_port = await nursery.start(serve_lan, qr_terminal())
    cable = await nursery.start(partial(serve_serial, qr_terminal(), symlink=tmp / "ttyQR"))
    base = f"http://127.0.0.1:{cloud_port}"
    common = {"timeout_s": 5, "info_timeout_s": 3, "probe_interval_s": 0}
    data = {
        "daemon": {"socket": str(tmp / "run" / "ecrd.sock"), "state_dir": str(tmp / "state"),
                   "client_device_sn": "POS-QR", "shutdown_grace_s": 2},
        "cloud": {"base_url": base, "command_url": base + COMMAND_PATH, "timeout_s": 5}
                 | ({"business_id": QR["businessId"]} if business else {}),
        "terminal": [
            {"id": "lan-1", "transport": "lan", "host": "127.0.0.1", "port": lan_port, **common},
            {"id": "serial-1", "transport": "serial", "device": cable.path, **common},
            {"id": "cloud-1", "transport": "cloud", **common},
        ],
    }  # fmt: skip
    (tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
    cfg = parse(data, str(tmp / "ecrd.toml"))
    await nursery.start(Daemon(cfg).run)
    return cfg.daemon.socket, seen, lan_port


async def pair_with_ecrctl(socket: str, tid: str, code: str) -> None:
    """As an installer would: ``ecrctl pair TERMINAL "$(cat qr.json)"``."""
    ctl = [str(Path(sys.executable).parent / "ecrctl"), "--socket", socket, "--json", "pair"]
    done = await trio.run_process([*ctl, tid, code], capture_stdout=True, capture_stderr=True)
    assert json.loads(done.stdout)["device_sn"] == QR["deviceId"]


async def sell(c: TrioClient, tid: str) -> None:
    tx = await c.call("sale", terminal=tid, amount="8.00", currency="HKD", reference_id=f"qr-{tid}")
    assert tx["state"] == "succeeded", tx


async def test_the_exact_qr_code_pairs_and_sells_on_every_link_against_a_strict_simulator(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Serial and cloud from the QR's text exactly as printed, line breaks and all, pasted
    into ``ecrctl pair``; LAN from the same JSON with its address swapped for the
    simulator's loopback one (tests reach only loopback: the printed 172.16.91.29 is
    checked above, where the URL is built, and never connected to)."""
    socket, seen, lan_port = await qr_stack(nursery, tmp_path)
    async with open_trio_client(socket) as c:
        await wait_link_up(c, "serial-1")
        for tid in ("serial-1", "cloud-1"):
            await pair_with_ecrctl(socket, tid, DOC["qr"])
            await sell(c, tid)
        on_loopback = json.dumps({**QR, "ip": "127.0.0.1", "port": lan_port})
        assert (await c.call("terminal.pair", terminal="lan-1", code=on_loopback))["device_sn"]
        await sell(c, "lan-1")
    assert len(seen) >= 4  # terminal-info, Pair, the confirmation, the sale
    for headers in seen:
        for name in HEADERS:  # the document's own spelling
            assert headers.get(name), (name, headers)
        assert headers["x-device-sn"] == QR["deviceId"]
        assert headers["x-p-business-id"] == QR["businessId"]
        uuid.UUID(headers["x-request-id"])
    assert len({h["x-request-id"] for h in seen}) == len(seen)


async def test_a_strict_gateway_refuses_a_bare_code_pairing_that_cannot_name_the_terminal(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The one call ecrd sends without x-device-sn (a bare code, no SN known): the strict
    gateway refuses it, and the error says which header, as docs/first-contact.md tells."""
    socket, seen, _ = await qr_stack(nursery, tmp_path, business=True)
    async with open_trio_client(socket) as c:
        err = await call_error(c, "terminal.pair", terminal="cloud-1", code=QR["pairCode"])
    assert "x-device-sn" in err.message, err.message
    assert [h.get("x-device-sn") for h in seen] == [None]  # one call, refused
