"""Content-defined chunking of large files (FastCDC, compiled).

Cut points depend on content, not offsets, so an insertion near the start
of a file shifts only the chunks it touches and everything else dedups.
The parameters are fixed per repository (recorded in its config) because
changing them changes every cut point.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent import futures
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import BinaryIO, Generic, TypeVar, cast

from pyfastcdc import FastCDC

from .limits import MAX_CHUNK_SIZE, MAX_SMALL_FILE
from .parallel import pool, workers

T = TypeVar("T")


@dataclass(frozen=True)
class ChunkParams:
    """FastCDC bounds (bytes) and the size below which a file stays one blob.

    pyfastcdc's ``avg_size`` is the target *past* ``min_size``, so chunks
    average about ``min_size + avg_size``. The defaults (~160 KiB chunks)
    were picked with ``benchmarks/bench_chunk_size.py``; see docs/format.md.
    """

    min_size: int = 32 * 1024
    avg_size: int = 128 * 1024
    max_size: int = 512 * 1024
    small_file: int = 512 * 1024

    def __post_init__(self) -> None:
        if not 64 <= self.min_size <= 1 << 20:
            raise ValueError(f"min_size {self.min_size} outside [64, 1 MiB]")
        if not 256 <= self.avg_size <= 1 << 22:
            raise ValueError(f"avg_size {self.avg_size} outside [256, 4 MiB]")
        if not max(1024, self.min_size, self.avg_size) <= self.max_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"max_size {self.max_size} must be >= min/avg and <= 16 MiB")
        if not 0 <= self.small_file <= MAX_SMALL_FILE:
            raise ValueError(f"small_file {self.small_file} outside [0, 64 MiB]")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> ChunkParams:
        return cls(**{k: int(data[k]) for k in ("min_size", "avg_size", "max_size", "small_file")})

    def chunker(self) -> FastCDC:
        return FastCDC(self.avg_size, min_size=self.min_size, max_size=self.max_size)


def iter_chunks(stream: BinaryIO, params: ChunkParams) -> Iterator[memoryview]:
    """Yield the chunks of a stream; each view is valid only until the next."""
    for chunk in params.chunker().cut_stream(stream):
        yield chunk.data


_AHEAD_BLOCK = 4 * 1024 * 1024
_DONE = object()


def _fresh_buffer(size: int, recycled: bool) -> mmap.mmap | bytearray:
    """``size`` zero bytes to read into.

    One that will be recycled comes from an anonymous mapping: its pages
    are first touched by the kernel as a read fills them, with the GIL
    released, while a bytearray is zeroed by Python holding the GIL, which
    stalls the storing thread for milliseconds per fresh 4 MiB buffer. One
    used once is a bytearray: the allocator hands back memory already
    mapped, where a fresh mapping would fault in every page again.
    """
    return anonymous_buffer(size) if recycled else bytearray(size)


_HUGE_PAGE = 2 * 1024 * 1024


def anonymous_buffer(size: int) -> mmap.mmap:
    """An anonymous mapping of at least ``size`` zero bytes, in huge pages where the kernel allows.

    A private mapping, its length rounded up to whole 2 MiB pages, so that
    Linux places it on a huge-page boundary and backs it with huge pages
    (``MADV_HUGEPAGE``, for transparent huge pages set to "madvise"):
    filling a 4 MiB buffer then faults a few times instead of a thousand,
    and the reads, cuts and hashes that sweep it miss the TLB less. Only a
    hint: elsewhere it is an ordinary private mapping.
    """
    length = -(-size // _HUGE_PAGE) * _HUGE_PAGE
    private = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    # Private: mmap(-1, n) alone is a shared mapping, memory of the shmem filesystem
    # (costlier faults, and never in huge pages unless shmem's are on).
    m = mmap.mmap(-1, length, flags=private) if private else mmap.mmap(-1, length)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            m.madvise(advice)
        except OSError:
            pass
    return m


def _read_full(stream: BinaryIO, into: memoryview) -> int:
    """Fill ``into`` from ``stream``; fewer bytes only at end of file."""
    got = 0
    while got < len(into):
        n = stream.readinto(into[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def map_chunks_ahead(
    stream: BinaryIO, params: ChunkParams, fn: Callable[[memoryview], T], depth: int = 2, *, recycle: bool = False
) -> Generator[T, None, None]:
    """``fn(chunk)`` for each chunk of :func:`iter_chunks`, computed on a background thread.

    See :func:`map_chunk_runs_ahead`, which this flattens: with ``recycle``
    the caller must be done with a chunk's view when it asks for the next one.
    """
    with closing(map_chunk_runs_ahead(stream, params, fn, depth, recycle=recycle)) as runs:
        for run in runs:
            yield from run


def map_chunk_runs_ahead(
    stream: BinaryIO, params: ChunkParams, fn: Callable[[memoryview], T], depth: int = 2, *, recycle: bool = False
) -> Generator[list[T], None, None]:
    """``fn(chunk)`` for each chunk of :func:`iter_chunks`, computed on a
    background thread, in runs (the chunks cut from one block, in order).

    The caller stores chunk *k* while this thread reads, cuts (FastCDC
    releases the GIL) and runs ``fn`` (e.g. hashing, which does too) on the
    chunks after it, so two cores work on one large file. Blocks are never
    reused: a chunk's view stays valid for as long as it is held. With
    ``recycle`` they are: a block's buffer is read into again once the
    caller asks for the run after next, which saves the page faults
    and zeroing of a fresh buffer per block (a sixth of this thread's work);
    the caller must then be done with a run's views when it asks for the
    next run. At most ``depth`` blocks (4 MiB, or four times ``max_size``)
    wait in the queue.

    Cut points are identical to a sequential pass: a chunk is taken from a
    block only when at least ``max_size`` bytes follow its start (FastCDC
    decides a cut from at most that many bytes) or at end of file; the rest
    carries over into the next block. ``stream`` belongs to the background
    thread until the generator is exhausted or closed.
    """
    block = max(_AHEAD_BLOCK, 4 * params.max_size)
    out: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    free: queue.SimpleQueue[mmap.mmap | bytearray] = queue.SimpleQueue()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            cdc = params.chunker()
            max_size = params.max_size
            carry: memoryview = memoryview(b"")
            while not stop.is_set():
                try:
                    buf = free.get_nowait()
                except queue.Empty:
                    buf = _fresh_buffer(params.max_size + block, recycle)
                memoryview(buf)[: len(carry)] = carry
                n = _read_full(stream, memoryview(buf)[len(carry) : len(carry) + block])
                total = len(carry) + n
                eof = n < block
                view = memoryview(buf)[:total]
                results: list[T] = []
                carry = memoryview(b"")
                for chunk in cdc.cut_buf(view):
                    if not eof and total - chunk.offset < max_size:
                        carry = view[chunk.offset :]
                        break
                    results.append(fn(chunk.data))
                if results and not put((results, buf)):
                    return
                if eof:
                    break
            put(_DONE)
        except BaseException as exc:  # handed to the consumer and raised there
            put(exc)

    worker = threading.Thread(target=produce, name="objstore-chunker", daemon=True)
    worker.start()
    held: mmap.mmap | bytearray | None = None
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            taken, used = cast(tuple[list[T], mmap.mmap | bytearray], item)
            yield taken
            if recycle:
                # The block before: this one's carried-over start was copied from it.
                if held is not None:
                    free.put(held)
                held = used
    finally:
        stop.set()
        while worker.is_alive():
            try:
                out.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


PARALLEL_SEGMENT = 4 * 1024 * 1024
"""Bytes of a large file cut by one worker in :func:`map_chunk_runs_parallel`
(larger segments re-cut less at their starts but keep the storing thread
waiting longer for the first one, and more memory is faulted in)."""


@dataclass
class _Segment(Generic[T]):
    """What a worker of :func:`map_chunk_runs_parallel` made of one segment."""

    chunks: list[tuple[int, int, T]]  # (file offset, length, fn(chunk)) from the segment's false start
    starts: dict[int, int]  # file offset of a chunk -> its index in ``chunks``
    buf: mmap.mmap | None  # the recycled buffer holding ``data``
    data: memoryview  # the segment's bytes and up to max_size after it
    eof: bool  # ``data`` reaches the end of the file


class FileChanged(Exception):
    """The file changed size while it was being cut in parallel."""


def _pread_full(fd: int, length: int, offset: int) -> bytearray:
    buf = bytearray(length)
    view = memoryview(buf)
    got = 0
    while got < length:
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    del view
    if got < length:
        del buf[got:]
    return buf


def _preadv_full(fd: int, into: memoryview, offset: int) -> int:
    """Fill ``into`` from ``fd`` at ``offset``; fewer bytes only at end of file."""
    got = 0
    while got < len(into):
        n = os.preadv(fd, [into[got:]], offset + got)
        if not n:
            break
        got += n
    return got


def _cut_window(
    cdc: FastCDC, data: bytearray | memoryview, base: int, limit: int, eof: bool, max_size: int, fn: Callable[[memoryview], T]
) -> list[tuple[int, int, T]]:
    """Chunks of ``data`` (file bytes from ``base``) that start before ``base + limit``.

    A chunk is kept only if ``max_size`` bytes follow its start in ``data``
    (FastCDC decides a cut from at most that many bytes) or ``data`` ends
    at end of file, so every kept cut is the one a sequential pass makes.
    """
    out: list[tuple[int, int, T]] = []
    view = memoryview(data)
    for chunk in cdc.cut_buf(view):
        if chunk.offset >= limit or (not eof and len(data) - chunk.offset < max_size):
            break
        out.append((base + chunk.offset, chunk.length, fn(chunk.data)))
    return out


def segment_bounds(size: int, segment: int) -> list[int]:
    """Where the segments of a ``size``-byte file start in :func:`map_chunk_runs_parallel`.

    The first ones are smaller (a quarter, then half of ``segment``): the
    storing thread waits for the first segment before it writes anything.
    """
    bounds = [0]
    step = max(1, segment // 4)
    while step < segment and bounds[-1] + step < size:
        bounds.append(bounds[-1] + step)
        step *= 2
    bounds.extend(range(bounds[-1] + segment, size, segment))
    return bounds


def map_chunks_parallel(
    fd: int,
    size: int,
    params: ChunkParams,
    fn: Callable[[memoryview], T],
    *,
    segment: int = PARALLEL_SEGMENT,
    window: int | None = None,
) -> Generator[T, None, None]:
    """``fn(chunk)`` for each chunk of the first ``size`` bytes of file ``fd``,
    with the file's segments cut on every core.

    :func:`map_chunk_runs_parallel` flattened, without recycled buffers: a
    chunk's view stays valid for as long as it is held.
    """
    with closing(map_chunk_runs_parallel(fd, size, params, fn, segment=segment, window=window)) as runs:
        for run in runs:
            yield from run


def map_chunk_runs_parallel(
    fd: int,
    size: int,
    params: ChunkParams,
    fn: Callable[[memoryview], T],
    *,
    segment: int = PARALLEL_SEGMENT,
    window: int | None = None,
    recycle: bool = False,
) -> Generator[list[T], None, None]:
    """``fn(chunk)`` for each chunk of the first ``size`` bytes of file ``fd``,
    with the file's segments cut on every core, in runs (about a segment's
    chunks each, in order).

    Each worker reads one segment (``segment`` bytes, the first ones
    fewer: see :func:`segment_bounds`; plus ``max_size`` for the chunk that
    crosses its end), cuts it as if the file began there
    and runs ``fn`` on the chunks that start inside it. A segment's first
    cut is usually not a cut of the sequential pass, so the consumer
    re-synchronises: after the last chunk of segment *k* it cuts on from the
    true position (a chunk or two, on this thread) until a cut coincides
    with one of segment *k+1*'s; from a common cut point on, FastCDC makes
    the same cuts whatever came before, so segment *k+1*'s chunks are taken
    from there. The chunks (and their ids) are therefore exactly those of a
    sequential pass. At most ``window`` segments are in flight.

    With ``recycle`` a segment's buffer is read into again by a later
    segment once the caller asks for the run after the one that ended with
    its chunks (it saves the page faults and zeroing of a fresh buffer per
    segment); the caller must then be done with a run's views when it asks
    for the next one. Closing the generator waits for the segments being
    read, so ``fd`` may be closed right after.

    Raises :class:`FileChanged` if the file is shorter than ``size`` (a
    caller falls back to a sequential pass).
    """
    cdc = params.chunker()
    max_size = params.max_size
    bounds = segment_bounds(size, segment)
    count = len(bounds)
    free: list[mmap.mmap] = []
    free_lock = threading.Lock()
    capacity = segment + max_size

    def work(k: int) -> _Segment[T]:
        start = bounds[k]
        end = bounds[k + 1] if k + 1 < count else size
        want = (end - start) + (max_size if k + 1 < count else 0)
        buf: mmap.mmap | None = None
        if recycle:
            with free_lock:
                buf = free.pop() if free else None
            if buf is None:
                buf = anonymous_buffer(capacity)  # recycled: see _fresh_buffer
            view = memoryview(buf)
            data = view[: _preadv_full(fd, view[:want], start)]
        else:
            data = memoryview(_pread_full(fd, want, start))
        if len(data) < (end - start):
            raise FileChanged(f"read {len(data)} bytes at {start}, expected {end - start}")
        eof = k + 1 == count or start + len(data) >= size
        chunks = _cut_window(cdc, data, start, end - start, eof, max_size, fn)
        return _Segment(chunks, {c[0]: i for i, c in enumerate(chunks)}, buf, data, eof)

    window = window or workers() + 1
    ex = pool()
    inflight: deque[Future[_Segment[T]]] = deque()
    submitted = 0
    held: list[mmap.mmap] = []  # buffers whose views the caller may still hold

    def fill() -> None:
        nonlocal submitted
        while submitted < count and len(inflight) < window:
            inflight.append(ex.submit(work, submitted))
            submitted += 1

    def release(buf: mmap.mmap | None) -> None:
        # Called as a run is handed over: the caller has asked for it, so it
        # is done with the run before and only this run's buffer stays held.
        if buf is not None:
            held.append(buf)
        while len(held) > 1:
            with free_lock:
                free.append(held.pop(0))

    try:
        pos = 0  # the end of the last chunk handed over: a cut of the sequential pass
        for k in range(count):
            fill()
            seg = inflight.popleft().result()
            fill()
            run: list[T] = []
            starts = seg.starts
            seg_end = bounds[k + 1] if k + 1 < count else size
            if pos < bounds[k]:
                # The segment before ended short of this one: its file shrank after this one was read.
                raise FileChanged(f"cut {pos} bytes, up to a segment read at {bounds[k]}")
            if pos not in starts and pos < seg_end:
                # Walk on from ``pos`` (inside this segment's bytes) until a cut
                # meets one of the segment's own: cut here, from its buffer.
                base = bounds[k]
                data = seg.data
                for chunk in cdc.cut_buf(data[pos - base :]):
                    if pos in starts or pos >= seg_end:
                        break
                    if not seg.eof and len(data) - (pos - base) < max_size:  # it holds max_size past its end unless the file shrank
                        raise FileChanged(f"read {len(data)} bytes at {base}, expected {pos + max_size - base}")
                    run.append(fn(chunk.data))
                    pos += chunk.length
            # From a common cut on, the segment's chunks are the sequential pass's
            # (none if the walk went past the segment without meeting one: rare).
            at = starts.get(pos)
            if at is not None:
                for start, length, result in seg.chunks[at:]:
                    run.append(result)
                    pos = start + length
            release(seg.buf)
            yield run
        if pos != size:
            raise FileChanged(f"cut {pos} of {size} bytes")
    finally:
        for f in inflight:
            f.cancel()
        # A segment being read holds ``fd``: wait for it, so the caller may close it.
        wait_futures([f for f in inflight if not f.cancelled()])


HINT_SPAN = 8 * 1024 * 1024
"""Bytes of an earlier version's chunks one worker reads and hashes in :func:`hinted_runs`."""
HINT_READ = 1024 * 1024
"""Bytes of a span read at a time (a few chunks): hashed while they are still in the CPU's cache."""
_WALK_READ = 4  # times max_size read at a time in an edited stretch (an edit of ~1 MiB is then one read)
_GIVE_UP = 4  # spans walked without meeting an earlier chunk: the file is new, cut the rest as usual


def hinted_runs(
    stream: BinaryIO,
    size: int,
    params: ChunkParams,
    digest: Callable[[memoryview], bytes],
    previous_ids: bytes,
    lengths: Sequence[int],
    *,
    span: int = HINT_SPAN,
    read: int = HINT_READ,
    window: int | None = None,
) -> Generator[range | tuple[memoryview, bytes], None, None]:
    """The chunks of the first ``size`` bytes of ``stream`` (a file), exactly
    as a sequential pass cuts them, guided by the chunks of an earlier
    version of the file: ``previous_ids`` (their digests, concatenated) and
    ``lengths``.

    Yields, in file order, a ``range`` of indices into the earlier chunks
    for each run of them that is still the file's next chunks (their bytes
    hash to their digests: the caller knows them already and gets no
    bytes), and ``(chunk, digest(chunk))`` for each chunk cut anew (its
    view is valid until the caller asks for the next item).

    The bytes where the earlier chunks were are read and hashed in spans of
    ``span`` bytes on every core, ahead of this thread, into buffers the
    workers recycle; nothing is cut there. Walking from a true cut point
    ``p``, an earlier chunk that starts at ``p`` is taken as it is when
    FastCDC would cut it there again: its bytes hash to its digest, and the
    byte that decided its end is unchanged (the next earlier chunk hashes to
    its digest too) unless it ended at ``max_size`` or at the end of the
    file. So a run of unchanged chunks is taken at once, all of it but a
    last one followed by a changed chunk. Anywhere else (an edited stretch) the file is cut as usual, on this
    thread, until a cut lands on an earlier chunk's start. After ``4 *
    span`` bytes cut without meeting one the file is taken as new and the
    rest is cut by :func:`map_chunks_ahead`.

    Raises :class:`FileChanged` if the file is shorter than ``size``.
    """
    fd = stream.fileno()
    cdc = params.chunker()
    max_size = params.max_size
    count = len(lengths)
    ds = len(previous_ids) // count if count else 0
    starts = [0, *itertools.accumulate(lengths)]
    index_of = {s: k for k, s in enumerate(starts[:-1])}
    spans: list[tuple[int, int]] = []
    k = 0
    while k < count:
        j = k + 1
        while j < count and starts[j + 1] - starts[k] <= span:
            j += 1
        spans.append((k, j))
        k = j
    span_firsts = [i for i, _ in spans]

    # A buffer per running worker, recycled: a fresh buffer costs page faults
    # and zeroing. Nothing outside ``check`` sees one, so it goes back as soon
    # as its bytes are hashed. A span is read a few chunks at a time, about
    # ``read`` bytes, and hashed while they are still in the CPU's cache.
    free: list[bytearray] = []
    free_lock = threading.Lock()
    capacity = max(read, max(lengths, default=0))

    def check(si: int) -> list[int]:
        """The earlier chunks of span ``si`` whose bytes are not there any more (sorted)."""
        i, j = spans[si]
        with free_lock:
            buf = free.pop() if free else bytearray(capacity)
        digests: list[bytes] = []
        try:
            whole = memoryview(buf)
            m = i
            while m < j:
                a = starts[m]
                g = m + 1
                while g < j and starts[g + 1] - a <= read:
                    g += 1
                got = _preadv_full(fd, whole[: max(0, min(starts[g], size) - a)], a)
                while m < g and starts[m + 1] - a <= got:
                    digests.append(digest(whole[starts[m] - a : starts[m + 1] - a]))
                    m += 1
                if m < g:
                    break  # the file ends before these chunks did
            whole.release()
        finally:
            with free_lock:
                free.append(buf)
        ok = i + len(digests)
        if b"".join(digests) == previous_ids[i * ds : ok * ds]:
            return list(range(ok, j))
        bad = [m for m, d in enumerate(digests, i) if d != previous_ids[m * ds : (m + 1) * ds]]
        return bad + list(range(ok, j))

    window = window or 2 * workers()
    ex = pool()
    inflight: deque[Future[list[int]]] = deque()
    done: dict[int, list[int]] = {}
    submitted = 0
    taken = 0  # spans moved from inflight to done

    def changed(si: int) -> list[int]:
        nonlocal submitted, taken
        while si not in done:
            while submitted < len(spans) and len(inflight) < window:
                inflight.append(ex.submit(check, submitted))
                submitted += 1
            done[taken] = inflight.popleft().result()
            done.pop(taken - 2, None)  # the walk only goes forward (a span back at most, for a chunk's successor)
            taken += 1
        return done[si]

    def same(m: int) -> bool:
        si = bisect.bisect_right(span_firsts, m) - 1
        return m not in changed(si)

    def run_from(m: int) -> int:
        """The end of the run of earlier chunks taken as they are from chunk ``m`` on (``m``: none)."""
        si = bisect.bisect_right(span_firsts, m) - 1
        bad = changed(si)
        j = spans[si][1]
        at = bisect.bisect_left(bad, m)
        e = bad[at] if at < len(bad) else j  # chunks m..e-1 hash to their digests
        if e == m:
            return m
        # Each of them but the last is followed by one that hashes the same:
        # its end is where it was. The last one needs its own reason.
        last = e - 1
        if lengths[last] == max_size or starts[e] == size or (e == j and e < count and same(e)):
            return e
        return last

    pos = 0
    walked = 0
    walk_buf = bytearray()  # what an edited stretch is cut from (made at the first one)
    try:
        while pos < size:
            m = index_of.get(pos)
            if m is not None:
                stop = run_from(m)
                if stop > m:
                    yield range(m, stop)
                    pos = starts[stop]
                    walked = 0
                    continue
            if walked >= _GIVE_UP * span:
                _stop(inflight)
                done.clear()
                stream.seek(pos)
                for view, oid in map_chunks_ahead(stream, params, lambda v: (v, digest(v))):
                    pos += len(view)
                    yield view, oid
                break
            # One buffer, read into again: the caller is done with a chunk when it asks for the next.
            if not walk_buf:
                walk_buf = bytearray(_WALK_READ * max_size)
            want = min(len(walk_buf), size - pos)
            data = memoryview(walk_buf)[:want]
            got = _preadv_full(fd, data, pos)
            if got < want:
                raise FileChanged(f"read {got} bytes at {pos}, expected {want}")
            # Cut lazily: the walk usually meets an earlier chunk again a chunk or two after the edit.
            eof = pos + want >= size
            for chunk in cdc.cut_buf(data):
                if not eof and want - chunk.offset < max_size:
                    break  # FastCDC may not have seen all the bytes that decide this cut: read on from here
                view = chunk.data
                yield view, digest(view)
                pos += chunk.length
                walked += chunk.length
                if pos in index_of:
                    break
        if pos < size:
            raise FileChanged(f"cut {pos} of {size} bytes")
    finally:
        _stop(inflight)


def _stop(inflight: deque[Future[list[int]]]) -> None:
    """Cancel what has not started; wait for what has (it reads the caller's file, which is closed next)."""
    for f in inflight:
        f.cancel()
    futures.wait(inflight)
    inflight.clear()


def map_chunks_hinted(
    stream: BinaryIO,
    size: int,
    params: ChunkParams,
    digest: Callable[[memoryview], bytes],
    previous: Sequence[tuple[bytes, int]],
    *,
    span: int = HINT_SPAN,
    read: int = HINT_READ,
    window: int | None = None,
) -> Generator[tuple[memoryview, bytes], None, None]:
    """``(chunk, digest(chunk))`` for each chunk of :func:`hinted_runs`, the
    earlier chunks (``previous``: their digests and lengths, in order)
    included: their bytes are read again and checked against their digests
    (:class:`FileChanged` if they changed since).

    For callers that want every chunk's bytes; a snapshot, which has the
    earlier chunks stored, takes the runs of :func:`hinted_runs` instead.
    A chunk's view is valid until the next one is asked for.
    """
    fd = stream.fileno()
    lengths = [n for _, n in previous]
    starts = [0, *itertools.accumulate(lengths)]
    runs = hinted_runs(
        stream, size, params, digest, b"".join(d for d, _ in previous), lengths, span=span, read=read, window=window
    )
    with closing(runs):
        for item in runs:
            if not isinstance(item, range):
                yield item
                continue
            a = starts[item.start]
            data = memoryview(_pread_full(fd, starts[item.stop] - a, a))
            for m in item:
                view = data[starts[m] - a : starts[m + 1] - a]
                if len(view) != lengths[m] or digest(view) != previous[m][0]:
                    raise FileChanged(f"chunk at {starts[m]} changed while it was read")
                yield view, previous[m][0]
