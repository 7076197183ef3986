"""One simulated Wonder terminal, independent of the link that reaches it.

``SimTerminal.handle(envelope, link)`` takes a request envelope and returns a ``Reply``: the
sealed reply envelope (or none) plus what the link should do to the bytes (garbage, a bad
CRC, a slow write). LAN, serial and cloud servers are thin shells around this call.

Pairing (protocol.md §7), as the simulator models it:

* The pairing page shows **pinCode1**. Under pinCode1 only DeviceInfo, ConnectionInfo and
  Pair are served; anything else is answered ``NOT_PAIRED`` (unknown actions:
  ``UNSUPPORTED_ACTION``).
* Pair (under pinCode1) issues a new **pinCode2** and invalidates any older pinCode2.
  pinCode1 stays valid until the first request that decrypts under pinCode2 (the
  confirmation); from then on only pinCode2 works, until the pairing page is shown again
  (``show_pairing_page``) or the terminal reboots (which forgets pinCode2).
* Pair under pinCode2 is answered ``PAIRING_CLOSED``: re-pairing needs the code on screen.

Invariants:

* A request that does not decrypt under a currently valid PIN is never answered with
  success: the reply (same action, body ``DECRYPT_FAILED``) is sealed under a key no
  client has, so the client sees a wrong-key error.
* Every reply carries ``responseID`` = the request's ``requestID`` (unless the
  ``stale_response`` fault says otherwise), ``serverDeviceSN`` = this SN, and an RFC 3339
  timestamp. v2 replies get a fresh random salt unless ``reply_salt_reuse`` is set.
* Key derivations (~19 ms of CPU each) run in worker threads, never on the event loop.
* PINs are never logged. Only pinCode1, which the real terminal shows on its screen, is
  exposed (``pin1``, ``qr``, the control API).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, Final, Literal, TypeVar, TypeVarTuple

import attrs
import trio

from ecrd.protocol import crypto
from ecrd.protocol.crypto import KeyCache, Scheme
from ecrd.protocol.envelope import (
    PIN_FIELDS,
    Envelope,
    MalformedMessage,
    body_of,
    request_header,
    timestamp,
)
from ecrd.sim import strict
from ecrd.sim.codes import DIGITS, LETTERS, new_code, valid_code
from ecrd.sim.faults import MONEY_ACTIONS, Fault, FaultBook, magic_fault, make_fault
from ecrd.sim.payments import Body, Payments, failed
from ecrd.sim.shaping import Reply, contradict, shape
from ecrd.workers import Workers

log = logging.getLogger("ecrd.sim")
screen = logging.getLogger("ecrd.sim.screen")  # what the terminal displays, pinCode1 included
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

LinkKind = Literal["lan", "serial", "cloud"]
DEFAULT_SN: Final = "NEXGO-N96-1170270945"
DEFAULT_BUSINESS_ID: Final = "411d6207-1470-4d35-a557-54852463844d"
DEFAULT_PORT: Final = 8443  # the port in the seed's pairing QR example
PIN2_FIELDS: Final = PIN_FIELDS  # the field names a terminal may answer Pair with
INFO_ACTIONS: Final = ("DeviceInfo", "ConnectionInfo")  # what it answers under pinCode1
# Faults the terminal itself acts on; business_mismatch belongs to the cloud gateway.
TERMINAL_FAULTS: Final = frozenset(
    {"delay", "decline", "never_answer", "drop", "wrong_key", "not_json", "stale_response",
     "garbage", "bad_crc", "dribble", "mismatch", "tip", "partial"}
)  # fmt: skip

# A secret no client can hold: not 6 characters, so it never equals a pairing code.
_ALIEN_PIN: Final = secrets.token_hex(8)
_REUSED_SALTS: dict[str, bytes] = {}  # with reply_salt_reuse: one salt per PIN
# The simulator stands in for separate hardware: its derivations run on low-priority
# threads so that, sharing a machine with ecrd in tests and benchmarks, it does not take
# the CPU from ecrd's event loop (see ecrd/workers.py).
_WORKERS = Workers()


async def in_thread(fn: Callable[[*Ts], T], *args: *Ts) -> T:
    return await _WORKERS.run(partial(fn, *args))


def _check_options(
    scheme: str, pin2_field: str, pin1: str | None, pin2: str | None, identify_only: str | None
) -> None:
    if identify_only not in (None, *INFO_ACTIONS):
        raise ValueError(f"identify_only must be one of {INFO_ACTIONS}")
    if scheme not in crypto.SCHEMES:
        raise ValueError(f"scheme must be one of {crypto.SCHEMES}")
    if pin2_field not in PIN2_FIELDS:
        raise ValueError(f"pin2_field must be one of {PIN2_FIELDS}")
    for pin in (pin1, pin2):
        if pin is not None and not valid_code(pin):
            raise ValueError("a pairing code is 6 characters, A-Z and 0-9")
    if pin1 is not None and pin1 == pin2:
        raise ValueError("pinCode2 must differ from pinCode1")


@attrs.define
class Stats:
    requests: int = 0
    decrypt_failed: int = 0
    replies: int = 0
    cloud_calls: int = 0  # relayed to it by the gateway
    cloud_calls_without_sn: int = 0  # of those, how many came without x-device-sn


class SimTerminal:
    """A Wonder terminal: pairing state, payments, faults. Shared by all its links."""

    def __init__(
        self,
        sn: str = DEFAULT_SN,
        *,
        business_id: str = DEFAULT_BUSINESS_ID,
        scheme: Scheme = "v2",
        pin1: str | None = None,
        pin2: str | None = None,
        pin2_field: str = "pinCode2",
        status_action: str | None = None,
        ip: str = "127.0.0.1",
        port: int | None = None,
        customer_delay: float = 0.0,
        magic_amounts: bool = True,
        magic_delay: float = 3.0,
        reply_salt_reuse: bool = False,
        keys: KeyCache | None = None,
        letter_codes: bool = False,
        identify_only: str | None = None,
        pair_uuid_field: str = "pairUuid",
        strict: bool = False,
    ) -> None:
        _check_options(scheme, pin2_field, pin1, pin2, identify_only)
        # The codes this terminal makes up: digits, or (older firmware) letters too.
        self.code_alphabet = LETTERS if letter_codes else DIGITS
        self.sn = sn
        self.business_id = business_id
        self.scheme: Scheme = scheme
        self.pin2_field = pin2_field
        # Readings of the vendor's document a real terminal may differ in: the one look-up
        # it takes under pinCode1 (None: both), the Pair body's field, strictness.
        self.identify_only = identify_only
        self.pair_uuid_field = pair_uuid_field
        self.strict = strict
        self.status_action = status_action
        self.ip = ip
        self.port = port
        self.magic_amounts = magic_amounts
        self.magic_delay = magic_delay
        self._reply_salt_reuse = reply_salt_reuse
        # LAN: keep the HTTP connection open for the next request (as a web server does);
        # off: "Connection: close" on every reply, as a terminal that allows no keep-alive.
        self.keep_alive = True
        self.keys = keys if keys is not None else KeyCache()
        self.faults = FaultBook()
        self.payments = Payments(customer_delay=customer_delay)
        self.stats = Stats()
        self._holds: set[trio.CancelScope] = set()
        self._start_pairing(pin1, pin2)

    def _start_pairing(self, pin1: str | None, pin2: str | None) -> None:
        """The pairing state of a terminal fresh from the factory: pinCode1 on screen."""
        self._fixed_pin2 = pin2
        self._pin1 = pin1 or new_code(self.code_alphabet)
        self._pin1_valid = True
        self._pin2: str | None = None
        self._confirmed = False
        self._last_request_id: str | None = None

    def __repr__(self) -> str:
        return f"<SimTerminal {self.sn} {self.pairing_state}>"

    # -- what the screen shows -----------------------------------------------------------

    @property
    def pin1(self) -> str:
        """The pairing code on the terminal's screen (not a secret on a real terminal)."""
        return self._pin1

    @property
    def pin2(self) -> str | None:
        """The current pinCode2, for tests in the same process. Never logged or served."""
        return self._pin2

    @property
    def pairing_state(self) -> str:
        if self._pin2 is None:
            return "unpaired"
        return "paired" if self._confirmed else "awaiting_confirmation"

    @property
    def reply_salt_reuse(self) -> bool:
        """Reuse one salt per PIN for replies (benchmarks); off: a random salt per reply."""
        return self._reply_salt_reuse

    @reply_salt_reuse.setter
    def reply_salt_reuse(self, value: bool) -> None:
        self._reply_salt_reuse = value

    @property
    def held_requests(self) -> int:
        """Requests other than money ones that a fault is holding right now."""
        return len(self._holds)

    @property
    def advertised_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORT

    def qr(self) -> dict[str, Any]:
        """The pairing QR code's JSON, as in the seed document."""
        return {
            "deviceId": self.sn,
            "ip": self.ip,
            "pairCode": self._pin1,
            "port": self.advertised_port,
            "businessId": self.business_id,
        }

    def qr_json(self) -> str:
        return json.dumps(self.qr(), separators=(",", ":"))

    def summary(self) -> dict[str, Any]:
        return {
            "sn": self.sn,
            "business_id": self.business_id,
            "scheme": self.scheme,
            "pairing": self.pairing_state,
            "pin1": self._pin1,
            "pin1_valid": self._pin1_valid,
            "qr": self.qr_json(),
            "busy": self.payments.busy,
            "held_requests": self.held_requests,
            "faults": [f.to_obj() for f in self.faults.armed()],
            "status_action": self.status_action,
            "pin2_field": self.pin2_field,
            "identify_only": self.identify_only,
            "pair_uuid_field": self.pair_uuid_field,
            "strict": self.strict,
            "magic_amounts": self.magic_amounts,
            "stats": attrs.asdict(self.stats),
        }

    def show_screen(self) -> None:
        # The one place a PIN is printed: pinCode1 is what the real terminal displays.
        screen.info("%s shows pairing code (pinCode1) %s", self.sn, self._pin1)

    # -- operator actions ----------------------------------------------------------------

    def check_envelope(self, envelope: Envelope) -> str | None:
        """Strict: what the envelope lacks (a link refuses it before ``handle``), or None."""
        return strict.envelope_problem(envelope) if self.strict else None

    def arm(self, name: str, **kwargs: Any) -> Fault:
        """Arm a fault: ``arm("delay", params={"seconds": 2}, sticky=True)``."""
        return self.faults.arm(make_fault(name, **kwargs))

    def show_pairing_page(self, pin1: str | None = None) -> str:
        """Open the pairing page again: a new pinCode1 becomes valid. A current pinCode2
        stays valid, and using it does not close the page; only a new Pair replaces it."""
        self._pin1 = pin1 or new_code(self.code_alphabet, self._pin1, self._pin2)
        self._pin1_valid = True
        self.show_screen()
        return self._pin1

    def reboot(self, pin1: str | None = None) -> str:
        """Forget the pairing and whatever is in flight; show a new pinCode1. The ledger stays."""
        log.info("%s: rebooting", self.sn)
        self.payments.reboot()
        for scope in self._holds:
            scope.cancel()
        self._pin2 = None
        self._confirmed = False
        self._last_request_id = None
        return self.show_pairing_page(pin1)

    # -- crypto --------------------------------------------------------------------------

    def _valid_pins(self) -> list[tuple[str, str]]:
        pins = []
        if self._pin2 is not None:
            pins.append(("pin2", self._pin2))
        if self._pin1_valid:
            pins.append(("pin1", self._pin1))
        return pins

    def _open_sync(self, data: str, pins: list[tuple[str, str]]) -> tuple[dict[str, Any], str]:
        for which, pin in pins:
            try:
                return crypto.open_(data, pin, self.scheme, keys=self.keys), which
            except (crypto.CryptoError, crypto.NotJson):  # a request it cannot read
                continue
        raise crypto.WrongKey("no valid PIN opens this request")

    async def opens(self, envelope: Envelope) -> bool:
        """Whether a currently valid PIN decrypts ``envelope`` (the cloud gateway asks)."""
        try:
            await in_thread(self._open_sync, envelope.data, self._valid_pins())
        except crypto.CryptoError:
            return False
        return True

    def _seal_sync(self, pin: str, message: dict[str, Any] | bytes, reuse: bool) -> str:
        plaintext = message if isinstance(message, bytes) else crypto.dumps(message)
        if self.scheme == "legacy":
            return crypto.seal_legacy(plaintext, pin)
        # A fresh random salt costs one derivation per reply; reuse costs one per PIN and
        # process (the IV stays random per message either way, protocol.md §3).
        salt = _REUSED_SALTS.setdefault(pin, os.urandom(crypto.SALT_LEN)) if reuse else None
        salt = salt or os.urandom(crypto.SALT_LEN)
        return crypto.seal_v2(plaintext, self.keys.get(pin, salt), salt)

    async def _seal(self, pin: str, message: dict[str, Any] | bytes) -> str:
        return await in_thread(self._seal_sync, pin, message, self.reply_salt_reuse)

    async def _seal_alien(self, message: dict[str, Any]) -> str:
        return await in_thread(self._seal_sync, _ALIEN_PIN, message, True)

    # -- the request path ----------------------------------------------------------------

    async def handle(self, request: Envelope, link: LinkKind = "lan") -> Reply:
        """Answer one request envelope arriving over ``link``."""
        self.stats.requests += 1
        reply_action = "DeviceInfo" if request.action == "ConnectionInfo" else request.action
        try:
            message, which = await in_thread(self._open_sync, request.data, self._valid_pins())
        except crypto.CryptoError:
            self.stats.decrypt_failed += 1
            log.info("%s: %s does not decrypt under a valid PIN", self.sn, request.action)
            refusal = failed("DECRYPT_FAILED", "cannot decrypt the request")
            msg = _reply_message(str(uuid.uuid4()), refusal, self.sn)
            return Reply(Envelope(reply_action, await self._seal_alien(msg)))
        pin = self._pin2 if which == "pin2" else self._pin1
        assert pin is not None
        try:
            request_id = request_header(message)["requestID"]
        except MalformedMessage as exc:
            refusal = failed("INVALID_REQUEST", str(exc))
            msg = _reply_message(str(uuid.uuid4()), refusal, self.sn)
            return Reply(Envelope(reply_action, await self._seal(pin, msg)))
        if self.strict and (problem := strict.message_problem(request.action, message)):
            log.info("%s: %s refused (strict): %s", self.sn, request.action, problem)
            msg = _reply_message(request_id, failed(strict.MISSING_FIELD, problem), self.sn)
            return Reply(Envelope(reply_action, await self._seal(pin, msg)))
        if which == "pin2" and not self._confirmed:
            # The first exchange under pinCode2 confirms the pairing (protocol.md §7 step 4).
            self._confirmed, self._pin1_valid = True, False
            log.info("%s: pairing confirmed", self.sn)
        faults = self.faults.take(request.action, link, TERMINAL_FAULTS)
        body_in = body_of(message)
        if self.magic_amounts and request.action in MONEY_ACTIONS:
            magic = magic_fault(body_in.get("amount"), self.magic_delay)
            if magic is not None and magic.applies(request.action, link):
                faults[magic.name] = magic
        if faults:
            log.info("%s: %s with faults %s", self.sn, request.action, ", ".join(faults))
        body = await self._dispatch(request.action, body_in, which, faults)
        if body is None or "drop" in faults:
            log.info("%s: %s left unanswered", self.sn, request.action)
            self._last_request_id = request_id
            return Reply(None)
        response_id = request_id
        if "stale_response" in faults:
            response_id = self._last_request_id or str(uuid.uuid4())
        self._last_request_id = request_id
        return await self._reply(
            pin, reply_action, _reply_message(response_id, body, self.sn), faults
        )

    async def _reply(
        self, pin: str, action: str, message: dict[str, Any], faults: dict[str, Fault]
    ) -> Reply:
        """Seal and shape a reply, with the reply faults that fired."""
        sealed: str
        if "wrong_key" in faults:
            sealed = await self._seal_alien(message)
        elif "not_json" in faults:
            sealed = await self._seal(pin, str(faults["not_json"].params["text"]).encode())
        elif "mismatch" in faults:
            field = str(faults["mismatch"].params["field"])
            plaintext, action = contradict(field, message, action)
            sealed = await self._seal(pin, plaintext)
        else:
            sealed = await self._seal(pin, message)
        self.stats.replies += 1
        return shape(Envelope(action, sealed), faults)

    async def _dispatch(
        self, action: str, body: Body, which: str, faults: dict[str, Fault]
    ) -> Body | None:
        if action in MONEY_ACTIONS:
            if which != "pin2":
                return failed("NOT_PAIRED", "pair first: this action needs pinCode2")
            return await self.payments.money(action, body, faults)
        if not await self._hold(faults):
            return None  # rebooted meanwhile: the request is forgotten
        if action in INFO_ACTIONS:
            if which == "pin1" and self.identify_only not in (None, action):
                return failed("UNSUPPORTED_ACTION", f"under the pairing code: {self.identify_only}")
            return self._device_info(action, body)
        if action == "Pair":
            return self._pair(body, which)
        known = MONEY_ACTIONS | {"Abort"} | ({self.status_action} - {None})
        if action not in known:
            return failed("UNSUPPORTED_ACTION", f"action {action!r} is not supported")
        if which != "pin2":
            return failed("NOT_PAIRED", "pair first: this action needs pinCode2")
        if action == "Abort":
            return self.payments.abort(body)
        # Taken here, not with the others: it is about the status action's answer alone.
        answer = self.faults.take(action, "lan", {"status_answer"}).get("status_answer")
        return self.payments.status(body, answer)

    async def _hold(self, faults: dict[str, Fault]) -> bool:
        """Customer faults on other than money actions (armed with explicit ``actions``).
        False when a reboot ended the hold."""
        if "never_answer" not in faults and "delay" not in faults:
            return True
        scope = trio.CancelScope()
        self._holds.add(scope)
        try:
            with scope:
                if "never_answer" in faults:
                    await trio.sleep_forever()
                await trio.sleep(float(faults["delay"].params["seconds"]))
        finally:
            self._holds.discard(scope)
        return not scope.cancelled_caught

    def _device_info(self, action: str, body: Body) -> Body:
        wanted = body.get("businessID")
        if action == "ConnectionInfo" and wanted is not None and wanted != self.business_id:
            return failed("BUSINESS_MISMATCH", "this terminal belongs to another business")
        return {
            "deviceSn": self.sn,
            "ip": self.ip,
            "port": str(self.advertised_port),
            "businessID": self.business_id,
        }

    def _pair(self, body: Body, which: str) -> Body:
        if which != "pin1":
            return failed("PAIRING_CLOSED", "open the pairing page and use its code")
        field = self.pair_uuid_field
        if not isinstance(body.get(field), str) or not body[field]:
            return failed("INVALID_REQUEST", f"{field} is required")
        self._pin2 = self._fixed_pin2 or new_code(self.code_alphabet, self._pin1, self._pin2)
        self._confirmed = False
        log.info("%s: paired, awaiting confirmation under the new pinCode2", self.sn)
        return {
            "status": "Success",
            "errorCode": "",
            "errorMessage": "",
            self.pin2_field: self._pin2,
        }


def _reply_message(response_id: str, body: Body, sn: str) -> dict[str, Any]:
    header = {"responseID": response_id, "serverDeviceSN": sn, "timestamp": timestamp()}
    return {"header": header, "body": body}
