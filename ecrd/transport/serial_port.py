"""The serial port: opening an RS232 device, and a Trio stream over the open tty.

``open_serial``
    Opens the device exclusively (``flock`` and ``TIOCEXCL``: a second ecrd or a minicom
    fails with ``SerialPortInUse``), in raw mode, non-blocking, with VMIN=1, VTIME=0.
    Blocking: call it in a thread. Any failure is ``SerialOpenError`` and leaves nothing
    open.

``TtyStream``
    A Trio stream over one open tty, the shape of trio's ``FdStream``: non-blocking
    ``os.read``/``os.write`` woken by ``wait_readable``/``wait_writable``.
    ``receive_some`` returns ``b""`` only when the device hung up, never for "no data yet":
    the tty is set to VMIN=1, VTIME=0, so an empty non-blocking read is ``EAGAIN``.
    Errors from the device (EIO, ENXIO) are ``BrokenResourceError``; using the stream after
    ``aclose`` is ``ClosedResourceError``. ``notify_closing`` runs before the fd is closed,
    so no task is left waiting on a closed (or reused) fd number. ``bytes_sent`` counts
    the bytes the kernel accepted, so a caller can tell "nothing went out" from "part of
    it did" after a failure.

What travels over the stream (frames, replies) is ``ecrd.transport.serial``'s business.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import termios
from typing import Final

import attrs
import serial
import trio

_BUSY_ERRNOS: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY})


class SerialOpenError(OSError):
    """The device could not be opened (missing, no permission, not a tty)."""


class SerialPortInUse(SerialOpenError):
    """Another program holds the device open exclusively."""


@attrs.frozen
class SerialSettings:
    """Line settings (design.md §5 keys), validated before any device is touched."""

    baudrate: int = attrs.field(default=115200, validator=attrs.validators.gt(0))
    bytesize: int = attrs.field(default=8, validator=attrs.validators.in_((5, 6, 7, 8)))
    parity: str = attrs.field(
        default="N", validator=attrs.validators.in_(("N", "E", "O", "M", "S"))
    )
    stopbits: float = attrs.field(default=1.0, validator=attrs.validators.in_((1.0, 1.5, 2.0)))
    rtscts: bool = False


def open_serial(device: str, settings: SerialSettings) -> TtyStream:
    """Open ``device`` exclusively, in raw mode, as a ``TtyStream``. Blocking: use a thread."""
    try:
        handle = serial.Serial(
            port=device,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=settings.parity,
            stopbits=settings.stopbits,
            rtscts=settings.rtscts,
            exclusive=True,  # flock(LOCK_EX | LOCK_NB): a second ecrd or minicom fails here
            timeout=0,
        )
    except serial.SerialException as exc:
        raise _open_error(device, exc) from exc
    except (OSError, termios.error) as exc:
        # pyserial's own tcsetattr, unwrapped (it closes its fd first): EIO from a device
        # that went away between open and configure, as a pty's master does.
        raise SerialOpenError(f"cannot configure serial device {device}: {exc}") from exc
    try:
        _prepare_fd(handle.fd)
    except (OSError, termios.error) as exc:
        handle.close()
        raise SerialOpenError(f"cannot configure serial device {device}: {exc}") from exc
    return TtyStream(handle)


def _open_error(device: str, exc: serial.SerialException) -> SerialOpenError:
    if exc.errno in _BUSY_ERRNOS:
        return SerialPortInUse(
            exc.errno, f"serial device {device} is in use by another program (opened exclusively)"
        )
    if exc.errno == errno.ENOENT:
        return SerialOpenError(exc.errno, f"serial device {device} does not exist")
    return SerialOpenError(exc.errno, f"cannot open serial device {device}: {exc}")


def _prepare_fd(fd: int) -> None:
    # pyserial leaves VMIN=0, VTIME=0, where an empty read means "no data" and looks
    # exactly like a hang-up. VMIN=1 makes "no data" EAGAIN on a non-blocking fd.
    attrs_ = termios.tcgetattr(fd)
    attrs_[6][termios.VMIN] = 1
    attrs_[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs_)
    os.set_blocking(fd, False)
    # flock is advisory; TIOCEXCL also makes the kernel refuse other opens (except root's).
    fcntl.ioctl(fd, termios.TIOCEXCL)


class TtyStream(trio.abc.Stream):
    """A Trio stream over an open tty. ``bytes_sent`` counts bytes the kernel accepted."""

    def __init__(self, handle: serial.Serial) -> None:
        self._handle = handle
        self.fd: int = handle.fd
        self.bytes_sent = 0
        self._closed = False
        self._sending = False
        self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is writing to this serial port")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            with memoryview(data) as view:
                while view:
                    n = await self._write_some(view)
                    self.bytes_sent += n
                    view = view[n:]
            await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def _write_some(self, view: memoryview) -> int:
        while True:
            self._check_open()
            try:
                return os.write(self.fd, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.fd)
            except OSError as exc:
                raise self._translate(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await trio.lowlevel.wait_writable(self.fd)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is reading from this serial port")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            while True:
                self._check_open()
                try:
                    data = os.read(self.fd, max_bytes or 65536)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self.fd)
                except OSError as exc:
                    raise self._translate(exc) from exc
                else:
                    break
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("serial port was closed")

    def _translate(self, exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
        if exc.errno == errno.EBADF:
            return trio.ClosedResourceError("serial port was closed")
        return trio.BrokenResourceError(f"serial device failed: {exc}")

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.fd)
            # Unsent output would make close() wait (up to 30 s on some UART drivers).
            # If the device is already gone, closing is all that is left to do.
            with contextlib.suppress(termios.error):
                termios.tcflush(self.fd, termios.TCOFLUSH)
            self._handle.close()
        await trio.lowlevel.checkpoint()
