"""ecrd's own directories and socket: created with the right owner and mode, or refused.

The socket directory (0750) and ``state_dir`` (0700) are created by ecrd (or by systemd's
``RuntimeDirectory=``/``StateDirectory=`` as ecrd's user). One found already there is used
only if it is a real directory (not a symlink: ``lstat``, and ``O_NOFOLLOW`` when opened),
owned by ecrd's user, and no looser than that mode; otherwise ecrd refuses to start and
says which directory, what is wrong and how to fix it. Whoever else could write in the
socket directory could put an impostor in place of the socket; whoever could read
``state_dir`` would read the PINs. Ownership and mode changes go through a file descriptor
of the directory itself, so they never follow a link.

The socket path is only ever removed when it is a socket that nobody answers on (left over
by a process that died): never a file, a directory, or a live socket. At exit, ecrd removes
its socket only if the path is still the socket it bound.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from typing import Final

SOCKET_DIR_MODE: Final = 0o750
STATE_DIR_MODE: Final = 0o700


class CannotStart(Exception):
    """A config or state problem that a restart cannot fix (``ecrd`` exits with status 2)."""


def directory_problem(path: str, mode: int, *, owner: bool = True) -> str | None:
    """Why an existing ``path`` cannot be ecrd's directory; None if it is fine or absent.
    ``owner=False`` skips the owner check (``check-config`` may run as another user)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return (
            f"{path} is a symbolic link; ecrd does not follow links for its directories: "
            "point the config at the real directory, or remove the link"
        )
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} exists and is not a directory: move it away"
    if owner and st.st_uid != os.geteuid():
        return (
            f"{path} is owned by uid {st.st_uid}, not by ecrd's user (uid {os.geteuid()}): "
            f"`chown {os.geteuid()} {path}`, or remove it so that ecrd creates it"
        )
    extra = stat.S_IMODE(st.st_mode) & 0o777 & ~mode
    if extra:
        return (
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, looser than {mode:04o}: "
            f"`chmod {mode:04o} {path}` (or give ecrd a directory of its own)"
        )
    return None


def own_directory(path: str, mode: int, gid: int | None = None) -> None:
    """Create ``path`` with ``mode`` (and group ``gid``), or check the one that is there."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o755, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    problem = directory_problem(path, mode)
    if problem is not None:
        raise CannotStart(problem)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)  # only ever tighter (checked above), or what umask took away
        if gid is not None and st.st_gid != gid:
            os.fchown(fd, -1, gid)
    finally:
        os.close(fd)


def socket_path_problem(path: str) -> str | None:
    """Why binding ``path`` would have to remove something that is not a stale socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return (
            f"socket path {path} exists and is not a socket; ecrd never removes it: "
            "choose another [daemon].socket, or move that file away"
        )
    return None


def answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_own_socket(path: str, bound: tuple[int, int] | None) -> None:
    """Remove the socket at exit, unless something else has taken its place."""
    if bound is not None and identity(path) == bound:
        with contextlib.suppress(OSError):
            os.unlink(path)


class UntrustedDirectory(OSError):
    """A directory ecrd will not write a private file into; ``strerror`` says why."""


def open_trusted_directory(path: str) -> int:
    """A file descriptor of the directory ``path``, for writing a private file into it
    (``journal.backup``: the journal, the PINs). ``path`` is made absolute and walked from
    ``/`` one component at a time with ``O_NOFOLLOW``, so none of them may be a symbolic
    link, and each must be owned by root or by ecrd's user and writable by its owner only
    (a component above the last may be sticky and writable by all, like ``/tmp``: nobody
    else can move ours out of it). Then nobody but root and ecrd can swap a component, a
    file or a file SQLite might look for next to it between the check and the write."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    names = [p for p in os.path.abspath(path).split("/") if p]
    try:
        _check_component(fd, "/", last=not names)
        for i, name in enumerate(names):
            where = "/" + "/".join(names[: i + 1])
            try:
                child = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                link = stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
                why = "a symbolic link (give the real path)" if link else "not a directory"
                raise _untrusted(where, why) from exc
            os.close(fd)
            fd = child
            _check_component(fd, where, last=i == len(names) - 1)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_component(fd: int, where: str, *, last: bool) -> None:
    st = os.fstat(fd)
    if st.st_uid not in (0, os.geteuid()):
        raise _untrusted(where, f"owned by uid {st.st_uid}, neither root nor ecrd's user")
    loose = stat.S_IMODE(st.st_mode) & 0o022
    if loose and (last or not st.st_mode & stat.S_ISVTX):
        raise _untrusted(
            where, f"mode {stat.S_IMODE(st.st_mode):04o}: writable by others than its owner"
        )


def _untrusted(where: str, why: str) -> UntrustedDirectory:
    return UntrustedDirectory(
        errno.EPERM,
        f"{where} is {why}; ecrd writes private files only "
        "into directories nobody but root and ecrd can change",
    )


def shared_directory_problem(path: str, st: os.stat_result) -> str | None:
    """Why ecrd must not keep a file another program reads (the metrics file) in the
    directory ``path`` whose ``fstat`` is ``st``; None if it may. The directory belongs to
    that program (node_exporter's textfile directory: its owner may be anyone, and is
    trusted, since whoever owns it decides what it exports anyway); beyond its owner,
    nobody may be able to replace or remove ecrd's file: no group or world write bit,
    unless the directory is sticky (``chmod +t``), which keeps everyone's files to
    themselves. (That it is no symbolic link is ``O_NOFOLLOW``'s to check, at open.)"""
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return (
            f"{path} has mode {mode:04o}: others than its owner could replace ecrd's file "
            f"in it; `chmod g-w,o-w {path}`, or make it sticky: `chmod +t {path}`"
        )
    return None
