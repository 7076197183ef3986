"""``journal.backup`` writes the journal and the PINs only where nobody else can reach them.

Its target directory is walked component by component: no symbolic link on the way, and
nothing that anyone but root and ecrd can change. In it, the copy is a fresh file created
exclusively, which SQLite writes and nothing else (no rollback journal beside it), checked
by inode to be the file ecrd created; the finished copy alone gets the backup's name.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio
from stack import Stack, call_error, pair, start_stack

from ecrd import ownership
from ecrd.client import open_trio_client
from ecrd.store import journal_view
from ecrd.store.journal import Journal
from ecrd.store.journal_view import JournalView
from ecrd.store.pairings import PairingStore


@pytest.fixture
def view(tmp_path: Path) -> JournalView:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with Journal(state / "journal.sqlite3") as journal:
        for i in range(3):
            journal.begin(reference_id=f"r{i}", terminal="t", action="Sale",
                          params={"amount": "1.00", "currency": "HKD"}, amount="1.00",
                          currency="HKD")  # fmt: skip
    return JournalView(str(state / "journal.sqlite3"))


def private_dir(tmp_path: Path, name: str = "backups") -> Path:
    path = tmp_path / name
    path.mkdir(mode=0o700)
    return path


def records_in(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return int(conn.execute("SELECT count(*) FROM transactions").fetchone()[0])


def test_a_backup_is_the_only_file_it_leaves_and_it_is_whole(
    view: JournalView, tmp_path: Path
) -> None:
    target = private_dir(tmp_path)
    assert view.backup(str(target / "copy.sqlite3")) == 3
    assert sorted(os.listdir(target)) == ["copy.sqlite3"]  # no -journal, no temp file
    assert stat.S_IMODE((target / "copy.sqlite3").stat().st_mode) == 0o600
    assert records_in(target / "copy.sqlite3") == 3
    with pytest.raises(FileExistsError):
        view.backup(str(target / "copy.sqlite3"))
    assert sorted(p for p in os.listdir(target) if not p.endswith(("-wal", "-shm"))) == [
        "copy.sqlite3"
    ]


def test_a_backup_never_follows_a_symlinked_directory(view: JournalView, tmp_path: Path) -> None:
    real = private_dir(tmp_path, "elsewhere")
    (tmp_path / "link").symlink_to(real)
    for dest in (tmp_path / "link" / "copy.sqlite3", tmp_path / "link" / "sub" / "c.sqlite3"):
        with pytest.raises(ownership.UntrustedDirectory, match="symbolic link"):
            view.backup(str(dest))
    assert os.listdir(real) == []


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777, 0o720])
def test_a_backup_refuses_a_directory_others_can_write(
    view: JournalView, tmp_path: Path, mode: int
) -> None:
    target = private_dir(tmp_path)
    target.chmod(mode)
    with pytest.raises(ownership.UntrustedDirectory, match="writable by others"):
        view.backup(str(target / "copy.sqlite3"))
    assert os.listdir(target) == []


def test_a_backup_refuses_a_directory_below_one_others_can_write(
    view: JournalView, tmp_path: Path
) -> None:
    shared = private_dir(tmp_path, "shared")
    shared.chmod(0o777)  # anyone could swap "inside" for a link between check and write
    inside = shared / "inside"
    inside.mkdir(mode=0o700)
    with pytest.raises(ownership.UntrustedDirectory, match="writable by others"):
        view.backup(str(inside / "copy.sqlite3"))
    shared.chmod(0o1777)  # sticky, as /tmp: nobody else can move "inside"
    assert view.backup(str(inside / "copy.sqlite3")) == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_a_backup_refuses_a_directory_owned_by_another_user(
    view: JournalView, tmp_path: Path
) -> None:
    target = private_dir(tmp_path)
    os.chown(target, 65534, 65534)
    with pytest.raises(ownership.UntrustedDirectory, match="owned by uid 65534"):
        view.backup(str(target / "copy.sqlite3"))


def test_a_file_swapped_in_before_sqlite_opens_it_is_never_written_nor_named(
    view: JournalView, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create-then-reopen race, played out: between ecrd's exclusive create and
    SQLite's open, the file is replaced by a link to somewhere else (only root or ecrd
    could do it in a trusted directory; the inode check catches even them)."""
    target = private_dir(tmp_path)
    loot = tmp_path / "loot.sqlite3"
    connect = sqlite3.connect

    def swap_then_connect(path: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if Path(path).parent == target:
            os.unlink(path)
            os.symlink(loot, path)
        return connect(path, *args, **kwargs)

    monkeypatch.setattr(journal_view.sqlite3, "connect", swap_then_connect)
    with pytest.raises(OSError, match="replaced"):
        view.backup(str(target / "copy.sqlite3"))
    assert not loot.exists() or loot.stat().st_size == 0  # not a byte of the journal
    assert "copy.sqlite3" not in os.listdir(target)


def test_the_pairings_copy_follows_the_same_rules(tmp_path: Path) -> None:
    store = PairingStore(tmp_path / "pairings.toml")
    real = private_dir(tmp_path, "real")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ownership.UntrustedDirectory):
        store.copy_to(str(tmp_path / "link" / "p.toml"))
    store.copy_to(str(real / "p.toml"))
    assert stat.S_IMODE((real / "p.toml").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        store.copy_to(str(real / "p.toml"))


async def test_the_api_refuses_an_untrusted_target_naming_why(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    stack: Stack = await start_stack(nursery, tmp_path)
    real = private_dir(tmp_path, "real")
    (tmp_path / "link").symlink_to(real)
    async with open_trio_client(stack.socket) as c:
        await pair(c, stack, "lan")
        err = await call_error(c, "journal.backup", path=str(tmp_path / "link" / "j.sqlite3"),
                               with_pairings=True)  # fmt: skip
        assert (err.reason, err.data["field"]) == ("invalid_params", "path")
        assert "symbolic link" in err.message
        done = await c.call("journal.backup", path=str(real / "j.sqlite3"), with_pairings=True)
    assert done["records"] == 0 and sorted(os.listdir(real)) == [
        "j.sqlite3",
        "j.sqlite3.pairings.toml",
    ]
