"""scripts/install and scripts/uninstall, staged with ``--root`` (README, "Install on a POS box").

One real install (a venv built by pip under ``ROOT/opt/ecrd``, as on a box) serves the
module; tests that change the staged tree work on a copy of it. Never run without --root.
"""

from __future__ import annotations

import grp
import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import ecrd

# One worker takes the whole module (--dist loadgroup); its fixture is session-scoped, as
# xdist may run other modules between its tests, which would rebuild a module-scoped one.
# The group ("machine") is test_deb.py's too: installing the package there makes this
# machine's ecrd group, which scripts/install uses when it is there (HAS_ECRD_GROUP), so
# the two never run at once.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("machine")]

REPO = Path(__file__).resolve().parents[1]
HAS_ECRD_GROUP = any(g.gr_name == "ecrd" for g in grp.getgrall())
# The box's files and their modes (README): program links, sysusers, config, unit, docs.
FILES = {
    "usr/lib/sysusers.d/ecrd.conf": ("systemd/ecrd.sysusers", 0o644),
    "etc/ecrd/ecrd.toml": ("etc/ecrd.toml", 0o640),
    "etc/systemd/system/ecrd.service": ("systemd/ecrd.service", 0o644),
    "usr/share/doc/ecrd/README.md": ("README.md", 0o644),
    "usr/share/doc/ecrd/ecrd.toml.example": ("etc/ecrd.toml", 0o644),
}


@attrs.frozen
class Staged:
    root: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    manifest_first: dict[str, tuple[str, ...]]
    manifest_second: dict[str, tuple[str, ...]]


def run(script: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        [str(REPO / "scripts" / script), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=600,
        check=False,
    )


def manifest(root: Path) -> dict[str, tuple[str, ...]]:
    """Every path under ``root``: its type and mode, and its content hash or link target."""
    found: dict[str, tuple[str, ...]] = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        what = stat.filemode(st.st_mode)
        if path.is_symlink():
            found[str(path.relative_to(root))] = (what, os.readlink(path))
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (what, digest)
        else:
            found[str(path.relative_to(root))] = (what,)
    return found


def lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return proc.stdout.splitlines()


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    root = tmp_path_factory.mktemp("box")
    first = run("install", root)
    assert first.returncode == 0, first.stdout + first.stderr
    manifest_first = manifest(root)
    second = run("install", root)
    assert second.returncode == 0, second.stdout + second.stderr
    return Staged(root, first, second, manifest_first, manifest(root))


@pytest.fixture
def box(staged: Staged, tmp_path: Path) -> Iterator[Path]:
    """A copy of the staged tree that a test may change."""
    root = tmp_path / "box"
    # The venv's ~3 700 files are hard links (cp -al: a tenth of a second, not the two of a
    # copy): nothing here writes into a file of /opt/ecrd, the scripts only read it or remove
    # it whole. Every other file is a copy of its own, for the tests to change.
    venv = staged.root / "opt" / "ecrd"
    shutil.copytree(
        staged.root, root, symlinks=True, ignore=lambda d, _: ["ecrd"] * (d == str(venv.parent))
    )
    subprocess.run(["cp", "-al", str(venv), str(root / "opt" / "ecrd")], check=True, timeout=60)
    yield root


def test_install_puts_every_file_in_place_with_its_mode(staged: Staged) -> None:
    root = staged.root
    for path, (source, mode) in FILES.items():
        assert (root / path).read_bytes() == (REPO / source).read_bytes(), path
        assert stat.S_IMODE((root / path).stat().st_mode) == mode, path
    assert stat.S_IMODE((root / "etc/ecrd").stat().st_mode) == 0o750
    if HAS_ECRD_GROUP:
        for path in ("etc/ecrd", "etc/ecrd/ecrd.toml"):
            assert grp.getgrgid((root / path).stat().st_gid).gr_name == "ecrd"
    for name in ("ecrd", "ecrctl"):
        assert os.readlink(root / "usr/bin" / name) == f"/opt/ecrd/bin/{name}"
    assert not (root / "var").exists()  # the state directory is systemd's, at first start


def test_install_builds_a_venv_that_runs_both_programs(staged: Staged) -> None:
    for name in ("ecrd", "ecrctl"):
        program = staged.root / "opt/ecrd/bin" / name
        proc = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, timeout=60, check=True
        )
        assert proc.stdout == f"{name} {ecrd.__version__}\n"
    site = list((staged.root / "opt/ecrd/lib").glob("python3*/site-packages/ecrd"))
    assert len(site) == 1 and (site[0] / "__init__.py").is_file()  # a copy, not editable


def test_install_says_what_it_does_and_skips_the_machine(staged: Staged) -> None:
    out = lines(staged.first)
    assert out[0] == f"== installing ecrd from {REPO} into {staged.root}"
    assert f"== /opt/ecrd: ecrd {ecrd.__version__} installed" in "\n".join(out)
    assert "== /etc/ecrd/ecrd.toml: installed (mode 0640" in "\n".join(out)
    assert "== /etc/ecrd/ecrd.toml: valid" in out
    assert "== systemctl daemon-reload, enable ecrd: skipped (--root)" in out
    assert any(line.startswith("== ecrd user and group: skipped (--root") for line in out)
    assert out[-1] == "== done"


def test_a_second_install_changes_nothing(staged: Staged) -> None:
    assert staged.manifest_second == staged.manifest_first
    out = lines(staged.second)
    assert not [line for line in out if "installed" in line or "linked" in line]
    assert any(line.startswith("== /opt/ecrd: unchanged (ecrd ") for line in out)
    assert "== /etc/systemd/system/ecrd.service: unchanged" in out


def test_install_never_overwrites_the_admins_config(box: Path) -> None:
    config = box / "etc/ecrd/ecrd.toml"
    config.write_text('[daemon]\nclient_device_sn = "SHOP-7"\n')
    config.chmod(0o600)
    proc = run("install", box)
    assert proc.returncode == 0, proc.stderr
    assert config.read_text() == '[daemon]\nclient_device_sn = "SHOP-7"\n'
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert any(line.startswith("== /etc/ecrd/ecrd.toml: exists, kept") for line in lines(proc))


def test_install_puts_back_what_is_missing_or_changed(box: Path, staged: Staged) -> None:
    (box / "usr/bin/ecrctl").unlink()
    (box / "etc/systemd/system/ecrd.service").write_text("[Unit]\n")
    (box / "usr/lib/sysusers.d/ecrd.conf").chmod(0o600)
    proc = run("install", box)
    assert proc.returncode == 0, proc.stderr
    assert manifest(box) == staged.manifest_first
    assert "== /usr/bin/ecrctl -> /opt/ecrd/bin/ecrctl: linked" in lines(proc)


def test_install_refuses_to_replace_a_program_that_is_not_its_link(box: Path) -> None:
    (box / "usr/bin/ecrctl").unlink()
    (box / "usr/bin/ecrctl").write_text("#!/bin/sh\n")
    proc = run("install", box)
    assert proc.returncode == 1
    assert "/usr/bin/ecrctl exists and is not a link: not replaced" in proc.stderr
    assert (box / "usr/bin/ecrctl").read_text() == "#!/bin/sh\n"


def make_state(root: Path) -> dict[str, bytes]:
    state = {"journal.sqlite3": b"SQLite format 3\x00records", "pairings.toml": b"version = 1\n"}
    (root / "var/lib/ecrd").mkdir(parents=True, mode=0o700)
    for name, data in state.items():
        (root / "var/lib/ecrd" / name).write_bytes(data)
    return state


GONE = ("opt/ecrd", "usr/bin/ecrd", "usr/bin/ecrctl", "etc/systemd/system/ecrd.service")


def test_uninstall_removes_the_program_and_keeps_records_and_config(box: Path) -> None:
    state = make_state(box)
    proc = run("uninstall", box)
    assert proc.returncode == 0, proc.stderr
    for path in (*GONE, "usr/share/doc/ecrd"):
        assert not os.path.lexists(box / path), path
    for name, data in state.items():
        assert (box / "var/lib/ecrd" / name).read_bytes() == data
    assert (box / "etc/ecrd/ecrd.toml").read_bytes() == (REPO / "etc/ecrd.toml").read_bytes()
    assert (box / "usr/lib/sysusers.d/ecrd.conf").is_file()
    out = lines(proc)
    assert "== systemctl disable --now ecrd: skipped (--root)" in out
    assert any(line.startswith("== KEPT /var/lib/ecrd: the payment journal") for line in out)
    again = run("uninstall", box)
    assert again.returncode == 0, again.stderr
    assert "== /opt/ecrd: not there" in lines(again)
    assert (box / "var/lib/ecrd/journal.sqlite3").read_bytes() == state["journal.sqlite3"]


def test_uninstall_purge_also_deletes_records_and_config(box: Path) -> None:
    make_state(box)
    (box / "usr/bin/other").write_text("not ecrd's\n")
    proc = run("uninstall", box, "--purge")
    assert proc.returncode == 0, proc.stderr
    for path in (*GONE, "var/lib/ecrd", "etc/ecrd", "usr/lib/sysusers.d/ecrd.conf"):
        assert not os.path.lexists(box / path), path
    assert (box / "usr/bin/other").read_text() == "not ecrd's\n"
    assert "== /var/lib/ecrd: removed" in lines(proc)


def test_uninstall_leaves_a_program_that_is_not_its_link(box: Path) -> None:
    (box / "usr/bin/ecrd").unlink()
    (box / "usr/bin/ecrd").write_text("#!/bin/sh\n")
    proc = run("uninstall", box)
    assert proc.returncode == 0, proc.stderr
    assert (box / "usr/bin/ecrd").read_text() == "#!/bin/sh\n"
    assert "== /usr/bin/ecrd: not a link into /opt/ecrd, left alone" in lines(proc)


@pytest.mark.parametrize("script", ["install", "uninstall"])
def test_unknown_arguments_are_refused(script: str, tmp_path: Path) -> None:
    proc = run(script, tmp_path / "box", "--bogus")
    assert proc.returncode == 2
    assert f"{script}: unknown argument: --bogus" in proc.stderr
    assert not (tmp_path / "box").exists()
