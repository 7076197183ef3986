"""A minimal ECR client for poking the simulator: seal, send, open. Used by its tests.

Built only from ``ecrd.protocol`` plus httpx (LAN, cloud) and a raw tty fd (serial). It is
deliberately not the daemon's transport: no retries, no journal, no money safety; every
error surfaces as the exception that caused it, so a test can assert on it.
"""

from __future__ import annotations

import functools
import os
import ssl
import tty
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import httpx
import trio

from ecrd.protocol import crypto
from ecrd.protocol.crypto import KeyCache, Scheme
from ecrd.protocol.envelope import PIN_FIELDS, Envelope, check_response, request_message
from ecrd.protocol.frames import FrameDecoder, FrameFormat, encode_frame

_SALTS: dict[str, bytes] = {}


@attrs.frozen
class Sent:
    envelope: Envelope
    request_id: str


class Probe:
    """Seals requests and opens replies under one PIN."""

    def __init__(
        self,
        pin: str,
        *,
        scheme: Scheme = "v2",
        keys: KeyCache | None = None,
        client_sn: str = "POS-PROBE",
    ) -> None:
        self.pin = pin
        self.scheme: Scheme = scheme
        self.keys = keys if keys is not None else KeyCache()
        self.client_sn = client_sn

    def __repr__(self) -> str:
        return f"<Probe {self.scheme}>"

    async def seal(self, action: str, body: dict[str, Any] | None = None) -> Sent:
        message = request_message(body, self.client_sn)
        data = await trio.to_thread.run_sync(self._seal, message)
        return Sent(Envelope(action, data), message["header"]["requestID"])

    def _seal(self, message: dict[str, Any]) -> str:
        plaintext = crypto.dumps(message)
        if self.scheme == "legacy":
            return crypto.seal_legacy(plaintext, self.pin)
        # One salt per PIN for the whole process: every probe after the first one with the
        # same PIN seals without a key derivation (tests create many probes).
        salt = _SALTS.setdefault(self.pin, os.urandom(crypto.SALT_LEN))
        return crypto.seal_v2(plaintext, self.keys.get(self.pin, salt), salt)

    async def open_message(self, reply: Envelope) -> dict[str, Any]:
        """The whole decrypted reply; raises ``crypto.WrongKey`` under another key."""
        return await trio.to_thread.run_sync(
            lambda: crypto.open_(reply.data, self.pin, self.scheme, keys=self.keys)
        )

    async def open(self, reply: Envelope, sent: Sent, server_sn: str | None = None) -> Any:
        """The reply body, checked against the request (raises ``StaleResponse``...)."""
        return check_response(await self.open_message(reply), sent.request_id, server_sn)


@functools.cache
def _tls() -> ssl.SSLContext:
    # Building a client loads the CA bundle (~50 ms) unless it is handed a context; the
    # probe builds one client per exchange, so it shares one context.
    return ssl.create_default_context()


async def post_lan(url: str, envelope: Envelope, *, timeout: float = 10.0) -> Envelope:
    """One exchange over LAN, on a fresh connection (as the daemon does it)."""
    async with httpx.AsyncClient(timeout=timeout, verify=_tls()) as client:
        response = await client.post(url, json=envelope.to_obj())
        response.raise_for_status()
        return Envelope.from_obj(response.json())


async def post_cloud(
    url: str,
    envelope: Envelope,
    *,
    business_id: str,
    device_sn: str | None,
    request_id: str | None = None,
    timeout: float = 10.0,
) -> httpx.Response:
    headers = {"x-p-business-id": business_id, "x-request-id": request_id or _uuid()}
    if device_sn is not None:
        headers["x-device-sn"] = device_sn
    async with httpx.AsyncClient(timeout=timeout, verify=_tls()) as client:
        return await client.post(url, json=envelope.to_obj(), headers=headers)


def _uuid() -> str:
    return str(uuid.uuid4())


class SerialProbe:
    """The ECR end of a serial line: opens the tty raw and speaks frames."""

    def __init__(self, path: str, fmt: FrameFormat | None = None) -> None:
        self.fmt = fmt or FrameFormat()
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        self.stream = trio.lowlevel.FdStream(fd)
        self.decoder = FrameDecoder(self.fmt)
        self._frames: list[Envelope] = []

    async def send(self, envelope: Envelope) -> None:
        await self.stream.send_all(encode_frame(envelope.to_bytes(), self.fmt))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> Envelope:
        """The next reply frame's envelope (garbage and bad frames are skipped)."""
        while not self._frames:
            chunk = await self.stream.receive_some(4096)
            if not chunk:
                raise trio.EndOfChannel("the line hung up")
            self._frames += [Envelope.from_bytes(f.data) for f in self.decoder.feed(chunk)]
        return self._frames.pop(0)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> SerialProbe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


Exchange = Callable[[Envelope], Awaitable[Envelope]]


def lan_exchange(url: str, *, timeout: float = 10.0) -> Exchange:
    return functools.partial(post_lan, url, timeout=timeout)


def serial_exchange(line: SerialProbe) -> Exchange:
    async def exchange(envelope: Envelope) -> Envelope:
        await line.send(envelope)
        return await line.receive()

    return exchange


async def call(
    exchange: Exchange, probe: Probe, action: str, body: dict[str, Any] | None = None
) -> Any:
    """Seal, exchange, open and check one request; returns the reply body."""
    sent = await probe.seal(action, body)
    return await probe.open(await exchange(sent.envelope), sent)


async def pair(exchange: Exchange, pin1: str, *, keys: KeyCache | None = None) -> Probe:
    """The pairing of protocol.md §7: DeviceInfo and Pair under pinCode1, then the
    confirming DeviceInfo under pinCode2. Returns a probe holding pinCode2."""
    first = Probe(pin1, keys=keys)
    info = await call(exchange, first, "DeviceInfo")
    paired = await call(exchange, first, "Pair", {"pairUuid": _uuid()})
    pin2 = next(paired[k] for k in PIN_FIELDS if k in paired)
    second = Probe(pin2, scheme=first.scheme, keys=keys)
    confirmed = await call(exchange, second, "DeviceInfo")
    assert confirmed["deviceSn"] == info["deviceSn"]
    return second
