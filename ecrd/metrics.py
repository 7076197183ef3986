"""Prometheus metrics, in the text format node_exporter's textfile collector reads.

What is counted where:

* ``ecrd_transactions_total{terminal,action,state}`` is counted from the journal (a
  ``Snapshot`` read on the journal's reader thread), so a restart loses no history;
* ``ecrd_transaction_duration_seconds{terminal,action}`` is a histogram of this process's
  payments, from ``pending`` to their outcome, fed by the event bus (``observe``);
* the gauges (terminals paired and up, unresolved transactions, clients, journal size and
  records) and ``ecrd_key_derivations_total`` are read from the running daemon.

``write_textfile`` replaces the file atomically, so the collector never reads half a file,
and so that the file is always ecrd's own: the directory is opened without following a
link and checked (``ownership.shared_directory_problem``: nobody but its owner may write
in it, unless it is sticky), then a temporary file of a random name is created in it
exclusively (``O_EXCL | O_NOFOLLOW``, 0644) and renamed over the file, all through the
directory's descriptor. ``ecrd_up`` is 1 in every file a running ecrd writes; the file it
leaves when it stops says 0 (``Snapshot.up``), its links down, its unresolved counts as
the journal has them.

prometheus_client is imported by ``renderer``'s function only, run on a thread: a
daemon answers its first ``ping`` without it (it costs ~26 ms to import), and durations
are kept as plain bucket counts until then.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Final

import attrs

from ecrd import ownership

FINAL: Final = frozenset({"succeeded", "failed", "unknown"})
BUCKETS: Final = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 180, 300)


@attrs.frozen
class Snapshot:
    """The daemon's state at one instant, as the metrics show it."""

    tally: Sequence[tuple[str, str, str, int]] = ()  # (terminal, action, state, count)
    terminals: Sequence[Mapping[str, Any]] = ()  # Terminal.summary() of each
    clients: int = 0
    derivations: int = 0
    journal_bytes: int = 0
    refusals: Mapping[str, int] = attrs.field(factory=dict)  # kind -> count, this process
    unwritten: int = 0  # outcomes the journal did not take yet
    prunes_skipped: int = 0  # retention runs skipped: the clock was implausible
    up: bool = True  # False: the last file, written as ecrd stops

    def stopped(self) -> Snapshot:
        """What ecrd says as it stops: down, every link down, nobody connected; what the
        journal holds (unresolved payments above all) as it is."""
        down = [{**t, "link": "down"} for t in self.terminals]
        return attrs.evolve(self, up=False, terminals=down, clients=0)


@attrs.define
class _Durations:
    """One histogram series: how many observations fell at or under each bucket's bound."""

    counts: list[int] = attrs.field(factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0

    def add(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += seconds


class _Collector:
    """What ``render`` shows: a snapshot of the daemon and the durations so far."""

    def __init__(
        self, version: str, snapshot: Snapshot, durations: Mapping[tuple[str, str], _Durations]
    ) -> None:
        self.version = version
        self.snapshot = snapshot
        self.durations = durations

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        snap = self.snapshot
        yield InfoMetricFamily("ecrd_build", "ecrd's version", value={"version": self.version})
        yield GaugeMetricFamily(
            "ecrd_up", "1 while ecrd runs; 0 in the file it leaves as it stops",
            value=1 if snap.up else 0,
        )  # fmt: skip
        done = CounterMetricFamily(
            "ecrd_transactions", "Journaled transactions by outcome",
            labels=["terminal", "action", "state"],
        )  # fmt: skip
        for terminal, action, state, count in snap.tally:
            done.add_metric([terminal, action, state], count)
        yield done
        yield from self._terminals(snap)
        yield GaugeMetricFamily("ecrd_clients", "Open socket connections", value=snap.clients)
        yield CounterMetricFamily(
            "ecrd_key_derivations", "PBKDF2 key derivations", value=snap.derivations
        )
        yield GaugeMetricFamily(
            "ecrd_journal_records", "Records in the journal", value=sum(n for *_, n in snap.tally)
        )
        yield GaugeMetricFamily("ecrd_journal_bytes", "Journal size", value=snap.journal_bytes)
        yield GaugeMetricFamily(
            "ecrd_unwritten_outcomes", "Outcomes the journal did not take yet (disk full?)",
            value=snap.unwritten,
        )  # fmt: skip
        refusals = CounterMetricFamily(
            "ecrd_refusals", "Requests refused by this process, by kind", labels=["kind"]
        )
        for kind, count in sorted(snap.refusals.items()):
            refusals.add_metric([kind], count)
        yield refusals
        yield CounterMetricFamily(
            "ecrd_retention_skipped",
            "Journal prunes skipped because the clock was implausible (nothing was pruned)",
            value=snap.prunes_skipped,
        )
        yield self._histogram()

    def _histogram(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(
            "ecrd_transaction_duration_seconds",
            "From journaled to outcome, for this process's payments",
            labels=["terminal", "action"],
        )
        for (terminal, action), d in sorted(self.durations.items()):
            buckets = [(str(float(b)), n) for b, n in zip(BUCKETS, d.counts, strict=True)]
            family.add_metric([terminal, action], [*buckets, ("+Inf", d.total)], d.sum)
        return family

    @staticmethod
    def _terminals(snap: Snapshot) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        in_state: dict[str, Counter[str]] = defaultdict(Counter)
        for t, _a, s, n in snap.tally:
            in_state[s][t] += n
        families = {
            "paired": GaugeMetricFamily("ecrd_terminal_paired", "Paired", labels=["terminal"]),
            "link": GaugeMetricFamily("ecrd_terminal_link_up", "Link up", labels=["terminal"]),
            "unknown": GaugeMetricFamily(
                "ecrd_unresolved_transactions", "Transactions of unknown outcome",
                labels=["terminal"],
            ),
            "disputed": GaugeMetricFamily(
                "ecrd_disputed_transactions",
                "Transactions the terminal's word contradicts (a person settles them)",
                labels=["terminal"],
            ),
        }  # fmt: skip
        for term in snap.terminals:
            tid = str(term["id"])
            families["paired"].add_metric([tid], 1 if term["paired"] else 0)
            families["link"].add_metric([tid], 1 if term["link"] == "up" else 0)
            families["unknown"].add_metric([tid], in_state["unknown"][tid])
            families["disputed"].add_metric([tid], in_state["disputed"][tid])
        yield from families.values()


class Metrics:
    def __init__(self, version: str) -> None:
        self.version = version
        self._durations: dict[tuple[str, str], _Durations] = {}
        self._started: dict[str, tuple[str, str, float]] = {}

    def observe(self, event: Mapping[str, Any]) -> bool:
        """Feed one event of the bus; True when a payment ended (worth a new file)."""
        if event.get("topic") != "transaction.state":
            return False
        ref, state = str(event.get("reference_id")), event.get("state")
        if state == "pending":
            action = str(event.get("action", ""))
            self._started[ref] = (str(event.get("terminal")), action, time.monotonic())
            return False
        if state not in FINAL:
            return False
        started = self._started.pop(ref, None)
        if started is not None:
            terminal, action, t0 = started
            series = self._durations.setdefault((terminal, action), _Durations())
            series.add(time.monotonic() - t0)
        return True

    def renderer(self, snapshot: Snapshot) -> Callable[[], bytes]:
        """The text format of this instant, to be made on a thread: it imports
        prometheus_client the first time. The durations are copied here, on the loop."""
        durations = {k: attrs.evolve(v, counts=list(v.counts)) for k, v in self._durations.items()}
        return partial(_render, _Collector(self.version, snapshot, durations))


def _render(collector: _Collector) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return generate_latest(registry)


def _replace(temp: str, name: str, dir_fd: int, path: str) -> None:
    """``temp`` over ``name``; in a sticky directory, a ``name`` another user made first
    cannot be replaced, and the error says whose it is."""
    try:
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except PermissionError as exc:
        owner = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_uid
        raise OSError(
            errno.EPERM, f"{path} belongs to uid {owner}, not to ecrd: remove it"
        ) from exc


def write_textfile(path: str, text: bytes) -> None:
    """Replace ``path`` atomically with ``text`` (0644: node_exporter runs as its own user),
    through a fresh, exclusive temporary file (module docstring). Raises ``OSError``, with
    the reason, when the directory is not one to keep it in."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP) and os.path.islink(directory):
            raise OSError(
                errno.EPERM, f"{directory} is a symbolic link: give the real path"
            ) from exc
        raise
    try:
        problem = ownership.shared_directory_problem(directory, os.fstat(dir_fd))
        if problem is not None:
            raise OSError(errno.EPERM, problem)
        temp = f".{name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o644, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)  # whatever the umask (the unit sets 0077)
                f.write(text)
            _replace(temp, name, dir_fd, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
