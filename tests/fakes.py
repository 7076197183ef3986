"""An in-memory link for unit tests of ``Terminal`` and ``Payments`` without the simulator.

``FakeLink`` implements ``transport.base.Link``. A test gives it a *script*: a function from
the decrypted request (action, header, body) to what the terminal answers — a body (sealed
and framed like a real reply, under the same PIN, legacy scheme so no key derivation), an
``Envelope`` verbatim, or an exception to raise (``NotDelivered``, ``ReplyTimeout``...).
Every request it saw is kept in ``sent``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ecrd.config import CloudConfig, LanTerminal
from ecrd.events import EventBus
from ecrd.money.request import PaymentRequest
from ecrd.protocol import crypto
from ecrd.protocol.envelope import Envelope, response_message
from ecrd.store.journal import TxRecord
from ecrd.store.pairings import Pairing, PairingStore
from ecrd.terminal.shared import Shared
from ecrd.terminal.terminal import Terminal
from ecrd.transport.base import LinkState, OneReply, Replies

PIN = "135790"
SN = "FAKE-0001"
Answer = dict[str, Any] | Envelope | Exception
Script = Callable[[str, dict[str, Any]], Answer]


@attrs.define
class FakeLink:
    script: Script
    pin: str = PIN
    sn: str = SN
    kind: str = "lan"
    sent: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)
    _state: LinkState = "unknown"

    @property
    def state(self) -> LinkState:
        return self._state

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    @asynccontextmanager
    async def exchange(self, request: Envelope, *, timeout: float) -> AsyncIterator[Replies]:
        await trio.lowlevel.checkpoint()
        message = crypto.open_(request.data, self.pin, "legacy")
        self.sent.append((request.action, message))
        answer = self.script(request.action, message)
        if isinstance(answer, Exception):
            self._state = "down"
            raise answer
        self._state = "up"
        reply = (
            answer if isinstance(answer, Envelope) else self.reply(request.action, message, answer)
        )
        yield OneReply(reply)

    def reply(self, action: str, message: dict[str, Any], body: dict[str, Any]) -> Envelope:
        """A reply envelope to ``message``, as this terminal seals it."""
        plain = response_message(message, body, self.sn)
        return Envelope(action, crypto.seal_legacy(crypto.dumps(plain), self.pin))

    async def aclose(self) -> None:
        self._state = "down"


def fake_terminal(tmp: str, link: FakeLink, paired_sn: str = SN, **cfg: Any) -> Terminal:
    """A LAN terminal paired with ``paired_sn``, whose only link is ``link``."""
    shared = Shared(
        client_sn="POS-UNIT",
        cloud=CloudConfig(),
        pairings=PairingStore(f"{tmp}/pairings.toml"),
        events=EventBus(),
    )
    config = LanTerminal(id="t1", host="127.0.0.1", crypto="legacy", **cfg)
    pairing = Pairing(terminal_id="t1", device_sn=paired_sn, pin=link.pin, scheme="legacy")
    return Terminal(config, shared, pairing, links={"lan": link})


def tx_record(request: PaymentRequest, state: str = "succeeded") -> TxRecord:
    """The journal record ``request`` makes, in ``state`` (for admission and guard tests)."""
    return TxRecord(
        reference_id=request.reference_id, terminal=request.terminal, action=request.action,
        params=request.params(), state=state, amount=request.amount,
        currency=request.currency, request_id="rq", link="lan", reply=None, error=None,
        note=None, resolved_by=None, created_at="2026-11-27T10:00:00.000Z",
        updated_at="2026-11-27T10:00:00.000Z",
    )  # fmt: skip
