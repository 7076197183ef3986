"""One version, one source: ``ecrd.__version__`` (ecrd/__init__.py).

The package metadata (pyproject.toml declares the version dynamic, read from that
attribute), ``ecrd --version``, ``ecrctl --version`` and ``ecrd-sim --version`` must all say
the same.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import ecrd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", ecrd.__version__)


def test_pyproject_takes_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ecrd.__version__"}


def test_installed_metadata_has_the_same_version() -> None:
    assert version("ecrd") == ecrd.__version__


@pytest.mark.parametrize("program", ["ecrd", "ecrctl", "ecrd-sim"])
def test_version_option(program: str) -> None:
    proc = subprocess.run(
        [str(BIN / program), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{program} {ecrd.__version__}\n", "")
