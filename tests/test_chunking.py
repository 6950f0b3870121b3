"""FastCDC chunking: lossless, bounded, and stable under insertions (so edits dedup)."""

from __future__ import annotations

import io
import itertools
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
    real = chunking.map_chunk_runs_parallel

    def counting(*args, **kwargs):
        segments_cut.append(-(-args[1] // kwargs["segment"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshot, "map_chunk_runs_parallel", counting)
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


def _digest(view) -> bytes:
    import xxhash

    return xxhash.xxh3_128_digest(view)


def _hinted_chunks(
    tmp_path, old: bytes, new: bytes, params: ChunkParams, span: int, read: int = 1 << 20
) -> list[tuple[bytes, bytes]]:
    from objstore.chunking import map_chunks_hinted

    previous = [(_digest(c), len(c)) for c in chunks_of(old, params)]
    path = tmp_path / "f.bin"
    path.write_bytes(new)
    with open(path, "rb", buffering=0) as f:
        hinted = map_chunks_hinted(f, len(new), params, _digest, previous, span=span, read=read, window=2)
        return [(bytes(v), d) for v, d in hinted]


_TINY = ChunkParams(min_size=64, avg_size=256, max_size=1024, small_file=0)


@st.composite
def edited(draw):
    """(params, old, new): a payload and an edit of it that keeps most bytes where they were."""
    params = draw(st.sampled_from([SMALL, _TINY]))
    old = draw(payloads(max_size=30_000))
    new = bytearray(old)
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["overwrite", "flip at a cut", "insert", "delete", "append", "truncate"]))
        at = rng.randrange(len(new) + 1)
        if kind == "overwrite":
            new[at : at + rng.randint(1, 3000)] = rng.randbytes(rng.randint(1, 3000))[: len(new) - at]
        elif kind == "flip at a cut":
            # The byte right after a chunk decided where that chunk ended:
            # the chunk hashes the same, but FastCDC may now cut it elsewhere.
            cuts = list(itertools.accumulate(len(c) for c in chunks_of(bytes(new), params)))[:-1]
            if cuts:
                i = rng.choice(cuts) + rng.choice([-1, 0, 0, 0, 1])
                if 0 <= i < len(new):
                    new[i] ^= 1 << rng.randrange(8)
        elif kind == "insert":
            new[at:at] = rng.randbytes(rng.randint(1, 2000))
        elif kind == "delete":
            del new[at : at + rng.randint(1, 2000)]
        elif kind == "append":
            new += rng.randbytes(rng.randint(1, 5000))
        else:
            del new[at:]
    return params, old, bytes(new)


@given(edited(), st.integers(1, 40), st.integers(1, 40))
@settings(max_examples=300, deadline=None)
def test_cutting_guided_by_the_previous_version_gives_exactly_the_sequential_chunks(tmp_path_factory, case, pages, reads):
    """Earlier chunks taken where they still fit, the rest cut: the same chunks (and digests) as a fresh pass."""
    params, old, new = case
    got = _hinted_chunks(tmp_path_factory.mktemp("h"), old, new, params, span=pages * 512, read=reads * 256)
    expected = chunks_of(new, params)
    assert [c for c, _ in got] == expected
    assert [d for _, d in got] == [_digest(c) for c in expected]


@given(edited(), st.integers(1, 40), st.integers(1, 40), st.integers(1, 4))
@settings(max_examples=300, deadline=None)
def test_runs_of_earlier_chunks_and_the_chunks_cut_anew_are_the_sequential_chunks(
    tmp_path_factory, case, pages, reads, window
):
    """What a snapshot takes: runs of earlier chunks (no bytes) and new chunks, together exactly a fresh pass."""
    from objstore.chunking import hinted_runs

    params, old, new = case
    earlier = chunks_of(old, params)
    path = tmp_path_factory.mktemp("r") / "f.bin"
    path.write_bytes(new)
    got: list[bytes] = []
    digests: list[bytes] = []
    with open(path, "rb", buffering=0) as f:
        ids = b"".join(_digest(c) for c in earlier)
        for item in hinted_runs(
            f, len(new), params, _digest, ids, [len(c) for c in earlier], span=pages * 512, read=reads * 256, window=window
        ):
            if isinstance(item, range):
                assert len(item) > 0
                got.extend(earlier[m] for m in item)
                digests.extend(ids[m * 16 : (m + 1) * 16] for m in item)
            else:
                got.append(bytes(item[0]))
                digests.append(item[1])
    expected = chunks_of(new, params)
    assert got == expected
    assert digests == [_digest(c) for c in expected]


def test_an_unedited_file_is_one_run_per_span_and_nothing_cut(tmp_path):
    """Nothing changed: every chunk comes back as an earlier one, none is cut or handed over."""
    from objstore.chunking import hinted_runs

    data = rand_bytes(11, 300_000)
    earlier = chunks_of(data, SMALL)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with open(path, "rb", buffering=0) as f:
        ids = b"".join(_digest(c) for c in earlier)
        items = list(hinted_runs(f, len(data), SMALL, _digest, ids, [len(c) for c in earlier], span=64 * 1024, read=4096))
    assert all(isinstance(i, range) for i in items)
    assert [m for r in items for m in r] == list(range(len(earlier)))


@pytest.mark.parametrize("params", [SMALL, _TINY])
def test_a_changed_byte_just_after_a_chunk_moves_its_cut(tmp_path, params):
    """The byte after a chunk decides where it ends: the chunk hashes the same but is not reused."""
    old = rand_bytes(5, 60_000)
    cuts = list(itertools.accumulate(len(c) for c in chunks_of(old, params)))[:-1]
    for cut in cuts[1:6]:
        new = bytearray(old)
        new[cut] ^= 0x10
        got = _hinted_chunks(tmp_path, old, bytes(new), params, span=4096)
        assert [c for c, _ in got] == chunks_of(bytes(new), params)


@pytest.mark.parametrize("params", [SMALL, _TINY])
def test_near_the_end_of_a_file_the_distance_to_it_shapes_the_cut(tmp_path, params):
    """Cut short exactly after a chunk, or grown: the last chunks are cut anew where the end moved them."""
    old = rand_bytes(6, 40_000)
    cuts = list(itertools.accumulate(len(c) for c in chunks_of(old, params)))[:-1]
    for new in [old[:cut] for cut in cuts[2:12]] + [old + rand_bytes(7, extra) for extra in (1, 100, 3000)]:
        got = _hinted_chunks(tmp_path, old, new, params, span=4096)
        assert [c for c, _ in got] == chunks_of(new, params)


def test_guided_cutting_of_an_unrelated_file_gives_up_on_the_hints(tmp_path):
    """Nothing in common with the earlier version: after a few spans it cuts the rest as usual."""
    old, new = rand_bytes(1, 200_000), rand_bytes(2, 200_000)
    got = _hinted_chunks(tmp_path, old, new, SMALL, span=4096)
    assert [c for c, _ in got] == chunks_of(new, SMALL)


def test_guided_cutting_of_a_file_that_shrank_is_reported(tmp_path):
    from objstore.chunking import FileChanged, map_chunks_hinted

    data = rand_bytes(3, 50_000)
    previous = [(_digest(c), len(c)) for c in chunks_of(data, SMALL)]
    path = tmp_path / "f.bin"
    path.write_bytes(data[:20_000])
    with open(path, "rb", buffering=0) as f, pytest.raises(FileChanged):
        list(map_chunks_hinted(f, len(data), SMALL, _digest, previous, span=4096))


def _write_aged(path, data: bytes) -> None:
    """Write a file whose mtime is 10 s old: the stat cache trusts it (no racy-clean doubt)."""
    import os
    import time

    write(path, data)
    old = time.time() - 10
    os.utime(path, (old, old))


def test_re_snapshot_after_an_edit_reads_the_earlier_chunks_in_place(tmp_path, monkeypatch):
    """An edited large file is re-snapshotted from its earlier chunks: same ids as a fresh store, little new data."""

    from objstore import chunking, snapshot

    data = bytearray(rand_bytes(9, 1_500_000))
    path = tmp_path / "big.bin"
    _write_aged(path, bytes(data))
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    repo.snapshot(path)
    repo.close()

    data[700_000:700_100] = rand_bytes(10, 100)
    data[10:20] = b"0123456789"
    write(path, bytes(data))
    guided: list[int] = []
    real = chunking.hinted_runs

    def counting(*args, **kwargs):
        guided.append(len(args[5]))
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshot, "hinted_runs", counting)
    repo = Repository.open(tmp_path / "store")
    before = repo.odb.added_bytes
    tree = repo.snapshot(path)
    grown = repo.odb.added_bytes - before
    assert repo.read_file(tree, "big.bin") == bytes(data)
    repo.close()
    assert len(guided) == 1 and guided[0] > 20
    assert grown < 100_000  # a few chunks, not the file

    fresh = Repository.init(tmp_path / "fresh", chunking=SMALL)
    assert fresh.snapshot(path) == tree
    fresh.close()


def test_a_file_cut_short_during_a_guided_re_snapshot_is_stored_as_it_is_then(tmp_path, monkeypatch):
    """The file shrinks after its size was taken: the guided pass notices and a plain pass stores what is there."""
    import os

    from objstore import chunking, snapshot

    data = rand_bytes(12, 1_200_000)
    path = tmp_path / "big.bin"
    _write_aged(path, bytes(data))
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    repo.snapshot(path)
    repo.close()

    edited = bytearray(data)
    edited[400_000:400_050] = rand_bytes(13, 50)
    write(path, bytes(edited))
    real = chunking.hinted_runs
    calls: list[int] = []

    def shrinking(stream, size, *args, **kwargs):
        calls.append(size)
        os.truncate(path, 700_000)  # after _chunked took the size
        return real(stream, size, *args, **kwargs)

    monkeypatch.setattr(snapshot, "hinted_runs", shrinking)
    repo = Repository.open(tmp_path / "store")
    tree = repo.snapshot(path)
    assert calls == [len(edited)]
    assert repo.read_file(tree, "big.bin") == bytes(edited[:700_000])
    (entry,) = repo.odb.get(tree).entries
    assert entry.size == 700_000  # what was stored, not the size listed before the file shrank
    repo.close()
    fresh = Repository.init(tmp_path / "fresh", chunking=SMALL)
    (again,) = fresh.odb.get(fresh.snapshot(path)).entries
    assert (entry.id, entry.size) == (again.id, again.size)
    fresh.close()


def test_a_re_snapshot_stores_again_the_unchanged_chunks_that_are_gone(tmp_path, monkeypatch):
    """The earlier chunk list is stored but its chunks are not (a store it was copied into): they are stored again."""

    from objstore.statcache import StatCache

    data = bytearray(rand_bytes(14, 1_200_000))
    path = tmp_path / "big.bin"
    _write_aged(path, bytes(data))
    first = Repository.init(tmp_path / "first", chunking=SMALL)
    (entry,) = first.odb.get(first.snapshot(path)).entries
    earlier = first.odb.get(entry.id)
    first.close()

    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    repo.odb.put(earlier)  # the chunk list alone
    data[500_000:500_100] = rand_bytes(15, 100)
    write(path, bytes(data))
    monkeypatch.setattr(StatCache, "previous", lambda self, p: entry.id)
    tree = repo.snapshot(path)
    assert repo.read_file(tree, "big.bin") == bytes(data)
    repo.close()


@given(payloads(max_size=60_000), st.integers(1, 3))
@settings(max_examples=50, deadline=None)
def test_cutting_ahead_with_recycled_blocks_gives_the_same_chunks(data, depth):
    from objstore import chunking
    from objstore.chunking import map_chunks_ahead

    params = ChunkParams(min_size=64, avg_size=256, max_size=1024, small_file=0)
    old = chunking._AHEAD_BLOCK
    chunking._AHEAD_BLOCK = 4096  # many blocks, each recycled
    try:
        got = [bytes(v) for v in map_chunks_ahead(io.BytesIO(data), params, lambda v: v, depth, recycle=True)]
    finally:
        chunking._AHEAD_BLOCK = old
    assert got == chunks_of(data, params)


def _parallel_runs(tmp_path, data: bytes, params: ChunkParams, segment: int, window: int | None) -> list[list[bytes]]:
    """Runs of :func:`map_chunk_runs_parallel` with recycled buffers, each
    run's views copied before the next is asked for (as a caller must)."""
    import os

    from objstore.chunking import map_chunk_runs_parallel

    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        runs = map_chunk_runs_parallel(fd, len(data), params, lambda v: v, segment=segment, window=window, recycle=True)
        return [[bytes(v) for v in run] for run in runs]
    finally:
        os.close(fd)


@given(
    payloads(max_size=60_000),
    st.sampled_from([SMALL, ChunkParams(min_size=64, avg_size=256, max_size=1024, small_file=0)]),
    st.integers(1, 40),
    st.integers(1, 4),
)
@settings(max_examples=150, deadline=None)
def test_cutting_segments_in_parallel_into_recycled_buffers_gives_exactly_the_sequential_chunks(
    tmp_path_factory, data, params, pages, window
):
    """Recycled segment buffers (each read into again by a later segment) and the
    re-synchronising walk cut from the next segment's buffer: the sequential cuts."""
    from objstore.chunking import segment_bounds

    segment = pages * 512
    runs = _parallel_runs(tmp_path_factory.mktemp("r"), data, params, segment, window)
    assert [c for run in runs for c in run] == chunks_of(data, params)
    assert len(runs) == len(segment_bounds(len(data), segment))  # one run per segment


@given(st.integers(0, 2 * 10**6), st.integers(64, 10**6))
def test_segments_cover_the_file_in_order_the_first_ones_smaller(size, segment):
    from objstore.chunking import segment_bounds

    bounds = segment_bounds(size, segment)
    assert bounds[0] == 0
    assert all(a < b < size for a, b in itertools.pairwise(bounds))
    ends = [*bounds[1:], size]
    assert all(0 < e - b <= segment for b, e in zip(bounds, ends)) or size == 0
    assert len(bounds) <= 2 + -(-size // segment)


def test_recycled_parallel_cutting_with_no_common_cut_point(tmp_path):
    params = ChunkParams(min_size=64, avg_size=256, max_size=1024, small_file=0)
    data = bytes(50_000)  # cuts every max_size bytes: segments off that grid never meet them
    runs = _parallel_runs(tmp_path, data, params, segment=1000, window=2)
    assert [c for run in runs for c in run] == chunks_of(data, params)


def test_closing_parallel_cutting_waits_for_the_segments_being_read(tmp_path):
    """Ctrl-C in the caller closes the generator; the file may be closed right
    after, so no worker may still be reading or cutting it."""
    import os
    import threading
    import time

    from objstore.chunking import map_chunk_runs_parallel

    path = tmp_path / "f.bin"
    path.write_bytes(rand_bytes(3, 400_000))
    active = 0
    lock = threading.Lock()

    def slow(view):
        nonlocal active
        with lock:
            active += 1
        time.sleep(0.002)
        with lock:
            active -= 1
        return bytes(view)

    fd = os.open(path, os.O_RDONLY)
    try:
        runs = map_chunk_runs_parallel(fd, 400_000, SMALL, slow, segment=16_384, window=4, recycle=True)
        next(runs)
        runs.close()
        assert active == 0
    finally:
        os.close(fd)


def test_cutting_ahead_in_runs_with_recycled_blocks_gives_the_same_chunks():
    from objstore import chunking
    from objstore.chunking import map_chunk_runs_ahead

    params = ChunkParams(min_size=64, avg_size=256, max_size=1024, small_file=0)
    data = rand_bytes(5, 30_000) + bytes(20_000) + rand_bytes(6, 30_000)
    old = chunking._AHEAD_BLOCK
    chunking._AHEAD_BLOCK = 4096
    try:
        runs = [[bytes(v) for v in run] for run in map_chunk_runs_ahead(io.BytesIO(data), params, lambda v: v, recycle=True)]
    finally:
        chunking._AHEAD_BLOCK = old
    assert len(runs) > 10
    assert [c for run in runs for c in run] == chunks_of(data, params)


def test_a_large_file_that_shrinks_while_cut_in_parallel_is_stored_as_it_ends_up(tmp_path, monkeypatch):
    """The parallel pass meets the shorter file (FileChanged), the snapshot falls
    back to a sequential pass of what the file holds now: that is what is stored."""
    import os

    from objstore import chunking, snapshot

    data = rand_bytes(11, 900_000)
    path = write(tmp_path / "big.bin", data)
    real = chunking.map_chunk_runs_parallel
    cut_short = []

    def shrinking(fd, size, *args, **kwargs):
        runs = real(fd, size, *args, **kwargs)
        yield next(runs)
        os.truncate(path, 500_000)  # the segments still to come are past the new end
        cut_short.append(True)
        yield from runs

    monkeypatch.setattr(snapshot, "map_chunk_runs_parallel", shrinking)
    monkeypatch.setattr(snapshot, "PARALLEL_MIN_CPUS", 1)
    monkeypatch.setattr(snapshot, "PARALLEL_SEGMENT", 64 * 1024)
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    tree = repo.snapshot(path)
    assert cut_short
    assert repo.read_file(tree, "big.bin") == data[:500_000]
    fresh = Repository.init(tmp_path / "fresh", chunking=SMALL)
    # The same content id as a pass over the shorter file (the tree entry's
    # size is the one stat gave before the file was read).
    assert fresh.get(fresh.snapshot(path)).entries[0].id == repo.get(tree).entries[0].id
    fresh.close()
    repo.close()


def test_a_segment_that_comes_back_short_of_the_next_one_is_a_changed_file(tmp_path, monkeypatch):
    """The file shrank between the reads of two segments: segment 1 (read after) ends inside
    the max_size bytes it reads past its end, so its last chunks are not kept; segment 2 (read
    before) is whole. The cut must not go on from a position behind segment 2's start (which
    would hash bytes from the wrong end of its buffer) but report the file as changed, so the
    caller reads it again sequentially."""
    import os

    from objstore import chunking
    from objstore.chunking import FileChanged, map_chunk_runs_parallel, segment_bounds

    params = ChunkParams(min_size=256, avg_size=1024, max_size=4096, small_file=0)
    data = rand_bytes(12, 200_000)
    segment = 16_384
    bounds = segment_bounds(len(data), segment)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    real = chunking._preadv_full

    def shrunk_for_segment_1(fd, into, offset):
        if offset == bounds[1]:
            into = into[: bounds[2] + 10 - offset]  # as if the file now ended 10 bytes into segment 2
        return real(fd, into, offset)

    monkeypatch.setattr(chunking, "_preadv_full", shrunk_for_segment_1)
    fd = os.open(path, os.O_RDONLY)
    try:
        runs = map_chunk_runs_parallel(fd, len(data), params, lambda v: bytes(v), segment=segment, window=4, recycle=True)
        with pytest.raises(FileChanged):
            for _ in runs:
                pass
    finally:
        os.close(fd)
