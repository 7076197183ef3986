"""Pairing state: which terminal has which serial number and PIN (design.md §4).

One TOML file, by default ``/var/lib/ecrd/pairings.toml``::

    version = 1

    [terminals.counter-1]
    device_sn = "NEXGO-N96-1170270945"
    pin = "654321"
    scheme = "v2"
    host = "192.168.1.50"
    port = 8443
    paired_at = "2025-11-12T10:11:04+00:00"
    pin1 = "672633"                # optional: the pairing code, for the cloud's terminal-info
    info_pin = "pin1"              # optional: which PIN terminal-info last accepted
    business_id = "411d6207-..."   # optional: the business the terminal is bound to

    [pending.counter-1]            # only while a pairing is being confirmed
    device_sn = "NEXGO-N96-1170270945"
    pin = "120934"
    ...

A *pending* pairing is the new PIN a terminal gave in its Pair reply, written down before
the step that makes the terminal use it (protocol.md §7 step 4), so that a crash or a full
disk between the terminal switching PINs and ecrd saving the pairing never loses the only
PIN the terminal still accepts. ``commit`` turns it into the pairing in one write;
``drop_pending`` forgets it (the terminal proved it does not use it).

Invariants:

* The file holds PINs, so it is never readable by anyone but the daemon: the temp file it
  is written through is created 0600 (``O_CREAT | O_EXCL``) before a byte goes in, and a
  missing directory is created 0700.
* Writes are atomic: temp file in the same directory, fsync, ``os.replace``, fsync of the
  directory. A crash leaves the old file or the new one, never a mix; a failed write
  leaves no temp file behind.
* Every write re-reads the file first, so a file that does not load (hand-edited, truncated)
  is never overwritten: ``put``/``remove`` raise the same ``PairingFileError`` as ``load``
  until an admin fixes or removes it. The error names the file and the line or key.
* No PIN appears in a ``repr``, a log line or an error message.
* Synchronous by design: the daemon calls it from a worker thread. A lock serialises the
  read-modify-write cycles of concurrent threads.

Errors::

    PairingStoreError                       reason "pairing_store_error"
    ├── PairingFileError    the file does not load       "pairing_file_invalid"
    └── PairingWriteError   the file could not be written "pairing_write_failed"
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs
import tomli_w

from ecrd import ownership
from ecrd.errors import Reasoned
from ecrd.protocol.crypto import SCHEMES, Scheme

FORMAT_VERSION: Final = 1
_HEADER: Final = (
    "# Terminal pairings, written by ecrd. Holds PINs: keep it mode 0600.\n"
    "# Stop ecrd before editing; it rewrites this file on pair/unpair.\n\n"
)
_FIELDS: Final[dict[str, type]] = {
    "device_sn": str,
    "pin": str,
    "scheme": str,
    "host": str,
    "port": int,
    "paired_at": str,
    # Optional keys added after 0.1.0 (same format version: a 0.1.0 file loads unchanged).
    "pin1": str,
    "info_pin": str,
    "business_id": str,
}
INFO_PINS: Final = ("pin1", "pin2")
_REQUIRED: Final = ("device_sn", "pin", "scheme", "paired_at")


class PairingStoreError(Reasoned):
    reason = "pairing_store_error"


class PairingFileError(PairingStoreError):
    """The pairing file does not load; it names the file and the line or key at fault."""

    reason = "pairing_file_invalid"

    def __init__(self, path: Path, problem: str, *, line: int | None = None) -> None:
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line


class PairingWriteError(PairingStoreError):
    """The pairing file could not be written (disk full, permissions, fsync failure)."""

    reason = "pairing_write_failed"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _text(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    # The value is not echoed: for ``pin`` that would leak the secret into logs.
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attr.name} must be a non-empty string")


def _optional_port(_inst: object, attr: attrs.Attribute[int | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"{attr.name} must be a port number 1..65535, not {value!r}")


def _rfc3339(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    try:
        aware = isinstance(value, str) and datetime.fromisoformat(value).utcoffset() is not None
    except ValueError:
        aware = False
    if not aware:
        raise ValueError(f"{attr.name} must be an RFC 3339 time with offset, not {value!r}")


@attrs.frozen
class Pairing:
    """What pairing a terminal produced (protocol.md §7 step 5)."""

    terminal_id: str = attrs.field(validator=_text)
    device_sn: str = attrs.field(validator=_text)
    pin: str = attrs.field(validator=_text, repr=False)
    scheme: Scheme = attrs.field(validator=attrs.validators.in_(SCHEMES))
    host: str | None = attrs.field(default=None, validator=attrs.validators.optional(_text))
    port: int | None = attrs.field(default=None, validator=_optional_port)
    paired_at: str = attrs.field(factory=_now, validator=_rfc3339)
    # pinCode1, the code the pairing began with: the seed seals terminal-info under it.
    pin1: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_text), repr=False
    )
    # Which PIN the cloud's terminal-info last accepted ("pin1", or "pin2" as a fallback).
    info_pin: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(INFO_PINS))
    )
    # The business the terminal is bound to (its DeviceInfo's businessID, or the QR's).
    business_id: str | None = attrs.field(default=None, validator=attrs.validators.optional(_text))

    @property
    def secrets(self) -> tuple[str, ...]:
        """The PINs this pairing holds (to register with the log redactor)."""
        return (self.pin,) if self.pin1 is None else (self.pin, self.pin1)


class PairingStore:
    """The pairing file. Reads are cheap enough to happen on every call: no stale cache."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PairingStore {self.path}>"

    def load(self) -> dict[str, Pairing]:
        with self._lock:
            return self._load()

    def get(self, terminal_id: str) -> Pairing | None:
        return self.load().get(terminal_id)

    def pending(self) -> dict[str, Pairing]:
        """Pairings whose new PIN was received but not yet confirmed and committed."""
        with self._lock:
            return self._load_all()[1]

    def _update(self, change: Callable[[dict[str, Pairing], dict[str, Pairing]], bool]) -> bool:
        """The one read-modify-write cycle: ``change`` edits the pairings and the pending
        ones in place and says whether anything changed (then the file is rewritten)."""
        with self._lock:
            pairings, pending = self._load_all()
            changed = change(pairings, pending)
            if changed:
                self._write(pairings, pending)
            return changed

    def put(self, pairing: Pairing) -> None:
        self._update(lambda pairings, _: _set(pairings, pairing))

    def copy_to(self, dest: str) -> None:
        """A copy of the file at ``dest``, created 0600 (it holds PINs), never overwriting,
        in a directory only root and ecrd can change (``ownership.open_trusted_directory``:
        no symbolic link on the way)."""
        with self._lock:
            data = self.path.read_bytes() if self.path.exists() else b""
        directory, name = os.path.split(os.path.abspath(dest))
        dir_fd = ownership.open_trusted_directory(directory)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.close(dir_fd)

    def check_writable(self) -> None:
        """Rewrite the file as it is: proof, before a pairing step that cannot be undone,
        that the new PIN it brings can be saved (raises like ``put``)."""
        with self._lock:
            self._write(*self._load_all())

    def put_pending(self, pairing: Pairing) -> None:
        self._update(lambda _, pending: _set(pending, pairing))

    def commit(self, pairing: Pairing) -> None:
        """The pairing, confirmed: saved, and its pending entry gone, in one write."""
        self._update(
            lambda pairings, pending: (
                _set(pairings, pairing) | (pending.pop(pairing.terminal_id, None) is not None)
            )
        )

    def drop_pending(self, terminal_id: str) -> None:
        self._update(lambda _, pending: pending.pop(terminal_id, None) is not None)

    def remove(self, terminal_id: str) -> bool:
        """Forget a terminal's pairing (and any pending one); False if it was not paired."""
        return self._update(
            lambda pairings, pending: (
                (pending.pop(terminal_id, None) is not None)
                | (pairings.pop(terminal_id, None) is not None)
            )
        )

    # -- reading -----------------------------------------------------------------------

    def _load(self) -> dict[str, Pairing]:
        return self._load_all()[0]

    def _load_all(self) -> tuple[dict[str, Pairing], dict[str, Pairing]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}, {}
        except OSError as exc:
            raise PairingFileError(self.path, f"cannot read: {exc.strerror}") from exc
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise PairingFileError(self.path, "not UTF-8 text") from exc
        except tomllib.TOMLDecodeError as exc:
            raise PairingFileError(self.path, f"not valid TOML: {exc}", line=_line(exc)) from exc
        return self._parse(doc)

    def _parse(self, doc: dict[str, Any]) -> tuple[dict[str, Pairing], dict[str, Pairing]]:
        version = doc.get("version", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise PairingFileError(self.path, "version must be a positive integer")
        if version > FORMAT_VERSION:
            raise PairingFileError(
                self.path, f"written by a newer ecrd (format {version}, this one reads 1)"
            )
        unknown = set(doc) - {"version", "terminals", "pending"}
        if unknown:
            raise PairingFileError(self.path, f"unknown key {sorted(unknown)[0]!r}")
        found = []
        for section in ("terminals", "pending"):
            tables = doc.get(section, {})
            if not isinstance(tables, dict):
                raise PairingFileError(self.path, f"{section} must be a table")
            found.append({tid: self._pairing(section, tid, t) for tid, t in tables.items()})
        return found[0], found[1]

    def _pairing(self, section: str, terminal_id: str, table: object) -> Pairing:
        where = f"[{section}.{terminal_id}]"
        if not isinstance(table, dict):
            raise PairingFileError(self.path, f"{where} must be a table")
        for key, value in table.items():
            expected = _FIELDS.get(key)
            if expected is None:
                raise PairingFileError(self.path, f"{where} has unknown key {key!r}")
            if isinstance(value, bool) or not isinstance(value, expected):
                kind = "a string (in quotes)" if expected is str else "an integer"
                raise PairingFileError(self.path, f"{where} {key} must be {kind}")
        for key in _REQUIRED:
            if key not in table:
                raise PairingFileError(self.path, f"{where} lacks {key}")
        try:
            return Pairing(terminal_id=terminal_id, **table)
        except ValueError as exc:
            raise PairingFileError(self.path, f"{where} {exc}") from exc

    # -- writing -----------------------------------------------------------------------

    def _write(self, pairings: dict[str, Pairing], pending: dict[str, Pairing]) -> None:
        doc: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "terminals": {tid: _table(pairings[tid]) for tid in sorted(pairings)},
        }
        if pending:
            doc["pending"] = {tid: _table(pending[tid]) for tid in sorted(pending)}
        data = (_HEADER + tomli_w.dumps(doc)).encode("utf-8")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _replace_atomically(self.path, data)
        except OSError as exc:
            raise PairingWriteError(f"cannot write {self.path}: {exc}") from exc


def _set(table: dict[str, Pairing], pairing: Pairing) -> bool:
    table[pairing.terminal_id] = pairing
    return True


def _line(exc: tomllib.TOMLDecodeError) -> int | None:
    # Python 3.14 has ``lineno``; before that the line is only in the message.
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    found = re.search(r"at line (\d+)", str(exc))
    return int(found.group(1)) if found else None


def _table(pairing: Pairing) -> dict[str, Any]:
    """The TOML table of one pairing; TOML has no null, so unset fields are left out."""
    return attrs.asdict(pairing, filter=lambda a, v: a.name != "terminal_id" and v is not None)


def _replace_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o600)  # secret from the first byte: never chmod afterwards
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
