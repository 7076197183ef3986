"""Hostile clients against ``ecrd run`` as a real subprocess (repro 1 and 2 of the
robustness issue): no client, and no user, can starve the others.

* Idle connections are closed after ``idle_timeout_s``, drip writers too; a subscription
  keeps its connection.
* One user's connections are capped at ``max_clients_per_user``; root and ecrd's own user
  always get in (the reserve).
* A flood of listings whose replies are never read stops being read: memory stays bounded
  and sales go on at their usual pace.
"""

from __future__ import annotations

import grp
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from e2e import Daemon, Sim, pair, rss_kib, write_config
from hostile import (
    AsUser,
    closed_by_peer,
    connect,
    drip,
    fill_journal,
    flood,
    unread_listings,
)

from ecrd.api.sharing import RESERVE


def start(tmp: Path, sim: Sim | None, **daemon: Any) -> Daemon:
    if sim is not None:
        config = write_config(tmp, sim)
    else:
        config = tmp / "ecrd.toml"
        config.write_text(tomli_w.dumps({
            "daemon": {"socket": str(tmp / "run" / "ecrd.sock"), "state_dir": str(tmp / "state")},
            "terminal": [{"id": "lan-1", "transport": "lan", "host": "127.0.0.1", "port": 9,
                          "probe_interval_s": 0}],
        }))  # fmt: skip
    data = tomllib.loads(config.read_text())
    data["daemon"].update(daemon)
    config.write_text(tomli_w.dumps(data))
    return Daemon(tmp, config)


def test_idle_connections_are_closed_after_idle_timeout(tmp_path: Path) -> None:
    daemon = start(tmp_path, None, idle_timeout_s=1)
    try:
        idle = [connect(daemon.socket) for _ in range(10)]
        subscribed = connect(daemon.socket)
        subscribed.sendall(b'{"jsonrpc":"2.0","id":1,"method":"subscribe"}\n')
        assert all(closed_by_peer(s, within=4) for s in idle)
        assert not closed_by_peer(subscribed, within=1.5)  # (it read its reply meanwhile)
        assert daemon.call("ping")["protocol"] == 1
        for s in [*idle, subscribed]:
            s.close()
    finally:
        daemon.stop()
    assert "idle for 1s" in daemon.log_text()


def test_a_drip_writer_that_never_ends_its_line_is_closed_as_idle(tmp_path: Path) -> None:
    daemon = start(tmp_path, None, idle_timeout_s=1)
    try:
        sock = connect(daemon.socket)
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":')
        deadline = time.monotonic() + 30  # 1 s idle; generous for a busy machine
        try:
            while drip(sock):
                assert time.monotonic() < deadline, "a drip writer was never closed"
                time.sleep(0.2)
        finally:
            sock.close()
    finally:
        daemon.stop()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another uid can traverse (pytest's own tmp dirs are 0700)."""
    if os.geteuid() != 0:
        pytest.skip("connecting as another uid needs root")
    path = Path(tempfile.mkdtemp(prefix="ecrd-users-"))
    os.chmod(path, 0o755)  # noqa: S103 - only the socket's 0750 directory is inside
    yield path
    shutil.rmtree(path)


def test_one_users_connections_cannot_lock_out_other_users_or_root(shared_dir: Path) -> None:
    daemon = start(shared_dir, None, max_clients=6, max_clients_per_user=3,
                   socket_group="nogroup")  # fmt: skip
    held: list[AsUser] = []
    try:
        hog = [AsUser(daemon.socket, 65534, 65534) for _ in range(4)]
        held += hog
        assert [h.admitted for h in hog] == [True, True, True, False]
        assert "max_clients_per_user" in hog[3].reply["error"]["message"]
        other = [AsUser(daemon.socket, 65533, 65534) for _ in range(4)]
        held += other
        assert [h.admitted for h in other] == [True, True, True, False]  # 6 = max_clients
        assert "max_clients" in other[3].reply["error"]["message"]
        # Root (and ecrd's own user) still get in, over both limits, up to the reserve.
        admin = [connect(daemon.socket) for _ in range(RESERVE)]
        for i, sock in enumerate(admin):
            sock.sendall(b'{"jsonrpc":"2.0","id":%d,"method":"status"}\n' % i)
            assert b'"result"' in sock.recv(65536)
        for sock in admin:
            sock.close()
    finally:
        for h in held:
            h.close()
        daemon.stop()


def test_each_role_keeps_a_connection_reserve_so_a_flood_never_locks_out_the_cashier(
    shared_dir: Path,
) -> None:
    """Two users without a role fill max_clients; a third is refused, but the cashier's
    app (a user in the sell role's group) still gets its connections, up to its own
    per-user limit, and root its reserve."""
    audio = grp.getgrnam("audio").gr_gid
    daemon = start(shared_dir, None, max_clients=4, max_clients_per_user=2,
                   socket_group="nogroup")  # fmt: skip
    data = tomllib.loads(daemon.config.read_text())
    data["access"] = {"sell": ["@audio"], "refund": ["@audio"], "admin": []}
    daemon.config.write_text(tomli_w.dumps(data))
    daemon.call("config.reload")
    held: list[AsUser] = []
    try:
        flood = [AsUser(daemon.socket, uid, 65534) for uid in (65534, 65534, 65533, 65533)]
        held += flood
        assert all(h.admitted for h in flood)
        held.append(stranger := AsUser(daemon.socket, 65532, 65534))
        assert not stranger.admitted and "max_clients" in stranger.reply["error"]["message"]
        cashier = [AsUser(daemon.socket, 65531, audio, (65534,)) for _ in range(3)]
        held += cashier
        assert [c.admitted for c in cashier] == [True, True, False]  # its own limit: 2
        assert "max_clients_per_user" in cashier[2].reply["error"]["message"]
        second_till = [AsUser(daemon.socket, 65530, audio, (65534,)) for _ in range(3)]
        held += second_till
        assert [c.admitted for c in second_till] == [True, True, False]
        sock = connect(daemon.socket)  # root: its own reserve, over everything
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
        assert b'"result"' in sock.recv(65536)
        sock.close()
    finally:
        for h in held:
            h.close()
        daemon.stop()


def test_sixteen_clients_not_reading_big_listings_move_rss_by_a_few_tens_of_mb(
    tmp_path: Path,
) -> None:
    """The issue's repro: records of ~40 KB (a terminal's long receipt), 16 clients each
    asking for a full page (500) and never reading it. A page is about 1 MiB at most, so
    ecrd holds ~16 MiB for them, not 16 pages of 10 MB; a ping and a sale go on."""
    sim = Sim(tmp_path, "--lan", "1")
    fill_journal(tmp_path / "state", 250, receipt_bytes=40_000)
    daemon = start(tmp_path, sim)
    unread: list[Any] = []
    try:
        assert daemon.proc is not None
        pair(daemon, sim, "lan")
        sale = {"terminal": "lan-1", "amount": "1.00", "currency": "HKD"}
        assert daemon.call("sale", reference_id="warm", **sale)["state"] == "succeeded"
        assert len(daemon.call("transaction.list", limit=5)) == 5
        before = peak = rss_kib(daemon.proc.pid)
        unread = unread_listings(daemon.socket, 16)
        with daemon.client() as reader:  # journal reads go in turn: after all 16 pages
            assert len(reader.call("transaction.list", limit=1)) == 1
            for _ in range(10):
                peak = max(peak, rss_kib(daemon.proc.pid))
                time.sleep(0.2)
            assert reader.call("ping")["protocol"] == 1
        assert daemon.call("sale", reference_id="after", **sale)["state"] == "succeeded"
        grown = (peak - before) / 1024
        assert grown < 40, f"16 unread listings took {grown:.0f} MiB"
    finally:
        for sock in unread:
            sock.close()
        daemon.stop(sim)
        sim.stop()


def test_unread_listing_floods_stop_being_read_and_sales_go_on(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "--lan", "1")
    fill_journal(tmp_path / "state", 3000)
    daemon = start(tmp_path, sim)
    floods = []
    try:
        assert daemon.proc is not None
        pair(daemon, sim, "lan")
        sale = {"terminal": "lan-1", "amount": "1.00", "currency": "HKD"}
        assert daemon.call("sale", reference_id="warm", **sale)["state"] == "succeeded"
        before = rss_kib(daemon.proc.pid)
        floods = [flood(daemon.socket) for _ in range(4)]
        for i in range(5):
            started = time.monotonic()
            tx = daemon.call("sale", reference_id=f"during-{i}", **sale)
            assert tx["state"] == "succeeded"
            assert time.monotonic() - started < 3, "a sale waited behind the listings"
        assert daemon.error("transaction.list", limit=10000).reason == "invalid_params"
        grown = rss_kib(daemon.proc.pid) - before
        assert grown < 64 * 1024, f"RSS grew by {grown / 1024:.0f} MiB"
    finally:
        for sock in floods:
            sock.close()
        daemon.stop(sim)
        sim.stop()


def test_a_connection_that_leaves_its_replies_unread_is_closed_after_idle_timeout(
    tmp_path: Path,
) -> None:
    fill_journal(tmp_path / "state", 3000)
    daemon = start(tmp_path, None, idle_timeout_s=1)
    stuck = flood(daemon.socket, lines=64)
    try:
        # 1 s of idleness, once the replies have filled the socket: seconds on a busy
        # machine, so the bound is generous (a connection that stays would hang it).
        deadline = time.monotonic() + 30
        while "its replies went unread for 1s" not in daemon.log_text():
            assert time.monotonic() < deadline, "a connection whose replies go unread stays"
            time.sleep(0.1)
        assert daemon.call("ping")["protocol"] == 1
    finally:
        stuck.close()
        daemon.stop()
