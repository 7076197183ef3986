"""The README's "run it" command works: pairing on three links, sale, refund, void."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_pairs_three_terminals_and_takes_payments() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "ecrd.demo", "--no-wait", "--customer-delay", "0.1"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.count("paired ") == 3
    for ref in ("demo-sale-1", "demo-refund-1", "demo-sale-2", "demo-void-2", "demo-sale-3"):
        block = out.split(f"reference  {ref}\n", 1)[1].split("\n\n", 1)[0]
        assert "state      SUCCEEDED" in block, block
    assert "DECLINED" in out
    over_http = out.split("a sale over HTTP", 1)[1].split("== ", 1)[0]
    assert '"state": "succeeded"' in over_http and '"reference_id": "demo-http-1"' in over_http
