"""The whole simulator (several terminals, gateway) driven through its control API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ecrd.protocol.crypto import KeyCache
from ecrd.sim import SimTerminal, Simulator
from ecrd.sim.probe import Probe, SerialProbe, call, lan_exchange, pair, serial_exchange

KEYS = KeyCache()
LAN_SN, SERIAL_SN, CLOUD_SN = "NEXGO-N96-1170270945", "NEXGO-N96-1170270946", "PAX-A930-1"


def terminal(sn: str, pin1: str) -> SimTerminal:
    return SimTerminal(sn, pin1=pin1, keys=KEYS, reply_salt_reuse=True)


@pytest.fixture
async def sim(nursery: trio.Nursery, tmp_path: Path) -> Simulator:
    sim = Simulator(state_dir=tmp_path)
    sim.add_lan(terminal(LAN_SN, "111111"))
    sim.add_serial(terminal(SERIAL_SN, "222222"))
    sim.add_cloud(terminal(CLOUD_SN, "333333"))
    await nursery.start(sim.run)
    return sim


@pytest.fixture
async def api(sim: Simulator) -> Any:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim.control_port}") as client:
        yield client


async def test_description_names_everything_a_client_needs(sim: Simulator, tmp_path: Path) -> None:
    desc = sim.describe()
    assert desc["control_url"] == f"http://127.0.0.1:{sim.control_port}"
    assert desc["cloud"]["command_url"].endswith(
        "/svc/payment/public/api/v1/openapi/terminal/command"
    )
    assert desc["cloud"]["info_url"].endswith("/svc/payment/public/api/v1/openapi/terminal/info")
    lan, serial, cloud = desc["terminals"]
    assert lan["url"] == f"http://127.0.0.1:{lan['port']}/v2/wonder/payment/ecr"
    assert serial["device"] == str(tmp_path / "ttyECR0") and os.path.islink(serial["device"])
    assert cloud["link"] == "cloud" and "url" not in cloud
    for t in (lan, serial, cloud):
        assert json.loads(t["qr"])["pairCode"] == t["pin1"]
        assert t["scheme"] == "v2"


async def test_state_of_every_terminal(api: httpx.AsyncClient) -> None:
    response = await api.get("/terminals")
    assert response.status_code == 200
    states = response.json()
    assert [s["sn"] for s in states] == [LAN_SN, SERIAL_SN, CLOUD_SN]
    assert states[0]["pairing"] == "unpaired" and states[0]["pin1"] == "111111"
    assert "pin2" not in json.dumps(states).replace("pin2_field", "")
    assert (await api.get("/")).json()["terminals"][0]["sn"] == LAN_SN


async def test_armed_fault_declines_the_next_sale(sim: Simulator, api: httpx.AsyncClient) -> None:
    url = sim.describe()["terminals"][0]["url"]
    probe = await pair(lan_exchange(url), "111111", keys=KEYS)
    armed = await api.post(f"/terminals/{LAN_SN}/faults", json={"name": "decline"})
    assert armed.status_code == 201 and armed.json()["sticky"] is False
    assert (await api.get(f"/terminals/{LAN_SN}/faults")).json()[0]["name"] == "decline"
    body = {"referenceID": "k-1", "amount": "1.00", "currency": "HKD"}
    assert (await call(lan_exchange(url), probe, "Sale", body))["errorCode"] == "DECLINED"
    assert (await api.get(f"/terminals/{LAN_SN}/faults")).json() == []
    ledger = (await api.get(f"/terminals/{LAN_SN}/ledger")).json()
    assert [(e["referenceID"], e["charged"]) for e in ledger] == [("k-1", False)]


async def test_faults_can_be_cleared(api: httpx.AsyncClient) -> None:
    path = f"/terminals/{LAN_SN}/faults"
    await api.post(path, json={"name": "delay", "sticky": True, "params": {"seconds": 9}})
    await api.post(path, json={"name": "wrong_key", "actions": ["DeviceInfo"]})
    assert (await api.delete(path + "/delay")).json() == {"cleared": 1}
    assert (await api.delete(path)).json() == {"cleared": 1}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "meteor"}, 400),
        ({"name": "delay", "params": {"seconds": -1}}, 400),
        ({"name": "delay", "params": {"hours": 1}}, 400),
        ([1, 2], 400),
    ],
)
async def test_bad_fault_requests_are_400(api: httpx.AsyncClient, body: Any, status: int) -> None:
    response = await api.post(f"/terminals/{LAN_SN}/faults", json=body)
    assert response.status_code == status and "error" in response.json()


async def test_reboot_and_pairing_page(sim: Simulator, api: httpx.AsyncClient) -> None:
    url = sim.describe()["terminals"][0]["url"]
    await pair(lan_exchange(url), "111111", keys=KEYS)
    state = (await api.post(f"/terminals/{LAN_SN}/pairing-page", json={"pin1": "444444"})).json()
    assert state["pin1"] == "444444" and state["pin1_valid"] and state["pairing"] == "paired"
    state = (await api.post(f"/terminals/{LAN_SN}/reboot", json={"pin1": "555555"})).json()
    assert state["pin1"] == "555555" and state["pairing"] == "unpaired"
    await pair(lan_exchange(url), "555555", keys=KEYS)
    random_pin = (await api.post(f"/terminals/{LAN_SN}/reboot")).json()["pin1"]
    assert len(random_pin) == 6 and random_pin.isdigit()


async def test_settings_can_be_changed(sim: Simulator, api: httpx.AsyncClient) -> None:
    patch = {"status_action": "TransactionStatus", "pin2_field": "newPinCode", "customer_delay": 0}
    response = await api.patch(f"/terminals/{LAN_SN}", json=patch)
    assert response.status_code == 200
    assert sim.terminal(LAN_SN).status_action == "TransactionStatus"
    url = sim.describe()["terminals"][0]["url"]
    paired = await call(lan_exchange(url), Probe("111111", keys=KEYS), "Pair", {"pairUuid": "u"})
    assert "newPinCode" in paired
    bad = await api.patch(f"/terminals/{LAN_SN}", json={"pin2_field": "secret"})
    assert bad.status_code == 400
    assert (await api.patch(f"/terminals/{LAN_SN}", json={"colour": 1})).status_code == 400


async def test_unplug_and_replug_over_the_api(sim: Simulator, api: httpx.AsyncClient) -> None:
    device = sim.describe()["terminals"][1]["device"]
    state = (await api.post(f"/terminals/{SERIAL_SN}/unplug")).json()
    assert state["plugged"] is False and not os.path.lexists(device)
    state = (await api.post(f"/terminals/{SERIAL_SN}/replug")).json()
    assert state["plugged"] is True and os.path.realpath(device) == state["slave"]
    async with SerialProbe(device) as line:
        body = await call(serial_exchange(line), Probe("222222", keys=KEYS), "DeviceInfo")
    assert body["deviceSn"] == SERIAL_SN
    assert (await api.post(f"/terminals/{LAN_SN}/unplug")).status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/terminals/NOPE", 404),
        ("GET", f"/terminals/{LAN_SN}/nope", 404),
        ("DELETE", "/terminals", 405),
        ("GET", f"/terminals/{LAN_SN}/reboot", 405),
    ],
)
async def test_api_errors(api: httpx.AsyncClient, method: str, path: str, status: int) -> None:
    response = await api.request(method, path)
    assert response.status_code == status and "error" in response.json()


async def test_non_json_body_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(f"/terminals/{LAN_SN}/faults", content=b"{nope")
    assert response.status_code == 400
