"""Encryption of the ``data`` field of an ECR envelope (protocol.md §3).

Two schemes exist; both are AES-256-CBC with PKCS#7 padding:

* ``v2`` (default): key = PBKDF2-HMAC-SHA256(PIN, salt, 100 000 rounds, 32 bytes),
  ``data = base64(salt ‖ iv ‖ ciphertext)`` with a fresh random IV per message.
* ``legacy``: key = SHA-256(PIN), IV = 16 zero bytes, ``data = base64(ciphertext)``.

Invariants:

* Opening never returns garbage. A failure says which way it points: a ``CryptoError``
  subclass when the data could not be opened (bad base64, too short, or a key that does
  not fit: re-pair), ``NotJson`` when it opened under the right key into something that
  is not a strict JSON object (the terminal answered badly: re-pairing would not help).
* A v2 key derivation costs ~19 ms of CPU. This module does no I/O and has no opinion on
  threads; callers run ``open_`` / ``Sealer.seal`` off the event loop. ``KeyCache`` is
  thread-safe so several worker threads can share it.
* A PIN never appears in an exception message or a ``repr``.

Error tree::

    CryptoError
    ├── MalformedData        the data field is not valid base64, or is too short
    ├── AmbiguousReply       decrypted cleanly, but an object names a key twice
    └── WrongKey             the key does not fit: bad padding, or a plaintext that is not
                             text (not UTF-8, or control bytes in it)
    NotJson                  (not a CryptoError: the key fitted) decrypted into text that
                             is not a strict JSON object; reason ``bad_reply``

How a wrong key is told from a bad reply: a wrong key decrypts into random bytes, which
pass the PKCS#7 check about once in 256 tries ("lucky padding"); those random bytes must
then also be valid UTF-8 with no control byte but tab, LF and CR for the plaintext to be
text, and each random byte is such a character with a probability of about 0.38, so even
the shortest reply (15 bytes in one block) is text under a wrong key about once in 10^9
decryptions, and a real reply (hundreds of bytes) never. So "not text" means the key is
wrong, and "text, but not a JSON object" means the key was right and the terminal (or
something between) sent something else: ``bad_reply``, which sends nobody to re-pair.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Literal

from ecrd.errors import Reasoned
from ecrd.protocol import strictjson

Scheme = Literal["v2", "legacy"]
SCHEMES: Final = ("v2", "legacy")

PBKDF2_ROUNDS: Final = 100_000
KEY_LEN: Final = 32
SALT_LEN: Final = 16
IV_LEN: Final = 16
BLOCK: Final = 16
ZERO_IV: Final = bytes(IV_LEN)
# Bytes text never holds: C0 controls but tab, LF, CR; and DEL.
_NOT_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class CryptoError(Reasoned):
    """The ``data`` field could not be opened. Never carries the PIN."""

    reason = "crypto_error"


class MalformedData(CryptoError):
    """Not base64, or shorter than the scheme's minimum (remote fault)."""

    reason = "malformed_data"


class WrongKey(CryptoError):
    """Padding did not check out: the message was sealed under another PIN (or is corrupt)."""

    reason = "wrong_key"


class NotJson(Reasoned):
    """The plaintext is text, but not a strict JSON object: the key fitted, and what it
    sealed is not a reply (module docstring). Not a ``CryptoError``: whoever handles a
    wrong key (re-pair, drop a PIN that does not work) must not handle this one."""

    reason = "bad_reply"


class AmbiguousReply(CryptoError):
    """The plaintext decrypted, but names a key twice (``"status"`` Failed, then Success):
    which one a reader takes is the reader's choice, so it proves nothing."""

    reason = "ambiguous_reply"


def derive_key(pin: str, salt: bytes) -> bytes:
    """The v2 key. OpenSSL's PBKDF2 via hashlib: measured fastest here (see bench/)."""
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, PBKDF2_ROUNDS, KEY_LEN)


def legacy_key(pin: str) -> bytes:
    return hashlib.sha256(pin.encode()).digest()


def pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    """PKCS#7, as strict as the vendor's sample (protocol.md §3)."""
    if not data or len(data) % BLOCK:
        raise WrongKey("ciphertext is not a whole number of blocks")
    n = data[-1]
    if n == 0 or n > BLOCK or data[-n:] != bytes([n]) * n:
        raise WrongKey("bad padding (wrong key or corrupt data)")
    return data[:-n]


class KeyCache:
    """Derived v2 keys by (pin, salt), least recently used evicted first. Thread-safe.

    Two threads missing on the same key may both derive it; that costs CPU once, never
    correctness, and keeps the lock out of the 19 ms derivation.
    """

    def __init__(self, size: int = 256, derive: Callable[[str, bytes], bytes] = derive_key) -> None:
        self._size = size
        self._derive = derive
        self._keys: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"<KeyCache {len(self._keys)}/{self._size} keys>"

    def get(self, pin: str, salt: bytes) -> bytes:
        k = (pin, salt)
        with self._lock:
            key = self._keys.get(k)
            if key is not None:
                self._keys.move_to_end(k)
                self.hits += 1
                return key
            self.misses += 1
        key = self._derive(pin, salt)
        with self._lock:
            self._keys[k] = key
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return key

    def has(self, pin: str, salt: bytes) -> bool:
        with self._lock:
            return (pin, salt) in self._keys

    def forget(self, pin: str) -> None:
        """Drop every key of one PIN (after unpairing)."""
        with self._lock:
            for k in [k for k in self._keys if k[0] == pin]:
                del self._keys[k]


def _b64decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedData("data is not valid base64") from exc


def _aes_cbc(key: bytes, iv: bytes) -> Any:
    # Imported at the first message, not when ecrd starts (pycryptodome loads its C parts).
    from Crypto.Cipher import AES

    return AES.new(key, AES.MODE_CBC, iv)


def seal_v2(plaintext: bytes, key: bytes, salt: bytes, iv: bytes | None = None) -> str:
    """Encrypt under an already derived key. ``iv`` is only fixed by tests."""
    iv = os.urandom(IV_LEN) if iv is None else iv
    ct = _aes_cbc(key, iv).encrypt(pad(plaintext))
    return base64.b64encode(salt + iv + ct).decode("ascii")


def seal_legacy(plaintext: bytes, pin: str) -> str:
    ct = _aes_cbc(legacy_key(pin), ZERO_IV).encrypt(pad(plaintext))
    return base64.b64encode(ct).decode("ascii")


def _check_length(ct: bytes) -> None:
    if not ct or len(ct) % BLOCK:
        raise MalformedData("ciphertext length is not a positive multiple of 16")


def _decrypt(key: bytes, iv: bytes, ct: bytes) -> bytes:
    _check_length(ct)
    return unpad(_aes_cbc(key, iv).decrypt(ct))


def open_v2(data: str, pin: str, keys: KeyCache | None = None) -> bytes:
    raw = _b64decode(data)
    if len(raw) < SALT_LEN + IV_LEN + BLOCK:
        raise MalformedData(f"v2 data is {len(raw)} bytes, needs at least 48")
    salt, iv, ct = raw[:SALT_LEN], raw[SALT_LEN : SALT_LEN + IV_LEN], raw[SALT_LEN + IV_LEN :]
    # Before the 19 ms derivation: malformed input from the wire must not cost a PBKDF2.
    _check_length(ct)
    key = keys.get(pin, salt) if keys is not None else derive_key(pin, salt)
    return _decrypt(key, iv, ct)


def open_legacy(data: str, pin: str) -> bytes:
    raw = _b64decode(data)
    if len(raw) < BLOCK:
        raise MalformedData(f"legacy data is {len(raw)} bytes, needs at least 16")
    return _decrypt(legacy_key(pin), ZERO_IV, raw)


def parse_json_object(plaintext: bytes) -> dict[str, Any]:
    """Strict JSON (``strictjson``): anything that could not be journaled and sent on
    unchanged is refused here, once. Bytes that are not text are a wrong key (``WrongKey``),
    text that is not a JSON object a bad reply (``NotJson``): the module docstring says why."""
    try:
        text = plaintext.decode("utf-8")
    except UnicodeError as exc:
        raise WrongKey("the plaintext is not UTF-8 (a wrong key with lucky padding)") from exc
    try:
        obj = strictjson.loads(text)
    except strictjson.DuplicateKey as exc:
        raise AmbiguousReply(f"the decrypted reply is ambiguous: {exc}") from exc
    except ValueError as exc:
        if _NOT_TEXT.search(text):
            raise WrongKey("the plaintext holds control bytes (a wrong key?)") from exc
        raise NotJson("the reply decrypted, but it is not strict JSON") from exc
    if not isinstance(obj, dict):
        raise NotJson("the reply decrypted, but it is JSON and not an object")
    return obj


def open_(
    data: str,
    pin: str,
    scheme: Scheme = "v2",
    *,
    keys: KeyCache | None = None,
    fallback: bool = False,
) -> dict[str, Any]:
    """Decrypt ``data`` into the inner message. With ``fallback``, a failure under
    ``scheme`` is retried under the other scheme before giving up (protocol.md §3)."""
    order: list[Scheme] = [scheme]
    if fallback:
        order.append("legacy" if scheme == "v2" else "v2")
    first: CryptoError | None = None
    for s in order:
        try:
            raw = open_v2(data, pin, keys) if s == "v2" else open_legacy(data, pin)
            return parse_json_object(raw)
        except CryptoError as exc:
            first = first or exc
    assert first is not None
    raise first


def opening_needs_derivation(data: str, pin: str, scheme: Scheme, keys: KeyCache) -> bool:
    """Whether ``open_`` will run PBKDF2 (so a caller can move it off its event loop).
    Malformed data answers False: ``open_`` then fails at once, without deriving."""
    if scheme != "v2":
        return False
    try:
        salt = base64.b64decode(data[:24], validate=True)[:SALT_LEN]
    except (binascii.Error, ValueError):
        return False
    return len(salt) == SALT_LEN and not keys.has(pin, salt)


def dumps(obj: dict[str, Any]) -> bytes:
    """The compact JSON form used for plaintexts and RS232 payloads."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Sealer:
    """Outgoing encryption for one PIN (protocol.md §3: one salt reused for a while).

    The v2 salt is renewed after ``max_age`` seconds or ``max_uses`` messages; renewing
    costs one derivation, every other seal costs only AES. The IV is random per message.
    """

    def __init__(
        self,
        pin: str,
        scheme: Scheme = "v2",
        *,
        keys: KeyCache | None = None,
        max_age: float = 3600.0,
        max_uses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """``clock`` and ``random`` (salts and IVs) are parameters, so tests fix them."""
        if scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}")
        self._pin = pin
        self.scheme: Scheme = scheme
        self._keys = keys if keys is not None else KeyCache(size=8)
        self._max_age = max_age
        self._max_uses = max_uses
        self._clock = clock
        self._random = random
        self._lock = threading.Lock()
        self._salt = b""
        self._key = b""
        self._born = 0.0
        self._uses = max_uses  # forces a fresh salt on first use

    def __repr__(self) -> str:
        return f"<Sealer {self.scheme}>"

    def needs_derivation(self) -> bool:
        """True when the next ``seal`` will run PBKDF2 (so callers can pick a thread)."""
        if self.scheme == "legacy":
            return False
        with self._lock:
            return self._stale()

    def _stale(self) -> bool:
        return self._uses >= self._max_uses or self._clock() - self._born > self._max_age

    def _current(self) -> tuple[bytes, bytes]:
        with self._lock:
            if not self._stale():
                self._uses += 1
                return self._salt, self._key
        salt = self._random(SALT_LEN)
        key = self._keys.get(self._pin, salt)
        with self._lock:
            self._salt, self._key, self._born, self._uses = salt, key, self._clock(), 1
        return salt, key

    def seal(self, message: dict[str, Any]) -> str:
        plaintext = dumps(message)
        if self.scheme == "legacy":
            return seal_legacy(plaintext, self._pin)
        salt, key = self._current()
        return seal_v2(plaintext, key, salt, self._random(IV_LEN))
