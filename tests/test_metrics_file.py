"""The metrics file is always ecrd's own and never lies about a stopped ecrd.

* It is written through a temporary file of a random name, created exclusively without
  following links, in a directory that nobody but its owner can write (unless sticky):
  nobody else can end up owning ``ecrd.prom`` and zero the unresolved gauge.
* The shipped unit may write exactly the documented directory.
* While ecrd runs the file says ``ecrd_up 1``; the one it leaves when it stops says 0,
  with every link down and the unresolved payments still counted.
"""

from __future__ import annotations

import configparser
import os
import re
import stat
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w
from e2e import Daemon, Sim, pair, write_config
from prometheus_client.parser import text_string_to_metric_families

from ecrd import metrics
from ecrd.metrics import Metrics, Snapshot, write_textfile

ROOT = Path(__file__).resolve().parents[1]
TEXT = Metrics("0.1.0").renderer(Snapshot())()
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def textfile_dir(tmp_path: Path, mode: int = 0o755) -> Path:
    path = tmp_path / "textfile"
    path.mkdir()
    path.chmod(mode)
    return path


@root_only
def test_the_file_is_ecrds_own_whatever_another_user_left_at_a_temp_name(tmp_path: Path) -> None:
    """Another user who can guess the temporary name (the old one was PATH.PID.tmp) plants
    a file of its own there, world-writable: ecrd never writes into it, never renames it
    into place."""
    directory = textfile_dir(tmp_path, 0o1777)  # a shared, sticky directory, like /tmp
    target = directory / "ecrd.prom"
    planted = directory / f"ecrd.prom.{os.getpid()}.tmp"
    planted.write_text("ecrd_unresolved_transactions 0\n")
    planted.chmod(0o666)
    os.chown(planted, 65534, 65534)
    (directory / f".ecrd.prom.{os.getpid()}.tmp").symlink_to(tmp_path / "elsewhere")
    write_textfile(str(target), TEXT)
    st = target.lstat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o644)
    assert target.read_bytes() == TEXT
    assert planted.read_text() == "ecrd_unresolved_transactions 0\n"  # untouched
    assert planted.stat().st_uid == 65534 and not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp")) == sorted(
        [planted.name, f".ecrd.prom.{os.getpid()}.tmp"]
    )  # and no temporary file of ecrd's own left behind


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o770])
def test_a_directory_others_could_write_in_is_refused(tmp_path: Path, mode: int) -> None:
    directory = textfile_dir(tmp_path, mode)
    with pytest.raises(OSError, match="could replace ecrd's file"):
        write_textfile(str(directory / "ecrd.prom"), TEXT)
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize("mode", [0o755, 0o700, 0o1775, 0o1777])
def test_a_directory_only_its_owner_can_write_or_a_sticky_one_is_used(
    tmp_path: Path, mode: int
) -> None:
    directory = textfile_dir(tmp_path, mode)
    write_textfile(str(directory / "ecrd.prom"), TEXT)
    write_textfile(str(directory / "ecrd.prom"), TEXT)  # replaced, not refused
    assert [p.name for p in directory.iterdir()] == ["ecrd.prom"]


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    real = textfile_dir(tmp_path)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OSError, match="symbolic link"):
        write_textfile(str(tmp_path / "link" / "ecrd.prom"), TEXT)
    assert list(real.iterdir()) == []


def test_the_unit_may_write_exactly_the_documented_metrics_directory() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((ROOT / "systemd" / "ecrd.service").read_text())
    readme = (ROOT / "README.md").read_text()
    toml = (ROOT / "etc" / "ecrd.toml").read_text()
    documented = re.findall(r'metrics_file = "([^"]+)"', readme + toml)
    assert documented and len(set(documented)) == 1
    assert unit["Service"]["ProtectSystem"] == "strict"
    assert unit["Service"]["ReadWritePaths"] == "-" + str(Path(documented[0]).parent)
    # The alert rules are contrib's file (the README's table points at it): ecrd down, and
    # its metrics file stale.
    rules = (ROOT / "contrib" / "prometheus" / "ecrd-rules.yml").read_text()
    for alert in ("EcrdDown", "ecrd_up == 0", "EcrdMetricsStale", "node_textfile_mtime_seconds"):
        assert alert in rules
    assert "EcrdDown" in readme and "EcrdMetricsStale" in readme


def test_a_stopped_ecrd_leaves_a_file_that_says_it_is_down(tmp_path: Path) -> None:
    directory = textfile_dir(tmp_path)
    target = directory / "ecrd.prom"
    sim = Sim(tmp_path, "--lan", "1")
    config = write_config(tmp_path, sim)
    data = tomllib.loads(config.read_text())
    data["daemon"]["metrics_file"] = str(target)
    config.write_text(tomli_w.dumps(data))
    daemon = Daemon(tmp_path, config)
    try:
        pair(daemon, sim, "lan")
        sale = {"terminal": "lan-1", "currency": "HKD", "reference_id": "u1"}
        assert daemon.error("sale", **sale, amount="1.94").reason == "timeout_outcome_unknown"
        unresolved = ("ecrd_unresolved_transactions", (("terminal", "lan-1"),))
        deadline = time.monotonic() + 10  # written once that payment ended
        while not target.exists() or samples(target.read_text()).get(unresolved) != 1:
            assert time.monotonic() < deadline, "no metrics file with the unknown payment"
            time.sleep(0.05)
        assert samples(target.read_text())[("ecrd_up", ())] == 1
        assert daemon.call("terminal.info", terminal="lan-1")["deviceSn"]  # the link is up
        live = samples(daemon.call("metrics"))  # the same text the file gets
        assert live[("ecrd_terminal_link_up", (("terminal", "lan-1"),))] == 1
        assert daemon.terminate() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        sim.stop()
    stopped = samples(target.read_text())
    assert stopped[("ecrd_up", ())] == 0
    assert stopped[("ecrd_terminal_link_up", (("terminal", "lan-1"),))] == 0
    assert stopped[("ecrd_unresolved_transactions", (("terminal", "lan-1"),))] == 1
    assert stopped[("ecrd_clients", ())] == 0


def test_a_file_another_user_made_first_in_a_sticky_directory_is_named_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a sticky directory the kernel refuses ecrd's rename over another user's file
    (EPERM; root is exempt, so the refusal is played here): the error says whose it is."""
    directory = textfile_dir(tmp_path, 0o1777)
    (directory / "ecrd.prom").write_text("ecrd_unresolved_transactions 0\n")

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(metrics.os, "replace", refused)
    with pytest.raises(OSError, match=f"belongs to uid {os.geteuid()}, not to ecrd"):
        write_textfile(str(directory / "ecrd.prom"), TEXT)
    assert [p.name for p in directory.iterdir()] == ["ecrd.prom"]  # the temp file is gone
