"""The one authority on a payment's state: ``settle(record, evidence) -> Change``.

Every change of a payment's state after it was journaled goes through ``settle``: the reply
in its exchange, a late reply on a serial line, an answer to the status action, recovery at
start, a person's resolve, and a journal write retried after the disk failed (the same
evidence, applied again). ``Journal.apply`` runs it inside the write transaction, on the
record as it is at that instant, and stores the ``Change`` with the evidence on its audit
row — so no proof is ever thrown away, even when it changes nothing.

The rules, by state (rows) and evidence (columns); *keep*: the state stays, the evidence is
kept on the record's audit trail::

              Reply, LateReply      StatusAnswer       NotSent  NoAnswer  Stopped  Resolved
  pending     proven → its state    proven → state     failed   unknown   unknown  refused¹
              else → unknown        else keep
  unknown     proven → its state    proven → state     keep     keep      keep     resolved_*
              else keep             else keep
  succeeded,  contradicts → disputed, else keep        keep     keep      keep     refused
  failed,
  resolved_*
  disputed    keep                  keep               keep     keep      keep     resolved_*²

  ¹ its outcome is being written (a journal write that failed is retried first);
  ² an admin's second word on a dispute, with a note saying why.

What "proven" means is ``evidence.classify``. An answer about the record's payment (it
names no other reference) *contradicts* the settled record when what it claims (charged,
or not) is not the record's outcome, or when it claims a charge the record has with other
identifiers (``rrn``, ``brn``, ``authCode``, amount: a second charge?). A ``disputed``
record is raised loudly (``authority.py``: an ERROR line, an event, a metric) and settled by
a person; it does not block new payments: the terminal has spoken.

Pure: no I/O, no clock. Tested as a table of every state against every kind of evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from ecrd import errors
from ecrd.money.evidence import (
    Answer,
    Evidence,
    LateReply,
    NoAnswer,
    NotSent,
    Outcome,
    Policy,
    Resolved,
    StatusAnswer,
    Stopped,
    Verdict,
    classify,
    to_obj,
)
from ecrd.money.notes import (
    NOTE_DISPUTED,
    NOTE_NOT_SENT,
    NOTE_RESTARTED,
    NOTE_UNKNOWN,
    NOTE_UNPROVEN,
)
from ecrd.money.request import expected_of
from ecrd.store.journal import Change, TxRecord

SETTLED: Final[Mapping[str, Outcome]] = {
    "succeeded": "succeeded",
    "resolved_succeeded": "succeeded",
    "failed": "failed",
    "resolved_failed": "failed",
}
# The identifiers of a charge: two answers that claim one charge must not differ in them.
IDENTIFIERS: Final = ("rrn", "brn", "authCode")
DEFAULT_POLICY: Final = Policy()
# Every (from, to) a change may make; anything else is a bug in this module.
TRANSITIONS: Final = frozenset(
    {("pending", to) for to in ("succeeded", "failed", "unknown")}
    | {("unknown", to) for to in ("succeeded", "failed", "resolved_succeeded", "resolved_failed")}
    | {(settled, "disputed") for settled in SETTLED}
    | {("disputed", to) for to in ("resolved_succeeded", "resolved_failed")}
)


def settle(record: TxRecord, evidence: Evidence, policy: Policy = DEFAULT_POLICY) -> Change:
    """What ``evidence`` does to ``record`` (the table in the module docstring)."""
    if isinstance(evidence, Resolved):
        change = _resolved(record, evidence)
    elif isinstance(evidence, NotSent | NoAnswer | Stopped):
        change = _ended(record, evidence)
    else:
        change = _answered(record, evidence, policy)
    moved = (record.state, change.state)
    assert change.state == record.state or moved in TRANSITIONS, moved
    return change


def _keep(record: TxRecord, evidence: Evidence, why: str) -> Change:
    return Change(record.state, why, evidence=to_obj(evidence))


def _ended(record: TxRecord, evidence: NotSent | NoAnswer | Stopped) -> Change:
    """The exchange ended without an answer; only a pending record learns from that."""
    ref = record.reference_id
    error = {"reason": evidence.reason, "message": evidence.message}
    if record.state != "pending":
        return _keep(record, evidence, f"after the fact: {evidence.message}")
    if isinstance(evidence, NotSent):
        state, note = "failed", NOTE_NOT_SENT
    else:
        state = "unknown"
        note = (NOTE_RESTARTED if isinstance(evidence, Stopped) else NOTE_UNKNOWN).format(ref=ref)
    return Change(state, evidence.message, evidence=to_obj(evidence),
                  set={"error": error, "note": note})  # fmt: skip


def _source(evidence: Answer) -> str:
    if isinstance(evidence, StatusAnswer):
        return f"the terminal's answer to {evidence.action}"
    late = isinstance(evidence, LateReply)
    return "the terminal's late reply" if late else "the terminal's reply"


def _answered(record: TxRecord, evidence: Answer, policy: Policy) -> Change:
    verdict = classify(expected_of(record), evidence, policy)
    source = _source(evidence)
    if record.state in ("pending", "unknown"):
        if verdict.settles:
            fields = {"reply": dict(evidence.body), "error": None, "note": None,
                      "approved_amount": verdict.approved_amount}  # fmt: skip
            return Change(verdict.state, source, evidence=to_obj(evidence), set=fields)
        if record.state == "pending" and not isinstance(evidence, StatusAnswer):
            return _unproven(record, evidence, verdict, source)
        return _keep(record, evidence, f"{source} proves nothing: {verdict.message}")
    outcome = SETTLED.get(record.state)
    conflict = outcome and _contradiction(record, outcome, evidence.body, verdict)
    if not conflict:
        return _keep(record, evidence, f"{source}, kept ({verdict.message or 'agrees'})")
    why = f"{source} {conflict}"
    note = NOTE_DISPUTED.format(ref=record.reference_id, why=why)
    fields = {"error": {"reason": "disputed", "message": why}, "note": note}
    return Change("disputed", why, evidence=to_obj(evidence), set=fields)


def _unproven(record: TxRecord, evidence: Answer, verdict: Verdict, source: str) -> Change:
    why = f"{source} proves nothing: {verdict.message}"
    fields = {
        "reply": dict(evidence.body),
        "error": {"reason": verdict.cause, "message": verdict.message},
        "note": NOTE_UNPROVEN.format(ref=record.reference_id, why=verdict.message),
    }
    return Change("unknown", why, evidence=to_obj(evidence), set=fields)


def _contradiction(
    record: TxRecord, outcome: Outcome, body: Mapping[str, Any], verdict: Verdict
) -> str:
    """How an answer contradicts a settled record ("" when it does not). An answer that
    names another reference is about another payment, whatever request it came back for."""
    named = body.get("referenceID")
    if verdict.claim is None or (named not in (None, "") and named != record.reference_id):
        return ""
    if verdict.claim != outcome:
        said = "a charge" if verdict.claim == "succeeded" else "no charge"
        return f"says {said}, the journal says {record.state}"
    if outcome == "failed" or record.reply is None:
        return ""
    differ = [k for k in IDENTIFIERS if _differs(record.reply.get(k), body.get(k))]
    if _differs(record.approved_amount or record.amount, body.get("amount"), Decimal):
        differ.append("amount")
    return f"claims a charge with another {', '.join(differ)}" if differ else ""


def _differs(recorded: Any, said: Any, as_: Callable[[Any], Any] = str) -> bool:
    """Both known, and not the same (as decimals, for amounts)."""
    if not recorded or not said:
        return False
    try:
        return bool(as_(recorded) != as_(said))
    except (ArithmeticError, TypeError, ValueError):
        return True


def _resolved(record: TxRecord, evidence: Resolved) -> Change:
    ref = record.reference_id
    if record.state == "disputed" and not evidence.note.strip():
        raise errors.InvalidParams(
            f"transaction {ref!r} is disputed: say why you settle it (note)", field="note"
        )
    if record.state not in ("unknown", "disputed"):
        why = "in progress, or its outcome is being written" if record.state == "pending" else ""
        raise errors.InvalidState(
            f"transaction {ref!r} is {record.state}{f' ({why})' if why else ''}; only "
            "unknown and disputed ones can be resolved",
            transaction=record.to_api(),
        )
    fields = {"note": evidence.note, "resolved_by": evidence.who}
    return Change(f"resolved_{evidence.outcome}", evidence.note, who=evidence.who,
                  evidence=to_obj(evidence), set=fields)  # fmt: skip
