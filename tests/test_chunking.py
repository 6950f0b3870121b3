"""FastCDC chunking: lossless, bounded, and stable under insertions (so edits dedup)."""

from __future__ import annotations

import io
import random

import pytest
from helpers import SMALL, rand_bytes, write
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import ChunkedBlob, ChunkParams, Repository
from objstore.chunking import iter_chunks


def chunks_of(data: bytes, params: ChunkParams = SMALL) -> list[bytes]:
    return [bytes(v) for v in iter_chunks(io.BytesIO(data), params)]


@st.composite
def payloads(draw, min_size=0, max_size=40_000):
    """Random, low-entropy or mixed data (built from a seed: fast and shrinkable)."""
    n = draw(st.integers(min_size, max_size))
    seed = draw(st.integers(0, 2**32))
    style = draw(st.sampled_from(["random", "repetitive", "mixed"]))
    rng = random.Random(seed)
    if style == "random":
        return rng.randbytes(n)
    if style == "repetitive":
        unit = rng.randbytes(rng.randint(1, 50))
        return (unit * (n // len(unit) + 1))[:n]
    parts = []
    while sum(map(len, parts)) < n:
        parts.append(rng.randbytes(rng.randint(1, 3000)) if rng.random() < 0.5 else bytes(rng.randint(1, 3000)))
    return b"".join(parts)[:n]


@given(payloads())
@settings(max_examples=150)
def test_chunks_reassemble_and_respect_bounds(data):
    chunks = chunks_of(data)
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= SMALL.max_size for c in chunks)
    assert all(len(c) >= SMALL.min_size for c in chunks[:-1])


@given(payloads())
@settings(max_examples=50)
def test_chunking_is_deterministic(data):
    assert chunks_of(data) == chunks_of(bytes(data))


@given(
    st.integers(0, 2**32),
    st.integers(32_768, 65_536),
    st.integers(0, 512),
    st.binary(min_size=1, max_size=64),
)
@settings(max_examples=150)
def test_insertion_near_start_changes_only_a_few_chunks(seed, size, offset, inserted):
    data = rand_bytes(seed, size)
    before = set(chunks_of(data))
    after = chunks_of(data[:offset] + inserted + data[offset:])
    new = [c for c in after if c not in before]
    assert len(new) <= 10, f"{len(new)} of {len(after)} chunks changed"
    assert len(new) <= 0.25 * len(after)


def test_repository_chunks_large_file_and_insertion_dedups(tmp_path):
    repo = Repository.init(tmp_path / "repo", chunking=SMALL)
    data = rand_bytes(7, 200_000)
    src = write(tmp_path / "d" / "big.bin", data)
    t1 = repo.snapshot(src)
    e1 = repo.ls(t1)[0]
    blob1 = repo.get(e1.id)
    assert isinstance(blob1, ChunkedBlob)
    assert blob1.size == e1.size == len(data)
    assert len(blob1.chunks) > 50
    # The stored chunks, fetched one by one, are the file.
    assert b"".join(repo.get(c).data for c, _ in blob1.chunks) == data

    edited = data[:100] + b"inserted!" + data[100:]
    write(src, edited)
    t2 = repo.snapshot(src)
    blob2 = repo.get(repo.ls(t2)[0].id)
    old_ids = {c for c, _ in blob1.chunks}
    new_ids = [c for c, _ in blob2.chunks if c not in old_ids]
    assert len(new_ids) <= 10
    assert len(blob2.chunks) - len(new_ids) >= 0.9 * len(blob2.chunks)
    assert repo.read_file(t2, "big.bin") == edited


def test_small_file_threshold(tmp_path):
    repo = Repository.init(tmp_path / "repo", chunking=SMALL)
    write(tmp_path / "d" / "at_limit", rand_bytes(1, SMALL.small_file))
    write(tmp_path / "d" / "over_limit", rand_bytes(2, 20 * SMALL.small_file))
    t = repo.snapshot(tmp_path / "d")
    assert repo.kind(repo.entry(t, "at_limit").id) == "blob"
    assert repo.kind(repo.entry(t, "over_limit").id) == "chunked"


@pytest.mark.parametrize(
    "kwargs",
    [dict(min_size=10), dict(avg_size=100), dict(min_size=2048, avg_size=1024, max_size=1024), dict(small_file=-1)],
)
def test_invalid_chunk_params_are_refused(kwargs):
    with pytest.raises(ValueError):
        ChunkParams(**{**SMALL.to_dict(), **kwargs})


# -- cutting ahead on a background thread ------------------------------------


def _ahead(data: bytes, params: ChunkParams) -> list[bytes]:
    from objstore.chunking import map_chunks_ahead

    return [bytes(v) for v in map_chunks_ahead(io.BytesIO(data), params, lambda v: v)]


@given(payloads(max_size=300_000), st.sampled_from([SMALL, ChunkParams(min_size=64, avg_size=256, max_size=1024, small_file=0)]))
@settings(max_examples=60, deadline=None)
def test_cutting_ahead_gives_the_same_chunks(data, params):
    """Blocks and carry-over must not move a single cut point (dedup with older versions depends on it)."""
    assert _ahead(data, params) == chunks_of(data, params)


@pytest.mark.parametrize("blocks", [0, 1, 2, 5])
@pytest.mark.parametrize("extra", [-1, 0, 1, 7])
def test_cutting_ahead_at_block_boundaries(blocks, extra):
    from objstore.chunking import _AHEAD_BLOCK

    size = max(0, blocks * _AHEAD_BLOCK + extra)
    data = rand_bytes(size % 97, size)
    assert _ahead(data, ChunkParams()) == chunks_of(data, ChunkParams())


def test_views_from_cutting_ahead_stay_valid_after_later_chunks():
    from objstore.chunking import map_chunks_ahead

    data = rand_bytes(3, 20 * 1024 * 1024)
    views = list(map_chunks_ahead(io.BytesIO(data), ChunkParams(), lambda v: v))
    assert b"".join(views) == data


def test_stopping_early_or_a_failing_stream_leaves_no_thread():
    import threading

    from objstore.chunking import map_chunks_ahead

    gen = map_chunks_ahead(io.BytesIO(rand_bytes(4, 40 * 1024 * 1024)), ChunkParams(), lambda v: len(v))
    assert next(gen) > 0
    gen.close()

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b):  # type: ignore[override]
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        list(map_chunks_ahead(Failing(), ChunkParams(), lambda v: v))  # type: ignore[arg-type]
    assert not [t for t in threading.enumerate() if t.name == "objstore-chunker"]


def _parallel_chunks(tmp_path, data: bytes, params: ChunkParams, segment: int, window: int | None = None) -> list[bytes]:
    import os

    from objstore.chunking import map_chunks_parallel

    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(map_chunks_parallel(fd, len(data), params, bytes, segment=segment, window=window))
    finally:
        os.close(fd)


@given(
    payloads(max_size=60_000),
    st.sampled_from([SMALL, ChunkParams(min_size=64, avg_size=256, max_size=1024, small_file=0)]),
    st.integers(1, 40),
    st.integers(1, 4),
)
@settings(max_examples=150, deadline=None)
def test_cutting_segments_in_parallel_gives_exactly_the_sequential_chunks(tmp_path_factory, data, params, pages, window):
    """Segments cut from false starts and re-synchronised give the sequential pass's cut points."""
    segment = pages * 512
    got = _parallel_chunks(tmp_path_factory.mktemp("p"), data, params, segment, window)
    assert got == chunks_of(data, params)


def test_parallel_cutting_survives_data_with_no_common_cut_point(tmp_path):
    """All zeros: FastCDC cuts every max_size bytes, so a segment starting off that
    grid never meets the sequential cuts; the consumer walks through it instead."""
    params = ChunkParams(min_size=64, avg_size=256, max_size=1024, small_file=0)
    data = bytes(50_000)
    assert _parallel_chunks(tmp_path, data, params, segment=1000) == chunks_of(data, params)


def test_a_file_that_shrinks_while_cut_in_parallel_is_reported(tmp_path):
    import os

    from objstore.chunking import FileChanged, map_chunks_parallel

    path = tmp_path / "f.bin"
    path.write_bytes(rand_bytes(1, 20_000))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(FileChanged):
            list(map_chunks_parallel(fd, 40_000, SMALL, bytes, segment=4096))
    finally:
        os.close(fd)


def test_a_large_file_snapshot_cut_in_parallel_has_the_sequential_ids(tmp_path, monkeypatch):
    from objstore import chunking, snapshot

    data = rand_bytes(7, 600_000) + bytes(100_000) + rand_bytes(8, 300_000)
    write(tmp_path / "big.bin", data)
    ids = []
    segments_cut: list[int] = []
    real = chunking.map_chunks_parallel

    def counting(*args, **kwargs):
        segments_cut.append(-(-args[1] // kwargs["segment"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshot, "map_chunks_parallel", counting)
    monkeypatch.setattr(snapshot, "PARALLEL_MIN_CPUS", 1)
    for segment in (10**9, 64 * 1024):  # one segment (sequential path) vs many
        monkeypatch.setattr(snapshot, "PARALLEL_SEGMENT", segment)
        repo = Repository.init(tmp_path / f"store-{segment}", chunking=SMALL)
        tree = repo.snapshot(tmp_path / "big.bin")
        ids.append(tree)
        assert repo.read_file(tree, "big.bin") == data
        repo.close()
    assert segments_cut == [16]  # only the second store cut in parallel
    assert ids[0] == ids[1]
