"""How the files in this directory were made: ecrd 0.1.0 writing its own state.

    python tests/data/v0.1.0/generate.py tests/data/v0.1.0

It drives ecrd 0.1.0's own store classes (``Journal``, ``PairingStore``) through the same
calls the daemon makes, with a fixed clock, so that ``journal.sqlite3`` and
``pairings.toml`` are exactly what that version leaves in ``/var/lib/ecrd``. It refuses to
run under any other version: these files stand for 0.1.0 forever and are never
regenerated. A later schema or format gets its own directory and its own script
(docs/internals.md, "State on disk").

``tests/test_upgrade.py`` checks that the current code opens these files and keeps every
record and pairing.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ecrd
from ecrd.store.journal import SCHEMA_VERSION, Journal
from ecrd.store.pairings import Pairing, PairingStore

VERSION = "0.1.0"
NOTE_UNKNOWN = (
    "The request reached (or may have reached) the terminal but no usable reply came back, "
    "so the customer may have been charged. Check the terminal's last transactions for "
    "reference {ref}, then settle it with `ecrctl resolve {ref} succeeded|failed`."
)
POS = "uid=1001 pid=4242"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1, milliseconds=250)
        return self.now


def sale(journal: Journal, ref: str, terminal: str, link: str, amount: str, **more: str) -> None:
    params = {"amount": amount, "currency": "HKD", **more}
    journal.begin(
        reference_id=ref,
        terminal=terminal,
        action="Sale",
        params=params,
        amount=amount,
        currency="HKD",
        who=POS,
        request_id=f"req-{ref}",
        link=link,
    )


def reply(ref: str, status: str, **more: str) -> dict[str, str]:
    return {"requestID": f"req-{ref}", "referenceID": ref, "status": status, **more}


def timeout(ref: str) -> dict[str, str]:
    return {"reason": "timeout", "message": f"no reply to req-{ref} within 60 s"}


def write_journal(path: Path) -> None:
    with Journal(path, clock=Clock()) as j:
        sale(j, "order-1001", "counter-1", "lan", "10.20", print="YES")
        j.finish("order-1001", state="succeeded", reply=reply("order-1001", "Success", rrn="1"))
        sale(j, "order-1002", "counter-1", "lan", "99.00", payment_method="card")
        declined = reply("order-1002", "Failed", errorCode="51", errorMessage="Declined")
        j.finish("order-1002", state="failed", reply=declined)
        sale(j, "order-1003", "counter-2", "serial", "5.00")
        j.finish(
            "order-1003",
            state="unknown",
            error=timeout("order-1003"),
            note=NOTE_UNKNOWN.format(ref="order-1003"),
        )
        for ref, outcome in (("order-1004", "succeeded"), ("order-1005", "failed")):
            sale(j, ref, "counter-2", "serial", "7.50")
            j.finish(ref, state="unknown", error=timeout(ref), note=NOTE_UNKNOWN.format(ref=ref))
            j.resolve(
                ref,
                outcome=outcome,
                note=f"checked the terminal: {outcome} 已核對",
                who="uid=0 (root)",
            )
        sale(j, "order-1006", "counter-1", "lan", "3.30")
        j.finish(
            "order-1006",
            state="unknown",
            error=timeout("order-1006"),
            note=NOTE_UNKNOWN.format(ref="order-1006"),
        )
        j.settle("order-1006", state="succeeded", reply=reply("order-1006", "Success"))
        j.begin(
            reference_id="refund-1001",
            terminal="counter-1",
            action="Refund",
            params={"amount": "10.20", "currency": "HKD", "original_reference_id": "order-1001"},
            amount="10.20",
            currency="HKD",
            who=POS,
            request_id="req-refund-1001",
            link="lan",
        )
        j.finish("refund-1001", state="succeeded", reply=reply("refund-1001", "Success"))
        j.begin(
            reference_id="void-1002",
            terminal="counter-1",
            action="Void",
            params={"original_reference_id": "order-1002"},
            amount=None,
            currency=None,
            who=POS,
            request_id="req-void-1002",
            link="lan",
        )
        j.mark_sending("void-1002", request_id="req-void-1002-cloud", link="cloud")
        j.finish(
            "void-1002",
            state="failed",
            error={"reason": "link_down", "message": "cloud relay unreachable"},
            note="The request never reached the terminal; nothing was charged.",
        )
        sale(j, "order-1007", "counter-3", "cloud", "42.00", customer_order_id="T12-7")
        j.mark_sending("order-1007", request_id="req-order-1007", link="cloud")
        # order-1007 stays pending: ecrd 0.1.0 stopped while it was in flight.


def write_pairings(path: Path) -> None:
    store = PairingStore(path)
    store.put(
        Pairing(
            terminal_id="counter-1",
            device_sn="NEXGO-N96-1170270945",
            pin="654321",
            scheme="v2",
            host="192.168.1.50",
            port=8443,
            paired_at="2026-11-12T10:11:04+00:00",
        )
    )
    store.put(
        Pairing(
            terminal_id="counter-2",
            device_sn="PAX-A920-0042",
            pin="112233",
            scheme="legacy",
            paired_at="2026-11-13T08:00:00+00:00",
        )
    )
    store.put(
        Pairing(
            terminal_id="counter-3",
            device_sn="NEXGO-N86-77",
            pin="908172",
            scheme="v2",
            paired_at="2026-11-14T17:45:30+08:00",
        )
    )


def main(argv: list[str]) -> int:
    if ecrd.__version__ != VERSION or SCHEMA_VERSION != 1:
        print(
            f"generate.py: this is ecrd {ecrd.__version__}; only {VERSION} may write these files",
            file=sys.stderr,
        )
        return 2
    out = Path(argv[1])
    for name in ("journal.sqlite3", "pairings.toml"):
        if (out / name).exists():
            print(f"generate.py: {out / name} exists; not overwritten", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    write_journal(out / "journal.sqlite3")
    write_pairings(out / "pairings.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
