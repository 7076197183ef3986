"""A fake Wonder cloud gateway that relays to simulated terminals (protocol.md §5).

Endpoints (POST, JSON envelope body):

* ``INFO_PATH`` — terminal info: a ``ConnectionInfo`` (or ``DeviceInfo``) sealed under the
  terminal's pinCode1. Needs ``x-p-business-id`` and ``x-request-id``. With an
  ``x-device-sn`` header that terminal is used; without one, the gateway picks, among the
  business's terminals, the one whose currently valid PIN opens the request (how a real
  gateway could find a terminal from nothing but a pairing code).
* ``COMMAND_PATH`` — any action for one terminal. Needs ``x-p-business-id``,
  ``x-device-sn`` and ``x-request-id``. The vendor does not document this URL for v2; the
  daemon's ``command_url`` points here.

Replies: ``{"code": 0, "message": "success", "data": <terminal's envelope>}`` with HTTP
200, or ``{"code": N, "message": "...", "data": null}`` with the HTTP status in
``ERRORS``. Every ``x-request-id`` must be a fresh UUID: a repeated one is refused (409)
without reaching the terminal, so a client that resends blindly is caught.

``strict`` (``sim/strict.py``): all three headers on every call, terminal-info included,
as the vendor's header table marks them required; the envelope as the terminal's own
strictness says (400/40002).
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

import trio

from ecrd.protocol.envelope import Envelope, MalformedEnvelope
from ecrd.sim import strict
from ecrd.sim.http import HttpRequest, HttpResponse, json_response, serve_http
from ecrd.sim.terminal import SimTerminal

log = logging.getLogger("ecrd.sim.cloud")

INFO_PATH: Final = "/svc/payment/public/api/v1/openapi/terminal/info"
COMMAND_PATH: Final = "/svc/payment/public/api/v1/openapi/terminal/command"
INFO_ACTIONS: Final = frozenset({"ConnectionInfo", "DeviceInfo"})
REMEMBERED_REQUEST_IDS: Final = 10_000

# name -> (HTTP status, code) of every refusal the gateway makes
ERRORS: Final = {
    "bad_header": (400, 40001),
    "bad_body": (400, 40002),
    "info_action": (400, 40003),
    "business_mismatch": (403, 40301),
    "not_found": (404, 40400),
    "unknown_device": (404, 40401),
    "method": (405, 40500),
    "duplicate_request_id": (409, 40901),
    "terminal_dropped": (502, 50201),
    "terminal_timeout": (504, 50401),
}


def refusal(name: str, message: str) -> HttpResponse:
    status, code = ERRORS[name]
    return json_response(status, {"code": code, "message": message, "data": None})


class Gateway:
    """Relays cloud calls to the terminals it knows (looked up by SN on every call)."""

    def __init__(
        self, terminals: Iterable[SimTerminal], *, timeout: float = 300.0, strict: bool = False
    ) -> None:
        self._terminals = terminals
        self.timeout = timeout
        self.strict = strict
        self._seen: OrderedDict[str, None] = OrderedDict()

    def _by_sn(self, sn: str) -> SimTerminal | None:
        return next((t for t in self._terminals if t.sn == sn), None)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        if request.path not in (INFO_PATH, COMMAND_PATH):
            return refusal("not_found", f"no such path {request.path!r}")
        if request.method != "POST":
            return refusal("method", "use POST")
        needed = ["x-p-business-id", "x-request-id"]
        if request.path == COMMAND_PATH or self.strict:
            needed.append("x-device-sn")
        for name in needed:
            if not request.headers.get(name):
                return refusal("bad_header", f"header {name} is required")
        request_id = request.headers["x-request-id"]
        try:
            uuid.UUID(request_id)
        except ValueError:
            return refusal("bad_header", "x-request-id must be a UUID")
        if request_id in self._seen:
            return refusal("duplicate_request_id", f"x-request-id {request_id} was already used")
        self._remember(request_id)
        try:
            envelope = Envelope.from_bytes(request.body)
        except MalformedEnvelope as exc:
            return refusal("bad_body", str(exc))
        if self.strict and (problem := strict.envelope_problem(envelope)):
            return refusal("bad_body", problem)
        business = request.headers["x-p-business-id"]
        if request.path == INFO_PATH and envelope.action not in INFO_ACTIONS:
            return refusal("info_action", "terminal/info only relays ConnectionInfo")
        found = await self._find(request, envelope, business)
        if isinstance(found, HttpResponse):
            return found
        return await self._relay(found, envelope)

    def _remember(self, request_id: str) -> None:
        self._seen[request_id] = None
        while len(self._seen) > REMEMBERED_REQUEST_IDS:
            self._seen.popitem(last=False)

    async def _find(
        self, request: HttpRequest, envelope: Envelope, business: str
    ) -> SimTerminal | HttpResponse:
        sn = request.headers.get("x-device-sn")
        if sn:
            terminal = self._by_sn(sn)
            if terminal is None:
                return refusal("unknown_device", f"no device {sn!r}")
        else:  # terminal/info without an SN: find the terminal by the key that opens it
            candidates = [t for t in self._terminals if t.business_id == business]
            terminal = None
            for candidate in candidates:
                if await candidate.opens(envelope):
                    terminal = candidate
                    break
            if terminal is None:
                return refusal(
                    "unknown_device", "no terminal of this business accepts this pairing code"
                )
        mismatch = terminal.faults.take(envelope.action, "cloud", ("business_mismatch",))
        if terminal.business_id != business or mismatch:
            return refusal("business_mismatch", "the device is not bound to this business")
        terminal.stats.cloud_calls += 1
        terminal.stats.cloud_calls_without_sn += not sn
        return terminal

    async def _relay(self, terminal: SimTerminal, envelope: Envelope) -> HttpResponse:
        with trio.move_on_after(self.timeout):
            reply = await terminal.handle(envelope, "cloud")
            if reply.envelope is None:
                return refusal("terminal_dropped", "the terminal closed the connection")
            data = reply.envelope.to_obj()
            return json_response(200, {"code": 0, "message": "success", "data": data})
        return refusal("terminal_timeout", "the terminal did not answer in time")


async def serve_cloud(
    terminals: Iterable[SimTerminal],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    timeout: float = 300.0,
    strict: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the gateway for ``terminals`` (a live collection: terminals added later are
    found too); reports the bound port. ``timeout`` is the gateway's own wait for a
    terminal's answer (then 504); ``strict``: every header the document requires."""
    gateway = Gateway(terminals, timeout=timeout, strict=strict)
    await serve_http(gateway.handle, host, port, name="cloud gateway", task_status=task_status)
