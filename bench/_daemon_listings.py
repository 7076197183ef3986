"""Benchmark 3, memory under unread listings: ecrd's RSS before and while 16 clients ask
for a full page of big records (``transaction.list {"limit": 500}``) and never read it.

The journal holds 250 settled sales of ~40 KB each (a terminal's long receipt): 10 MB,
which one page held whole before #22 (16 clients: +199 MiB). A page is now about 1 MiB,
so the 16 unread replies hold ~16 MiB. The row's base is the same daemon just before the
clients connect, after one small listing (so the code paths and SQLite's cache are warm).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from bench._procs import Daemon, Procs, lan_terminal, vm_rss_mb, write_config
from bench._table import Row, mb
from ecrd.client import Client
from ecrd.store.journal import Journal

RECORDS = 250
RECEIPT_BYTES = 40_000
CLIENTS = 16
GROWTH_LIMIT_MB = 40.0
LIST = b'{"jsonrpc":"2.0","id":1,"method":"transaction.list","params":{"limit":500}}\n'


def fill(state: Path) -> None:
    """The big records, in one transaction, with the schema ecrd writes."""
    state.mkdir(parents=True, mode=0o700, exist_ok=True)
    path = state / "journal.sqlite3"
    Journal(path).close()
    reply = json.dumps({"status": "Success", "amount": "1.00", "currency": "HKD",
                        "receipt": "x" * RECEIPT_BYTES})  # fmt: skip
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO transactions (reference_id, terminal, action, params, state, amount, "
            "currency, reply, created_at, updated_at) SELECT 'big-' || i, 't-001', 'Sale', "
            "'{\"amount\":\"1.00\",\"currency\":\"HKD\"}', 'succeeded', '1.00', 'HKD', ?, "
            "strftime('%Y-%m-%dT%H:%M:%S.000Z', 'now', '-' || i || ' seconds'), "
            "strftime('%Y-%m-%dT%H:%M:%S.000Z', 'now', '-' || i || ' seconds') FROM n",
            (RECORDS, reply),
        )


def bench_unread_listings(procs: Procs, tmp: Path) -> list[Row]:
    config = write_config(tmp, "listings", [lan_terminal("t-001", "127.0.0.1", 9)])
    fill(tmp / "listings" / "state")
    daemon = Daemon(procs, config)
    unread: list[socket.socket] = []
    try:
        with Client(daemon.socket, timeout=30) as c:
            c.call("transaction.list", limit=5)
        time.sleep(0.5)
        before = peak = vm_rss_mb(daemon.pid)
        for _ in range(CLIENTS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(daemon.socket)
            sock.sendall(LIST)
            unread.append(sock)
        with Client(daemon.socket, timeout=60) as c:  # journal reads go in turn: after them
            c.call("transaction.list", limit=1)
            for _ in range(15):
                peak = max(peak, vm_rss_mb(daemon.pid))
                time.sleep(0.2)
    finally:
        for sock in unread:
            sock.close()
        daemon.stop()
    grown = peak - before
    return [
        Row("3. RSS before 16 clients ask for big listings (base)", mb(before)),
        Row(
            f"3. RSS, {CLIENTS} clients not reading a page of {RECEIPT_BYTES // 1000} KB records",
            mb(peak),
            "",
            f"+{grown:.0f} MB",
            f"<= +{GROWTH_LIMIT_MB:.0f} MB",
            grown <= GROWTH_LIMIT_MB,
        ),
    ]
