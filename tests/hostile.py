"""Hostile socket clients: ``harness/hostile.py``, shared with bench/ (kept under this name
for the tests that import it from here)."""

from harness.hostile import (
    LIST,
    OTHERS_PYTHON,
    AsUser,
    closed_by_peer,
    connect,
    drip,
    fill_journal,
    flood,
    flood_on,
    unread_listings,
)

__all__ = [
    "LIST",
    "OTHERS_PYTHON",
    "AsUser",
    "closed_by_peer",
    "connect",
    "drip",
    "fill_journal",
    "flood",
    "flood_on",
    "unread_listings",
]
