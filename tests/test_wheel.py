"""The wheel built from a clean tree holds the ``ecrd`` package and its metadata, nothing else.

Built for real (``pip wheel``, the build backend fetched as on any machine) from a copy of
the repository without the local build leftovers a working tree collects.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import ecrd

# One worker takes the whole module (--dist loadgroup): its module fixture is built once.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("wheel")]

REPO = Path(__file__).resolve().parents[1]
LEFTOVERS = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, tmp / "p", ignore=LEFTOVERS)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp / "out"), "."],
        cwd=tmp / "p",
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=500,
    )
    [built] = (tmp / "out").glob("*.whl")
    assert built.name == f"ecrd-{ecrd.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(built) as opened:
        yield opened


def test_wheel_holds_every_module_of_the_package_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    modules = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "ecrd").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    dist_info = f"ecrd-{ecrd.__version__}.dist-info/"
    package = sorted(n for n in wheel.namelist() if not n.startswith(dist_info))
    assert package == modules
    # The rest is metadata (which files exactly is the build backend's business).
    metadata = {n.removeprefix(dist_info) for n in wheel.namelist() if n.startswith(dist_info)}
    assert {"METADATA", "RECORD", "WHEEL", "entry_points.txt"} <= metadata
    assert not [n for n in metadata if n.endswith(".py")]


def test_wheel_metadata_names_the_version_and_the_programs(wheel: zipfile.ZipFile) -> None:
    dist_info = f"ecrd-{ecrd.__version__}.dist-info/"
    metadata = wheel.read(dist_info + "METADATA").decode().splitlines()
    assert f"Version: {ecrd.__version__}" in metadata
    assert wheel.read(dist_info + "top_level.txt").decode().split() == ["ecrd"]
    entry_points = wheel.read(dist_info + "entry_points.txt").decode()
    for line in (
        "ecrd = ecrd.cli:main",
        "ecrctl = ecrd.ctl:main",
        "ecrd-sim = ecrd.sim.__main__:main",
    ):
        assert line in entry_points
