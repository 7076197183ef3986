"""The lock files (scripts/lock) pin what pyproject.toml asks for: requirements.lock and
requirements-build.lock with their hashes, so an install from them (scripts/install,
scripts/build-deb) needs no resolver and gets the same files everywhere;
requirements-dev.lock the test tools too, at the same versions of ecrd's own dependencies.
Checked without the network: a lock that lags behind a change to the dependencies fails
here, not on a box."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(name: str) -> dict[str, tuple[Version, list[str]]]:
    """Each package of a lock file: its pinned version and its sha256 hashes."""
    found: dict[str, tuple[Version, list[str]]] = {}
    hashes: list[str] = []
    for line in (ROOT / name).read_text().splitlines():
        head = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if head is not None:
            hashes = []
            found[canonicalize_name(head.group(1))] = (Version(head.group(2)), hashes)
        hashes += re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
    return found


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [
        ("requirements.lock", PROJECT["project"]["dependencies"]),
        ("requirements-build.lock", PROJECT["build-system"]["requires"]),
        (
            "requirements-dev.lock",
            [
                *PROJECT["project"]["dependencies"],
                *itertools.chain.from_iterable(
                    PROJECT["project"]["optional-dependencies"].values()
                ),
            ],
        ),
    ],
)
def test_the_lock_pins_every_requirement_within_its_range(lock: str, wanted: list[str]) -> None:
    pinned = pins(lock)
    for line in wanted:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{lock} lacks {req.name}: run scripts/lock"
        version, _ = pinned[name]
        assert req.specifier.contains(version, prereleases=True), f"{lock}: {name} {version}"


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-build.lock"])
def test_every_pin_is_exact_and_has_hashes(lock: str) -> None:
    pinned = pins(lock)
    assert pinned
    lines = [ln for ln in (ROOT / lock).read_text().splitlines() if re.match(r"^[a-z0-9]", ln)]
    assert len(lines) == len(pinned)  # every package line is a name==version pin
    for name, (_, hashes) in pinned.items():
        assert hashes, f"{lock}: {name} has no hash"
    assert "--index-url" not in (ROOT / lock).read_text()  # no machine's own package index


def test_the_lock_has_nothing_for_tests_or_benchmarks() -> None:
    runtime = pins("requirements.lock")
    for extra in PROJECT["project"]["optional-dependencies"].values():
        for line in extra:
            assert canonicalize_name(Requirement(line).name) not in runtime, line


def test_the_tests_run_with_the_versions_the_package_ships() -> None:
    """scripts/venv.sh installs under requirements-dev.lock: each package ecrd runs with is
    the version requirements.lock (the package, the installer) pins."""
    dev = pins("requirements-dev.lock")
    for name, (version, _) in pins("requirements.lock").items():
        assert dev[name][0] == version, f"{name}: {dev[name][0]} vs {version}: run scripts/lock"
    assert "--index-url" not in (ROOT / "requirements-dev.lock").read_text()
