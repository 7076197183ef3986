"""The subprocess harness for end-to-end tests: ``harness/daemon.py``, shared with bench/
(kept under this name for the tests that import it from here)."""

from harness.daemon import (
    BIN,
    BUSINESS,
    PINS,
    Daemon,
    Sim,
    pair,
    rss_kib,
    running,
    until,
    write_config,
)

__all__ = [
    "BIN",
    "BUSINESS",
    "PINS",
    "Daemon",
    "Sim",
    "pair",
    "rss_kib",
    "running",
    "until",
    "write_config",
]
