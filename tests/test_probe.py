"""``terminal.probe``: finds the settings a terminal answers under, sending only DeviceInfo
under the pairing code, on links of its own, within its time limit; the terminal's entry
stays in force whatever happens (found, nothing found, cancelled). Then the found settings
pair and sell."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trio
from stack import BUSINESS, PIN1, SIM_KEYS, SN, Stack, config_data, wait_link_up

from ecrd.client import TrioClient, open_trio_client
from ecrd.config import parse
from ecrd.daemon import Daemon
from ecrd.protocol.frames import FrameFormat
from ecrd.sim.simulator import Simulator
from ecrd.sim.terminal import SimTerminal

WONDER_TERMINAL = "/wonder-terminal"


def self_signed(tmp: Path) -> tuple[Any, Path]:
    """A server TLS context with a certificate for 127.0.0.1, and the certificate file."""
    import ssl

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


async def probe_stack(
    nursery: trio.Nursery,
    tmp: Path,
    *,
    scheme: str = "v2",
    lan: dict[str, Any] | None = None,
    **entry: Any,
) -> Stack:
    """The simulator's terminals speak ``scheme`` (LAN with ``lan``: path, tls, port); the
    daemon's entries are the defaults plus ``entry`` (the LAN one)."""
    sim = Simulator(state_dir=tmp / "sim", business_id=BUSINESS, control_port=None)
    for link in ("lan", "serial", "cloud"):
        term = SimTerminal(
            SN[link], business_id=BUSINESS, pin1=PIN1[link], keys=SIM_KEYS, scheme=scheme,
            magic_delay=0.3,
        )  # fmt: skip
        if link == "lan":
            sim.add_lan(term, **(lan or {}))
        else:
            getattr(sim, f"add_{link}")(term)
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp)
    data["terminal"][0].update(entry)
    (tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
    cfg = parse(data, str(tmp / "ecrd.toml"))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    return Stack(sim, daemon, cfg.daemon.socket, desc, tmp)


async def apply_found(stack: Stack, c: TrioClient, tid: str, found: dict[str, Any]) -> None:
    """Paste the found keys into the entry and reload, as the admin would."""
    path = stack.tmp / "ecrd.toml"
    data = tomllib.loads(path.read_text())
    entry = next(t for t in data["terminal"] if t["id"] == tid)
    entry.update(found)
    path.write_text(tomli_w.dumps(data))
    before = stack.daemon.terminals[tid]
    await c.call("config.reload")
    with trio.fail_after(5):
        while stack.daemon.terminals.get(tid) in (None, before):
            await trio.sleep(0.01)


async def pair_and_sell(stack: Stack, c: TrioClient, link: str, ref: str) -> None:
    tid = f"{link}-1"
    await c.call("terminal.pair", terminal=tid, code=PIN1[link])
    tx = await c.call("sale", terminal=tid, amount="3.00", currency="HKD", reference_id=ref)
    assert tx["state"] == "succeeded" and stack.charges(link, ref) == 1


def only_device_info_was_sent(stack: Stack, link: str) -> None:
    sim = stack.terminal(link)
    assert sim.payments.ledger == [] and sim.pairing_state == "unpaired"


async def test_probe_finds_the_lan_path_then_pairs_and_sells(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await probe_stack(nursery, tmp_path, lan={"path": WONDER_TERMINAL})
    async with open_trio_client(stack.socket) as c:
        result = await c.call("terminal.probe", terminal="lan-1", code=PIN1["lan"])
        assert result["found"]["path"] == WONDER_TERMINAL
        assert result["found"]["crypto"] == "v2" and result["found"]["tls"] is False
        assert result["device_sn"] == SN["lan"] and result["terminal"] == "lan-1"
        assert result["tried"][0]["result"].startswith("no reply")
        assert result["tried"][-1]["result"] == "answered"
        only_device_info_was_sent(stack, "lan")
        await apply_found(stack, c, "lan-1", result["found"])
        await pair_and_sell(stack, c, "lan", "p-path")


async def test_probe_finds_legacy_crypto_on_lan_and_cloud_and_each_then_sells(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await probe_stack(nursery, tmp_path, scheme="legacy")
    async with open_trio_client(stack.socket) as c:
        for link in ("lan", "cloud"):
            result = await c.call("terminal.probe", terminal=f"{link}-1", code=PIN1[link])
            assert result["found"] and result["found"]["crypto"] == "legacy", result
            results = [t["result"] for t in result["tried"]]
            if link == "lan":  # a v2 reply that did not decrypt proved the address
                undecrypted = next(t for t in result["tried"] if "does not decrypt" in t["result"])
                assert undecrypted["settings"] == {**result["found"], "crypto": "v2"}
            else:  # the gateway finds no terminal that this code (in v2) opens
                assert len(results) == 2 and "accepts this pairing code" in results[0]
            only_device_info_was_sent(stack, link)
            await apply_found(stack, c, f"{link}-1", result["found"])
            await pair_and_sell(stack, c, link, f"p-legacy-{link}")


async def test_probe_finds_https_and_says_when_it_needs_a_ca_file(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server, cert = self_signed(tmp_path)
    stack = await probe_stack(nursery, tmp_path, lan={"tls": server})
    async with open_trio_client(stack.socket) as c:
        result = await c.call("terminal.probe", terminal="lan-1", code=PIN1["lan"])
        assert result["found"]
        assert result["found"]["tls"] is True
        assert result["tried"][-1]["result"].startswith("https, needs ca_file")
        await apply_found(stack, c, "lan-1", {**result["found"], "ca_file": str(cert)})
        verified = await c.call("terminal.probe", terminal="lan-1", code=PIN1["lan"])
        assert {"settings": verified["found"], "result": "answered"} in verified["tried"]
        assert not any("ca_file" in t["result"] for t in verified["tried"])
        only_device_info_was_sent(stack, "lan")
        await pair_and_sell(stack, c, "lan", "p-https")


async def test_probe_finds_the_port_8443_when_the_entry_names_another(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the simulator binds
        try:
            s.bind(("127.0.0.1", 8443))
        except OSError:
            pytest.skip("port 8443 is taken on this machine")
    stack = await probe_stack(nursery, tmp_path, lan={"port": 8443}, port=9)
    async with open_trio_client(stack.socket) as c:
        result = await c.call("terminal.probe", terminal="lan-1", code=PIN1["lan"])
    assert result["found"]["port"] == 8443


async def test_nothing_answering_ends_at_the_time_limit_with_the_entry_in_force(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await probe_stack(nursery, tmp_path)
    # Each try waits its whole timeout.
    stack.terminal("lan").arm("never_answer", sticky=True, actions=["DeviceInfo"])
    term = stack.daemon.terminals["lan-1"]
    link, url = term.links["lan"], term.links["lan"].url  # type: ignore[attr-defined]
    async with open_trio_client(stack.socket) as c:
        with trio.fail_after(10):
            result = await c.call("terminal.probe", terminal="lan-1", code=PIN1["lan"], timeout_s=2)
        assert result["found"] is None and result["device_sn"] is None
        assert result["tried"][-1]["result"].startswith("stopped at the time limit")
        row = next(r for r in await c.call("terminal.list") if r["id"] == "lan-1")
    assert not row["busy"]
    assert term.links["lan"] is link and link.url == url  # type: ignore[attr-defined]
    assert stack.daemon.terminals["lan-1"] is term


async def test_a_cancelled_probe_leaves_the_entry_in_force_and_the_terminal_free(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await probe_stack(nursery, tmp_path, port=9)
    term = stack.daemon.terminals["lan-1"]
    link, url = term.links["lan"], term.links["lan"].url  # type: ignore[attr-defined]
    async with open_trio_client(stack.socket) as c:
        with trio.move_on_after(0.5):
            await c.call("terminal.probe", terminal="lan-1", code=PIN1["lan"])
    with trio.fail_after(5):
        while term.busy_with is not None:
            await trio.sleep(0.02)
    assert term.links["lan"] is link and link.url == url  # type: ignore[attr-defined]
    assert term.cfg.port == 9 and stack.daemon.terminals["lan-1"] is term
    async with open_trio_client(stack.socket) as c:
        await apply_found(stack, c, "lan-1", {"port": stack.description["terminals"][0]["port"]})
        await pair_and_sell(stack, c, "lan", "after-cancel")


async def serial_stack(
    nursery: trio.Nursery, tmp: Path, *, scheme: str = "v2", **line: Any
) -> Stack:
    """A serial terminal with ``line`` (fmt, baudrate; strict about its cmd); the daemon's
    serial entry has the defaults, with short tries."""
    sim = Simulator(state_dir=tmp / "sim", business_id=BUSINESS, control_port=None)
    for link in ("lan", "serial", "cloud"):
        term = SimTerminal(
            SN[link], business_id=BUSINESS, pin1=PIN1[link], keys=SIM_KEYS, scheme=scheme,
            magic_delay=0.3,
        )  # fmt: skip
        if link == "serial":
            sim.add_serial(term, strict_cmd=True, **line)
        else:
            getattr(sim, f"add_{link}")(term)
    desc = await nursery.start(sim.run)
    data = config_data(desc, tmp)
    data["terminal"][1]["info_timeout_s"] = 0.5  # each serial try waits this long
    (tmp / "ecrd.toml").write_text(tomli_w.dumps(data))
    cfg = parse(data, str(tmp / "ecrd.toml"))
    daemon = Daemon(cfg)
    await nursery.start(daemon.run)
    stack = Stack(sim, daemon, cfg.daemon.socket, desc, tmp)
    async with open_trio_client(stack.socket) as c:
        await wait_link_up(c, "serial-1")
    return stack


@pytest.mark.parametrize(
    ("crc", "byteorder", "cmd"),
    [("crc32c", "big", 0x0006), ("crc32", "little", 0x0101), ("crc32-mpeg2", "big", 0x0006)],
)
async def test_probe_finds_serial_framing_then_pairs_and_sells(
    nursery: trio.Nursery, tmp_path: Path, crc: str, byteorder: str, cmd: int
) -> None:
    fmt = FrameFormat(cmd=cmd, byteorder=byteorder, crc=crc)  # type: ignore[arg-type]
    stack = await serial_stack(nursery, tmp_path, fmt=fmt)
    async with open_trio_client(stack.socket) as c:
        result = await c.call("terminal.probe", terminal="serial-1", code=PIN1["serial"])
        found = result["found"]
        assert found is not None, result["tried"][-3:]
        assert (found["frame_crc"], found["frame_byteorder"], found["frame_cmd"]) == (
            crc, byteorder, cmd,
        )  # fmt: skip
        assert found["baudrate"] == 115200 and found["crypto"] == "v2"
        only_device_info_was_sent(stack, "serial")
        await apply_found(stack, c, "serial-1", found)
        await wait_link_up(c, "serial-1")
        await pair_and_sell(stack, c, "serial", f"p-{crc}")


async def test_probe_finds_the_baud_rate_of_a_terminal_that_garbles_any_other(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # 38400, the third speed tried: each window is paced at its speed's line rate, so the
    # slowest, 9600 baud, is left to bench/probe.py (its rows time every speed).
    stack = await serial_stack(nursery, tmp_path, baudrate=38400)
    async with open_trio_client(stack.socket) as c:
        result = await c.call("terminal.probe", terminal="serial-1", code=PIN1["serial"])
        assert result["found"] is not None and result["found"]["baudrate"] == 38400
        garbled = [t for t in result["tried"] if t["result"].endswith("no reply")]
        assert [t["settings"]["baudrate"] for t in garbled] == [115200, 57600]
        assert result["device_sn"] == SN["serial"]
        only_device_info_was_sent(stack, "serial")
        await apply_found(stack, c, "serial-1", result["found"])
        await wait_link_up(c, "serial-1")
        await pair_and_sell(stack, c, "serial", "p-baud")


async def test_probe_finds_legacy_crypto_on_serial(nursery: trio.Nursery, tmp_path: Path) -> None:
    stack = await serial_stack(nursery, tmp_path, scheme="legacy")
    async with open_trio_client(stack.socket) as c:
        result = await c.call("terminal.probe", terminal="serial-1", code=PIN1["serial"])
    assert [t["settings"]["crypto"] for t in result["tried"]] == ["v2", "legacy"]
    assert "does not decrypt" in result["tried"][0]["result"]
    assert result["found"]["crypto"] == "legacy"


async def test_a_serial_probe_gives_the_port_back_found_or_cancelled(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack = await serial_stack(nursery, tmp_path)
    sim = stack.terminal("serial")
    sim.arm("never_answer", sticky=True, actions=["DeviceInfo"])  # every try waits it out
    term = stack.daemon.terminals["serial-1"]
    own = term.links["serial"]
    async with open_trio_client(stack.socket) as c:
        with trio.move_on_after(1.2):  # the client gives up mid-probe
            await c.call("terminal.probe", terminal="serial-1", code=PIN1["serial"])
    with trio.fail_after(10):
        while term.busy_with is not None or own.state != "up":
            await trio.sleep(0.05)
    assert term.links["serial"] is own and term.cfg.baudrate == 115200
    sim.faults.clear()
    async with open_trio_client(stack.socket) as c:
        result = await c.call("terminal.probe", terminal="serial-1", code=PIN1["serial"])
        assert len(result["tried"]) == 1 and result["found"]["baudrate"] == 115200
        await wait_link_up(c, "serial-1")
        await pair_and_sell(stack, c, "serial", "p-given-back")
    assert term.links["serial"] is own


async def test_ecrctl_probe_shows_each_try_and_ends_with_the_toml_to_paste(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    import json
    import sys

    stack = await probe_stack(nursery, tmp_path, lan={"path": WONDER_TERMINAL})
    ctl = [str(Path(sys.executable).parent / "ecrctl"), "--socket", stack.socket, "probe"]
    text = await trio.run_process(
        [*ctl, "lan-1", PIN1["lan"]], capture_stdout=True, capture_stderr=True
    )
    lines = text.stderr.decode().splitlines()
    assert sum("no reply" in line for line in lines) >= 1
    assert any(line.strip().endswith(": answered") for line in lines)
    assert 'path = "/wonder-terminal"' in text.stdout.decode()
    tomllib.loads(text.stdout.decode().split("\n\n", 1)[1])  # pastes as TOML
    as_json = await trio.run_process(
        [*ctl, "lan-1", PIN1["lan"], "--json"], capture_stdout=True, capture_stderr=True
    )
    result = json.loads(as_json.stdout)
    assert result["found"]["path"] == WONDER_TERMINAL and result["tried"]
