"""The params of a socket API call, validated into plain values: ``InvalidParams`` names
the field and what was expected. No text parameter may hold a control character
(``no_controls``), so nothing a client sends can forge a log line or reach a terminal."""

from __future__ import annotations

import json
from typing import Any

from ecrd import errors
from ecrd.api.service import Service
from ecrd.terminal.terminal import Terminal
from ecrd.text import first_control


class Params:
    def __init__(self, raw: dict[str, Any], allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise errors.InvalidParams(
                f"unknown parameter {unknown[0]!r}; this method takes: "
                + (", ".join(allowed) or "nothing"),
                field=unknown[0],
            )
        self.raw = raw

    def text(self, name: str, *, required: bool = False, max_len: int = 128) -> Any:
        value = self.raw.get(name)
        if value is None:
            if required:
                raise errors.InvalidParams(f"{name} is required", field=name)
            return None
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise errors.InvalidParams(
                f"{name} must be a non-empty string of at most {max_len} characters", field=name
            )
        no_controls(value, name)
        return value

    def choice(self, name: str, choices: tuple[str, ...], *, required: bool = False) -> Any:
        value = self.text(name, required=required)
        if value is not None and value not in choices:
            raise errors.InvalidParams(f"{name} must be one of {', '.join(choices)}", field=name)
        return value

    def number(self, name: str, low: float, high: float) -> float | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise errors.InvalidParams(
                f"{name} must be a number from {low:g} to {high:g}", field=name
            )
        return float(value)

    def flag(self, name: str) -> bool:
        value = self.raw.get(name, False)
        if not isinstance(value, bool):
            raise errors.InvalidParams(f"{name} must be true or false", field=name)
        return value

    def obj(self, name: str, *, max_bytes: int | None = None) -> dict[str, Any] | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise errors.InvalidParams(f"{name} must be a JSON object", field=name)
        no_controls(value, name)
        if max_bytes is not None and len(compact(value)) > max_bytes:
            raise errors.InvalidParams(
                f"{name} must be at most {max_bytes} bytes as compact JSON", field=name
            )
        return value

    def terminal(self, daemon: Service) -> Terminal:
        tid = self.text("terminal", required=True)
        term = daemon.terminals.get(tid)
        if term is None:
            raise errors.TerminalNotFound(
                f"no terminal {tid!r}; configured: {', '.join(daemon.terminals) or 'none'}",
                terminal=tid,
            )
        return term


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        errors="surrogatepass"
    )


def no_controls(value: Any, name: str) -> None:
    """Text with a control character never reaches a terminal, the journal or a log."""
    where = first_control(value, name)
    if where is not None:
        raise errors.InvalidParams(
            f"{where} must not contain control characters (newline, tab, ESC...)", field=where
        )
