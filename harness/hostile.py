"""Hostile socket clients, shared by the end-to-end tests and ``bench/fuzz.py``.

Each one misbehaves in one way the daemon must survive without starving anyone else: it
connects and says nothing (``idle``), drips a line one byte at a time and never ends it
(``drip``), or floods listings and never reads a reply (``flood``). ``as_user`` holds a
connection for another uid (the tests run as root to use it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ecrd.store.journal import Journal
from harness.raw import connect

LIST = b'{"jsonrpc":"2.0","id":%d,"method":"transaction.list","params":{"limit":500}}\n'


def unread_listings(path: str, clients: int, lines: int = 1) -> list[socket.socket]:
    """``clients`` connections that each ask for ``lines`` full pages and never read."""
    return [flood(path, lines) for _ in range(clients)]


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the daemon closes ``sock`` within ``within`` seconds (replies are skipped)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def flood(path: str, lines: int = 512, timeout: float = 5) -> socket.socket:
    """A connection that asked for ``lines`` full pages of listings and reads nothing."""
    sock = connect(path)
    flood_on(sock, lines, timeout)
    return sock


def flood_on(sock: socket.socket, lines: int = 512, timeout: float = 5) -> None:
    sock.settimeout(timeout)
    data = b"".join(LIST % i for i in range(lines))
    with contextlib.suppress(TimeoutError):  # ecrd stopped reading it: back-pressure
        sock.sendall(data)


def drip(sock: socket.socket) -> bool:
    """One more byte of a line that never ends; False once the daemon closed it."""
    try:
        sock.send(b" ")
        return True
    except OSError:
        return False


def fill_journal(
    state_dir: Path, rows: int, terminal: str = "lan-1", receipt_bytes: int = 700
) -> None:
    """A journal of ``rows`` settled sales, written in one transaction (about 1 KiB each,
    or as large as ``receipt_bytes``: a terminal's reply with a long receipt)."""
    state_dir.mkdir(mode=0o700, exist_ok=True)
    path = state_dir / "journal.sqlite3"
    Journal(path).close()  # the schema, as ecrd writes it
    reply = json.dumps({"status": "Success", "amount": "1.00", "currency": "HKD",
                        "rrn": "0" * 12, "receipt": "x" * receipt_bytes})  # fmt: skip
    with sqlite3.connect(path) as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO transactions (reference_id, terminal, action, params, state, amount, "
            "currency, reply, created_at, updated_at) SELECT 'bulk-' || i, ?, 'Sale', "
            "'{\"amount\":\"1.00\",\"currency\":\"HKD\"}', 'succeeded', '1.00', 'HKD', ?, "
            # Recent (the last few hours): ecrd prunes settled records older than
            # [journal] keep_days at start, and these must stay.
            "strftime('%Y-%m-%dT%H:%M:%S.000Z', 'now', '-' || i || ' seconds'), "
            "strftime('%Y-%m-%dT%H:%M:%S.000Z', 'now', '-' || i || ' seconds') FROM n",
            (rows, terminal, reply),
        )
    conn.close()


_HOLD = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\\n')
except OSError:
    pass  # refused and closed already: the refusal is still there to read
try:
    reply = s.makefile("rb").readline()
except OSError:
    reply = b""
print(json.dumps(json.loads(reply) if reply else None), flush=True)
sys.stdin.read()
"""


# The test's own interpreter may live where another user cannot reach (e.g. under /root).
OTHERS_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/bin/python3", sys.executable) if os.access(p, os.X_OK)),
    sys.executable,
)


class AsUser:
    """A connection held by a child process running as ``uid`` (root only), in group
    ``gid`` and the supplementary ``groups``."""

    def __init__(self, path: str, uid: int, gid: int, groups: tuple[int, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [OTHERS_PYTHON, "-I", "-S", "-c", _HOLD, path], user=uid, group=gid,
            extra_groups=list(groups), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.reply = json.loads(self.proc.stdout.readline() or "null")

    @property
    def admitted(self) -> bool:
        return self.reply is not None and "result" in self.reply

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
