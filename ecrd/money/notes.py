"""What a transaction record tells the cashier (its ``note``) when its outcome is not a
plain result: what may have happened, and what to check before ``ecrctl resolve``."""

from __future__ import annotations

from typing import Final

NOTE_UNKNOWN: Final = (
    "The request reached (or may have reached) the terminal but no usable reply came back, "
    "so the customer may have been charged. Check the terminal's last transactions for "
    "reference {ref}, then settle it with `ecrctl resolve {ref} succeeded|failed`."
)
NOTE_RESTARTED: Final = (
    "ecrd stopped while this payment was in flight, so the customer may have been charged. "
    "Check the terminal's last transactions for reference {ref}, then settle it with "
    "`ecrctl resolve {ref} succeeded|failed`."
)
NOTE_NOT_SENT: Final = "The request never reached the terminal; nothing was charged."
NOTE_UNPROVEN: Final = (
    "The terminal answered, but its reply does not prove this payment's outcome ({why}), so "
    "the customer may have been charged. Check the terminal's last transactions for "
    "reference {ref}, then settle it with `ecrctl resolve {ref} succeeded|failed`."
)
NOTE_DISPUTED: Final = (
    "The terminal said something that contradicts this record ({why}). Check the terminal's "
    "transactions for reference {ref} and the customer's statement, then settle it with "
    "`ecrctl resolve {ref} succeeded|failed --note WHY`."
)
NOTE_UNWRITTEN: Final = (
    "The terminal's answer could not be written to the journal ({why}); ecrd keeps it and "
    "writes it as soon as the journal takes writes again. Free the disk (see ecrd's log)."
)
