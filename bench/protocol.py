"""Benchmarks of the sans-IO protocol core: key derivation, sealing/opening, RS232 framing.

Everything is measured in this one run; ratios compare against the baseline measured in the
same run, so a busy machine shifts both sides alike. The PBKDF2-bound rows are measured
interleaved (one call of each per round, in rotating order) for the same reason.

Acceptance lines (protocol.md §3, §6):

* ``open_`` of a v2 message with a fresh salt costs at most 1.05x one raw PBKDF2: opening
  adds nothing noticeable to the unavoidable derivation.
* ``Sealer.seal`` with a cached salt costs at most 0.5 ms: outgoing messages pay AES only.
* ``FrameDecoder`` decodes at least 20 MB/s, for realistic envelopes and maximal frames.

Run: ``bench/run protocol`` (or ``python -m bench.protocol`` inside the venv).
Exit status 1 if an acceptance line fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import ssl
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import PBKDF2

from ecrd.protocol.crypto import (
    KEY_LEN,
    PBKDF2_ROUNDS,
    SALT_LEN,
    Sealer,
    derive_key,
    dumps,
    open_,
    open_legacy,
    seal_legacy,
    seal_v2,
)
from ecrd.protocol.envelope import Envelope, request_message
from ecrd.protocol.frames import MAX_PAYLOAD, FrameDecoder, encode_frame

PIN = "260880"
CHUNK = 4096
MB = 1e6


@dataclass
class Row:
    name: str
    seconds: list[float]  # per operation, one entry per sample
    nbytes: int = 0  # bytes per operation: report a throughput instead of a time
    baseline: Row | None = None
    limit: str = ""
    ok: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.seconds, n=20, method="inclusive")[-1]

    def cell(self, seconds: float) -> str:
        if self.nbytes:
            return f"{self.nbytes / seconds / MB:8.1f} MB/s"
        if seconds >= 1e-3:
            return f"{seconds * 1e3:8.2f} ms  "
        return f"{seconds * 1e6:8.1f} µs  "

    def ratio(self) -> str:
        return f"{self.median / self.baseline.median:.3f}x" if self.baseline else ""


def sample(fn: Callable[[], object], samples: int, number: int = 1) -> list[float]:
    """Seconds per call of ``fn``, one value per sample of ``number`` calls."""
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        out.append((time.perf_counter() - t0) / number)
    return out


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """One call of each function per round, rotating the order, so drift hits all alike."""
    names = list(fns)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            out[name].append(time.perf_counter() - t0)
    return out


def sale_message() -> dict[str, object]:
    body = {
        "referenceID": "c6f1e1d2-7b3a-4f5e-8d9c-0b1a2c3d4e5f",
        "currency": "HKD",
        "amount": "10.20",
        "paymentMethod": "credit_card",
        "print": "YES",
    }
    return request_message(body, "POS-0001")


def bench_kdf(rounds: int) -> list[Row]:
    salt = os.urandom(SALT_LEN)
    pin = PIN.encode()
    plaintext = dumps(sale_message())
    salts = [os.urandom(SALT_LEN) for _ in range(rounds)]
    fresh: Iterator[str] = iter([seal_v2(plaintext, derive_key(PIN, s), s) for s in salts])
    times = interleaved(
        {
            "hashlib": lambda: hashlib.pbkdf2_hmac("sha256", pin, salt, PBKDF2_ROUNDS, KEY_LEN),
            "pycryptodome": lambda: PBKDF2(
                PIN, salt, KEY_LEN, count=PBKDF2_ROUNDS, hmac_hash_module=SHA256
            ),
            "open_": lambda: open_(next(fresh), PIN),
        },
        rounds,
    )
    base = Row("PBKDF2-HMAC-SHA256, hashlib (baseline)", times["hashlib"])
    return [
        base,
        Row("PBKDF2-HMAC-SHA256, pycryptodome", times["pycryptodome"], baseline=base),
        Row("open_ v2, fresh salt, no cache", times["open_"], baseline=base, limit="<= 1.05x"),
    ]


def bench_seal(samples: int) -> list[Row]:
    message = sale_message()
    sealer = Sealer(PIN)
    sealer.seal(message)  # derive the salt's key once, outside the measurement
    legacy_sealer = Sealer(PIN, "legacy")
    legacy = seal_legacy(dumps(message), PIN)
    return [
        Row(
            "Sealer.seal v2, cached salt",
            sample(lambda: sealer.seal(message), samples, 200),
            limit="<= 0.5 ms",
        ),
        Row("seal legacy (Sealer)", sample(lambda: legacy_sealer.seal(message), samples, 200)),
        Row("open_ legacy", sample(lambda: open_(legacy, PIN, "legacy"), samples, 200)),
        Row("open_legacy (bytes, no JSON)", sample(lambda: open_legacy(legacy, PIN), samples, 200)),
    ]


def realistic_payload() -> bytes:
    """A compact envelope of ~400 bytes, the size of a Sale request."""
    data = base64.b64encode(os.urandom(290)).decode()
    return Envelope("Sale", data).to_bytes()


def decode_all(stream: bytes) -> int:
    decoder = FrameDecoder()
    n = 0
    for i in range(0, len(stream), CHUNK):
        n += len(decoder.feed(stream[i : i + CHUNK]))
    return n


def bench_frames(samples: int) -> list[Row]:
    small = realistic_payload()
    big = os.urandom(MAX_PAYLOAD)
    small_stream = b"".join(encode_frame(small) for _ in range(4 * 1024 * 1024 // len(small)))
    big_stream = b"".join(encode_frame(big) for _ in range(64))
    assert decode_all(small_stream) * len(encode_frame(small)) == len(small_stream)
    assert decode_all(big_stream) == 64
    return [
        Row(
            f"FrameDecoder, {len(small)} B envelopes, {CHUNK} B chunks",
            sample(lambda: decode_all(small_stream), samples),
            nbytes=len(small_stream),
            limit=">= 20 MB/s",
        ),
        Row(
            f"FrameDecoder, {MAX_PAYLOAD} B payloads, {CHUNK} B chunks",
            sample(lambda: decode_all(big_stream), samples),
            nbytes=len(big_stream),
            limit=">= 20 MB/s",
        ),
        Row(
            f"encode_frame, {len(small)} B envelopes",
            sample(lambda: encode_frame(small), samples, 2000),
            nbytes=len(small),
        ),
        Row(
            f"encode_frame, {MAX_PAYLOAD} B payloads",
            sample(lambda: encode_frame(big), samples, 50),
            nbytes=len(big),
        ),
    ]


def check(row: Row) -> None:
    if row.limit == "<= 1.05x":
        assert row.baseline is not None
        row.ok = row.median / row.baseline.median <= 1.05
    elif row.limit == "<= 0.5 ms":
        row.ok = row.median <= 0.5e-3
    elif row.limit == ">= 20 MB/s":
        row.ok = row.nbytes / row.median >= 20 * MB


def render(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    head = (
        f"{'benchmark':<{width}}  {'median':>13}  {'p95 (slow end)':>14}  {'vs base':>7}  "
        "acceptance"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        verdict = "" if r.ok is None else f"{r.limit}  {'PASS' if r.ok else 'FAIL'}"
        lines.append(
            f"{r.name:<{width}}  {r.cell(r.median):>13}  {r.cell(r.p95):>14}  "
            f"{r.ratio():>7}  {verdict}"
        )
    return "\n".join(lines)


def main() -> int:
    print(
        f"python {platform.python_version()}, {ssl.OPENSSL_VERSION}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    rows = bench_kdf(rounds=40)
    rows += bench_seal(samples=40)
    rows += bench_frames(samples=15)
    for row in rows:
        check(row)
    print(render(rows))

    ratio = rows[1].median / rows[0].median
    winner = "hashlib" if ratio >= 1 else "pycryptodome"
    print(
        f"\nPBKDF2: pycryptodome takes {ratio:.2f}x the time of hashlib, so {winner} is faster "
        "(ecrd.protocol.crypto.derive_key uses hashlib)"
    )
    failed = [r.name for r in rows if r.ok is False]
    print("FAIL: " + "; ".join(failed) if failed else "all acceptance lines PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
