"""Which actions move money: the one definition (protocol.md §8).

* ``MONEY_ACTIONS`` are the actions ecrd models: each is journaled before it is sent and
  settled only on proof (design.md §3). ``MONEY_METHODS`` maps the socket API's method
  names to them.
* ``money_like`` says whether *any* action name may move money, pair, or cancel, under a
  name ecrd does not model (``PreAuthCompletion``, ``Capture``, ``TipAdjust``...). What an
  admin may list for ``terminal.send`` (``send_actions``), ask as the ``status_action`` or
  use to confirm a pairing is an allowlist the admin writes; this is the guard on that
  allowlist, applied by ``check-config``, at start, at reload and again by the API before a
  byte is sent, so the four can never disagree.

An action name is read as words (``PreAuthCompletion`` → pre, auth, completion; ``TIP_ADJUST``
→ tip, adjust), so a word inside another (``Multiple``) is not mistaken for one (``tip``).

Pure: no I/O.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

MONEY_ACTIONS: Final = ("Sale", "PreAuth", "Refund", "Void")
# The socket API's method for each (docs/api.md): "sale" -> "Sale".
MONEY_METHODS: Final = {action.lower(): action for action in MONEY_ACTIONS}
# Pairing, cancelling and the cloud's pairing look-up: never sent outside their own flows.
CONTROL_ACTIONS: Final = ("Pair", "Abort", "ConnectionInfo")

# Words that, in an action's name, say it may move money (charge, hold, capture, pay back,
# adjust, reverse or cancel a payment), pair or cancel. Not "payment" or "status": a
# read-only query may well be called PaymentStatus.
MONEY_WORDS: Final = frozenset(
    {
        "sale", "sales", "preauth", "auth", "authorize", "authorise", "authorization",
        "authorisation", "refund", "void", "capture", "completion", "complete", "tip",
        "adjust", "adjustment", "charge", "purchase", "reversal", "reverse", "cancel",
        "cancellation", "credit", "debit", "topup", "cashback", "incremental", "increment",
        "pair", "abort", "connectioninfo",
    }
)  # fmt: skip
_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def words(action: str) -> list[str]:
    """The words of an action's name, lower case: ``PreAuthCompletion`` → pre, auth,
    completion."""
    return [w.lower() for w in _WORD.findall(action)]


def money_like(action: str) -> bool:
    """Whether ``action`` may move money, pair or cancel (see the module docstring)."""
    found = words(action)
    joined = "".join(found)
    return (
        joined in MONEY_WORDS
        or any(w in MONEY_WORDS for w in found)
        # "Pre Auth", "pre-auth", "PREAUTH": the words joined pairwise too.
        or any(a + b in MONEY_WORDS for a, b in itertools.pairwise(found))
    )
