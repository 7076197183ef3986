"""JSON as every peer of ecrd must speak it: what can be journaled and sent on unchanged.

``loads`` refuses what Python's ``json`` accepts but JSON does not, or what could not be
written back out: ``NaN``/``Infinity``, numbers that overflow a float (``1e999``), lone
UTF-16 surrogate escapes (``"\\ud800"``), nesting deeper than the interpreter allows, and
duplicate keys in an object (``{"status":"Failed","status":"Success"}``: which one counts
depends on the reader, so a reply or request that says both says nothing). Each is a
``ValueError`` with a short message (``DuplicateKey`` for the last). Used for the socket's
requests and for the terminals' decrypted replies alike.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class DuplicateKey(ValueError):
    """An object names the same key twice."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(f"key {key[:40]!r} appears twice in one object")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def _has_lone_surrogate(obj: Any) -> bool:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(text: str) -> Any:
    try:
        obj = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if "\\u" in text and _has_lone_surrogate(obj):
        raise ValueError("a lone UTF-16 surrogate escape cannot be encoded")
    return obj
