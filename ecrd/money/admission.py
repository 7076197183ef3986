"""Whether a money command may start (design.md §3 rules 2, 4, 5), as a pure function.

``admit`` is the admission rule as a function of what is known at one instant — the stored
record for the reference, the terminal's unresolved records, whether it is busy — and
returns one decision. ``Payments`` gathers those facts, applies the decision, and loops on
``Wait``; nothing here awaits, so the rule is tested without trio.

Rule order (the first that applies wins):

1. the reference is known (rule 2): the same request → ``Replay`` its record; another →
   ``Refuse`` ``duplicate_reference_mismatch``;
2. ecrd is stopping → ``shutting_down``; the terminal has no usable pairing → ``not_paired``;
3. the terminal has transactions of unknown outcome (rule 4) → ``unresolved_transaction``;
   a ``disputed`` one does not block: the terminal has spoken, a person checks it;
4. the terminal is idle → ``Go``; busy (rule 5) → ``Wait`` if the caller asked to wait, else
   ``terminal_busy``.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ecrd import errors
from ecrd.money.request import PaymentRequest, mismatch
from ecrd.store.journal import TxRecord
from ecrd.terminal.pairing import not_paired_message


@attrs.frozen
class Replay:
    record: TxRecord


@attrs.frozen
class Refuse:
    error: errors.ApiError


@attrs.frozen
class Wait:
    pass


@attrs.frozen
class Go:
    pass


Decision = Replay | Refuse | Wait | Go


@attrs.frozen
class Facts:
    """What admission looks at, read at one instant."""

    stored: TxRecord | None  # the journal's record for this reference
    blocking: Sequence[TxRecord]  # the terminal's unknown (or unwritten pending) records
    busy_with: str | None  # the reference the terminal is busy with
    paired: bool
    pairing_unconfirmed: bool = False
    accepting: bool = True
    block_on_unknown: bool = True


def admit(request: PaymentRequest, facts: Facts, *, wait: bool) -> Decision:
    """The admission rule (see the module docstring)."""
    tid = request.terminal
    if facts.stored is not None:
        if request.same_as(PaymentRequest.of(facts.stored)):
            return Replay(facts.stored)
        return Refuse(mismatch(request, facts.stored))
    if not facts.accepting:
        return Refuse(errors.ShuttingDown("ecrd is stopping and takes no new payments"))
    if not facts.paired:
        return Refuse(errors.NotPaired(not_paired_message(tid, facts.pairing_unconfirmed)))
    if facts.blocking and facts.block_on_unknown:
        refs = [r.reference_id for r in facts.blocking]
        return Refuse(
            errors.UnresolvedTransaction(
                f"terminal {tid!r} has {len(refs)} transaction(s) of unknown outcome "
                f"({', '.join(refs)}); settle with `ecrctl resolve REF succeeded|failed` first",
                reference_ids=refs,
            )
        )
    if facts.busy_with is None:
        return Go()
    if wait:
        return Wait()
    return Refuse(
        errors.TerminalBusy(
            f"terminal {tid!r} is busy with {facts.busy_with}", busy_with=facts.busy_with
        )
    )
