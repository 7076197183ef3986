"""Sealing and opening one terminal's messages, with key derivations off the event loop.

Invariants:

* A v2 key derivation (~20-60 ms of CPU) runs on the low-priority worker threads
  (``workers.py``), never on the loop; AES alone (~25 µs) runs inline, cheaper than a
  thread hop.
* Outgoing messages reuse one salt per PIN (``crypto.Sealer``), so sealing derives once
  per PIN; opening derives only for a salt not seen before.
* The scheme is the pairing's (or the config's before pairing); opening falls back to the
  other scheme (protocol.md §3) on a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ecrd.protocol import crypto
from ecrd.workers import Workers


class Cipher:
    def __init__(
        self, keys: crypto.KeyCache, workers: Workers, scheme: Callable[[], crypto.Scheme]
    ) -> None:
        self._keys = keys
        self._workers = workers
        self._scheme = scheme  # asked at each use: pairing may change it
        self._sealers: dict[str, crypto.Sealer] = {}

    def _sealer(self, pin: str) -> crypto.Sealer:
        sealer = self._sealers.get(pin)
        if sealer is None:
            sealer = self._sealers[pin] = crypto.Sealer(pin, self._scheme(), keys=self._keys)
        return sealer

    async def seal(self, pin: str, message: dict[str, Any]) -> str:
        sealer = self._sealer(pin)
        if sealer.needs_derivation():
            return await self._workers.run(partial(sealer.seal, message))
        return sealer.seal(message)

    async def open(self, pin: str, data: str) -> dict[str, Any]:
        scheme, keys = self._scheme(), self._keys
        opener = partial(crypto.open_, data, pin, scheme, keys=keys, fallback=True)
        if crypto.opening_needs_derivation(data, pin, scheme, keys):
            return await self._workers.run(opener)
        try:  # no derivation needed under the configured scheme: AES only, inline
            return crypto.open_(data, pin, scheme, keys=keys)
        except crypto.CryptoError:
            # The fallback scheme (protocol.md §3) may derive: a worker tries both.
            return await self._workers.run(opener)

    def forget(self) -> None:
        """Drop every PIN's keys and salts (after pairing anew or unpairing)."""
        for pin in list(self._sealers):
            self._keys.forget(pin)
        self._sealers.clear()
