"""The Debian package (scripts/build-deb): built, inspected, linted, then installed on THIS
machine with dpkg, run, upgraded over, and purged (README, "Install on a POS box").

Installing is real (/opt/ecrd, /usr/bin, /etc/ecrd, the ecrd user), so that part runs only
as root where dpkg is, and only on a machine without an ecrd of its own (installed, or
files in its places): it never touches one. It leaves nothing behind: the package purged,
/var/lib/ecrd and the ecrd user it created removed, no unit enabled, no ecrd running.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import ecrd

# One worker takes the whole module (--dist loadgroup); its fixture is session-scoped, as
# xdist may run other modules between its tests, which would rebuild a module-scoped one.
# The group ("machine") is test_install.py's too: installing the package makes this
# machine's ecrd group, which scripts/install uses when it is there, so the two never run
# at once.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("machine")]

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "v0.1.0"
# Where the package puts files (and the admin's state): none may be there before the test.
BOX_PATHS = (
    "/opt/ecrd", "/etc/ecrd", "/var/lib/ecrd", "/usr/bin/ecrd", "/usr/bin/ecrctl",
    "/etc/systemd/system/ecrd.service", "/usr/lib/systemd/system/ecrd.service",
)  # fmt: skip
# Held while the package is on this machine, by whichever test run has it there.
MACHINE_LOCK = Path("/run/lock" if os.path.isdir("/run/lock") else "/tmp") / "ecrd-deb-test.lock"
DSH = Path("/var/lib/systemd/deb-systemd-helper-enabled")
# As on a box: the system's PATH (not the test venv's, whose ecrd would answer instead).
BOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
}


@attrs.frozen
class Package:
    path: Path
    contents: str  # dpkg-deb -c
    info: str  # dpkg-deb -I


def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
        env={**os.environ, **BOX_ENV, **(env or {})},
    )
    assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    """Built once per run, also when pytest-xdist's workers each want it: the first builds it
    in their common directory, under a lock; the others wait and take it."""
    if shutil.which("dpkg-deb") is None or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs dpkg-deb and Debian's python3")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "ecrd-deb"
    with open(shared / "ecrd-deb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not list(out.glob("*.deb")):
            run(str(REPO / "scripts" / "build-deb"), "--out", str(out), timeout=600)
    [deb] = out.glob("*.deb")
    arch = run("dpkg", "--print-architecture").strip()
    assert deb.name == f"ecrd_{ecrd.__version__}_{arch}.deb"
    return Package(deb, run("dpkg-deb", "-c", str(deb)), run("dpkg-deb", "-I", str(deb)))


def paths(package: Package) -> dict[str, str]:
    """Each path in the package (without ./) and its mode string (and link target)."""
    found = {}
    for line in package.contents.splitlines():
        mode, _owner, _size, _date, _time, name, *link = line.split()
        found[name.removeprefix("./").rstrip("/")] = " ".join([mode, *link])
    return found


def test_the_package_holds_the_program_its_docs_and_its_scripts(package: Package) -> None:
    found = paths(package)
    for name in ("ecrd", "ecrctl"):
        assert found[f"usr/bin/{name}"] == f"lrwxrwxrwx -> /opt/ecrd/bin/{name}"
        assert found[f"opt/ecrd/bin/{name}"].startswith("-rwxr-xr-x")
    assert "usr/bin/ecrd-sim" not in found and "opt/ecrd/bin/ecrd-sim" in found
    for name in (
        "etc/ecrd/ecrd.toml", "usr/lib/systemd/system/ecrd.service",
        "usr/lib/systemd/system/ecrd-backup.timer", "usr/lib/sysusers.d/ecrd.conf",
        "usr/lib/tmpfiles.d/ecrd.conf", "usr/share/man/man8/ecrd.8.gz",
        "usr/share/man/man1/ecrctl.1.gz", "usr/share/man/man5/ecrd.toml.5.gz",
        "usr/share/bash-completion/completions/ecrctl", "usr/share/zsh/vendor-completions/_ecrctl",
        "usr/share/doc/ecrd/copyright", "usr/share/doc/ecrd/changelog.gz",
        "usr/share/ecrd/contrib/prometheus/ecrd-rules.yml",
    ):  # fmt: skip
        assert name in found, name
    assert not [p for p in found if "__pycache__" in p or p.endswith(".pyc")]  # the postinst's
    assert not [p for p in found if p.startswith(("var/", "opt/ecrd/bin/pip"))]
    assert "Depends: python3." in package.info
    for script in ("postinst", "prerm", "postrm", "conffiles", "md5sums"):
        assert f" {script} " in package.info, script


def test_the_config_is_a_conffile(package: Package, tmp_path: Path) -> None:
    run("dpkg-deb", "-e", str(package.path), str(tmp_path / "control"))
    assert (tmp_path / "control" / "conffiles").read_text() == "/etc/ecrd/ecrd.toml\n"


def test_lintian_finds_nothing_the_overrides_do_not_explain(package: Package) -> None:
    if shutil.which("lintian") is None:
        pytest.skip("needs lintian (.ci/run installs it)")
    out = run("lintian", "--info", "--pedantic", str(package.path), timeout=600)
    tags = [line for line in out.splitlines() if "running with root privileges" not in line]
    assert tags == []


def untouched_box() -> None:
    """Skip unless this machine has no ecrd of its own for the test to disturb."""
    if os.geteuid() != 0 or shutil.which("dpkg") is None:
        pytest.skip("installs the package: needs root and dpkg")
    status = subprocess.run(["dpkg", "-s", "ecrd"], capture_output=True, check=False)
    present = [p for p in BOX_PATHS if os.path.lexists(p)]
    if status.returncode == 0 or present:
        pytest.skip(f"this machine has an ecrd of its own ({present or 'dpkg'}): not touched")


@pytest.fixture
def box() -> Iterator[None]:
    """This machine, put back as it was afterwards, whatever happened. Two test runs on one
    machine (two checkouts) take turns: the lock is the machine's, not the run's."""
    with open(MACHINE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _put_back()


def _put_back() -> Iterator[None]:
    untouched_box()
    had_user = _exists(pwd.getpwnam, "ecrd")
    had_group = _exists(grp.getgrnam, "ecrd")
    # man-db's trigger rebuilds the whole man index at every dpkg -i and --purge (10 s of CPU
    # over the test, none of it ecrd's): off while the test runs, as man-db/auto-update=false
    # does, and back on afterwards.
    man_db = Path("/var/lib/man-db/auto-update")
    had_man_db = man_db.exists()
    man_db.unlink(missing_ok=True)
    try:
        yield
    finally:
        if had_man_db:
            man_db.touch()
        subprocess.run(["dpkg", "--purge", "ecrd"], capture_output=True, check=False)
        shutil.rmtree("/var/lib/ecrd", ignore_errors=True)
        for link in Path("/etc/systemd/system").glob("*.wants/ecrd*"):
            link.unlink()  # the test's own (there was no ecrd before it)
        if not had_user and _exists(pwd.getpwnam, "ecrd"):
            subprocess.run(["userdel", "ecrd"], capture_output=True, check=False)
        if not had_group and _exists(grp.getgrnam, "ecrd"):
            subprocess.run(["groupdel", "ecrd"], capture_output=True, check=False)


def _exists(lookup: object, name: str) -> bool:
    try:
        lookup(name)  # type: ignore[operator]
    except KeyError:
        return False
    return True


def digests(*paths: str) -> dict[str, str]:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_install_run_upgrade_and_purge_on_this_machine(
    package: Package, box: None, tmp_path: Path
) -> None:
    out = run("dpkg", "-i", str(package.path))
    assert "ecrd: edit /etc/ecrd/ecrd.toml" in out
    check_installed()
    check_it_runs(tmp_path)
    records = keep_records()
    run("dpkg", "--force-confold", "-i", str(next_version(package, tmp_path)))
    assert digests(*records) == records  # the journal, the pairings and the edited config
    assert run("dpkg-query", "-W", "-f", "${Version}", "ecrd").endswith("+test1")
    timers = Path("/etc/systemd/system/timers.target.wants")
    if timers.is_dir():  # the admin enables the backup timer, as `systemctl enable` does
        (timers / "ecrd-backup.timer").symlink_to("/usr/lib/systemd/system/ecrd-backup.timer")
    out = run("dpkg", "--purge", "ecrd")
    assert "KEPT /var/lib/ecrd" in out
    check_purged()
    state = {p: d for p, d in records.items() if p.startswith("/var/lib/ecrd/")}
    assert digests(*state) == state
    run("dpkg", "-i", str(package.path))  # over the kept records: they are still there
    assert digests(*state) == state
    run("dpkg", "--purge", "ecrd", env={"ECRD_PURGE_STATE": "1"})
    check_purged()
    assert not os.path.exists("/var/lib/ecrd")


def check_installed() -> None:
    for name in ("ecrd", "ecrctl"):
        assert run(f"/usr/bin/{name}", "--version") == f"{name} {ecrd.__version__}\n"
    out = run("/usr/bin/ecrd", "check-config")  # the installed /etc/ecrd/ecrd.toml, the example
    assert out.startswith("/etc/ecrd/ecrd.toml: OK")
    user = pwd.getpwnam("ecrd")
    assert "dialout" in [g.gr_name for g in grp.getgrall() if "ecrd" in g.gr_mem]
    for path, mode in (("/etc/ecrd", 0o750), ("/etc/ecrd/ecrd.toml", 0o640)):
        st = os.stat(path)
        assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o7777) == (
            0,
            "ecrd",
            mode,
        )
    st = os.stat("/var/lib/ecrd")
    assert (st.st_uid, st.st_mode & 0o7777) == (user.pw_uid, 0o700)
    # Enabled (starts at boot), not started.
    assert list(Path("/etc/systemd/system/multi-user.target.wants").glob("ecrd.service"))
    assert list(Path("/opt/ecrd/lib").glob("python3*/site-packages/ecrd/__pycache__/cli.*.pyc"))
    # The bundled (stripped) AES extension of pycryptodome encrypts and decrypts.
    roundtrip = "from ecrd.protocol import crypto as c; "
    roundtrip += "assert c.open_legacy(c.seal_legacy(b'{}', '123456'), '123456') == b'{}'"
    run("/opt/ecrd/bin/python", "-c", roundtrip)
    run("runuser", "-u", "ecrd", "--", "/usr/bin/ecrd", "check-config")  # as ExecStartPre does


def check_it_runs(tmp_path: Path) -> None:
    """The packaged ecrd starts (as root, in a directory of the test's) and answers."""
    socket = tmp_path / "run" / "ecrd.sock"
    config = tmp_path / "ecrd.toml"
    config.write_text(f'[daemon]\nsocket = "{socket}"\nstate_dir = "{tmp_path}/state"\n')
    daemon = subprocess.Popen(
        ["/usr/bin/ecrd", "run", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists() and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        out = run("/usr/bin/ecrctl", "--socket", str(socket), "ping")
        assert out.startswith(f"ecrd {ecrd.__version__} ")
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err


def keep_records() -> dict[str, str]:
    """The admin's records and config, as the test leaves them before the upgrade."""
    for name in ("journal.sqlite3", "pairings.toml"):
        shutil.copy(FIXTURE / name, f"/var/lib/ecrd/{name}")
        shutil.chown(f"/var/lib/ecrd/{name}", "ecrd", "ecrd")
    with open("/etc/ecrd/ecrd.toml", "a") as f:
        f.write("# edited on this box\n")
    return digests(
        "/var/lib/ecrd/journal.sqlite3", "/var/lib/ecrd/pairings.toml", "/etc/ecrd/ecrd.toml"
    )


def next_version(package: Package, tmp_path: Path) -> Path:
    """The same package as a later version (an upgrade), without building it again."""
    tree = tmp_path / "next"
    run("dpkg-deb", "-R", str(package.path), str(tree))
    control = tree / "DEBIAN" / "control"
    lines = control.read_text().splitlines()
    lines = [f"{line}+test1" if line.startswith("Version: ") else line for line in lines]
    control.write_text("\n".join(lines) + "\n")
    deb = tmp_path / "next.deb"
    run("dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(tree), str(deb))
    return deb


def check_purged() -> None:
    for path in ("/opt/ecrd", "/etc/ecrd", "/usr/bin/ecrd", "/usr/bin/ecrctl"):
        assert not os.path.lexists(path), path
    assert not list(Path("/etc/systemd/system").rglob("ecrd*"))  # no unit left enabled
    assert not (list(DSH.rglob("ecrd*")) if DSH.exists() else [])
    overrides = run("dpkg-statoverride", "--list")
    assert "/etc/ecrd" not in overrides
