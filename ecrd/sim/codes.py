"""Pairing codes as a terminal shows them: six characters, digits only (today's
terminals) or A-Z and 0-9 (the older vendor pages' six uppercase characters)."""

from __future__ import annotations

import re
import secrets
import string
from typing import Final

DIGITS: Final = string.digits
LETTERS: Final = string.ascii_uppercase + string.digits
_CODE_RE: Final = re.compile(r"[A-Z0-9]{6}")


def valid_code(code: object) -> bool:
    """Six of A-Z and 0-9, exactly as a terminal would show it (uppercase)."""
    return isinstance(code, str) and code.isascii() and _CODE_RE.fullmatch(code) is not None


def new_code(alphabet: str, *avoid: str | None) -> str:
    while True:
        code = "".join(secrets.choice(alphabet) for _ in range(6))
        if code not in avoid:
            return code
