"""Writing a chunked file's content at its offsets, every byte verified before it is written.

A chunk stored raw in a local pack is hashed where it lies (a read-only map
of the pack: the page cache, no copy into Python), and the kernel then
copies it from those same mapped page-cache pages into the output file:
one ``pwritev`` gathers a run of chunks (their record headers skipped) into
one write. Any other chunk (compressed, or in a remote store) is fetched,
decoded and verified by the object database and written with ``pwrite``.

Runs of chunks (up to :data:`BATCH` bytes; the first ones smaller, so
writing starts early) are verified on the shared pool, a few runs ahead of
one writer, the calling thread, which writes each run once it is verified,
in file order. One writer, because every write into a file takes its inode
lock: a second writer only waits (on tmpfs, spinning on the lock) with the
core the hashing needs. No byte is written before its chunk matched its
id. A chunk that fails its check raises ``CorruptObject`` before any raw
chunk of its run is written; the runs still being verified stop at their
next chunk and the caller removes the file.

Why not ``os.copy_file_range`` (which an earlier version used): it splices
through a 64 KiB pipe, and copying 64 MiB of raw chunks with it cost 21 ms
of CPU on ext4 and 26 ms on tmpfs here, against 13 ms and 21 ms for
``pwritev`` from the map (pages already mapped by the hashing). Both are
one copy by the kernel out of the page cache; ``copy_file_range`` also
needed a fallback between two filesystems (EXDEV), ``pwritev`` does not.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait

from . import codec
from .errors import CorruptObject
from .ids import ObjectId
from .objects import BLOB
from .odb import ObjectDatabase
from .packs import IndexEntry, pack_path
from .parallel import pool, workers
from .storage import LocalStorage

BATCH = 8 * 1024 * 1024
"""Bytes of consecutive chunks one pool task verifies (and the writer then writes)."""

FIRST_BATCH = 1024 * 1024
"""The first run's bytes; each next run doubles, up to :data:`BATCH` (the writer waits only for a small one)."""

_FAULT_AROUND = 64 * 1024  # Linux's default fault_around_bytes


def _iov_max() -> int:
    try:
        n = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        return 1024
    return min(1024, n) if n > 0 else 1024


_IOV_MAX = _iov_max()
_MADV_POPULATE_READ = 22  # Linux 5.14; not in Python 3.11's mmap module


class _Piece:
    """One chunk of the file: where it goes, and the local pack holding it raw (if one does)."""

    __slots__ = ("entry", "oid", "out", "pack", "size")

    def __init__(self, oid: bytes, out: int, size: int, pack: str | None, entry: IndexEntry | None) -> None:
        self.oid = oid
        self.out = out  # offset in the output file
        self.size = size  # content bytes (the chunk list's figure)
        self.pack = pack
        self.entry = entry


def _raw_ids(odb: ObjectDatabase, chunks: Sequence[tuple[ObjectId, int]]) -> list[bytes]:
    """The chunk ids as bytes (``odb.raw_id`` names a malformed one)."""
    width, size = 2 * odb.digest_size, odb.digest_size
    try:
        ids = [bytes.fromhex(c) for c, _ in chunks]
        if all(len(c) == width for c, _ in chunks) and all(len(i) == size for i in ids):
            return ids
    except ValueError:
        pass
    return [odb.raw_id(c) for c, _ in chunks]  # raises for the first malformed id


def _plan(odb: ObjectDatabase, chunks: Sequence[tuple[ObjectId, int]]) -> Iterator[list[_Piece]]:
    """Runs of chunks at their offsets (where each is stored is looked up by the task verifying its run)."""
    batch: list[_Piece] = []
    batch_bytes = 0
    limit = min(FIRST_BATCH, BATCH)
    out = 0
    for oid, (_, size) in zip(_raw_ids(odb, chunks), chunks):
        batch.append(_Piece(oid, out, size, None, None))
        out += size
        batch_bytes += size
        if batch_bytes >= limit:
            yield batch
            batch, batch_bytes = [], 0
            limit = min(2 * limit, BATCH)
    if batch:
        yield batch


def _locate(odb: ObjectDatabase, pieces: list[_Piece]) -> None:
    """Fill in the local pack and index entry of each piece stored raw in one."""
    locate, check, raw_codec = odb.locate, odb.check_entry, codec.RAW
    for p in pieces:
        loc = locate(p.oid)
        if loc is not None and loc[1].codec == raw_codec:
            check(p.oid, loc[1], pack_path(loc[0]))  # sizes the format allows, before any read
            p.pack, p.entry = loc


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "the file took no more bytes")
        view = view[n:]
        offset += n


def _pwritev_all(fd: int, views: list[memoryview], offset: int) -> None:
    """Write ``views`` back to back from ``offset`` (one gather write, continued after a short one)."""
    while views:
        n = os.pwritev(fd, views, offset)
        if n <= 0:
            raise OSError(errno.EIO, "the file took no more bytes")
        offset += n
        i = 0
        while i < len(views) and n >= len(views[i]):
            n -= len(views[i])
            i += 1
        views = views[i:]
        if views and n:
            views[0] = views[0][n:]


class _Packs:
    """The local packs one file's chunks are in: a descriptor and a read-only map each.

    Shared by the verifying tasks and the writer of one file; each pack is
    opened once, and all are closed by the writer when no task runs any more.
    """

    def __init__(self, odb: ObjectDatabase) -> None:
        storage = odb.storage
        assert isinstance(storage, LocalStorage)
        self._storage = storage
        self._open: dict[str, tuple[int, mmap.mmap, memoryview]] = {}
        self._lock = threading.Lock()
        self.written: deque[list[_Piece]] = deque()
        """Runs the writer has written, whose pages a verifying task unmaps next (off the writer's path)."""

    def get(self, name: str) -> tuple[int, mmap.mmap, memoryview]:
        """(descriptor, map, a view of the whole map) of a pack; ``FileNotFoundError`` if it is gone."""
        hit = self._open.get(name)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._open.get(name)
            if hit is None:
                fd = os.open(self._storage.full(pack_path(name)), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                try:
                    m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                except BaseException:
                    os.close(fd)
                    raise
                hit = self._open[name] = (fd, m, memoryview(m))
            return hit

    def read_ahead(self, pieces: list[_Piece]) -> None:
        """Have the kernel read the run's stretch of each pack and map it, in large requests
        (on a disk, faulting the map in 64 KiB at a time waits on many small reads; in the
        page cache, one call maps the stretch for a fraction of the faults' cost)."""
        spans: dict[str, tuple[int, int]] = {}
        for p in pieces:
            if p.pack is not None and p.entry is not None:
                lo, hi = spans.get(p.pack, (p.entry.offset, 0))
                spans[p.pack] = (min(lo, p.entry.offset), max(hi, p.entry.offset + p.entry.stored_length))
        advise = getattr(os, "posix_fadvise", None)
        for name, (lo, hi) in spans.items():
            try:
                pack_fd, m, _ = self.get(name)
                if advise is not None:
                    advise(pack_fd, lo, hi - lo, os.POSIX_FADV_WILLNEED)
                start = lo - lo % mmap.PAGESIZE
                m.madvise(_MADV_POPULATE_READ, start, min(hi, len(m)) - start)
            except (OSError, ValueError, OverflowError):
                pass  # only a hint; a missing pack or a bad entry is dealt with chunk by chunk

    def drop_written(self) -> None:
        """Unmap the pages of the runs written so far from this process (the page cache
        keeps them), so memory stays flat however large the file."""
        while True:
            try:
                pieces = self.written.popleft()
            except IndexError:
                return
            self._drop(pieces)

    def _drop(self, pieces: list[_Piece]) -> None:
        spans: dict[str, tuple[int, int]] = {}
        for p in pieces:
            if p.pack is not None and p.entry is not None:
                lo, hi = spans.get(p.pack, (p.entry.offset, 0))
                spans[p.pack] = (min(lo, p.entry.offset), max(hi, p.entry.offset + p.entry.stored_length))
        for name, (lo, hi) in spans.items():
            # From 64 KiB before: the kernel's fault-around maps the aligned block around a fault.
            start = max(0, lo - _FAULT_AROUND)
            start -= start % mmap.PAGESIZE
            try:
                self.get(name)[1].madvise(mmap.MADV_DONTNEED, start, hi - start)
            except (AttributeError, OSError, ValueError):
                pass  # only a memory hint

    def close(self) -> None:
        for fd, m, view in self._open.values():
            view.release()
            try:
                m.close()
            except BufferError:
                pass  # a view is still held somewhere; the map goes when it does
            os.close(fd)
        self._open.clear()


def _check_chunk(p: _Piece, tag: int, size: int, where: str | None) -> None:
    if tag != BLOB:
        raise CorruptObject(p.oid.hex(), "a file's chunk is not a blob", where)
    if size != p.size:
        raise CorruptObject(p.oid.hex(), f"chunk is {size} bytes, its file's chunk list says {p.size}", where)


def _write_decoded(odb: ObjectDatabase, fd: int, p: _Piece) -> None:
    encoded = memoryview(odb.get_encoded(p.oid))
    _check_chunk(p, encoded[0] if len(encoded) else -1, len(encoded) - 1, None)
    _pwrite_all(fd, encoded[1:], p.out)


def _verify_raw(odb: ObjectDatabase, p: _Piece, packs: _Packs) -> bool:
    """Hash a raw chunk in its mapped pack against its id; False if the pack is gone."""
    assert p.pack is not None and p.entry is not None
    e = p.entry
    where = pack_path(p.pack)
    try:
        _, m, whole = packs.get(p.pack)
    except (FileNotFoundError, ValueError):  # repacked meanwhile, or empty: the object database finds it
        return False
    end = e.offset + e.stored_length
    if end > len(m):
        raise CorruptObject(p.oid.hex(), "pack is truncated", where)
    odb.decode_verified(p.oid, e, whole[e.offset : end], where)  # raw: hashed in place
    _check_chunk(p, e.type_tag, e.stored_length - 1, where)
    return True


class _Stop:
    """The first run that failed: the runs after it stop, the ones before it go on.

    Runs are written in file order, so a run before the failed one must be
    finished (the writer writes it before it meets the failure); stopping it
    too would leave a hole in what was written.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: int | None = None

    def fail(self, run: int) -> None:
        with self._lock:
            if self.first is None or run < self.first:
                self.first = run

    def stops(self, run: int) -> bool:
        first = self.first
        return first is not None and first < run


_EVERY_RUN = -1
"""The writer itself failed (or was interrupted): every run still going stops."""


def _verify_batch(odb: ObjectDatabase, fd: int, pieces: list[_Piece], packs: _Packs | None, stop: _Stop, run: int) -> list[_Piece] | None:
    """Verify run number ``run`` of chunks: the raw ones in the page cache (returned, for
    the writer), every other one decoded, verified and written here. None if stopped by
    the failure of an earlier run."""
    raw: list[_Piece] = []
    try:
        if packs is not None:
            _locate(odb, pieces)
            packs.drop_written()
            packs.read_ahead(pieces)
        for p in pieces:
            if stop.stops(run):
                return None
            if p.pack is not None and packs is not None and _verify_raw(odb, p, packs):
                raw.append(p)
            else:
                _write_decoded(odb, fd, p)
    except BaseException:
        stop.fail(run)
        raise
    return raw


def _write_verified(fd: int, pieces: list[_Piece], packs: _Packs) -> None:
    """Write verified raw chunks into ``fd`` from their mapped packs: one gather write per
    stretch of the file they fill without a gap (the kernel copies from the page cache)."""
    run: list[memoryview] = []
    start = end = 0
    for p in pieces:
        assert p.pack is not None and p.entry is not None
        if p.out != end or len(run) >= _IOV_MAX:
            if run:
                _pwritev_all(fd, run, start)
            run, start = [], p.out
        at = p.entry.offset + 1  # after the type tag
        run.append(packs.get(p.pack)[2][at : at + p.size])
        end = p.out + p.size
    if run:
        _pwritev_all(fd, run, start)
    packs.written.append(pieces)


def write_chunks(
    odb: ObjectDatabase,
    fd: int,
    chunks: Sequence[tuple[ObjectId, int]],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the chunks of a file into ``fd`` (each at its offset); return the bytes written.

    Every chunk is verified against its id before it is written;
    ``CorruptObject`` names the first bad one met. When this returns or
    raises, no write into ``fd`` is still running; when it raises, ``fd``
    holds the runs of chunks before the one that failed, and nothing else
    (it is truncated there: a later run may have written some of its
    decoded chunks before it stopped), so ``fd`` should be a new file.
    """
    stop = _Stop()
    runs = 0  # runs handed out so far (the first is 0)
    packs = _Packs(odb) if isinstance(odb.storage, LocalStorage) else None
    window = workers() + 1
    inflight: deque[tuple[list[_Piece], Future[list[_Piece] | None]]] = deque()
    total = 0
    try:
        batches = _plan(odb, chunks)
        first = next(batches, None)
        more = first is not None
        while True:
            while more and len(inflight) < window:
                planned: list[_Piece] | None = next(batches, None)
                if planned is None:
                    more = False
                else:
                    runs += 1
                    inflight.append((planned, pool().submit(_verify_batch, odb, fd, planned, packs, stop, runs)))
            if first is not None:
                # Verified here while the pool starts on the next runs: writing starts sooner.
                batch, raw, first = first, _verify_batch(odb, fd, first, packs, stop, 0), None
            elif inflight:
                batch, future = inflight.popleft()
                raw = future.result()
            else:
                break
            if raw is None:
                # Only a run after a failed one stops, and the failed one raised when its turn came.
                raise RuntimeError("a run of chunks stopped with no earlier run failed")
            if raw:
                assert packs is not None
                _write_verified(fd, raw, packs)
            n = sum(p.size for p in batch)
            total += n
            if progress is not None and n:
                progress(n)
    except BaseException:
        stop.fail(_EVERY_RUN)
        for _, f in inflight:
            f.cancel()
        wait([f for _, f in inflight])  # the caller closes fd next: nothing may still write into it
        try:
            os.ftruncate(fd, total)
        except OSError:
            pass  # the error being raised says more
        raise
    finally:
        if packs is not None:
            packs.close()  # no task runs any more: each was waited for
    return total


def holds_chunks(odb: ObjectDatabase, fd: int, chunks: Sequence[tuple[ObjectId, int]]) -> bool:
    """True if file ``fd`` holds exactly these chunks, back to back (nothing more).

    Runs of chunks are read and hashed against their ids on every core,
    with nothing cut: a file already checked out is recognised at the speed
    of reading it. Stops at the first chunk that differs.
    """
    tag = bytes((BLOB,))
    ids = [odb.raw_id(c) for c, _ in chunks]
    starts = [0]
    for _, n in chunks:
        starts.append(starts[-1] + n)
    if os.fstat(fd).st_size != starts[-1]:
        return False
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(chunks):
        j = i + 1
        while j < len(chunks) and starts[j + 1] - starts[i] <= BATCH:
            j += 1
        runs.append((i, j))
        i = j
    differs = threading.Event()

    def check(run: tuple[int, int]) -> bool:
        i, j = run
        if differs.is_set():
            return False
        length = starts[j] - starts[i]
        buf = bytearray(length)
        view = memoryview(buf)
        got = 0
        while got < length:
            n = os.preadv(fd, [view[got:]], starts[i] + got)
            if not n:
                differs.set()
                return False
            got += n
        for m in range(i, j):
            if odb.hash(tag, view[starts[m] - starts[i] : starts[m + 1] - starts[i]]) != ids[m]:
                differs.set()
                return False
        return True

    ex = pool()
    inflight: deque[Future[bool]] = deque()
    try:
        for run in runs:
            inflight.append(ex.submit(check, run))
            while len(inflight) > workers():
                if not inflight.popleft().result():
                    return False
        while inflight:
            if not inflight.popleft().result():
                return False
        return True
    finally:
        differs.set()
        for f in inflight:
            f.cancel()
        wait(inflight)
