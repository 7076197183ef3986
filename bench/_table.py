"""The daemon benchmark's table: one ``Row`` per line, the units, and the percentile.

Every ratio in a row compares two measurements of the same run; ``Row.ok`` is None for an
informational line, else whether its acceptance limit holds (``render`` prints PASS/FAIL).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    median: str
    slow: str = ""
    ratio: str = ""
    limit: str = ""
    ok: bool | None = None

    def verdict(self) -> str:
        return "" if self.ok is None else f"{self.limit}  {'PASS' if self.ok else 'FAIL'}"


def render(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    head = f"{'benchmark':<{width}}  {'median':>12}  {'slow end':>12}  {'vs base':>7}  acceptance"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name:<{width}}  {r.median:>12}  {r.slow:>12}  {r.ratio:>7}  {r.verdict()}".rstrip()
        )
    return "\n".join(lines)


def p(values: list[float], pct: int) -> float:
    """The ``pct`` percentile (inclusive method), or the single value."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f} ms"


def per_s(rate: float) -> str:
    return f"{rate:8.1f} /s"


def mb(value: float) -> str:
    return f"{value:8.1f} MB"
