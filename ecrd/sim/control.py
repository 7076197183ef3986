"""The simulator's control API: JSON over HTTP on loopback, for tests, demos and people.

Endpoints (``{sn}`` is a terminal's serial number; bodies and replies are JSON)::

    GET    /                              the readiness description (same as the CLI line)
    GET    /terminals                     every terminal's state
    GET    /terminals/{sn}                one terminal's state (pairing, pin1, qr, faults...)
    PATCH  /terminals/{sn}                change settings: status_action, pin2_field,
                                          magic_amounts, magic_delay, customer_delay,
                                          reply_salt_reuse, keep_alive (LAN: keep the
                                          HTTP connection open between requests)
    GET    /terminals/{sn}/ledger         the transactions the terminal saw
    GET    /terminals/{sn}/faults         the armed faults
    POST   /terminals/{sn}/faults         arm one: {"name", "params"?, "sticky"?, "actions"?}
    DELETE /terminals/{sn}/faults         disarm all
    DELETE /terminals/{sn}/faults/{name}  disarm one
    POST   /terminals/{sn}/reboot         forget pairing and in-flight work: {"pin1"?}
    POST   /terminals/{sn}/pairing-page   show the pairing page, new pinCode1: {"pin1"?}
    POST   /terminals/{sn}/unplug         serial only: pull the cable
    POST   /terminals/{sn}/replug         serial only: plug it back (new /dev/pts/N)

Errors are ``{"error": "..."}`` with 400 (bad body), 404 (unknown terminal or path),
405 (method) or 409 (unplug on a terminal that has no serial line).

The state shows pinCode1, which the real terminal displays on its pairing page; pinCode2
is never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import trio

from ecrd.sim.codes import valid_code
from ecrd.sim.faults import FaultError, make_fault
from ecrd.sim.http import HttpRequest, HttpResponse, json_response, serve_http
from ecrd.sim.slots import Slot
from ecrd.sim.terminal import PIN2_FIELDS

SETTINGS: dict[str, tuple[tuple[type, ...], Callable[[Any], bool]]] = {
    # name -> (accepted types, check) for PATCH /terminals/{sn}
    "status_action": ((str, type(None)), lambda v: v is None or bool(v)),
    "pin2_field": ((str,), lambda v: v in PIN2_FIELDS),
    "magic_amounts": ((bool,), lambda v: True),
    "magic_delay": ((int, float), lambda v: v >= 0),
    "reply_salt_reuse": ((bool,), lambda v: True),
    "keep_alive": ((bool,), lambda v: True),
}


class Simulated(Protocol):
    """What the control API needs of the simulator (simulator.py's ``Simulator``)."""

    host: str
    slots: list[Slot]

    def describe(self) -> dict[str, Any]: ...

    def slot(self, sn: str) -> Slot: ...


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def state(slot: Slot, host: str) -> dict[str, Any]:
    return slot.terminal.summary() | slot.describe(host)


class Control:
    def __init__(self, sim: Simulated) -> None:
        self.sim = sim

    async def handle(self, request: HttpRequest) -> HttpResponse:
        parts = [p for p in request.path.split("/") if p]
        try:
            body = request.json() if request.method in ("POST", "PATCH") else None
        except ValueError:
            return json_response(400, {"error": "the body is not JSON"})
        if body is not None and not isinstance(body, dict):
            return json_response(400, {"error": "the body must be a JSON object"})
        try:
            status, result = await self._route(request.method, parts, body or {})
        except ControlError as exc:
            return json_response(exc.status, {"error": str(exc)})
        return json_response(status, result)

    async def _route(self, method: str, parts: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        if not parts:
            _allow(method, "GET")
            return 200, self.sim.describe()
        if parts[0] != "terminals":
            raise ControlError(404, "no such path")
        if len(parts) == 1:
            _allow(method, "GET")
            return 200, [state(s, self.sim.host) for s in self.sim.slots]
        try:
            slot = self.sim.slot(parts[1])
        except KeyError:
            raise ControlError(404, f"no terminal {parts[1]!r}") from None
        rest = parts[2:]
        if not rest:
            if method == "PATCH":
                self._patch(slot, body)
            else:
                _allow(method, "GET")
            return 200, state(slot, self.sim.host)
        return await self._terminal_route(method, slot, rest, body)

    async def _terminal_route(
        self, method: str, slot: Slot, rest: list[str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        t = slot.terminal
        what = rest[0]
        if what == "ledger" and len(rest) == 1:
            _allow(method, "GET")
            return 200, t.payments.ledger
        if what == "faults":
            return self._faults(method, slot, rest[1:], body)
        if len(rest) != 1 or what not in ("reboot", "pairing-page", "unplug", "replug"):
            raise ControlError(404, "no such path")
        _allow(method, "POST")
        pin1 = body.get("pin1")
        if pin1 is not None and not valid_code(pin1):
            raise ControlError(400, "pin1 must be 6 characters, A-Z and 0-9")
        if what == "reboot":
            t.reboot(pin1)
        elif what == "pairing-page":
            t.show_pairing_page(pin1)
        elif slot.serial is None:
            raise ControlError(409, f"terminal {t.sn} has no serial line")
        elif what == "unplug":
            await slot.serial.unplug()
        else:
            await slot.serial.replug()
        return 200, state(slot, self.sim.host)

    def _faults(
        self, method: str, slot: Slot, rest: list[str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        book = slot.terminal.faults
        if rest:
            _allow(method, "DELETE")
            return 200, {"cleared": book.clear(rest[0])}
        if method == "GET":
            return 200, [f.to_obj() for f in book.armed()]
        if method == "DELETE":
            return 200, {"cleared": book.clear()}
        _allow(method, "POST")
        try:
            fault = make_fault(
                str(body.get("name")),
                sticky=bool(body.get("sticky", False)),
                actions=body.get("actions"),
                params=body.get("params") or {},
            )
        except (FaultError, TypeError, AttributeError) as exc:
            raise ControlError(400, str(exc)) from exc
        return 201, book.arm(fault).to_obj()

    def _patch(self, slot: Slot, body: dict[str, Any]) -> None:
        t = slot.terminal
        for key, value in body.items():
            if key == "customer_delay":
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise ControlError(400, "customer_delay must be a non-negative number")
                t.payments.customer_delay = float(value)
                continue
            rule = SETTINGS.get(key)
            if rule is None:
                raise ControlError(400, f"unknown setting {key!r}")
            types, check = rule
            if not isinstance(value, types) or not check(value):
                raise ControlError(400, f"bad value for {key}")
            setattr(t, key, value)


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise ControlError(405, f"use {allowed}")


async def serve_control(
    sim: Simulated,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control API for ``sim``; reports the bound port."""
    control = Control(sim)
    await serve_http(control.handle, host, port, name="control API", task_status=task_status)
