"""The terminal's LAN endpoint: ``POST /v2/wonder/payment/ecr`` on loopback (protocol.md §1).

One request envelope in the JSON body, one reply envelope back as ``application/json``.
Connections are served concurrently, so an Abort on a second connection reaches the
terminal while a Sale on the first still waits for the customer.

What a client sees besides a 200 with an envelope:

* 404 / 405 for another path or method, 400 for a body that is not an envelope, each
  with a JSON body ``{"error": "..."}`` (not an envelope);
* the TCP connection closed without a response: the ``drop`` fault (after charging), or a
  reboot while the request was in flight.

Closing the connection while the terminal holds the request cancels it (not charged).

With ``wrap`` the reply envelope comes wrapped as the cloud gateway wraps it,
``{"code": 0, "message": "success", "data": <envelope>}``: a reading of the vendor's LAN
section that a real terminal may follow (the errors above stay as they are).
"""

from __future__ import annotations

import json
import logging
import ssl
from functools import partial
from typing import Final

import trio

from ecrd.protocol.envelope import Envelope, MalformedEnvelope
from ecrd.sim.http import HttpRequest, HttpResponse, json_response, serve_http
from ecrd.sim.terminal import SimTerminal

log = logging.getLogger("ecrd.sim.lan")

LAN_PATH: Final = "/v2/wonder/payment/ecr"


async def serve_lan(
    terminal: SimTerminal,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    path: str = LAN_PATH,
    tls: ssl.SSLContext | None = None,
    wrap: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``terminal`` over HTTP; reports the bound port, which the terminal then
    advertises in DeviceInfo and its QR code (unless it was given a port already).
    ``wrap``: replies wrapped as the cloud's (``{code, message, data}``)."""

    async def handle(request: HttpRequest) -> HttpResponse:
        if request.path != path:
            return json_response(404, {"error": f"no such path; the ECR endpoint is {path}"})
        if request.method != "POST":
            return json_response(405, {"error": "use POST"})
        try:
            envelope = Envelope.from_bytes(request.body)
        except MalformedEnvelope as exc:
            return json_response(400, {"error": str(exc)})
        problem = terminal.check_envelope(envelope)
        if problem is not None:
            return json_response(400, {"error": problem})
        reply = await terminal.handle(envelope, "lan")
        if reply.envelope is None:
            return HttpResponse(0, drop=True)
        body = reply.envelope.to_bytes()
        if wrap:
            data = {"code": 0, "message": "success", "data": reply.envelope.to_obj()}
            body = json.dumps(data, separators=(",", ":")).encode()
        return HttpResponse(
            200,
            body,
            bytes_per_s=reply.bytes_per_s,
            close=not terminal.keep_alive,
        )

    async with trio.open_nursery() as nursery:
        serve = partial(serve_http, handle, host, port, name=f"lan {terminal.sn}", tls=tls)
        bound: int = await nursery.start(serve)
        if terminal.port is None:
            terminal.ip, terminal.port = host, bound
        task_status.started(bound)
