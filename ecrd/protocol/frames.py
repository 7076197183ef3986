"""RS232 framing (protocol.md §6): an encoder and an incremental, resynchronising decoder.

Frame layout::

    offset size field
    0      1    start      0x55
    1      2    cmd        command code (default 0x0006)
    3      2    size       n = byte length of data
    5      1    type       0x02
    6      4    header CRC over bytes 0..5
    10     n    data       compact JSON envelope, UTF-8
    10+n   4    data CRC   over data

Invariants of ``FrameDecoder``:

* Bytes may arrive in any chunking; frames come out whole, in order, exactly once.
* ``size`` is trusted only after the header CRC checks out; a frame whose data CRC fails is
  dropped. In both cases the decoder resynchronises on the next 0x55 after the bad start.
* The buffer never holds more than one maximal frame plus the last chunk fed.
* Garbage never yields a frame unless it happens to carry two valid CRC-32s.

Byte order and the CRC-32 variant are [ASSUMED] in the spec, so they are parameters
(``FrameFormat``); a captured frame from a real terminal settles them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Final, Literal

import attrs

START: Final = 0x55
TYPE: Final = 0x02
HEADER_LEN: Final = 10
CRC_LEN: Final = 4
MAX_PAYLOAD: Final = 0xFFFF
DEFAULT_CMD: Final = 0x0006

ByteOrder = Literal["big", "little"]


def _crc_table(poly: int, reflect: bool) -> list[int]:
    table = []
    rpoly = _reverse32(poly)
    for i in range(256):
        if reflect:
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (rpoly if c & 1 else 0)
        else:
            c = i << 24
            for _ in range(8):
                c = ((c << 1) ^ poly if c & 0x80000000 else c << 1) & 0xFFFFFFFF
        table.append(c)
    return table


def _table_crc32(poly: int, init: int, xorout: int, reflect: bool) -> Callable[[bytes], int]:
    """A table-driven CRC-32 for the variants zlib does not provide. The table is built at
    the first use: a daemon that never frames with this variant never pays for it."""
    tables: list[list[int]] = []

    def crc(data: bytes) -> int:
        if not tables:
            tables.append(_crc_table(poly, reflect))
        table = tables[0]
        c = init
        if reflect:
            for b in data:
                c = (c >> 8) ^ table[(c ^ b) & 0xFF]
        else:
            for b in data:
                c = ((c << 8) & 0xFFFFFFFF) ^ table[((c >> 24) ^ b) & 0xFF]
        return c ^ xorout

    return crc


def _reverse32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


CRC_VARIANTS: Final[dict[str, Callable[[bytes], int]]] = {
    # CRC-32/ISO-HDLC, the default; zlib computes it in C.
    "crc32": zlib.crc32,
    "crc32-bzip2": _table_crc32(0x04C11DB7, 0xFFFFFFFF, 0xFFFFFFFF, reflect=False),
    "crc32-mpeg2": _table_crc32(0x04C11DB7, 0xFFFFFFFF, 0x00000000, reflect=False),
    "crc32c": _table_crc32(0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, reflect=True),
    "crc32-jamcrc": _table_crc32(0x04C11DB7, 0xFFFFFFFF, 0x00000000, reflect=True),
}


class FrameError(ValueError):
    """A payload that cannot be framed (too large, or a cmd outside 16 bits)."""


@attrs.frozen
class FrameFormat:
    """The [ASSUMED] parts of the framing, with protocol.md §6 defaults."""

    cmd: int = attrs.field(default=DEFAULT_CMD, validator=attrs.validators.in_(range(0x10000)))
    byteorder: ByteOrder = attrs.field(
        default="big", validator=attrs.validators.in_(("big", "little"))
    )
    crc: str = attrs.field(default="crc32", validator=attrs.validators.in_(CRC_VARIANTS))

    @property
    def crc_fn(self) -> Callable[[bytes], int]:
        return CRC_VARIANTS[self.crc]


@attrs.frozen
class Frame:
    cmd: int
    data: bytes


def encode_frame(data: bytes, fmt: FrameFormat = FrameFormat(), cmd: int | None = None) -> bytes:
    if len(data) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(data)} bytes exceeds the 65535-byte frame limit")
    cmd = fmt.cmd if cmd is None else cmd
    if not 0 <= cmd <= 0xFFFF:
        raise FrameError(f"cmd {cmd:#x} does not fit the 16-bit cmd field")
    order = fmt.byteorder
    crc = fmt.crc_fn
    head = bytes([START]) + cmd.to_bytes(2, order) + len(data).to_bytes(2, order) + bytes([TYPE])
    return head + crc(head).to_bytes(4, order) + data + crc(data).to_bytes(4, order)


class FrameDecoder:
    """Feed bytes, get ``Frame``s. Counts what it threw away, for diagnostics."""

    def __init__(self, fmt: FrameFormat = FrameFormat(), max_payload: int = MAX_PAYLOAD) -> None:
        self.fmt = fmt
        self._crc = fmt.crc_fn
        self._order: ByteOrder = fmt.byteorder
        self._max_payload = min(max_payload, MAX_PAYLOAD)
        self._buf = bytearray()
        self.garbage_bytes = 0
        self.bad_header_crc = 0
        self.bad_data_crc = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        self.garbage_bytes += len(self._buf)
        self._buf.clear()

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        frames: list[Frame] = []
        buf, crc, order = self._buf, self._crc, self._order
        while True:
            i = buf.find(START)
            if i < 0:
                self.garbage_bytes += len(buf)
                buf.clear()
                return frames
            if i:
                self.garbage_bytes += i
                del buf[:i]
            if len(buf) < HEADER_LEN:
                return frames
            size = int.from_bytes(buf[3:5], order)
            if (
                buf[5] != TYPE
                or size > self._max_payload
                or int.from_bytes(buf[6:10], order) != crc(bytes(buf[:6]))
            ):
                self.bad_header_crc += 1
                self.garbage_bytes += 1
                del buf[:1]
                continue
            end = HEADER_LEN + size
            if len(buf) < end + CRC_LEN:
                return frames
            data = bytes(buf[HEADER_LEN:end])
            if int.from_bytes(buf[end : end + CRC_LEN], order) != crc(data):
                self.bad_data_crc += 1
                self.garbage_bytes += 1
                del buf[:1]
                continue
            frames.append(Frame(int.from_bytes(buf[1:3], order), data))
            del buf[: end + CRC_LEN]
