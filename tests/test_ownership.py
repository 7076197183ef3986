"""ecrd's own directories and socket (repro 5 of the robustness issue): created with the
right owner and mode, or refused with a message that says which and how to fix it; never a
chown through a link; never the removal of anything but ecrd's own or a stale socket."""

from __future__ import annotations

import grp
import os
import socket
import stat
import tomllib
from pathlib import Path

import pytest
import tomli_w
from e2e import Daemon
from test_config_rules import assert_one_line_exit_2, config_file, ecrd

from ecrd.ownership import (
    STATE_DIR_MODE,
    CannotStart,
    identity,
    own_directory,
    remove_own_socket,
)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create another owner")


def other_group() -> int:
    return next(g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getegid())


def test_a_missing_directory_is_created_with_its_mode_and_group(tmp_path: Path) -> None:
    gid = other_group()
    own_directory(str(tmp_path / "run"), 0o750, gid)
    st = os.lstat(tmp_path / "run")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, os.geteuid(), gid)


def test_a_symlinked_directory_is_refused_and_its_target_never_chowned(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o750)
    before = os.stat(target)
    (tmp_path / "run").symlink_to(target)
    with pytest.raises(CannotStart, match="is a symbolic link"):
        own_directory(str(tmp_path / "run"), 0o750, other_group())
    after = os.stat(target)
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid, before.st_gid, before.st_mode,
    )  # fmt: skip


@pytest.mark.parametrize(("mode", "wanted"), [(0o777, 0o750), (0o755, 0o700), (0o770, 0o750)])
def test_a_looser_directory_is_refused_with_the_chmod_that_fixes_it(
    tmp_path: Path, mode: int, wanted: int
) -> None:
    path = tmp_path / "dir"
    path.mkdir()
    os.chmod(path, mode)
    with pytest.raises(CannotStart, match=f"looser than {wanted:04o}: `chmod {wanted:04o} "):
        own_directory(str(path), wanted)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode  # left as found


@root_only
def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, -1)
    with pytest.raises(CannotStart, match="owned by uid 65534, not by ecrd's user"):
        own_directory(str(path), STATE_DIR_MODE)


def test_a_tighter_directory_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    own_directory(str(path), 0o750)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750


def test_a_socket_that_replaced_ours_is_not_removed_at_exit(tmp_path: Path) -> None:
    path = str(tmp_path / "ecrd.sock")
    ours = socket.socket(socket.AF_UNIX)
    ours.bind(path)
    bound = identity(path)
    os.unlink(path)
    impostor = socket.socket(socket.AF_UNIX)
    impostor.bind(path)
    remove_own_socket(path, bound)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    ours.close()
    impostor.close()


@root_only
def test_ecrd_refuses_a_world_writable_socket_directory_of_another_user(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    (tmp_path / "run").mkdir()
    os.chmod(tmp_path / "run", 0o777)  # noqa: S103 - the loose directory under test
    os.chown(tmp_path / "run", 65534, -1)
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "owned by uid 65534")
    assert ecrd("check-config", "-c", str(path)).returncode == 2  # mode 0777, looser


def test_ecrd_refuses_a_symlinked_state_dir(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    (tmp_path / "real-state").mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(tmp_path / "real-state")
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "is a symbolic link")
    assert list((tmp_path / "real-state").iterdir()) == []


def test_ecrd_refuses_a_symlinked_socket_directory_with_a_socket_group(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    data = tomllib.loads(path.read_text())
    data["daemon"]["socket_group"] = grp.getgrgid(other_group()).gr_name
    path.write_text(tomli_w.dumps(data))
    target = tmp_path / "target"
    target.mkdir(mode=0o750)
    gid = os.stat(target).st_gid
    (tmp_path / "run").symlink_to(target)
    assert_one_line_exit_2(ecrd("run", "-c", str(path)), "is a symbolic link")
    assert os.stat(target).st_gid == gid


def test_ecrd_leaves_an_impostors_socket_alone_at_exit(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, config_file(tmp_path))
    try:
        os.unlink(daemon.socket)
        impostor = socket.socket(socket.AF_UNIX)
        impostor.bind(daemon.socket)
        assert daemon.terminate() == 0
        assert stat.S_ISSOCK(os.lstat(daemon.socket).st_mode)
        impostor.close()
    finally:
        daemon.stop()
