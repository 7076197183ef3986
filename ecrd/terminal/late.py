"""A terminal's late replies: the one path for a reply to a request that no longer waits.

Two things set a reply aside: the serial link, for a frame it could route to no exchange,
and an exchange, for a reply that answers another request (its ``responseID``). Both hand
it to ``LateReplies.set_aside``; ``run`` decrypts each under the pairing's PIN, checks it
comes from the paired terminal, and offers it as evidence to the money authority
(``Shared.late_reply``: ``money/authority.py``), which decides what it proves about the
payment whose request it names — whatever that payment's state.

Invariants: ``set_aside`` never blocks (a link's reader calls it); a reply is never dropped
silently (a full queue or an unreadable reply is logged); nothing here changes a payment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from ecrd.protocol.envelope import Envelope, WrongTerminal, body_of
from ecrd.store.pairings import Pairing
from ecrd.terminal.shared import LateReply

log = logging.getLogger("ecrd.terminal")
QUEUE: Final = 256  # late replies waiting to be read, per terminal
Opener = Callable[[str, str], Awaitable[dict[str, Any]]]  # (pin, data) -> the message


class LateReplies:
    def __init__(
        self,
        terminal_id: str,
        pairing: Callable[[], Pairing | None],
        open_: Opener,
        offer: Callable[[], LateReply | None],
    ) -> None:
        self.terminal_id = terminal_id
        self._pairing = pairing
        self._open = open_
        self._offer = offer
        self._send, self._recv = trio.open_memory_channel[Envelope](QUEUE)

    def set_aside(self, reply: Envelope) -> None:
        try:
            self._send.send_nowait(reply)
        except trio.WouldBlock:
            log.error("terminal=%s a late %s reply could not be queued: %d are waiting",
                      self.terminal_id, reply.action, QUEUE)  # fmt: skip
        except trio.ClosedResourceError:
            pass

    async def run(self) -> None:
        async for reply in self._recv:
            try:
                await self._read(reply)
            except Exception as exc:  # unreadable: it proves nothing about any payment
                log.warning("terminal=%s a late %s reply proves nothing: %s",
                            self.terminal_id, reply.action, exc)  # fmt: skip

    async def _read(self, reply: Envelope) -> None:
        pairing, offer = self._pairing(), self._offer()
        if pairing is None:
            raise WrongTerminal("no pairing to read it with")
        plain = await self._open(pairing.pin, reply.data)
        header = plain.get("header") or {}
        if header.get("serverDeviceSN") != pairing.device_sn:
            raise WrongTerminal(f"from {header.get('serverDeviceSN')!r}")
        if offer is not None:
            response_id = str(header.get("responseID"))
            await offer(self.terminal_id, response_id, reply.action, body_of(plain))
