"""Text that crosses a trust boundary: control characters are refused on the way in and
escaped on the way out.

A control character in a reference id or a terminal's reply must never become a forged log
line (``\\n`` followed by ``CRITICAL ...``) or an escape sequence on an admin's terminal
(``ESC [ 2 J``). Requests and the config refuse them (``has_control``); logs and
``ecrctl`` escape whatever still carries one (``escape``), such as a terminal's reply.
"""

from __future__ import annotations

import re
from typing import Any, Final

# C0, DEL, C1, and the Unicode line and paragraph separators (which some viewers break on).
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\x{ord(char):02x}"


def escape(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\n``, ``\\x1b``)."""
    return _CONTROL.sub(_escaped, text)


def first_control(value: Any, where: str) -> str | None:
    """The path (``extra.note``) of the first string in a JSON value, key or item, that holds
    a control character; None if there is none."""
    if isinstance(value, str):
        return where if has_control(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if has_control(str(key)):
                return where
            found = first_control(item, f"{where}.{key}")
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = first_control(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None
