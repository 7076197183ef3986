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
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

import attrs
import trio

from ecrd import errors
from ecrd.backoff import Backoff
from ecrd.config import SerialTerminal, TerminalConfig
from ecrd.protocol import crypto
from ecrd.protocol.envelope import (
    Envelope,
    check_response,
    request_message,
)
from ecrd.store.pairings import Pairing
from ecrd.terminal.late import LateReplies
from ecrd.terminal.links import Target, cloud_link, make_link, retarget, tap
from ecrd.terminal.pairing import (
    not_paired_message,
    port_number,
)
from ecrd.terminal.replies import ANY_TERMINAL, AnyTerminal, ReplyCheck, Response
from ecrd.terminal.sealing import Cipher
from ecrd.terminal.shared import Shared
from ecrd.terminal.trace import Trace
from ecrd.transport.base import Link, LinkState, NotDelivered
from ecrd.transport.cloud import CloudLink

log = logging.getLogger("ecrd.terminal")
T = TypeVar("T")

# (requestID, link): awaited before a link's first byte may leave (Terminal.exchange).
BeforeSend = Callable[[str, str], Awaitable[None]]


class Terminal:
    def __init__(
        self,
        cfg: TerminalConfig,
        shared: Shared,
        pairing: Pairing | None,
        pending: Pairing | None = None,
        *,
        links: Mapping[str, Link] | None = None,
    ) -> None:
        """``links`` replaces the links built from the config (tests: an in-memory link)."""
        self.cfg = cfg
        self.id = cfg.id
        self.shared = shared
        self.pairing = pairing
        # A new PIN from a pairing that did not finish, until the terminal settles it
        # (pairing.py); no money goes to the terminal meanwhile.
        self.pending = pending
        self.last_error: str | None = None
        self.busy_with: str | None = None  # reference_id of the money command in flight
        self._cipher = Cipher(shared.keys, shared.workers, self._scheme)
        self._links: dict[str, Link] = {}
        self._last_state: LinkState = "unknown"
        self._info_link: CloudLink | None = None  # the cloud's terminal-info service
        self._nursery: trio.Nursery | None = None
        # Replies to requests that no longer wait for them: evidence for the money authority.
        self.late = LateReplies(
            cfg.id, lambda: self.pairing, self._cipher.open, lambda: shared.late_reply
        )
        self._target = self._start_target()
        trace_dir = shared.trace_dir
        self.trace = Trace(trace_dir / f"{cfg.id}.jsonl" if trace_dir else None, on=cfg.trace)
        self._links.update(links or {})
        for kind in cfg.links:
            self.link(kind)

    def __repr__(self) -> str:
        return f"<Terminal {self.id} {self.cfg.transport} paired={self.paired}>"

    # -- links (built and aimed in links.py) ---------------------------------------------

    def _start_target(self) -> Target:
        """The last known address (QR code, or found through the cloud) wins over the
        config's; a config change of host/port clears it (Daemon.reload)."""
        pairing = self.pairing
        own_host, own_port = self.cfg.lan_address()
        host = (pairing.host if pairing else None) or own_host
        port = (pairing.port if pairing else None) or own_port
        if host and (host, port) != (own_host, own_port):
            log.info(
                "terminal=%s using its last known address %s:%s (config: %s:%s)",
                self.id, host, port, own_host, own_port,
            )  # fmt: skip
        return Target(
            host=host,
            port=port if host else None,
            device_sn=self.device_sn,
            business_id=self.business_id_of(pairing),
        )

    def business_id_of(self, pairing: Pairing | None) -> str | None:
        """The business the cloud serves this terminal for: the config's, else the pairing's."""
        return self.shared.cloud.business_id or (pairing.business_id if pairing else None)

    @property
    def links(self) -> Mapping[str, Link]:
        """The terminal's links by kind (read-only; ``aim`` moves them)."""
        return MappingProxyType(self._links)

    def link(self, kind: str) -> Link:
        link = self._links.get(kind)
        if link is None:
            link = self._links[kind] = make_link(
                kind, self.cfg, self.shared.cloud, self._target, self.late.set_aside
            )
            tap(link, self.trace.wire)
        return link

    @property
    def target(self) -> Target:
        """Where ecrd believes the terminal is (address, SN)."""
        return self._target

    def aim(self, target: Target) -> None:
        """Aim every link at ``target`` (a pairing, or the cloud's news of a move)."""
        self._target = target
        for link in [*self._links.values(), *([self._info_link] if self._info_link else [])]:
            retarget(link, target)

    def _scheme(self) -> crypto.Scheme:
        return self.pairing.scheme if self.pairing else self.cfg.crypto

    @property
    def paired(self) -> bool:
        """Paired, with a PIN the terminal is known to accept."""
        return self.pairing is not None and self.pending is None

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
            "pairing_unconfirmed": self.pending is not None,
            "device_sn": self.device_sn,
            "business_id": self.pairing.business_id if self.pairing else None,
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
                await nursery.start(link.run)
            if self.cfg.probe_interval_s > 0:
                nursery.start_soon(self._probe_loop)
            nursery.start_soon(self.late.run)
            self._nursery = nursery
            if self.pending is not None:
                nursery.start_soon(self._settle_pending, self.pending)
            else:
                await self.check_pending()
            task_status.started()

    async def aclose(self) -> None:
        for link in self._links.values():
            await link.aclose()
        if self._info_link is not None:
            await self._info_link.aclose()

    # -- one exchange ------------------------------------------------------------------------

    async def exchange(
        self,
        action: str,
        body: dict[str, Any] | None,
        *,
        pin: str | None = None,
        timeout: float | None = None,
        links: tuple[str, ...] | None = None,
        expect_sn: str | AnyTerminal | None = None,
        before_send: BeforeSend | None = None,
        request_id: str | None = None,
        via: Link | None = None,
    ) -> Response:
        """One request/reply. Returns the reply that answers it. The reply must come from
        ``expect_sn`` (default: the paired terminal; ``ANY_TERMINAL``: any). ``via`` sends
        it on that link instead of the terminal's own (pairing elsewhere).
        ``before_send(request_id, link)`` is awaited before each link's first byte may
        leave: the one moment an exchange reaches back up (the journal's write-ahead).

        Raises ``NotDelivered`` (no link took it), ``MaybeDelivered``, ``CryptoError`` or
        ``ProtocolError`` — the caller decides what each means for its command.
        """
        pin, expect_sn = self._peer(pin, expect_sn)
        message = request_message(body, self.shared.client_sn, request_id=request_id)
        request_id = message["header"]["requestID"]
        envelope = Envelope(action, await self._cipher.seal(pin, message))
        timeout = timeout or self.cfg.timeout_s
        opener = partial(self._cipher.open, pin)
        check = ReplyCheck(self.id, request_id, expect_sn, opener, self.late.set_aside)
        kind = "pairing" if via is not None else "/".join(links or self.cfg.links)
        fmt = None
        if kind == "serial" and isinstance(self.cfg, SerialTerminal):
            fmt = self.cfg.frame_format
        await self.trace.exchange(kind, action, message, envelope, fmt)
        try:
            if via is not None:
                response = await _answer(via, envelope, timeout, check)
            else:
                response = await self._deliver(envelope, links or self.cfg.links, timeout,
                                               request_id, before_send, check)  # fmt: skip
        except Exception as exc:
            await self.trace.failure(kind, action, request_id, exc)
            raise
        await self.trace.reply(kind, action, response.header, response.body)
        return response

    def _peer(self, pin: str | None, sn: str | AnyTerminal | None) -> tuple[str, str | None]:
        """The PIN to seal with and the SN a reply must come from: the pairing's, unless
        given (``ANY_TERMINAL``: any SN)."""
        if pin is None:
            if self.pairing is None:
                raise errors.NotPaired(not_paired_message(self.id, unconfirmed=False))
            pin = self.pairing.pin
        if sn is ANY_TERMINAL:
            return pin, None
        return pin, sn if sn is not None or self.pairing is None else self.pairing.device_sn

    async def _deliver(
        self,
        envelope: Envelope,
        links: tuple[str, ...],
        timeout: float,
        request_id: str,
        before_send: BeforeSend | None,
        check: ReplyCheck,
    ) -> Response:
        """The request on the first link that takes it (the fallback only after
        ``NotDelivered``: design.md §3 rule 3), and the reply that answers it."""
        not_delivered: NotDelivered | None = None
        for kind in links:
            link = self.link(kind)
            if before_send is not None:
                await before_send(request_id, kind)
            try:
                try:
                    return await _answer(link, envelope, timeout, check)
                except NotDelivered:
                    if kind != self.cfg.transport or not await self._rediscover():
                        raise
                    # The old address provably never took it; the new one may.
                    return await _answer(link, envelope, timeout, check)
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
        if self.pairing is None or not self._target.host or not self.shared.cloud.business_id:
            return False  # only a terminal with a network address can move
        try:
            info = await self._info_under_pin1()
        except Exception as exc:  # any failure just means: no new address
            log.info("terminal=%s address lookup through the cloud failed: %s", self.id, exc)
            return False
        host, port = info.get("ip"), port_number(info.get("port"))
        if not isinstance(host, str) or not host or port is None:
            return False
        old = self._target
        if (host, port) == (old.host, old.port):
            return False
        log.warning(
            "terminal=%s moved from %s:%s to %s:%s (found through the cloud)",
            self.id, old.host, old.port, host, port,
        )  # fmt: skip
        self.aim(attrs.evolve(old, host=host, port=port))
        self.pairing = attrs.evolve(self.pairing, host=host, port=port)
        await self.store(self.shared.pairings.put, self.pairing)
        return True

    async def _info_under_pin1(self) -> dict[str, Any]:
        """Terminal-info under pinCode1, as the seed seals it (§4.1); a terminal that no
        longer takes it is asked under pinCode2. Which one worked is kept with the pairing."""
        pairing = self.pairing
        assert pairing is not None
        pins = [("pin1", pairing.pin1), ("pin2", pairing.pin)]
        if pairing.info_pin == "pin2":
            pins.reverse()  # the one that worked last time first
        *others, (last, last_pin) = [(name, pin) for name, pin in pins if pin]
        for name, pin in others:
            with contextlib.suppress(crypto.CryptoError):  # not taken: try the other one
                return await self._info_under(pairing, name, pin)
        return await self._info_under(pairing, last, last_pin)

    async def _info_under(self, pairing: Pairing, name: str, pin: str) -> dict[str, Any]:
        info = await self.terminal_info(pin)
        if pairing.info_pin != name and self.pairing is pairing:
            log.info("terminal=%s terminal-info answers under %s", self.id, name)
            self.pairing = attrs.evolve(pairing, info_pin=name)
            await self.save_pairing(partial(self.shared.pairings.put, self.pairing))
        return info

    async def terminal_info(
        self, pin: str, *, device_sn: str | None = None, business_id: str | None = None
    ) -> dict[str, Any]:
        """Cloud ConnectionInfo → DeviceInfo with the business ID (protocol.md §5), with
        ``x-device-sn`` whenever an SN is known (``device_sn``: the QR code's)."""
        cloud = self._info_link
        if cloud is None:  # kept: one client, not one per call
            cloud = self._info_link = cloud_link(
                self.shared.cloud, self.device_sn, self.business_id_of(self.pairing)
            )
        business_id = business_id or self.business_id_of(self.pairing)
        message = request_message({"businessID": business_id}, self.shared.client_sn)
        request_id = message["header"]["requestID"]
        envelope = Envelope("ConnectionInfo", await self._cipher.seal(pin, message))
        reply = await cloud.terminal_info(
            envelope,
            timeout=self.shared.cloud.timeout_s,
            device_sn=device_sn,
            business_id=business_id,
        )
        plain = await self._cipher.open(pin, reply.data)
        return check_response(plain, request_id)

    async def store(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.shared.store(fn, *args)

    # -- pairing state (the steps: pairing_flow.py) ------------------------------------------

    def adopt(self, pairing: Pairing) -> None:
        """The one place a new pairing takes effect: PIN, SN and address together."""
        own_host, own_port = self.cfg.lan_address()
        host = pairing.host or own_host
        self.aim(
            Target(
                host=host,
                port=(pairing.port or own_port) if host else None,
                device_sn=pairing.device_sn,
                business_id=self.business_id_of(pairing),
            )
        )
        self._cipher.forget()
        self.pairing = pairing
        self.pending = None
        self.last_error = None

    async def save_pairing(self, write: Callable[[], None]) -> bool:
        """Write to the pairing store; a failure is logged loudly, never loses the PIN in
        memory. False when it failed."""
        try:
            await self.store(write)
        except Exception as exc:
            log.critical("terminal=%s pairing could NOT be saved: %s", self.id, exc)
            return False
        return True

    async def check_pending(self) -> None:
        """A new PIN saved as pending by a pairing that did not finish (at start, or after a
        failed pairing): settle it in the background. Meanwhile the terminal takes no
        money, since it may accept only the pending PIN."""
        try:
            pending = (await self.store(self.shared.pairings.pending)).get(self.id)
        except Exception as exc:
            log.error("terminal=%s cannot read pending pairings: %s", self.id, exc)
            return
        if pending is None or self.pending is not None or self._nursery is None:
            return
        log.warning("terminal=%s has an unconfirmed new PIN; asking the terminal", self.id)
        self.pending = pending
        self._nursery.start_soon(self._settle_pending, pending)

    async def _settle_pending(self, pending: Pairing) -> None:
        """The terminal decides: it answers under the pending PIN → the pairing is
        committed; it cannot read it (wrong key) → the pending PIN is dropped."""
        delays = Backoff(initial=1.0, cap=60.0).delays()
        while self.pending is pending:
            try:
                await self.exchange(
                    "DeviceInfo", None, pin=pending.pin, timeout=self.cfg.info_timeout_s,
                    expect_sn=pending.device_sn,
                )  # fmt: skip
            except crypto.CryptoError:
                if self.pending is pending:
                    log.warning("terminal=%s dropped an unconfirmed PIN (not in use)", self.id)
                    self.pending = None
                    await self.save_pairing(partial(self.shared.pairings.drop_pending, self.id))
                return
            except Exception as exc:
                log.info("terminal=%s unconfirmed pairing not settled yet: %s", self.id, exc)
                await trio.sleep(next(delays))
                continue
            if self.pending is pending:  # not overtaken by a new pairing meanwhile
                log.warning("terminal=%s finished an interrupted pairing", self.id)
                self.adopt(pending)
                await self.save_pairing(partial(self.shared.pairings.commit, pending))
            return

    async def unpair(self) -> None:
        await self.store(self.shared.pairings.remove, self.id)
        self._cipher.forget()
        self.pairing = None
        self.shared.events.publish("terminal", terminal=self.id, paired=False)
        log.info("terminal=%s unpaired", self.id)

    # -- read-only traffic -----------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        response = await self.exchange("DeviceInfo", None, timeout=self.cfg.info_timeout_s)
        self.last_error = None
        return response.body

    async def _probe_loop(self) -> None:
        while True:
            interval = self.cfg.probe_interval_s
            await trio.sleep(interval * random.uniform(0.8, 1.2))  # noqa: S311 - jitter only
            if self.pairing is None or self.busy_with is not None:
                continue
            try:
                await self.info()
            except Exception as exc:  # the probe reports, it never stops the terminal
                reason = errors.reason_of(exc)
                if self.last_error != reason:
                    log.warning("terminal=%s liveness probe failed: %s (%s)", self.id, reason, exc)
                self.last_error = reason
            self._note_state()


async def _answer(link: Link, envelope: Envelope, timeout: float, check: ReplyCheck) -> Response:
    """Send ``envelope`` on ``link`` and take the reply that answers it: the link hands up
    what came back, the terminal decides (a reply to another request is set aside)."""
    async with link.exchange(envelope, timeout=timeout) as replies:
        async for reply in replies:
            if await check.accept(reply):
                return check.result()
    return check.result()  # none of them answered it: StaleResponse
