"""What every kind of probe shares (``probe.py`` runs them): the knobs' values, what one
try asks and how its answer reads, and the record of tries (``Probe``).

A try asks the terminal who it is, as pairing will (``identify_action``: DeviceInfo with
no body, or ConnectionInfo {businessID}; via the cloud always ConnectionInfo), sealed
under the pairing code with the crypto being tried. What came back reads as one of:

* ``answered``: it decrypts, answers this very request, and is no refusal — these
  settings work;
* ``refused``: it decrypts and answers this request, but ``status`` is not Success (the
  terminal does not take this look-up): framing and crypto are proven, the look-up is not;
* ``unreadable``: an envelope came back that does not decrypt (or answers another
  request): the way there (framing, address) is proven, the crypto is not;
* no reply at all.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final, Literal

import attrs

from ecrd.config import IDENTIFY_ACTIONS
from ecrd.protocol import crypto
from ecrd.protocol.envelope import Envelope, ProtocolError, check_response, request_message
from ecrd.terminal.pairing import identify_body
from ecrd.terminal.terminal import Terminal

log = logging.getLogger("ecrd.terminal")

MAX_LIMIT_S: Final = 300.0
LAN_PATHS: Final = ("/v2/wonder/payment/ecr", "/wonder-terminal")
LAN_PORT: Final = 8443
BAUDRATES: Final = (115200, 57600, 38400, 19200, 9600)
FRAME_CMDS: Final = (0x0006, 0x0101)
OTHER_SCHEME: Final = {"v2": "legacy", "legacy": "v2"}
NO_BUSINESS: Final = (
    "not tried: ConnectionInfo names the business, and none is known (set "
    "[cloud].business_id, or probe with the QR code instead of the bare code)"
)
OnTry = Callable[[dict[str, Any]], None]
Kind = Literal["answered", "refused", "unreadable"]


def uniq(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def fewest_off_first(knob_list: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the knobs' values (each list: the entry's value first), fewest
    knobs off the entry first, then in the order of ``knob_list``."""
    combos = itertools.product(*(range(len(values)) for _, values in knob_list))
    ordered = sorted(combos, key=lambda idx: (sum(1 for i in idx if i), [-i for i in idx]))
    return [
        {name: values[i] for (name, values), i in zip(knob_list, idx, strict=True)}
        for idx in ordered
    ]


@attrs.frozen
class Ask:
    """One try's request: what it tries, its envelope, its requestID."""

    settings: dict[str, Any]
    envelope: Envelope
    request_id: str


@attrs.frozen
class Reading:
    kind: Kind
    body: dict[str, Any] | None = None
    header: dict[str, Any] | None = None
    why: str = ""

    def said(self) -> str:
        """The terminal's own words of a refusal (status, errorCode, errorMessage)."""
        body = self.body or {}
        return ", ".join(
            f"{k} {body[k]!r}" for k in ("status", "errorCode", "errorMessage") if k in body
        )


@attrs.define
class Probe:
    """What a probe found so far (the result of ``terminal.probe``)."""

    terminal: str
    pin: str = attrs.field(repr=False)
    business_id: str | None = None  # ConnectionInfo's businessID, if known
    on_try: OnTry | None = None
    tried: list[dict[str, Any]] = attrs.Factory(list)
    found: dict[str, Any] | None = None
    device_sn: str | None = None
    _sealers: dict[str, crypto.Sealer] = attrs.Factory(dict)

    def note(self, settings: dict[str, Any], result: str) -> None:
        entry = {"settings": settings, "result": result}
        self.tried.append(entry)
        if self.on_try is not None:
            self.on_try(entry)

    def answered(self, settings: dict[str, Any], reading: Reading) -> None:
        header, body = reading.header or {}, reading.body or {}
        self.found = settings
        self.device_sn = str(body.get("deviceSn") or header.get("serverDeviceSN"))

    def identify_actions(self, entry_action: str) -> list[str]:
        """The look-ups to try, the entry's first; ConnectionInfo only with a business."""
        actions = uniq([entry_action, *IDENTIFY_ACTIONS])
        if self.business_id:
            return actions
        if "ConnectionInfo" in actions:
            self.note({"identify_action": "ConnectionInfo"}, NO_BUSINESS)
        return [a for a in actions if a != "ConnectionInfo"]

    def sealer(self, term: Terminal, scheme: crypto.Scheme) -> crypto.Sealer:
        """One sealer per scheme for the whole probe: its requests share one salt, so
        sealing forty of them costs one key derivation."""
        if scheme not in self._sealers:
            self._sealers[scheme] = crypto.Sealer(self.pin, scheme, keys=term.shared.keys)
        return self._sealers[scheme]

    def result(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "found": self.found,
            "device_sn": self.device_sn,
            "tried": self.tried,
        }


async def ask(term: Terminal, state: Probe, settings: dict[str, Any], *, cloud: bool) -> Ask:
    """The request of one try: the look-up ``settings["identify_action"]`` (via the cloud:
    ConnectionInfo), sealed under the code with ``settings["crypto"]``."""
    action = "ConnectionInfo" if cloud else settings["identify_action"]
    message = request_message(identify_body(action, state.business_id), term.shared.client_sn)
    sealer = state.sealer(term, settings["crypto"])
    if sealer.needs_derivation():  # a key derivation: never on the event loop
        data = await term.shared.workers.run(partial(sealer.seal, message))
    else:
        data = sealer.seal(message)
    return Ask(settings, Envelope(action, data), message["header"]["requestID"])


async def open_reply(
    term: Terminal, state: Probe, scheme: crypto.Scheme, reply: Envelope
) -> dict[str, Any] | Reading:
    """The decrypted message of ``reply`` under the code and ``scheme``, or the
    ``unreadable`` reading saying why not (a key derivation runs on a worker)."""
    keys = term.shared.keys
    opener = partial(crypto.open_, reply.data, state.pin, scheme, keys=keys)
    try:
        if crypto.opening_needs_derivation(reply.data, state.pin, scheme, keys):
            plain: dict[str, Any] = await term.shared.workers.run(opener)
            return plain
        return opener()
    except crypto.CryptoError as exc:
        return Reading("unreadable", why=str(exc))
    except crypto.NotJson as exc:  # decrypts, but is not a JSON object: the key is right
        return Reading("unreadable", why=f"decrypts, but is not JSON: {exc}")


def judge(plain: dict[str, Any], request: Ask) -> Reading:
    """How a decrypted reply reads as the answer to ``request`` (module docstring)."""
    try:
        body = check_response(plain, request.request_id)
    except ProtocolError as exc:
        return Reading("unreadable", why=str(exc))
    header = plain.get("header")
    header = header if isinstance(header, dict) else {}
    status = body.get("status")
    if isinstance(status, str) and status.lower() != "success" and not body.get("deviceSn"):
        return Reading("refused", body, header)
    return Reading("answered", body, header)


async def read(
    term: Terminal, state: Probe, scheme: crypto.Scheme, reply: Envelope, request: Ask
) -> Reading:
    """How ``reply`` reads as the answer to ``request``."""
    plain = await open_reply(term, state, scheme, reply)
    return plain if isinstance(plain, Reading) else judge(plain, request)


def response_id(plain: dict[str, Any]) -> object:
    header = plain.get("header")
    return header.get("responseID") if isinstance(header, dict) else None


def describe(reading: Reading) -> str:
    """A try's result line."""
    if reading.kind == "answered":
        return "answered"
    if reading.kind == "refused":
        return f"a reply that decrypts, but refuses the look-up: {reading.said()}"
    return f"a reply, but it does not decrypt: {reading.why}"
