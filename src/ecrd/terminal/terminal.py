"""One configured terminal: its links, its PINs, pairing, liveness.

A ``Terminal`` turns "send this action with this body" into one encrypted exchange on the
right link and hands back the validated reply body. It knows nothing of the journal; the
money rules live in ``payments.py`` on top of it.

Invariants:

* Key derivation runs on low-priority worker threads (``Shared.workers``), never on the loop.
* Every reply is checked: ``responseID`` = our ``requestID``, and once paired the
  ``serverDeviceSN`` = the paired SN (protocol.md §4).
* A request is moved to the fallback link only after ``NotDelivered`` (design.md §3 rule
  3). ``MaybeDelivered`` propagates untouched: no retry, on this or any other link.
* The pairing PIN is held here and in the 0600 pairing file, never logged or returned.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import attrs
import trio

from ecrd import logs
from ecrd.config import CloudConfig, TerminalConfig
from ecrd.events import EventBus
from ecrd.protocol import crypto
from ecrd.protocol.envelope import (
    Envelope,
    StaleResponse,
    body_of,
    check_response,
    request_message,
)
from ecrd.store.pairings import Pairing, PairingStore
from ecrd.transport.base import Link, LinkState, NotDelivered
from ecrd.transport.cloud import CloudLink, cloud_urls
from ecrd.transport.lan import LanLink
from ecrd.transport.serial import Accept, SerialLink
from ecrd.workers import Workers

log = logging.getLogger("ecrd.terminal")

_PIN_RE = re.compile(r"^[0-9]{6}$")
OnSending = Callable[[str, str], Awaitable[None]]
LateReply = Callable[[str, str, dict[str, Any]], Awaitable[None]]


def port_number(value: object) -> int | None:
    """A TCP port from a terminal's JSON (an int, or a string such as ``"8858"``)."""
    text = str(value)
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


class PairingCodeError(ValueError):
    """The code is neither 6 digits nor the pairing page's QR JSON."""


@attrs.frozen
class PairingCode:
    pin: str = attrs.field(repr=False)
    device_id: str | None = None
    ip: str | None = None
    port: int | None = None
    business_id: str | None = None


def parse_pairing_code(code: object) -> PairingCode:
    """Accept ``"672633"`` or the QR JSON of the pairing page (protocol.md §7.1)."""
    if isinstance(code, str) and _PIN_RE.match(code.strip()):
        return PairingCode(pin=code.strip())
    qr: object = code
    if isinstance(code, str):
        try:
            qr = json.loads(code)
        except ValueError:
            raise PairingCodeError(
                "code must be the 6 digits shown on the terminal, or its QR JSON"
            ) from None
    if not isinstance(qr, dict) or not _PIN_RE.match(str(qr.get("pairCode", ""))):
        raise PairingCodeError("QR JSON must carry a 6-digit pairCode")
    port = qr.get("port")
    return PairingCode(
        pin=str(qr["pairCode"]),
        device_id=qr.get("deviceId") if isinstance(qr.get("deviceId"), str) else None,
        ip=qr.get("ip") if isinstance(qr.get("ip"), str) else None,
        port=port_number(port) if isinstance(port, int | str) else None,
        business_id=qr.get("businessId") if isinstance(qr.get("businessId"), str) else None,
    )


@attrs.define
class Shared:
    """What every terminal of one daemon shares."""

    client_sn: str
    cloud: CloudConfig
    pairings: PairingStore
    events: EventBus
    keys: crypto.KeyCache = attrs.field(factory=lambda: crypto.KeyCache(size=1024))
    workers: Workers = attrs.field(factory=Workers)
    # Called with (terminal id, responseID, body) for a reply that came after its request
    # gave up (serial): it may settle an unknown outcome (Payments.late_reply).
    late_reply: LateReply | None = None
    store_limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))


class Terminal:
    def __init__(self, cfg: TerminalConfig, shared: Shared, pairing: Pairing | None) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.shared = shared
        self.pairing = pairing
        self.last_error: str | None = None
        self.busy_with: str | None = None  # reference_id of the money command in flight
        self._sealers: dict[str, crypto.Sealer] = {}
        self._links: dict[str, Link] = {}
        self._serial_scope: trio.CancelScope | None = None
        self._last_state: LinkState = "unknown"
        self._info_link: CloudLink | None = None  # terminal-info for a non-cloud terminal
        # Replies nobody waits for any more (serial): decrypted and offered to late_reply.
        self._late_send, self._late_recv = trio.open_memory_channel[Envelope](16)
        for kind in cfg.links:
            self._links[kind] = self._make_link(kind)

    def __repr__(self) -> str:
        return f"<Terminal {self.id} {self.cfg.transport} paired={self.paired}>"

    # -- links ---------------------------------------------------------------------------

    def _make_link(self, kind: str) -> Link:
        cfg = self.cfg
        if kind == "lan":
            # The last known address (QR code, or found through the cloud) wins over the
            # config's; a config change of host/port clears it (Daemon.reload).
            host = (self.pairing.host if self.pairing else None) or cfg.host
            port = (self.pairing.port if self.pairing else None) or cfg.port
            assert host is not None
            if (host, port) != (cfg.host, cfg.port):
                log.info(
                    "terminal=%s using its last known address %s:%s (config: %s:%s)",
                    self.id,
                    host,
                    port,
                    cfg.host,
                    cfg.port,
                )
            return LanLink(
                host,
                port,
                path=cfg.path,
                tls=cfg.tls,
                ca_file=cfg.ca_file,
                connect_timeout=cfg.connect_timeout_s,
            )
        if kind == "serial":
            assert cfg.device is not None
            return SerialLink(
                cfg.device,
                baudrate=cfg.baudrate,
                bytesize=cfg.bytesize,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
                rtscts=cfg.rtscts,
                frame_format=cfg.frame_format,
                on_stale=self._stale_frame,
            )
        return self._cloud_link()

    def _cloud_link(self) -> CloudLink:
        c = self.shared.cloud
        info_url, command_url = cloud_urls(c.environment, c.base_url, c.command_url, c.info_url)
        return CloudLink(
            command_url,
            info_url,
            c.business_id or "",
            self.device_sn,
            ca_file=c.ca_file,
            refusal_statuses=frozenset(c.refusal_statuses),
        )

    @property
    def paired(self) -> bool:
        return self.pairing is not None

    @property
    def device_sn(self) -> str | None:
        return self.pairing.device_sn if self.pairing else self.cfg.device_sn

    @property
    def link_state(self) -> LinkState:
        return self._links[self.cfg.transport].state

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "transport": self.cfg.transport,
            "fallback": self.cfg.fallback,
            "paired": self.paired,
            "device_sn": self.device_sn,
            "link": self.link_state,
            "busy": self.busy_with is not None,
            "last_error": self.last_error,
        }

    def _note_state(self) -> None:
        state = self.link_state
        if state != self._last_state:
            self._last_state = state
            self.shared.events.publish("terminal", terminal=self.id, link=state)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise the links (serial reopen loop) and the liveness probe."""
        async with trio.open_nursery() as nursery:
            for link in self._links.values():
                if isinstance(link, SerialLink):
                    await nursery.start(link.run)
            if self.cfg.probe_interval_s > 0:
                nursery.start_soon(self._probe_loop)
            nursery.start_soon(self._late_replies)
            task_status.started()

    async def aclose(self) -> None:
        for link in self._links.values():
            await link.aclose()
        if self._info_link is not None:
            await self._info_link.aclose()

    # -- late replies (serial) ----------------------------------------------------------------

    def _stale_frame(self, reply: Envelope) -> None:
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._late_send.send_nowait(reply)

    async def _late_replies(self) -> None:
        async for reply in self._late_recv:
            if self.pairing is None:
                continue
            try:
                plain = await self._open(self.pairing.pin, reply.data)
                header = plain.get("header") or {}
                if header.get("serverDeviceSN") != self.pairing.device_sn:
                    continue
                await self._offer_late(str(header.get("responseID")), body_of(plain))
            except Exception as exc:  # a late reply is a bonus; a bad one changes nothing
                log.info("terminal=%s ignored a late reply: %s", self.id, exc)

    async def _offer_late(self, response_id: str, body: dict[str, Any]) -> None:
        if self.shared.late_reply is not None:
            await self.shared.late_reply(self.id, response_id, body)

    # -- crypto off the event loop ---------------------------------------------------------

    def _sealer(self, pin: str) -> crypto.Sealer:
        sealer = self._sealers.get(pin)
        if sealer is None:
            scheme = self.pairing.scheme if self.pairing else self.cfg.crypto
            sealer = crypto.Sealer(pin, scheme, keys=self.shared.keys)
            self._sealers[pin] = sealer
        return sealer

    async def _seal(self, pin: str, message: dict[str, Any]) -> str:
        sealer = self._sealer(pin)
        if sealer.needs_derivation():
            return await self.shared.workers.run(partial(sealer.seal, message))
        return sealer.seal(message)  # AES only: ~25 µs, cheaper than a thread hop

    async def _open(self, pin: str, data: str) -> dict[str, Any]:
        scheme = self.pairing.scheme if self.pairing else self.cfg.crypto
        keys = self.shared.keys
        opener = partial(crypto.open_, data, pin, scheme, keys=keys, fallback=True)
        if crypto.opening_needs_derivation(data, pin, scheme, keys):
            return await self.shared.workers.run(opener)
        try:  # no derivation needed under the configured scheme: AES only, inline
            return crypto.open_(data, pin, scheme, keys=keys)
        except crypto.CryptoError:
            # The fallback scheme (protocol.md §3) may derive: a worker tries both.
            return await self.shared.workers.run(opener)

    # -- one exchange ------------------------------------------------------------------------

    async def exchange(
        self,
        action: str,
        body: dict[str, Any] | None,
        *,
        pin: str | None = None,
        timeout: float | None = None,
        links: tuple[str, ...] | None = None,
        expect_sn: str | None = None,
        on_sending: OnSending | None = None,
        request_id: str | None = None,
        check_sn: bool = True,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """One request/reply. Returns ``(reply_header, reply_body)``.

        Raises ``NotDelivered`` (no link took it), ``MaybeDelivered``, ``CryptoError`` or
        ``ProtocolError`` — the caller decides what each means for its command.
        """
        if pin is None:
            if self.pairing is None:
                raise NotPairedYet(self.id)
            pin = self.pairing.pin
        if expect_sn is None and self.pairing is not None:
            expect_sn = self.pairing.device_sn
        message = request_message(body, self.shared.client_sn, request_id=request_id)
        request_id = message["header"]["requestID"]
        envelope = Envelope(action, await self._seal(pin, message))
        timeout = timeout or self.cfg.timeout_s
        checked: list[tuple[dict[str, Any], dict[str, Any]] | Exception] = []

        async def accept(reply: Envelope) -> bool:
            """Decrypt and check a reply; a late one to an earlier request (possible on a
            serial line) is dropped so the exchange waits on for its own."""
            try:
                plain = await self._open(pin, reply.data)
                body = check_response(plain, request_id, expect_sn if check_sn else None)
            except StaleResponse as exc:
                log.warning("terminal=%s set aside a late reply: %s", self.id, exc)
                response_id = str((plain.get("header") or {}).get("responseID"))
                await self._offer_late(response_id, body_of(plain))
                return False
            except Exception as exc:  # final: raised to the caller below
                checked.append(exc)
                return True
            checked.append((plain["header"], body))
            return True

        reply = await self._deliver(
            envelope, links or self.cfg.links, timeout, request_id, on_sending, accept
        )
        if not checked and not await accept(reply):
            # One reply per request on LAN and cloud: a stale one is all there will be.
            raise StaleResponse(f"the terminal answered another request, not {request_id}")
        outcome = checked[-1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _deliver(
        self,
        envelope: Envelope,
        links: tuple[str, ...],
        timeout: float,
        request_id: str,
        on_sending: OnSending | None,
        accept: Accept,
    ) -> Envelope:
        not_delivered: NotDelivered | None = None
        for kind in links:
            link = self._links.get(kind) or self._links.setdefault(kind, self._make_link(kind))
            if on_sending is not None:
                await on_sending(request_id, kind)
            try:
                if isinstance(link, SerialLink):
                    return await link.exchange(envelope, timeout=timeout, accept=accept)
                try:
                    return await link.exchange(envelope, timeout=timeout)
                except NotDelivered:
                    if kind != "lan" or not await self._rediscover():
                        raise
                    # The old address provably never took it; the new one may.
                    return await link.exchange(envelope, timeout=timeout)
            except NotDelivered as exc:
                log.warning("terminal=%s link=%s not delivered: %s", self.id, kind, exc)
                not_delivered = not_delivered or exc
            finally:
                self._note_state()
        assert not_delivered is not None
        raise not_delivered

    async def _rediscover(self) -> bool:
        """LAN terminal not answering: ask the cloud's terminal-info for its current address
        (protocol.md §5). True when a new address was found and applied."""
        if self.pairing is None or not self.shared.cloud.business_id:
            return False
        try:
            info = await self.terminal_info(self.pairing.pin)
        except Exception as exc:  # any failure just means: no new address
            log.info("terminal=%s address lookup through the cloud failed: %s", self.id, exc)
            return False
        host, port = info.get("ip"), port_number(info.get("port"))
        if not isinstance(host, str) or not host or port is None:
            return False
        lan = self._links["lan"]
        assert isinstance(lan, LanLink)
        if (host, port) == (lan.host, lan.port):
            return False
        log.warning(
            "terminal=%s moved from %s:%s to %s:%s (found through the cloud)",
            self.id,
            lan.host,
            lan.port,
            host,
            port,
        )
        lan.set_address(host, port)
        self.pairing = attrs.evolve(self.pairing, host=host, port=port)
        await self._store(self.shared.pairings.put, self.pairing)
        return True

    async def terminal_info(self, pin: str) -> dict[str, Any]:
        """Cloud ConnectionInfo → DeviceInfo with the business ID (protocol.md §5)."""
        cloud = self._links.get("cloud") or self._info_link
        if not isinstance(cloud, CloudLink):
            cloud = self._info_link = self._cloud_link()  # kept: one client, not one per call
        message = request_message(
            {"businessID": self.shared.cloud.business_id}, self.shared.client_sn
        )
        request_id = message["header"]["requestID"]
        envelope = Envelope("ConnectionInfo", await self._seal(pin, message))
        reply = await cloud.terminal_info(envelope, timeout=self.shared.cloud.timeout_s)
        plain = await self._open(pin, reply.data)
        return check_response(plain, request_id)

    async def _store(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.shared.store_limiter)

    # -- pairing (protocol.md §7) --------------------------------------------------------------

    async def pair(self, code: object) -> dict[str, Any]:
        parsed = parse_pairing_code(code)
        pin1 = parsed.pin
        logs.register_secret(pin1)
        links = (self.cfg.transport,)
        t = self.cfg.info_timeout_s
        if self.cfg.transport == "cloud":
            info = await self.terminal_info(pin1)
            sn = str(info.get("deviceSn") or "")
        else:
            if self.cfg.transport == "lan" and parsed.ip:
                lan = self._links["lan"]
                assert isinstance(lan, LanLink)
                lan.set_address(parsed.ip, parsed.port or lan.port)
            # DeviceInfo under pinCode1: the SN, not known yet (maybe a swapped device).
            header, info = await self.exchange(
                "DeviceInfo", None, pin=pin1, timeout=t, links=links, check_sn=False
            )
            sn = str(info.get("deviceSn") or header.get("serverDeviceSN") or "")
        if not sn:
            raise PairingStepError("the terminal did not tell its serial number")
        link = self._links.get("cloud")
        if isinstance(link, CloudLink):
            link.device_sn = sn
        _, reply = await self.exchange(
            "Pair", {"pairUuid": str(uuid.uuid4())}, pin=pin1, timeout=t, links=links, expect_sn=sn
        )
        pin2 = next(
            (
                str(reply[f])
                for f in self.cfg.pin_fields
                if re.fullmatch(r"[0-9]{4,12}", str(reply.get(f, "")))
            ),
            None,
        )
        if pin2 is not None:
            logs.register_secret(pin2)
        if pin2 is None:
            raise PairingStepError(
                "the Pair reply carries no new PIN in any of the fields "
                + ", ".join(self.cfg.pin_fields)
                + " (set pin_fields in the config)"
            )
        confirm_body: dict[str, Any] | None = (
            None if self.cfg.pair_confirm_action == "DeviceInfo" else {}
        )
        _, confirmed = await self.exchange(
            self.cfg.pair_confirm_action,
            confirm_body,
            pin=pin2,
            timeout=t,
            links=links,
            expect_sn=sn,
        )
        host = port = None
        if self.cfg.transport == "lan":
            lan = self._links["lan"]
            assert isinstance(lan, LanLink)
            host, port = lan.host, lan.port
        pairing = Pairing(
            terminal_id=self.id,
            device_sn=sn,
            pin=pin2,
            scheme=self.cfg.crypto,
            host=host,
            port=port,
            paired_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        await self._store(self.shared.pairings.put, pairing)
        self._forget_pins()
        self.pairing = pairing
        self.last_error = None
        log.info("terminal=%s paired with %s over %s", self.id, sn, self.cfg.transport)
        self.shared.events.publish("terminal", terminal=self.id, paired=True, device_sn=sn)
        info = {k: v for k, v in {**info, **confirmed}.items() if not k.lower().startswith("pin")}
        return {"terminal": self.id, "device_sn": sn, "info": info}

    def _forget_pins(self) -> None:
        for pin in list(self._sealers):
            self.shared.keys.forget(pin)
        self._sealers.clear()

    async def unpair(self) -> None:
        await self._store(self.shared.pairings.remove, self.id)
        self._forget_pins()
        self.pairing = None
        self.shared.events.publish("terminal", terminal=self.id, paired=False)
        log.info("terminal=%s unpaired", self.id)

    # -- read-only traffic -----------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        _, body = await self.exchange("DeviceInfo", None, timeout=self.cfg.info_timeout_s)
        self.last_error = None
        return body

    async def _probe_loop(self) -> None:
        while True:
            interval = self.cfg.probe_interval_s
            await trio.sleep(interval * random.uniform(0.8, 1.2))  # noqa: S311 - jitter only
            if self.pairing is None or self.busy_with is not None:
                continue
            try:
                await self.info()
            except Exception as exc:  # the probe reports, it never stops the terminal
                reason = getattr(exc, "reason", type(exc).__name__)
                if self.last_error != reason:
                    log.warning("terminal=%s liveness probe failed: %s (%s)", self.id, reason, exc)
                self.last_error = reason
            self._note_state()


class NotPairedYet(Exception):
    reason = "not_paired"

    def __init__(self, terminal_id: str) -> None:
        super().__init__(
            f"terminal {terminal_id!r} is not paired: run `ecrctl pair {terminal_id} CODE` "
            "with the 6-digit code the terminal shows"
        )


class PairingStepError(Exception):
    reason = "pairing_failed"
