"""Which reply answers a request (protocol.md §4).

``ReplyCheck.accept`` is the acceptance rule a link applies to each reply it gets:

* it decrypts the reply and checks that ``responseID`` is the request's ``requestID`` and
  that ``serverDeviceSN`` is the expected terminal's (``ANY_TERMINAL`` while pairing asks
  for that SN);
* a reply to an earlier request (possible on a serial line) is refused and set aside
  (``late``: the terminal's one path for late replies), and the exchange waits on for its
  own;
* anything else that makes a reply unusable is kept and raised by ``result``.

What a reply *proves* about a payment (its action, its fields) is the money package's to
decide (``money/evidence.py``): this module only says which reply is this request's.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from ecrd.protocol.envelope import Envelope, StaleResponse, check_response

log = logging.getLogger("ecrd.terminal")

Opener = Callable[[str], Awaitable[dict[str, Any]]]  # data -> the decrypted message
SetAside = Callable[[Envelope], None]  # a reply to another request


class AnyTerminal(enum.Enum):
    ANY = "any"


# ``exchange(expect_sn=ANY_TERMINAL)``: a reply from any serial number (pairing's first
# step, when the terminal's SN is what is being asked).
ANY_TERMINAL: Final = AnyTerminal.ANY


@attrs.frozen
class Response:
    """The reply that answers a request: its envelope's action, header and body."""

    action: str
    header: dict[str, Any]
    body: dict[str, Any]


@attrs.define
class ReplyCheck:
    terminal_id: str
    request_id: str
    expect_sn: str | None
    open: Opener
    late: SetAside
    outcome: Response | Exception | None = None

    async def accept(self, reply: Envelope) -> bool:
        try:
            plain = await self.open(reply.data)
            body = check_response(plain, self.request_id, self.expect_sn)
        except StaleResponse as exc:
            log.warning("terminal=%s set aside a late reply: %s", self.terminal_id, exc)
            self.late(reply)
            return False
        except Exception as exc:  # final: raised by result()
            self.outcome = exc
            return True
        self.outcome = Response(reply.action, plain["header"], body)
        return True

    def result(self) -> Response:
        """The reply taken, or what made it unusable."""
        if self.outcome is None:  # a link returned without a reply it was told to take
            raise StaleResponse(f"no reply answers request {self.request_id}")
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome
