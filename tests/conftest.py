"""Shared fixtures: the in-process stack (``stack``, tests/stack.py) and the protocol test
vectors (protocol.md, "Test vectors").

The vectors live in ``tests/data/ecr-vectors.json`` (provenance: ``tests/data/README.md``).
A missing file is a failure, not a skip: without it the byte-exact tests would silently stop
guarding the wire format.

Tests take a whole vector set by naming a parameter after it (``official_v2``,
``fixed_v2``, ``legacy_vector``, ``frame_vector``); each vector becomes one test case.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trio
from stack import Stack, start_stack

from ecrd.protocol import crypto

VECTORS_PATH = Path(__file__).resolve().parent / "data" / "ecr-vectors.json"

Vector = dict[str, Any]


@cache
def load_vectors() -> dict[str, list[Vector]]:
    if not VECTORS_PATH.is_file():
        pytest.fail(
            f"protocol test vectors not found at {VECTORS_PATH}; "
            "it is part of the repository (tests/data/)",
            pytrace=False,
        )
    data: dict[str, list[Vector]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return data


VECTOR_SETS: dict[str, Callable[[dict[str, list[Vector]]], list[Vector]]] = {
    # The user's document: the only vectors produced by a real terminal's peer.
    "official_v2": lambda v: [e for e in v["crypto_v2"] if "official" in e["source"]],
    "fixed_v2": lambda v: [e for e in v["crypto_v2"] if "iv_hex" in e],
    "legacy_vector": lambda v: v["crypto_legacy"],
    "frame_vector": lambda v: v["rs232_frames"],
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, select in VECTOR_SETS.items():
        if name in metafunc.fixturenames:
            # A vector is byte-exact at the protocol's rounds: each case runs at them.
            cases = [pytest.param(c, marks=pytest.mark.real_kdf) for c in select(load_vectors())]
            metafunc.parametrize(name, cases, ids=[f"{name}{i}" for i in range(len(cases))])


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which it keeps otherwise
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow modules (the package, the installer, the wheel: a minute of building
    between them) first, so that on both cores the short tests fill in around them
    instead of one of them starting last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# PBKDF2's work factor in the test process. The protocol's 100 000 rounds cost ~19 ms of CPU
# a key, and the in-process stack derives several per test on both sides (the daemon and
# the simulator): at 100 000 they were most of the suite's CPU. A lower work factor in tests
# is the usual practice for password hashes (Devise's `stretches` in its test environment,
# Django's test hashers). The code is the same; what proves the real rounds are the
# byte-exact vectors (marked ``real_kdf``) and every subprocess (ecrd, ecrd-sim, ecrctl),
# which always derive at 100 000. A test mixing both sides across a process boundary would
# fail at once with wrong_key, never pass by accident.
TEST_ROUNDS = 1_000


@pytest.fixture(autouse=True)
def kdf_work_factor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("real_kdf") is None:
        monkeypatch.setattr(crypto, "PBKDF2_ROUNDS", TEST_ROUNDS)


@pytest.fixture(scope="session")
def vectors() -> dict[str, list[Vector]]:
    return load_vectors()


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    """The simulator and the daemon in this test's Trio loop, nothing paired (tests/stack.py;
    a module that needs other settings starts its own with ``start_stack``)."""
    return await start_stack(nursery, tmp_path)
