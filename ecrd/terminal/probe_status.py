"""``terminal.probe`` with ``status``: which status action does this paired terminal know?

Protocol 2.0 documents none (1.0 had ``TransactionStatus``), and without one every lost
reply waits for a person. This asks the terminal, on its own link and under its own PIN
(pinCode2), while the probe holds it busy:

1. ``DeviceInfo``, to know the link and the PIN work at all;
2. a control: an action name that cannot exist, to hear what the terminal says to an
   action it does not know;
3. each read-only candidate (``CANDIDATES``, the entry's ``status_action`` first), each
   with a ``referenceID`` never used before (``probe-<uuid>``, fresh per request).

A candidate is *recognised* when its answer differs from the control's — another status
or errorCode, a reply where the control had none, or the reverse — decided by evidence,
not by a list of codes that mean "unknown action". Each answer's ``status``,
``errorCode`` and ``errorMessage`` are reported verbatim: for a reference the terminal
never saw, a recognised action's errorCode is the one a never-charged payment would get,
which is what an admin needs to decide ``not_charged_codes``.

Never a money action, never Pair, Abort or ConnectionInfo: every name sent passes
``protocol.actions.money_like(...) is False``, checked when this module loads and again
before each request.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import attrs
import trio

from ecrd import errors
from ecrd.protocol.actions import money_like
from ecrd.terminal.pairing import not_paired_message
from ecrd.terminal.probing import MAX_LIMIT_S, OnTry, uniq
from ecrd.terminal.terminal import Terminal

CANDIDATES: Final = (
    "TransactionStatus", "QueryTransaction", "TransactionQuery", "QueryStatus",
    "GetTransaction", "TransactionInquiry", "GetTransactionStatus", "PaymentStatus",
)  # fmt: skip
# A name no terminal has: what it answers is what "I do not know this action" looks like.
CONTROL: Final = "EcrdProbeNoSuchAction"
TRY_S: Final = 5.0


def _read_only(action: str) -> str:
    if money_like(action):  # a guard, not an assert: it must hold under python -O too
        raise RuntimeError(f"{action!r} may move money, pair or cancel: never a status probe")
    return action


for _name in (*CANDIDATES, CONTROL):
    _read_only(_name)


@attrs.frozen
class Answer:
    """What the terminal said to one action, verbatim, and what to compare it by."""

    action: str
    reference_id: str
    said: dict[str, Any] | None  # status, errorCode, errorMessage (and its reply's action)
    error: str | None = None  # no usable reply: why

    def signature(self) -> tuple[Any, ...]:
        """What a recognised action's answer must differ from the control's in (not the
        message, which may name the action or the reference)."""
        if self.said is None:
            return ("no reply",)
        echo = self.said.get("action") == self.action
        return ("reply", self.said.get("status"), self.said.get("errorCode"), echo)

    def line(self) -> str:
        if self.said is None:
            return f"no usable reply: {self.error}"
        return ", ".join(f"{k} {v!r}" for k, v in self.said.items() if k != "action")


async def ask(term: Terminal, action: str) -> Answer:
    """``action`` about a reference never used (DeviceInfo: no body), on the terminal's
    own link, under its PIN."""
    reference = f"probe-{uuid.uuid4()}"
    body = None if action == "DeviceInfo" else {"referenceID": reference}
    try:
        response = await term.exchange(
            _read_only(action), body, links=(term.cfg.transport,),
            timeout=min(term.cfg.info_timeout_s, TRY_S),
        )  # fmt: skip
    except Exception as exc:  # the answer is what failed: reported, compared
        return Answer(action, reference, None, f"{errors.reason_of(exc)}: {exc}")
    body = response.body
    said = {k: body[k] for k in ("status", "errorCode", "errorMessage") if k in body}
    return Answer(action, reference, said | {"action": response.action})


async def discover_status(
    term: Terminal, *, limit_s: float = MAX_LIMIT_S, on_try: OnTry | None = None
) -> dict[str, Any]:
    """The result of ``terminal.probe`` with ``status``: see the module docstring."""
    if not term.paired:
        raise errors.NotPaired(not_paired_message(term.id, term.pending is not None))
    result: dict[str, Any] = {
        "terminal": term.id, "status_actions": [], "recognised": [], "tried": [],
    }  # fmt: skip
    with trio.move_on_after(min(limit_s, MAX_LIMIT_S)) as scope:
        await _discover(term, result, on_try)
    if scope.cancelled_caught:
        result["stopped"] = f"stopped at the time limit ({limit_s:g} s)"
    return result


async def _discover(term: Terminal, result: dict[str, Any], on_try: OnTry | None) -> None:
    def note(answer: Answer, what: str) -> None:
        step = {"settings": {"status_action": answer.action}, "result": what}
        result["tried"].append(step)  # as the events say it, for a client that missed some
        if on_try is not None:
            on_try(step)

    baseline = await ask(term, "DeviceInfo")
    note(baseline, f"(the link and the PIN) {'answered' if baseline.said else baseline.line()}")
    if baseline.said is None:
        result["error"] = f"the terminal does not answer DeviceInfo: {baseline.error}"
        return
    control = await ask(term, CONTROL)
    result["control"] = _entry(control, None)
    note(control, f"(control, cannot exist) {control.line()}")
    for action in uniq([*filter(None, [term.cfg.status_action]), *CANDIDATES]):
        answer = await ask(term, action)
        recognised = answer.signature() != control.signature()
        result["status_actions"].append(_entry(answer, recognised))
        if recognised:
            result["recognised"].append(action)
        note(answer, f"{'recognised' if recognised else 'as the control'}: {answer.line()}")


def _entry(answer: Answer, recognised: bool | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "action": answer.action,
        "reference_id": answer.reference_id,
        "answer": answer.said,
        "error": answer.error,
    }
    if recognised is not None:
        entry["recognised"] = recognised
    return entry
