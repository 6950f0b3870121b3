"""The pack stream (objstore.wire): what is written is read back, in pieces of any size; cuts and lies are refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore.wire import StreamError, StreamReader, encode_stream

Record = tuple[bytes, int, int, bytes, int]

records = st.lists(
    st.tuples(
        st.binary(min_size=16, max_size=16),
        st.integers(1, 4),
        st.integers(0, 1),
        st.binary(max_size=3000),
        st.integers(0, 10_000),
    ),
    max_size=12,
)


def _stream(recs: list[Record]) -> bytes:
    return b"".join(bytes(p) for p in encode_stream(16, recs))


def _read(data: bytes, cuts: list[int], max_object: int = 1 << 20) -> list[Record]:
    got: list[Record] = []
    reader = StreamReader(16, lambda o, t, c, s, n: got.append((o, t, c, bytes(s), n)), max_object=max_object)
    pos = 0
    for size in cuts:
        reader.feed(data[pos : pos + size])
        pos += size
    reader.feed(data[pos:])
    reader.finish()
    return got


@settings(max_examples=100, deadline=None)
@given(records, st.lists(st.integers(0, 5000), max_size=20))
def test_round_trip_in_any_pieces(recs: list[Record], cuts: list[int]) -> None:
    assert _read(_stream(recs), cuts) == recs


@settings(max_examples=100, deadline=None)
@given(records, st.data())
def test_every_cut_is_refused(recs: list[Record], data: st.DataObject) -> None:
    full = _stream(recs)
    cut = data.draw(st.integers(0, len(full) - 1))
    with pytest.raises(StreamError):
        _read(full[:cut], [])


@settings(max_examples=100, deadline=None)
@given(records.filter(bool), st.data())
def test_a_changed_frame_byte_is_refused(recs: list[Record], data: st.DataObject) -> None:
    """A byte of the framing (header, record ids and lengths, end record, checksum) changed: refused.
    (Payload bytes are the receiver's to verify against their ids.)"""
    full = bytearray(_stream(recs))
    frame: list[int] = list(range(8))
    pos = 8
    for _oid, _t, _c, stored, _n in recs:
        frame += range(pos, pos + 34)
        pos += 34 + len(stored)
    frame += range(pos, len(full))
    i = data.draw(st.sampled_from(frame))
    full[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(StreamError):
        _read(bytes(full), [])


def test_lies_about_sizes_and_trailing_bytes() -> None:
    rec: Record = (b"\x01" * 16, 1, 0, b"payload", 8)
    good = _stream([rec])
    with pytest.raises(StreamError, match="over the limit"):
        huge = good[:8] + rec[0] + struct.pack("<BBQQ", 1, 0, 1 << 40, 8)
        _read(huge, [], max_object=1 << 20)
    with pytest.raises(StreamError, match="after the end"):
        _read(good + b"x", [])
    with pytest.raises(StreamError, match="magic"):
        _read(b"HTTP" + good[4:], [])
    with pytest.raises(StreamError, match="8-byte ids"):
        StreamReader(8, lambda *a: None).feed(good)


def test_read_ahead_keeps_order_passes_errors_and_lets_go() -> None:
    import threading

    from objstore.parallel import read_ahead

    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))

    def failing() -> object:
        yield 1
        raise ConnectionError("cut")

    it = read_ahead(failing())
    assert next(it) == 1
    with pytest.raises(ConnectionError, match="cut"):
        next(it)
    before = threading.active_count()
    endless = read_ahead(iter(int, 1), depth=2)  # never ends; the consumer leaves early
    assert next(endless) == 0
    endless.close()
    import time

    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
