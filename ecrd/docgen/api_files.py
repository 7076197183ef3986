"""``python -m ecrd.docgen openrpc [--check]``: the API's machine-readable files, made from
its declarations (``ecrd/api/declarations.py``) through the OpenRPC document.

    docs/openrpc.json                         the document (``api/openrpc.py``)
    clients/python/ecrd_client/_api.py        the light Python client's methods and errors
    clients/typescript/src/types.ts           the TypeScript client's types,
    clients/typescript/src/methods.ts         its methods
    clients/typescript/src/errors.ts          and its errors

The clients' files are made from the document as ``docs/openrpc.json`` holds it. With
``--check`` nothing is written: the exit status is 1 if a file is not what it would be.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ecrd.api import openrpc
from ecrd.docgen import pyclient, tsclient

DOCUMENT = "docs/openrpc.json"


def clients(doc: dict[str, Any]) -> dict[str, str]:
    """Each client file's path in the repository and its text."""
    return {
        "clients/python/ecrd_client/_api.py": pyclient.module(doc),
        "clients/typescript/src/types.ts": tsclient.types(doc),
        "clients/typescript/src/methods.ts": tsclient.methods(doc),
        "clients/typescript/src/errors.ts": tsclient.errors(doc),
    }


def files() -> dict[str, str]:
    text = openrpc.text()
    made = {DOCUMENT: text, **clients(json.loads(text))}
    return {name: formatted(name, text) if name.endswith(".py") else text
            for name, text in made.items()}  # fmt: skip


def formatted(name: str, text: str) -> str:
    """``text`` as ``ruff format`` (a test tool: the generator runs in the test venv) writes
    the module ``name``, under the configuration of the repository's ``pyproject.toml``."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", name, "-"],
        input=text, capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    return done.stdout


def stale(root: Path) -> list[str]:
    """The files that are not what ``files`` makes (missing ones included)."""
    out = []
    for name, text in files().items():
        path = root / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m ecrd.docgen openrpc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--root", type=Path, default=Path("."), help="the repository")
    p.add_argument("--check", action="store_true", help="only say which files are stale")
    args = p.parse_args(argv)
    if args.check:
        names = stale(args.root)
        for name in names:
            print(f"{name} is stale: run python -m ecrd.docgen openrpc", file=sys.stderr)
        return 1 if names else 0
    for name, text in files().items():
        path = args.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0
