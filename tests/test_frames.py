"""RS232 framing (protocol.md §6): encoder, and the incremental resynchronising decoder."""

from __future__ import annotations

import random
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrd.protocol.envelope import Envelope
from ecrd.protocol.frames import (
    CRC_LEN,
    CRC_VARIANTS,
    HEADER_LEN,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameError,
    FrameFormat,
    encode_frame,
)

DEFAULT = FrameFormat()

formats = st.builds(
    FrameFormat,
    cmd=st.integers(0, 0xFFFF),
    byteorder=st.sampled_from(["big", "little"]),
    crc=st.sampled_from(sorted(CRC_VARIANTS)),
)
payloads = st.binary(max_size=4096)
small_frames = st.lists(
    st.builds(Frame, cmd=st.integers(0, 0xFFFF), data=st.binary(max_size=64)), max_size=6
)


def encode(frame: Frame, fmt: FrameFormat = DEFAULT) -> bytes:
    return encode_frame(frame.data, fmt, cmd=frame.cmd)


def decode_chunks(chunks: list[bytes], fmt: FrameFormat = DEFAULT) -> list[Frame]:
    decoder = FrameDecoder(fmt)
    return [frame for chunk in chunks for frame in decoder.feed(chunk)]


def flip(frame: bytes, offset: int) -> bytes:
    return frame[:offset] + bytes([frame[offset] ^ 0x01]) + frame[offset + 1 :]


# --- the vectors -------------------------------------------------------------------------


def test_frame_vector_encodes_byte_exact(frame_vector: dict[str, Any]) -> None:
    payload = frame_vector["payload_utf8"].encode()
    frame = encode_frame(payload, cmd=int(frame_vector["cmd"], 16))
    assert frame.hex() == frame_vector["frame_hex"]


def test_frame_vector_decodes_back(frame_vector: dict[str, Any]) -> None:
    frames = FrameDecoder().feed(bytes.fromhex(frame_vector["frame_hex"]))
    assert frames == [Frame(int(frame_vector["cmd"], 16), frame_vector["payload_utf8"].encode())]


def test_frame_vector_carries_a_compact_envelope(frame_vector: dict[str, Any]) -> None:
    (frame,) = FrameDecoder().feed(bytes.fromhex(frame_vector["frame_hex"]))
    assert Envelope.from_bytes(frame.data).to_bytes() == frame.data


# --- layout ------------------------------------------------------------------------------


def test_frame_layout_with_defaults() -> None:
    frame = encode_frame(b"abc")
    assert frame[0] == 0x55
    assert frame[1:3] == b"\x00\x06"
    assert frame[3:5] == b"\x00\x03"
    assert frame[5] == 0x02
    assert frame[6:10] == zlib.crc32(frame[:6]).to_bytes(4, "big")
    assert frame[10:13] == b"abc"
    assert frame[13:] == zlib.crc32(b"abc").to_bytes(4, "big")


def test_little_endian_swaps_every_multibyte_field() -> None:
    frame = encode_frame(b"abc", FrameFormat(byteorder="little"))
    assert frame[1:3] == b"\x06\x00"
    assert frame[3:5] == b"\x03\x00"
    assert frame[6:10] == zlib.crc32(frame[:6]).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("variant", "check"),
    [
        ("crc32", 0xCBF43926),
        ("crc32-bzip2", 0xFC891918),
        ("crc32-mpeg2", 0x0376E6E7),
        ("crc32c", 0xE3069283),
        ("crc32-jamcrc", 0x340BC6D9),
    ],
)
def test_crc_variant_matches_its_catalogue_check_value(variant: str, check: int) -> None:
    assert CRC_VARIANTS[variant](b"123456789") == check


def test_the_largest_payload_fits() -> None:
    frame = encode_frame(bytes(MAX_PAYLOAD))
    assert len(frame) == HEADER_LEN + MAX_PAYLOAD + CRC_LEN
    assert FrameDecoder().feed(frame) == [Frame(6, bytes(MAX_PAYLOAD))]


def test_a_payload_over_65535_bytes_cannot_be_framed() -> None:
    with pytest.raises(FrameError):
        encode_frame(bytes(MAX_PAYLOAD + 1))


@pytest.mark.parametrize("cmd", [-1, 0x10000])
def test_a_cmd_outside_16_bits_cannot_be_framed(cmd: int) -> None:
    with pytest.raises(FrameError):
        encode_frame(b"", cmd=cmd)


def test_the_decoder_accepts_any_cmd() -> None:
    frame = encode_frame(b"x", cmd=0x0101)
    assert FrameDecoder(FrameFormat(cmd=0x0006)).feed(frame) == [Frame(0x0101, b"x")]


# --- round trips and chunking ------------------------------------------------------------


@settings(max_examples=150)
@given(payloads, formats)
def test_round_trip_in_every_format(payload: bytes, fmt: FrameFormat) -> None:
    assert FrameDecoder(fmt).feed(encode_frame(payload, fmt)) == [Frame(fmt.cmd, payload)]


@given(small_frames, st.data())
def test_any_chunking_yields_the_same_frames(frames: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(encode(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert decode_chunks(chunks) == frames


def test_every_split_of_a_multi_frame_stream_yields_exactly_the_frames() -> None:
    frames = [Frame(6, b'{"a":1}'), Frame(0x0101, b""), Frame(6, b"\x55" * 5)]
    stream = b"".join(encode(f) for f in frames)
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            chunks = [stream[:i], stream[i:j], stream[j:]]
            assert decode_chunks(chunks) == frames, (i, j)


def test_byte_at_a_time_yields_each_frame_on_its_last_byte() -> None:
    frame = encode_frame(b"hello")
    decoder = FrameDecoder()
    for byte in frame[:-1]:
        assert decoder.feed(bytes([byte])) == []
    assert decoder.feed(frame[-1:]) == [Frame(6, b"hello")]
    assert decoder.buffered == 0


# --- garbage and resynchronisation -------------------------------------------------------

# Garbage rich in start bytes, and whole frames with one bit flipped (a bad header CRC or a
# bad data CRC, whichever part the flip lands in).
noise = st.binary(max_size=40) | st.lists(
    st.sampled_from([b"\x55", b"\x02", b"\x00", b"\x55\x00\x06"]), max_size=10
).map(b"".join)
corrupted = st.builds(
    lambda data, where: flip(encode_frame(data), where % (HEADER_LEN + len(data) + CRC_LEN)),
    st.binary(max_size=40),
    st.integers(min_value=0),
)
garbage = noise | corrupted


@settings(max_examples=300)
@given(st.lists(st.tuples(garbage, st.binary(max_size=200))), garbage, st.data())
def test_valid_frames_survive_interleaved_garbage(
    pieces: list[tuple[bytes, bytes]], tail: bytes, data: st.DataObject
) -> None:
    stream = b"".join(g + encode_frame(p) for g, p in pieces) + tail
    size = data.draw(st.integers(1, 64))
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    assert decode_chunks(chunks) == [Frame(6, p) for _, p in pieces]


@given(garbage)
def test_garbage_alone_never_yields_a_frame(junk: bytes) -> None:
    assert FrameDecoder().feed(junk) == []


def test_bad_header_crc_is_dropped_and_the_next_frame_recovered() -> None:
    decoder = FrameDecoder()
    bad = flip(encode_frame(b"lost"), 7)
    assert decoder.feed(bad + encode_frame(b"kept")) == [Frame(6, b"kept")]
    assert decoder.bad_header_crc >= 1
    assert decoder.bad_data_crc == 0


def test_bad_data_crc_is_dropped_and_the_next_frame_recovered() -> None:
    decoder = FrameDecoder()
    bad = flip(encode_frame(b"lost"), HEADER_LEN + 1)
    assert decoder.feed(bad + encode_frame(b"kept")) == [Frame(6, b"kept")]
    assert decoder.bad_data_crc == 1


def test_resync_finds_a_frame_hidden_inside_a_corrupt_one() -> None:
    inner = encode_frame(b"inner")
    outer = encode_frame(b"ab" + inner)
    outer = flip(outer, len(outer) - 1)
    assert FrameDecoder().feed(outer) == [Frame(6, b"inner")]


def test_a_wrong_type_byte_is_not_a_header() -> None:
    frame = bytearray(encode_frame(b"x"))
    frame[5] = 0x03
    frame[6:10] = zlib.crc32(frame[:6]).to_bytes(4, "big")
    assert FrameDecoder().feed(bytes(frame)) == []


def test_a_size_above_max_payload_is_refused_without_waiting_for_it() -> None:
    decoder = FrameDecoder(max_payload=16)
    too_big = encode_frame(bytes(17))
    assert decoder.feed(too_big[:HEADER_LEN] + encode_frame(b"ok")) == [Frame(6, b"ok")]
    assert decoder.buffered == 0


def test_garbage_is_counted() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x01\x02" + encode_frame(b"x"))
    assert decoder.garbage_bytes == 3


def test_reset_drops_a_partial_frame() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(b"hello")
    decoder.feed(frame[:8])
    decoder.reset()
    assert decoder.buffered == 0
    assert decoder.feed(frame[8:] + frame) == [Frame(6, b"hello")]


# --- bounded buffer ----------------------------------------------------------------------


def test_megabytes_of_garbage_leave_at_most_a_partial_header_buffered() -> None:
    rng = random.Random(6)
    decoder = FrameDecoder()
    for _ in range(768):  # 3 MiB in 4 KiB chunks
        assert decoder.feed(rng.randbytes(4096)) == []
        assert decoder.buffered <= HEADER_LEN - 1
    assert decoder.feed(encode_frame(b"after")) == [Frame(6, b"after")]


def test_a_stream_of_start_bytes_leaves_at_most_a_partial_header_buffered() -> None:
    decoder = FrameDecoder()
    for _ in range(16):
        assert decoder.feed(b"\x55" * 4096) == []
        assert decoder.buffered <= HEADER_LEN - 1


def test_a_header_claiming_a_large_size_holds_at_most_one_frame() -> None:
    rng = random.Random(7)
    decoder = FrameDecoder()
    header = encode_frame(bytes(MAX_PAYLOAD))[:HEADER_LEN]
    assert decoder.feed(header) == []
    for _ in range(256):  # 1 MiB behind a header that claims 65535 bytes
        decoder.feed(rng.randbytes(4096).replace(b"\x55", b"\x54"))
        assert decoder.buffered < HEADER_LEN + MAX_PAYLOAD + CRC_LEN
    assert decoder.bad_data_crc == 1
    assert decoder.feed(encode_frame(b"after")) == [Frame(6, b"after")]
