"""The soak's verdict: the journal's records and the clients' answers held against what
the simulated terminals' ledgers say they were asked and charged.

A lost result is a reference the terminal charged while the journal says failed or has no
record; a double charge is a reference charged more than once. Every other check
(``other_checks``) must find nothing either.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.soak import SaleJob


@dataclass
class Ledgers:
    """What the terminals saw: every request, and every charge, per reference."""

    by_link: dict[str, list[dict[str, Any]]]
    requests: Counter[str] = field(default_factory=Counter)
    charges: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for entries in self.by_link.values():
            for e in entries:
                self.requests[e["referenceID"]] += 1
                self.charges[e["referenceID"]] += bool(e["charged"])


@dataclass
class Findings:
    """The jobs sorted by what the journal and the ledgers say happened to them."""

    lost: list[SaleJob] = field(default_factory=list)
    double: list[SaleJob] = field(default_factory=list)
    phantom: list[SaleJob] = field(default_factory=list)
    resent: list[SaleJob] = field(default_factory=list)
    disagree: list[SaleJob] = field(default_factory=list)
    late: list[SaleJob] = field(default_factory=list)
    unfinished: list[SaleJob] = field(default_factory=list)
    unknown: list[SaleJob] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def judge(
    jobs: list[SaleJob], issued: list[SaleJob], records: dict[str, Any], ledgers: Ledgers
) -> Findings:
    found = Findings()
    charges, requests = ledgers.charges, ledgers.requests
    for job in jobs:
        rec = records.get(job.ref)
        state = rec["state"] if rec else None
        # A charge the journal says failed, or does not hold, is lost; a disputed record is
        # not: the terminal's word is kept and raised for a person.
        if charges[job.ref] and state in (None, "failed", "resolved_failed"):
            found.lost.append(job)
        if charges[job.ref] > 1:
            found.double.append(job)
        if state == "succeeded" and not charges[job.ref]:
            found.phantom.append(job)
        if requests[job.ref] > 1:
            found.resent.append(job)
        if state == "unknown":
            found.unknown.append(job)
        if job in issued and job.outcome is None:
            found.unfinished.append(job)
        # An unknown may be settled later by the terminal's own late reply (serial): that is
        # no disagreement if the settled state matches what the terminal charged.
        settled = state in ("succeeded", "failed") and (state == "succeeded") == bool(
            charges[job.ref]
        )
        if any(o != state and not (o == "unknown" and settled) for o in job.outcomes):
            found.disagree.append(job)
        elif "unknown" in job.outcomes and state != "unknown":
            found.late.append(job)
        found.errors.extend(f"{job.ref}: {p}" for p in job.problems)
    return found


def print_money(found: Findings, records: dict[str, Any], ledgers: Ledgers) -> None:
    """The money line, every unknown, and every lost result or double charge."""
    unknown = found.unknown
    print(
        f"lost results: {len(found.lost)}, double charges: {len(found.double)}, "
        f"unknown: {len(unknown)}" + (" (all listed)" if unknown else "")
    )
    if unknown:
        print(f"  {'reference':<18} {'terminal':<9} {'amount':>7}  {'fault':<15} "
              f"{'reached':<8} {'charged':<8} cause")  # fmt: skip
    for job in unknown:
        cause = (records[job.ref].get("error") or {}).get("reason", "")
        reached = "yes" if ledgers.requests[job.ref] else "no"
        charged = "yes" if ledgers.charges[job.ref] else "no"
        print(
            f"  {job.ref:<18} {job.terminal:<9} {job.amount:>7}  {job.fault:<15} "
            f"{reached:<8} {charged:<8} {cause}"
        )
    for title, bad in (("LOST", found.lost), ("DOUBLE", found.double)):
        for job in bad:
            rec = records.get(job.ref) or {}
            said = f"{rec.get('state')} ({(rec.get('error') or {}).get('reason', '-')})"
            print(f"  {title} {job.ref}: charged {ledgers.charges[job.ref]}x, journal says {said}")


def other_checks(
    found: Findings, records: dict[str, Any], problems: list[str]
) -> dict[str, list[str]]:
    """Every check besides lost results and double charges; each must find nothing."""
    return {
        "successes the terminal never charged": [j.ref for j in found.phantom],
        "references sent to a terminal twice": [j.ref for j in found.resent],
        "clients told other than the journal": [
            f"{j.ref} {j.outcomes} vs {records.get(j.ref, {}).get('state')}" for j in found.disagree
        ],
        "records still pending": [
            r["reference_id"] for r in records.values() if r["state"] == "pending"
        ],
        "clients without a final answer": [j.ref for j in found.unfinished],
        "unexpected errors": found.errors + problems,
    }
