"""The TypeScript client (clients/typescript) with ``node``: ``npm ci`` (typescript, its one
dev dependency, from npm's cache when it has it), ``tsc``, then its own tests under
Node's test runner on the compiled JS, against a real daemon and simulator over the HTTP
endpoint and the WebSocket of a stack started here. Skips without node and npm."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
from http_stack import TOKENS, clients, sha256, start_http_stack
from stack import pair

from ecrd.client import open_trio_client

CLIENT = Path(__file__).resolve().parents[1] / "clients" / "typescript"
OLDEST_NODE = 18  # Debian 12's
TILL = "till-token-0123456789"  # a till that sells and refunds


def node_problem() -> str | None:
    """Why the client cannot be tested here, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "needs node and npm (Debian: nodejs npm; .ci/run installs them)"
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    major = int(version.lstrip("v").split(".")[0] or 0)
    too_old = major < OLDEST_NODE
    return f"needs node {OLDEST_NODE} or later, not {version.strip()}" if too_old else None


def install() -> None:
    """``npm ci`` unless node_modules is already what package-lock.json says."""
    lock = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    stamp = CLIENT / "node_modules" / ".installed-lock"
    if stamp.is_file() and stamp.read_text() == lock:
        return
    subprocess.run(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"], cwd=CLIENT,
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    stamp.write_text(lock)


def build(out: Path) -> Path:
    """The compiled client in ``out`` (an ES module package of its own); its index.js."""
    tsc = CLIENT / "node_modules" / "typescript" / "bin" / "tsc"
    done = subprocess.run(["node", str(tsc), "-p", "tsconfig.json", "--outDir", str(out / "dist")],
                          cwd=CLIENT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (out / "package.json").write_text(json.dumps({"type": "module"}))
    return out / "dist" / "index.js"


def node_flags() -> list[str]:
    """Node 20 has a WebSocket only behind a flag (22 and later: always; 18: none, and the
    WebSocket tests skip)."""
    for flags in ([], ["--experimental-websocket"]):
        probe = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
        if subprocess.run(["node", *flags, "-e", probe], capture_output=True).returncode == 0:
            return flags
    return []


async def test_the_typescript_client_against_ecrd_and_the_simulator(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    problem = node_problem()
    if problem is not None:
        pytest.skip(problem)
    await trio.to_thread.run_sync(install)
    index = await trio.to_thread.run_sync(build, tmp_path / "client")
    till = {"name": "till", "token_sha256": sha256(TILL), "roles": ["sell", "refund"]}
    hs = await start_http_stack(nursery, tmp_path / "stack", client=[*clients(), till])
    async with open_trio_client(hs.stack.socket) as c:
        await pair(c, hs.stack, "lan")
    env = {**os.environ, "ECRD_URL": hs.url, "ECRD_TOKEN": TILL,
           "ECRD_READ_TOKEN": TOKENS["screen"], "ECRD_TERMINAL": "lan-1",
           "ECRD_CLIENT": index.as_uri(), "NO_COLOR": "1"}  # fmt: skip
    argv = ["node", *node_flags(), "--test", "--test-reporter=tap",
            str(CLIENT / "test" / "client.test.mjs")]  # fmt: skip
    with trio.fail_after(120):
        done = await trio.run_process(argv, env=env, capture_stdout=True, capture_stderr=True,
                                      check=False)  # fmt: skip
    report = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, report
    tests = (CLIENT / "test" / "client.test.mjs").read_text().count("\ntest(")
    counts = dict(re.findall(r"^# (pass|fail|cancelled|skipped) (\d+)$", report, re.MULTILINE))
    assert counts["fail"] == counts["cancelled"] == "0", report
    assert int(counts["pass"]) + int(counts["skipped"]) == tests, report
    ws = int(counts["skipped"]) == 0
    assert hs.stack.charges("lan", "ts-1") == 1  # the same reference twice: charged once
    assert hs.stack.charges("lan", "ts-ws") == (1 if ws else 0)
