"""The one error map at the API edge: what a layer's error or a money record becomes on the
socket (docs/api.md, "Errors").

* ``translate``: the errors that reach the socket as they are (``errors.ApiError``) pass
  through; a layer's own errors are looked up in ``TABLE`` (first match wins; some say
  something else while pairing), and anything else is a bug, raised on to become
  ``internal_error``.
* ``money_result``: a money record is a result, except the outcomes a POS must not mistake
  for one (unknown, never journaled, never delivered), which become errors carrying the
  record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ecrd import errors
from ecrd.protocol.crypto import CryptoError, NotJson
from ecrd.protocol.envelope import ProtocolError
from ecrd.store.journal import TxRecord
from ecrd.store.pairings import PairingStoreError
from ecrd.transport.base import MaybeDelivered, NotDelivered

REPAIR: Final = (
    "the terminal's reply cannot be decrypted with the paired PIN: it was probably reset or "
    "paired again; pair it again with `ecrctl pair TERMINAL CODE`"
)
WRONG_CODE: Final = "the code does not match the one on the terminal's pairing page"
NEVER_DELIVERED: Final = ("link_down", "cloud_not_configured", "cloud_refused")


def _store_refused(exc: Any) -> errors.ApiError:
    return errors.PairingFailed(
        "the pairing store cannot be written, so pairing stopped before the terminal was "
        f"asked for a new PIN (the old pairing still works): {exc}",
        cause=exc.reason,
    )


# (a layer's error, None = always / True = only while pairing, what the socket says)
TABLE: Final[tuple[tuple[type[Exception], bool | None, Callable[[Any], errors.ApiError]], ...]] = (
    (PairingStoreError, True, _store_refused),
    (NotDelivered, None,
     lambda e: errors.LinkDown(f"the terminal could not be reached: {e}", reason=e.reason)),
    (MaybeDelivered, True,
     lambda e: errors.PairingFailed(
         f"pairing failed: {e} (check the code on the terminal's pairing page)",
         cause=e.reason)),
    (MaybeDelivered, None,
     lambda e: errors.TerminalError(f"no usable reply from the terminal: {e}", reason=e.reason)),
    # It decrypted, so the key (the code) was right: the terminal answered badly.
    (NotJson, True,
     lambda e: errors.PairingFailed(f"pairing failed: {e}", cause="bad_reply")),
    (NotJson, None,
     lambda e: errors.TerminalError(f"no usable reply from the terminal: {e}",
                                    reason="bad_reply")),
    (CryptoError, True, lambda e: errors.WrongKeyError(WRONG_CODE)),
    (CryptoError, None, lambda e: errors.WrongKeyError(REPAIR)),
    (ProtocolError, None,
     lambda e: errors.TerminalError(f"the terminal's reply was rejected: {e}", reason=e.reason)),
)  # fmt: skip


def translate(exc: Exception, *, pairing: bool = False) -> errors.ApiError:
    if isinstance(exc, errors.ApiError):
        return exc
    for kind, when, make in TABLE:
        if isinstance(exc, kind) and when in (None, pairing):
            return make(exc)
    raise exc


def money_result(record: TxRecord) -> dict[str, Any]:
    """A finished record is a result, except the outcomes a POS must not mistake for one."""
    api = record.to_api()
    if record.state == "pending":  # in the journal, but its outcome never made it there
        raise errors.OutcomeUnknown(
            "the outcome of this payment was never journaled; check the terminal, then "
            f"`ecrctl resolve {record.reference_id} succeeded|failed`",
            transaction=api,
            cause="journal_error",
        )
    if record.state == "unknown":
        raise errors.OutcomeUnknown(
            record.note or "the outcome is unknown",
            transaction=api,
            cause=(record.error or {}).get("reason"),
        )
    if record.state == "failed" and (record.error or {}).get("reason") in NEVER_DELIVERED:
        raise errors.LinkDown(
            record.note or "the terminal could not be reached",
            reason=(record.error or {})["reason"],
            transaction=api,
        )
    return api
