"""Encryption of the envelope's ``data`` field (protocol.md §3).

Every v2 key derivation costs ~19 ms, so tests that only need *a* correct key share the
module-level ``KEYS`` cache and fixed salts; tests about the cache or the salt policy use
their own cache, with a counting (and, where the key value does not matter, cheap) derive.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from Crypto.Cipher import AES
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrd.protocol.crypto import (
    CryptoError,
    KeyCache,
    MalformedData,
    NotJson,
    Sealer,
    WrongKey,
    derive_key,
    dumps,
    legacy_key,
    open_,
    open_legacy,
    open_v2,
    pad,
    parse_json_object,
    seal_legacy,
    seal_v2,
    unpad,
)

# The crypto module's own tests derive at the protocol's rounds (tests/conftest.py), all of
# them: KEYS is shared, and a key derived at the tests' lower work factor under the fixed
# SALT would be served to a vector test.
pytestmark = pytest.mark.real_kdf

KEYS = KeyCache()
PIN = "482915"
SALT = bytes(range(16))
IV = bytes(range(16, 32))
MESSAGE: dict[str, Any] = {"header": {"requestID": "r-1"}, "body": {"amount": "10.20"}}

few_examples = settings(max_examples=25, deadline=None)


def key() -> bytes:
    return KEYS.get(PIN, SALT)


def decoded(data: str) -> bytes:
    return base64.b64decode(data)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class CountingDerive:
    """A derive function that counts its calls. ``real=False`` skips PBKDF2 where only the
    salt policy is under test and the key's value does not matter."""

    def __init__(self, real: bool = True) -> None:
        self.calls = 0
        self.real = real

    def __call__(self, pin: str, salt: bytes) -> bytes:
        self.calls += 1
        if self.real:
            return derive_key(pin, salt)
        return hashlib.sha256(pin.encode() + salt).digest()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the vectors -----------------------------------------------------------------------


def test_the_two_official_vectors_are_present(vectors: dict[str, Any]) -> None:
    official = [e for e in vectors["crypto_v2"] if "official" in e["source"]]
    assert len(official) == 2


def test_official_vector_decrypts_to_the_exact_plaintext(official_v2: dict[str, Any]) -> None:
    plaintext = open_v2(official_v2["envelope"]["data"], official_v2["pin"], KEYS)
    assert plaintext == official_v2["plaintext"].encode()


def test_official_vector_opens_to_the_inner_message(official_v2: dict[str, Any]) -> None:
    message = open_(official_v2["envelope"]["data"], official_v2["pin"], keys=KEYS)
    assert message == json.loads(official_v2["plaintext"])


def test_sealing_with_fixed_salt_and_iv_is_byte_exact(fixed_v2: dict[str, Any]) -> None:
    salt, iv = bytes.fromhex(fixed_v2["salt_hex"]), bytes.fromhex(fixed_v2["iv_hex"])
    k = KEYS.get(fixed_v2["pin"], salt)
    assert seal_v2(fixed_v2["plaintext"].encode(), k, salt, iv) == fixed_v2["data"]


def test_fixed_vector_opens_to_its_plaintext(fixed_v2: dict[str, Any]) -> None:
    assert open_v2(fixed_v2["data"], fixed_v2["pin"], KEYS) == fixed_v2["plaintext"].encode()


def test_legacy_vector_seals_byte_exact(legacy_vector: dict[str, Any]) -> None:
    sealed = seal_legacy(legacy_vector["plaintext"].encode(), legacy_vector["pin"])
    assert sealed == legacy_vector["data"]


def test_legacy_vector_opens_to_its_plaintext(legacy_vector: dict[str, Any]) -> None:
    opened = open_legacy(legacy_vector["data"], legacy_vector["pin"])
    assert opened == legacy_vector["plaintext"].encode()


def test_v2_key_is_pbkdf2_hmac_sha256_100000_rounds() -> None:
    expected = hashlib.pbkdf2_hmac("sha256", PIN.encode(), SALT, 100_000, 32)
    assert key() == expected


def test_legacy_key_is_sha256_of_the_pin() -> None:
    assert legacy_key(PIN) == hashlib.sha256(PIN.encode()).digest()


def test_v2_data_is_salt_then_iv_then_ciphertext() -> None:
    raw = decoded(seal_v2(b"{}", key(), SALT, IV))
    assert raw[:16] == SALT
    assert raw[16:32] == IV
    assert AES.new(key(), AES.MODE_CBC, IV).decrypt(raw[32:]) == pad(b"{}")


# --- round trips -----------------------------------------------------------------------


@few_examples
@given(st.binary(max_size=2048))
def test_v2_round_trip_under_a_derived_key(plaintext: bytes) -> None:
    assert open_v2(seal_v2(plaintext, key(), SALT), PIN, KEYS) == plaintext


@few_examples
@given(st.binary(max_size=2048), st.text(min_size=1, max_size=12))
def test_legacy_round_trip(plaintext: bytes, pin: str) -> None:
    assert open_legacy(seal_legacy(plaintext, pin), pin) == plaintext


@given(st.binary(max_size=100))
def test_pad_then_unpad_is_identity(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) % 16 == 0
    assert 1 <= len(padded) - len(data) <= 16
    assert unpad(padded) == data


def test_v2_iv_is_random_per_message() -> None:
    a, b = seal_v2(b"{}", key(), SALT), seal_v2(b"{}", key(), SALT)
    assert decoded(a)[16:32] != decoded(b)[16:32]


# --- errors ----------------------------------------------------------------------------


def test_wrong_pin_is_wrong_key(vectors: dict[str, Any]) -> None:
    data = vectors["crypto_v2"][0]["envelope"]["data"]
    with pytest.raises(WrongKey):
        open_(data, "000000", keys=KEYS)


def test_wrong_pin_legacy_is_wrong_key(legacy_vector: dict[str, Any]) -> None:
    with pytest.raises(WrongKey):
        open_(legacy_vector["data"], "000000", "legacy")


@pytest.mark.parametrize("data", ["not base64!", "QUJDRA=", "QU JD", "QUJD\n", "QUJD=A=="])
def test_bad_base64_is_malformed(data: str) -> None:
    with pytest.raises(MalformedData):
        open_(data, PIN, keys=KEYS)


@pytest.mark.parametrize("length", [0, 16, 47])
def test_v2_data_shorter_than_salt_iv_and_one_block_is_malformed(length: int) -> None:
    raw = decoded(seal_v2(b"{}", key(), SALT, IV))[:length]
    with pytest.raises(MalformedData):
        open_v2(b64(raw), PIN, KEYS)


def test_truncated_v2_ciphertext_is_malformed_before_any_derivation() -> None:
    derive = CountingDerive()
    raw = decoded(seal_v2(b'{"a": "' + b"x" * 40 + b'"}', key(), SALT, IV))
    with pytest.raises(MalformedData):
        open_v2(b64(raw[:-5]), PIN, KeyCache(derive=derive))
    assert derive.calls == 0


@pytest.mark.parametrize("length", [0, 5, 17])
def test_truncated_legacy_ciphertext_is_malformed(length: int) -> None:
    raw = decoded(seal_legacy(b"x" * 40, PIN))[:length]
    with pytest.raises(MalformedData):
        open_legacy(b64(raw), PIN)


@pytest.mark.parametrize(
    "plaintext", [b"not json", b"{'a': 1}", b"<html>500</html>\r\n", "caf\u00e9 \x7e".encode()]
)
def test_text_that_is_not_json_after_a_good_decrypt_is_a_bad_reply(plaintext: bytes) -> None:
    with pytest.raises(NotJson) as caught:
        open_(seal_v2(plaintext, key(), SALT), PIN, keys=KEYS)
    assert caught.value.reason == "bad_reply"


@pytest.mark.parametrize(
    "plaintext", [b"\xff\xfe\x00garbage", b"\x8f\x01\xc3(", b"ok\x00", b"{\x1b}", b"a\x7fb"]
)
def test_bytes_that_are_not_text_after_lucky_padding_are_a_wrong_key(plaintext: bytes) -> None:
    """What a wrong key whose padding happened to check out yields: random bytes."""
    with pytest.raises(WrongKey) as caught:
        open_(seal_v2(plaintext, key(), SALT), PIN, keys=KEYS)
    assert caught.value.reason == "wrong_key"


def test_a_wrong_key_with_lucky_padding_is_a_wrong_key_never_a_bad_reply() -> None:
    """Brute force: ciphertexts opened under other PINs until the padding checks out by
    chance (about one in 256); every one of those is a wrong key, none a bad reply."""
    sealed = seal_legacy(b'{"header": {"responseID": "r"}, "body": {"status": "Success"}}', PIN)
    lucky = 0
    for n in range(20_000):
        try:
            open_legacy(sealed, f"{n:06d}")
        except WrongKey:
            continue
        lucky += 1
        with pytest.raises(WrongKey):
            open_(sealed, f"{n:06d}", "legacy")
    assert lucky > 20  # the padding did check out, many times


@pytest.mark.parametrize("plaintext", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_json_that_is_not_an_object_is_not_json(plaintext: bytes) -> None:
    with pytest.raises(NotJson):
        open_(seal_v2(plaintext, key(), SALT), PIN, keys=KEYS)


def test_deeply_nested_json_is_not_json_rather_than_a_crash() -> None:
    with pytest.raises(NotJson):
        open_(seal_legacy(b"[" * 100_000, PIN), PIN, "legacy")


def test_not_json_points_away_from_re_pairing() -> None:
    """A reply that decrypted proves the key: whoever handles a wrong key (re-pair, drop a
    PIN that does not work) must never take it for one."""
    assert not issubclass(NotJson, CryptoError)
    assert issubclass(WrongKey, CryptoError)
    assert issubclass(MalformedData, CryptoError)


def test_errors_carry_stable_reasons() -> None:
    assert MalformedData.reason == "malformed_data"
    assert WrongKey.reason == "wrong_key"
    assert NotJson.reason == "bad_reply"


# --- unpad strictness (protocol.md §3: as strict as the vendor's sample) -----------------


def test_unpad_rejects_pad_byte_zero() -> None:
    with pytest.raises(WrongKey):
        unpad(b"x" * 15 + b"\x00")


def test_unpad_rejects_pad_byte_larger_than_a_block() -> None:
    with pytest.raises(WrongKey):
        unpad(b"x" * 15 + b"\x11")


def test_unpad_rejects_inconsistent_pad_bytes() -> None:
    with pytest.raises(WrongKey):
        unpad(b"x" * 13 + b"\x02\x03\x03")


def test_unpad_accepts_a_whole_block_of_padding() -> None:
    assert unpad(b"x" * 16 + b"\x10" * 16) == b"x" * 16


def test_unpad_rejects_partial_blocks() -> None:
    with pytest.raises(WrongKey):
        unpad(b"x" * 15)


@pytest.mark.parametrize("tail", [b"\x00", b"\x11", b"\x02\x03\x03"])
def test_bad_padding_in_a_message_is_wrong_key(tail: bytes) -> None:
    block = b"x" * (16 - len(tail)) + tail
    ct = AES.new(key(), AES.MODE_CBC, IV).encrypt(block)
    with pytest.raises(WrongKey):
        open_(b64(SALT + IV + ct), PIN, keys=KEYS)


# --- the PIN is never shown --------------------------------------------------------------


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@pytest.mark.parametrize("pin", ["271828", "314159"])
def test_the_pin_never_appears_in_errors(pin: str, vectors: dict[str, Any]) -> None:
    data = vectors["crypto_v2"][0]["envelope"]["data"]
    cases = [data, "not base64!", b64(bytes(20)), seal_v2(b"[1]", key(), SALT)]
    for case in cases:
        with pytest.raises(CryptoError) as info:
            open_(case, pin, keys=KEYS, fallback=True)
        for exc in _chain(info.value):
            assert pin not in str(exc)
            assert pin not in repr(exc)


def test_the_pin_never_appears_in_the_repr_of_cache_or_sealer() -> None:
    pin = "271828"
    keys = KeyCache(derive=CountingDerive(real=False))
    keys.get(pin, SALT)
    sealer = Sealer(pin, keys=keys)
    sealer.seal(MESSAGE)
    for obj in (keys, sealer, Sealer(pin, "legacy")):
        assert pin not in repr(obj)
        assert pin not in str(obj)


# --- fallback between schemes ------------------------------------------------------------


def test_configured_v2_falls_back_to_a_legacy_message() -> None:
    data = seal_legacy(dumps(MESSAGE), PIN)
    assert open_(data, PIN, "v2", keys=KEYS, fallback=True) == MESSAGE


def test_configured_legacy_falls_back_to_a_v2_message() -> None:
    data = seal_v2(dumps(MESSAGE), key(), SALT)
    assert open_(data, PIN, "legacy", keys=KEYS, fallback=True) == MESSAGE


def test_without_fallback_the_other_scheme_fails() -> None:
    with pytest.raises(CryptoError):
        open_(seal_v2(dumps(MESSAGE), key(), SALT), PIN, "legacy")


def test_fallback_reports_the_configured_schemes_error() -> None:
    with pytest.raises(NotJson):
        open_(seal_v2(b"[]", key(), SALT), PIN, "v2", keys=KEYS, fallback=True)


# --- KeyCache ----------------------------------------------------------------------------


def test_key_cache_derives_once_per_pin_and_salt() -> None:
    derive = CountingDerive(real=False)
    keys = KeyCache(derive=derive)
    first = keys.get("111111", SALT)
    assert keys.get("111111", SALT) == first
    assert (keys.hits, keys.misses, derive.calls) == (1, 1, 1)


def test_key_cache_keeps_keys_apart_by_pin_and_by_salt() -> None:
    keys = KeyCache(derive=CountingDerive(real=False))
    k = keys.get("111111", SALT)
    assert keys.get("222222", SALT) != k
    assert keys.get("111111", IV) != k
    assert keys.misses == 3


def test_key_cache_evicts_the_least_recently_used() -> None:
    derive = CountingDerive(real=False)
    keys = KeyCache(size=2, derive=derive)
    keys.get("a", SALT)
    keys.get("b", SALT)
    keys.get("a", SALT)  # now "b" is the least recently used
    keys.get("c", SALT)
    assert derive.calls == 3
    keys.get("a", SALT)
    assert derive.calls == 3
    keys.get("b", SALT)
    assert derive.calls == 4


def test_key_cache_forget_drops_every_key_of_one_pin() -> None:
    derive = CountingDerive(real=False)
    keys = KeyCache(derive=derive)
    for pin, salt in [("a", SALT), ("a", IV), ("b", SALT)]:
        keys.get(pin, salt)
    keys.forget("a")
    keys.get("b", SALT)
    assert derive.calls == 3
    keys.get("a", SALT)
    keys.get("a", IV)
    assert derive.calls == 5


def test_open_with_a_cache_derives_once_per_salt() -> None:
    derive = CountingDerive(real=False)
    keys = KeyCache(derive=derive)
    k = keys.get(PIN, SALT)
    data = seal_v2(dumps(MESSAGE), k, SALT)
    for _ in range(3):
        assert open_(data, PIN, keys=keys) == MESSAGE
    assert derive.calls == 1


# --- Sealer (protocol.md §3: one salt for a while, a fresh IV per message) ----------------


def cheap_sealer(**kwargs: Any) -> tuple[Sealer, CountingDerive]:
    derive = CountingDerive(real=False)
    return Sealer(PIN, keys=KeyCache(derive=derive), **kwargs), derive


def test_sealed_message_opens_with_the_pin() -> None:
    sealer = Sealer(PIN, keys=KEYS)
    assert open_(sealer.seal(MESSAGE), PIN, keys=KEYS) == MESSAGE


def test_sealer_reuses_one_salt_with_a_fresh_iv_per_message() -> None:
    sealer, derive = cheap_sealer()
    raws = [decoded(sealer.seal(MESSAGE)) for _ in range(5)]
    assert len({raw[:16] for raw in raws}) == 1
    assert len({raw[16:32] for raw in raws}) == 5
    assert derive.calls == 1


def test_sealer_renews_the_salt_after_max_uses() -> None:
    sealer, derive = cheap_sealer(max_uses=3)
    salts = [decoded(sealer.seal(MESSAGE))[:16] for _ in range(7)]
    assert salts[0] == salts[1] == salts[2]
    assert salts[3] == salts[4] == salts[5]
    assert len({salts[0], salts[3], salts[6]}) == 3
    assert derive.calls == 3


def test_sealer_renews_the_salt_after_max_age() -> None:
    clock = FakeClock()
    sealer, derive = cheap_sealer(max_age=60.0, clock=clock)
    first = decoded(sealer.seal(MESSAGE))[:16]
    clock.now += 60.0
    assert decoded(sealer.seal(MESSAGE))[:16] == first
    clock.now += 0.5
    assert decoded(sealer.seal(MESSAGE))[:16] != first
    assert derive.calls == 2


def test_sealer_needs_derivation_before_the_first_seal() -> None:
    sealer, _ = cheap_sealer()
    assert sealer.needs_derivation()
    sealer.seal(MESSAGE)
    assert not sealer.needs_derivation()


def test_sealer_needs_derivation_once_the_salt_is_too_old() -> None:
    clock = FakeClock()
    sealer, _ = cheap_sealer(max_age=60.0, clock=clock)
    sealer.seal(MESSAGE)
    clock.now += 61.0
    assert sealer.needs_derivation()


def test_sealer_needs_derivation_once_the_salt_is_used_up() -> None:
    sealer, _ = cheap_sealer(max_uses=2)
    sealer.seal(MESSAGE)
    assert not sealer.needs_derivation()
    sealer.seal(MESSAGE)
    assert sealer.needs_derivation()


def test_legacy_sealer_never_derives_and_opens_with_the_pin() -> None:
    sealer = Sealer(PIN, "legacy")
    assert not sealer.needs_derivation()
    sealed = sealer.seal(MESSAGE)
    assert sealed == sealer.seal(MESSAGE)  # legacy has no IV: same message, same data
    assert open_(sealed, PIN, "legacy") == MESSAGE


def test_sealer_rejects_an_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        Sealer(PIN, "v3")  # type: ignore[arg-type]


def test_sealer_seals_compact_utf8_json() -> None:
    message = {"body": {"note": "café"}}
    sealed = Sealer(PIN, "legacy").seal(message)
    assert open_legacy(sealed, PIN) == '{"body":{"note":"café"}}'.encode()


@pytest.mark.parametrize(
    "plaintext",
    [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1e999}', b'{"a": "\\ud800"}'],
)
def test_non_strict_json_in_a_reply_is_refused(plaintext: bytes) -> None:
    with pytest.raises(NotJson):
        parse_json_object(plaintext)


def test_a_sealer_takes_its_randomness_as_a_parameter() -> None:
    """protocol/ has no randomness of its own that a test cannot fix (design.md §1)."""
    fixed = Sealer("482915", random=lambda n: bytes(range(n)))
    other = Sealer("482915", random=lambda n: bytes(range(n)))
    message = {"header": {"requestID": "r"}}
    assert fixed.seal(message) == other.seal(message)
