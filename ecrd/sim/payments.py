"""The money side of the simulated terminal: validation, the customer, the ledger.

Sale, PreAuth, Refund and Void go through ``Payments.money``; Abort and the optional status
action read or interrupt the one transaction with the customer. Response bodies follow the
field table of protocol.md §8 (every field present; ``errorCode``/``errorMessage`` are empty
strings on success).

Invariants:

* At most one money request is with the customer at a time; another one is answered
  ``BUSY`` at once.
* A ``referenceID`` that the terminal has *accepted* once (shown to the customer, whatever
  the outcome) is never accepted again: a resent Sale gets ``DUPLICATE_REFERENCE`` and is
  not charged twice. Requests rejected by validation are recorded with ``accepted: False``
  and do not reserve their referenceID.
* Nothing is charged before the customer step has ended normally: an Abort, a reboot, or
  the client going away (the request task is cancelled) leaves ``charged: False``.
* Amounts are ``Decimal`` inside and two-decimal strings on the wire and in the ledger.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

import attrs
import trio

from ecrd.protocol.envelope import (
    AmountError,
    check_currency,
    format_amount,
    parse_amount,
    timestamp,
)
from ecrd.sim.faults import Fault

PAYMENT_METHODS: Final[Mapping[str, str]] = {
    # paymentMethod -> the paymentEntryType the simulated customer uses with it
    "credit_card": "contactless",
    "octopus": "contactless",
    "fps": "qr_code",
    "consumer_presented_qr_code": "qr_code",
}
ZERO: Final = Decimal("0.00")

Body = dict[str, Any]


def failed(code: str, message: str, **fields: Any) -> Body:
    return {"status": "Failed", "errorCode": code, "errorMessage": message, **fields}


class Rejected(Exception):
    """A money request the terminal refuses before the customer sees it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.define
class InFlight:
    """The transaction with the customer; ``ended_by`` says who interrupted it."""

    entry: dict[str, Any]
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    ended_by: str | None = None  # "abort" | "reboot"


class Payments:
    def __init__(
        self, *, customer_delay: float = 0.0, clock: Callable[[], str] = timestamp
    ) -> None:
        self.ledger: list[dict[str, Any]] = []
        self.customer_delay = customer_delay
        self._clock = clock
        self._current: InFlight | None = None

    @property
    def busy(self) -> bool:
        return self._current is not None

    # -- lookups ------------------------------------------------------------------------

    def _accepted(self, reference_id: str) -> dict[str, Any] | None:
        found = [e for e in self.ledger if e["accepted"] and e["referenceID"] == reference_id]
        return found[-1] if found else None

    def charges(self, reference_id: str) -> int:
        return sum(1 for e in self.ledger if e["referenceID"] == reference_id and e["charged"])

    # -- money --------------------------------------------------------------------------

    async def money(self, action: str, body: Body, faults: Mapping[str, Fault]) -> Body | None:
        """Run one money request; ``None`` means the terminal says nothing (reboot)."""
        entry = self._entry(action, body)
        self.ledger.append(entry)
        try:
            self._validate(action, body, entry)
        except Rejected as exc:
            return self._finish(entry, failed(exc.code, exc.message))
        entry["accepted"] = True
        current = self._current = InFlight(entry)
        try:
            with current.scope:
                await self._customer(faults)
        except trio.Cancelled:
            # The client went away (connection closed, gateway timeout, shutdown): the
            # terminal gives up on the customer and charges nothing.
            self._finish(entry, failed("CONNECTION_CLOSED", "the client went away"))
            raise
        finally:
            if self._current is current:
                self._current = None
        if current.ended_by == "reboot":
            self._finish(entry, failed("REBOOTED", "the terminal restarted"))
            return None
        if current.ended_by == "abort":
            return self._finish(entry, failed("ABORTED", "aborted by the ECR"))
        if "decline" in faults:
            params = faults["decline"].params
            return self._finish(
                entry, failed(str(params["error_code"]), str(params["error_message"]))
            )
        _change_amount(entry, faults)
        return self._charge(entry)

    async def _customer(self, faults: Mapping[str, Fault]) -> None:
        if "never_answer" in faults:
            await trio.sleep_forever()
        delay = self.customer_delay
        if "delay" in faults:
            delay = float(faults["delay"].params["seconds"])
        await trio.sleep(delay)

    def _entry(self, action: str, body: Body) -> dict[str, Any]:
        ref = body.get("referenceID")
        return {
            "referenceID": ref if isinstance(ref, str) else None,
            "action": action,
            "amount": body.get("amount") if isinstance(body.get("amount"), str) else None,
            "currency": body.get("currency") if isinstance(body.get("currency"), str) else None,
            "originalReferenceID": body.get("originalReferenceID"),
            "customerOrderID": str(body.get("customerOrderID") or ""),
            "paymentMethod": body.get("paymentMethod") or "credit_card",
            "accepted": False,
            "charged": False,
            "status": "InProgress",
            "errorCode": "",
            "voided": False,
            "refunded": "0.00",
            "time": self._clock(),
            "reply": None,
        }

    def _validate(self, action: str, body: Body, entry: dict[str, Any]) -> None:
        ref = entry["referenceID"]
        if not ref:
            raise Rejected("INVALID_REQUEST", "referenceID is required")
        if self._accepted(ref) is not None:
            raise Rejected("DUPLICATE_REFERENCE", f"referenceID {ref!r} was already used")
        if action in ("Sale", "PreAuth"):
            self._validate_purchase(body)
        elif action == "Refund":
            self._validate_refund(body, entry)
        else:
            self._validate_void(entry)
        if self._current is not None:
            raise Rejected("BUSY", "another transaction is in progress")

    def _validate_purchase(self, body: Body) -> None:
        _amount(body)
        if body.get("paymentMethod", "credit_card") not in PAYMENT_METHODS:
            raise Rejected(
                "INVALID_PAYMENT_METHOD",
                f"paymentMethod must be one of {', '.join(PAYMENT_METHODS)}",
            )
        if body.get("print", "NO") not in ("YES", "NO"):
            raise Rejected("INVALID_REQUEST", 'print must be "YES" or "NO"')

    def _original(self, entry: dict[str, Any], actions: tuple[str, ...]) -> dict[str, Any]:
        ref = entry["originalReferenceID"]
        original = self._accepted(ref) if isinstance(ref, str) else None
        if original is None or original["status"] != "Success" or original["action"] not in actions:
            raise Rejected("ORIGINAL_NOT_FOUND", f"no successful transaction {ref!r}")
        if original["voided"]:
            raise Rejected("ALREADY_VOIDED", f"transaction {ref!r} was voided")
        return original

    def _validate_refund(self, body: Body, entry: dict[str, Any]) -> None:
        amount, currency = _amount(body)
        original = self._original(entry, ("Sale", "PreAuth"))
        if currency != original["currency"]:
            raise Rejected("CURRENCY_MISMATCH", "currency differs from the original")
        left = Decimal(original["amount"]) - Decimal(original["refunded"])
        if amount > left:
            raise Rejected("AMOUNT_EXCEEDS_REFUNDABLE", f"only {format_amount(left)} is left")
        entry["paymentMethod"] = original["paymentMethod"]

    def _validate_void(self, entry: dict[str, Any]) -> None:
        original = self._original(entry, ("Sale", "PreAuth", "Refund"))
        if Decimal(original["refunded"]) > ZERO:
            raise Rejected("NOT_VOIDABLE", "a transaction with refunds cannot be voided")
        for key in ("amount", "currency", "paymentMethod", "customerOrderID"):
            entry[key] = original[key]

    def _charge(self, entry: dict[str, Any]) -> Body:
        entry["charged"] = True
        if entry["action"] == "Refund":
            original = self._accepted(entry["originalReferenceID"])
            assert original is not None  # validated, and nothing ran in between
            original["refunded"] = format_amount(
                Decimal(original["refunded"]) + Decimal(entry["amount"])
            )
        elif entry["action"] == "Void":
            original = self._accepted(entry["originalReferenceID"])
            assert original is not None
            original["voided"] = True
            if original["action"] == "Refund":  # the refunded money goes back to the sale
                sale = self._accepted(original["originalReferenceID"])
                assert sale is not None
                sale["refunded"] = format_amount(
                    Decimal(sale["refunded"]) - Decimal(original["amount"])
                )
        digits = string.digits
        return self._finish(
            entry,
            {"status": "Success", "errorCode": "", "errorMessage": ""},
            rrn="".join(secrets.choice(digits) for _ in range(12)),
            brn="".join(secrets.choice(digits) for _ in range(6)),
            authCode="".join(secrets.choice(digits + "ABCDEF") for _ in range(6)),
        )

    def _finish(self, entry: dict[str, Any], result: Body, **extra: str) -> Body:
        entry["status"] = result["status"]
        entry["errorCode"] = result["errorCode"]
        body = sale_shaped(entry, result, **extra)
        entry["reply"] = body
        return body

    # -- abort, status, reboot ------------------------------------------------------------

    def abort(self, body: Body) -> Body:
        current = self._current
        ref = body.get("referenceID")
        if current is None or current.ended_by is not None:
            return failed("NO_TRANSACTION", "no transaction is in progress")
        if ref and ref != current.entry["referenceID"]:
            return failed("NOT_FOUND", f"transaction {ref!r} is not the one in progress")
        current.ended_by = "abort"
        current.scope.cancel()
        return {
            "status": "Success",
            "errorCode": "",
            "errorMessage": "",
            "referenceID": current.entry["referenceID"],
        }

    def status(self, body: Body, answer: Fault | None = None) -> Body:
        ref = body.get("referenceID")
        if answer is not None:  # the status_answer fault: what some firmware says instead
            said = failed(str(answer.params["error_code"]), "as configured")
            said["status"] = str(answer.params["status"])
            if answer.params["echo"] == "yes":
                entry = self._accepted(ref) if isinstance(ref, str) else None
                kind = entry["action"] if entry is not None else "Sale"
                said.update(referenceID=ref, transactionType=kind)
            return said
        entry = self._accepted(ref) if isinstance(ref, str) else None
        if entry is None:
            return failed("NOT_FOUND", f"no transaction {ref!r}")
        if entry["reply"] is None:
            # Not in protocol.md: "Pending" tells a status query that the customer is still
            # busy, rather than a Failed that a client might settle as "not charged".
            return sale_shaped(entry, {"status": "Pending", "errorCode": "", "errorMessage": ""})
        return dict(entry["reply"])

    def reboot(self) -> None:
        """Interrupt the transaction with the customer; it ends REBOOTED, unanswered."""
        if self._current is not None and self._current.ended_by is None:
            self._current.ended_by = "reboot"
            self._current.scope.cancel()


def _change_amount(entry: dict[str, Any], faults: Mapping[str, Fault]) -> None:
    """The tip and partial faults: the terminal approves another amount than asked."""
    asked = Decimal(entry["amount"])
    if "tip" in faults and entry["action"] == "Sale":
        tip = Decimal(str(faults["tip"].params["amount"]))
        entry["amount"], entry["tipAmount"] = format_amount(asked + tip), format_amount(tip)
    elif "partial" in faults and entry["action"] in ("Sale", "PreAuth"):
        approved = Decimal(str(faults["partial"].params["amount"]))
        entry["amount"] = format_amount(min(approved, asked))


def _amount(body: Body) -> tuple[Decimal, str]:
    try:
        amount = parse_amount(body.get("amount"))
    except AmountError as exc:
        raise Rejected("INVALID_AMOUNT", str(exc)) from exc
    try:
        currency = check_currency(body.get("currency"))
    except AmountError as exc:
        raise Rejected("INVALID_CURRENCY", str(exc)) from exc
    return amount, currency


def sale_shaped(entry: Mapping[str, Any], result: Body, **extra: str) -> Body:
    """The protocol.md §8 response body for a money transaction."""
    method = entry["paymentMethod"] if entry["paymentMethod"] in PAYMENT_METHODS else ""
    body: Body = {
        **result,
        "referenceID": entry["referenceID"] or "",
        "customerOrderID": entry["customerOrderID"],
        "currency": entry["currency"] or "",
        "amount": entry["amount"] or "",
        "paymentMethod": method,
        "paymentEntryType": PAYMENT_METHODS.get(method, "") if extra else "",
        "rrn": extra.get("rrn", ""),
        "brn": extra.get("brn", ""),
        "authCode": extra.get("authCode", ""),
        "transactionType": entry["action"],
        "transactionTime": entry["time"],
    }
    if entry["action"] in ("Refund", "Void"):
        body["originalReferenceID"] = entry["originalReferenceID"] or ""
    if entry.get("tipAmount"):
        body["tipAmount"] = entry["tipAmount"]
    return body
