"""Which reply answers a request, and what it said (protocol.md §4, design.md §3 rule 3).

``ReplyCheck.accept`` is the acceptance rule a link applies to each reply it gets:

* it decrypts the reply and checks that ``responseID`` is the request's ``requestID`` and
  that ``serverDeviceSN`` is the expected terminal's (``ANY_TERMINAL`` while pairing asks
  for that SN);
* a reply to an earlier request (possible on a serial line) is refused, handed to
  ``late`` (it may settle an unknown payment) and the exchange waits on for its own;
* for a money action, a reply under another envelope action is ``ReplyMismatch`` (a
  Refund's "Success" proves nothing about a Sale), with the body kept as evidence;
* anything else that makes a reply unusable is kept and raised by ``result``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from ecrd.protocol.envelope import (
    Envelope,
    ReplyMismatch,
    StaleResponse,
    body_of,
    check_response,
)
from ecrd.protocol.outcome import MONEY_ACTIONS

log = logging.getLogger("ecrd.terminal")

Opener = Callable[[str], Awaitable[dict[str, Any]]]  # data -> the decrypted message
SetAside = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # responseID, action, body


class AnyTerminal(enum.Enum):
    ANY = "any"


# ``exchange(expect_sn=ANY_TERMINAL)``: a reply from any serial number (pairing's first
# step, when the terminal's SN is what is being asked).
ANY_TERMINAL: Final = AnyTerminal.ANY


@attrs.define
class ReplyCheck:
    terminal_id: str
    action: str
    request_id: str
    expect_sn: str | None
    open: Opener
    late: SetAside
    outcome: tuple[dict[str, Any], dict[str, Any]] | Exception | None = None

    async def accept(self, reply: Envelope) -> bool:
        try:
            plain = await self.open(reply.data)
            body = check_response(plain, self.request_id, self.expect_sn)
        except StaleResponse as exc:
            log.warning("terminal=%s set aside a late reply: %s", self.terminal_id, exc)
            response_id = str((plain.get("header") or {}).get("responseID"))
            await self.late(response_id, reply.action, body_of(plain))
            return False
        except Exception as exc:  # final: raised by result()
            self.outcome = exc
            return True
        if self.action in MONEY_ACTIONS and reply.action != self.action:
            message = f"the reply is for action {reply.action!r}, not {self.action!r}"
            self.outcome = ReplyMismatch(message, body)
            return True
        self.outcome = (plain["header"], body)
        return True

    def result(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(reply_header, reply_body)`` of the reply taken, or what made it unusable."""
        if self.outcome is None:  # a link returned without a reply it was told to take
            raise StaleResponse(f"no reply answers request {self.request_id}")
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome
