"""Writing a chunked file's content at its offsets, every byte verified, on every core.

A chunk stored raw in a local pack is hashed where it lies (a read-only map
of the pack: the page cache, no copy) and then copied by the kernel from the
pack into the output file with ``os.copy_file_range``, never passing through
Python. Where the kernel cannot (another filesystem, an old kernel, a Python
without the call) it is written from the map with ``pwrite``. Any other chunk
(compressed, or in a remote store) is fetched, decoded and verified by the
object database and written with ``pwrite``.

Runs of chunks (about :data:`BATCH` bytes) go to the shared pool, each
written at its own offset, so both cores copy and hash (all of it releases
the GIL). A chunk that fails its check raises ``CorruptObject``; the writes
still running stop at their next chunk and the caller removes the file.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass

from . import codec
from .errors import CorruptObject
from .ids import ObjectId
from .objects import BLOB
from .odb import ObjectDatabase
from .packs import IndexEntry, pack_path
from .parallel import pool, workers
from .storage import LocalStorage

BATCH = 8 * 1024 * 1024
"""Bytes of consecutive chunks one pool task writes."""

_FAULT_AROUND = 64 * 1024  # Linux's default fault_around_bytes
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_copy_file_range: Callable[..., int] | None = getattr(os, "copy_file_range", None)


@dataclass(frozen=True)
class _Piece:
    oid: bytes
    out: int  # offset in the output file
    size: int  # content bytes (the chunk list's figure)
    pack: str | None  # the local pack holding it raw, if one does
    entry: IndexEntry | None


class _Shared:
    """State the tasks of one file share: stop after a failure; whether the kernel can copy."""

    def __init__(self) -> None:
        self.failed = threading.Event()
        self.kernel_copy = _copy_file_range is not None


def _plan(odb: ObjectDatabase, chunks: Sequence[tuple[ObjectId, int]]) -> list[list[_Piece]]:
    local = isinstance(odb.storage, LocalStorage)
    batches: list[list[_Piece]] = []
    batch: list[_Piece] = []
    batch_bytes = 0
    out = 0
    for chunk_id, size in chunks:
        oid = odb.raw_id(chunk_id)
        pack: str | None = None
        entry: IndexEntry | None = None
        if local:
            loc = odb.locate(oid)
            if loc is not None and loc[1].codec == codec.RAW:
                pack, entry = loc
                odb.check_entry(oid, entry, pack_path(pack))  # sizes the format allows, before any read
        batch.append(_Piece(oid, out, size, pack, entry))
        out += size
        batch_bytes += size
        if batch_bytes >= BATCH:
            batches.append(batch)
            batch, batch_bytes = [], 0
    if batch:
        batches.append(batch)
    return batches


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _kernel_copy(src: int, dst: int, src_offset: int, dst_offset: int, length: int, shared: _Shared) -> int:
    """Bytes the kernel copied (all of ``length``, or fewer where it cannot copy at all)."""
    assert _copy_file_range is not None
    done = 0
    while done < length:
        try:
            n = _copy_file_range(src, dst, length - done, src_offset + done, dst_offset + done)
        except OSError as exc:
            if exc.errno in _NO_KERNEL_COPY:
                shared.kernel_copy = False  # the rest goes through pwrite
                return done
            raise
        if n == 0:  # the pack ended early: the map showed it whole a moment ago
            raise OSError(errno.EIO, "pack file shrank during the copy")
        done += n
    return done


class _Packs:
    """Each local pack a task reads: its descriptor (for the kernel copy) and a read-only map (for hashing)."""

    def __init__(self, odb: ObjectDatabase) -> None:
        storage = odb.storage
        assert isinstance(storage, LocalStorage)
        self._storage = storage
        self._open: dict[str, tuple[int, mmap.mmap]] = {}

    def get(self, name: str) -> tuple[int, mmap.mmap]:
        hit = self._open.get(name)
        if hit is None:
            fd = os.open(self._storage.full(pack_path(name)), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            except BaseException:
                os.close(fd)
                raise
            hit = self._open[name] = (fd, m)
        return hit

    def read_ahead(self, pieces: list[_Piece]) -> None:
        """Ask the kernel to read the batch's stretch of each pack now, in large requests
        (on a disk, faulting the map in 64 KiB at a time waits on many small reads)."""
        spans: dict[str, tuple[int, int]] = {}
        for p in pieces:
            if p.pack is not None and p.entry is not None:
                lo, hi = spans.get(p.pack, (p.entry.offset, 0))
                spans[p.pack] = (min(lo, p.entry.offset), max(hi, p.entry.offset + p.entry.stored_length))
        advise = getattr(os, "posix_fadvise", None)
        for name, (lo, hi) in spans.items():
            try:
                pack_fd, _ = self.get(name)
                if advise is not None:
                    advise(pack_fd, lo, hi - lo, os.POSIX_FADV_WILLNEED)
            except (OSError, ValueError, OverflowError):
                pass  # only a hint; a missing pack or a bad entry is dealt with chunk by chunk

    def close(self) -> None:
        for fd, m in self._open.values():
            try:
                m.close()
            except BufferError:
                pass  # a view is still held somewhere; the map goes when it does
            os.close(fd)
        self._open.clear()


def _write_batch(odb: ObjectDatabase, fd: int, pieces: list[_Piece], shared: _Shared) -> int:
    packs = _Packs(odb) if any(p.pack is not None for p in pieces) else None
    written = 0
    try:
        if packs is not None:
            packs.read_ahead(pieces)
        for p in pieces:
            if shared.failed.is_set():
                break
            if p.pack is None or not _write_raw(odb, fd, p, packs, shared):
                _write_decoded(odb, fd, p)
            written += p.size
    except BaseException:
        shared.failed.set()
        raise
    finally:
        if packs is not None:
            packs.close()
    return written


def _write_decoded(odb: ObjectDatabase, fd: int, p: _Piece) -> None:
    encoded = memoryview(odb.get_encoded(p.oid))
    _check_chunk(p, encoded[0] if len(encoded) else -1, len(encoded) - 1, None)
    _pwrite_all(fd, encoded[1:], p.out)


def _check_chunk(p: _Piece, tag: int, size: int, where: str | None) -> None:
    if tag != BLOB:
        raise CorruptObject(p.oid.hex(), "a file's chunk is not a blob", where)
    if size != p.size:
        raise CorruptObject(p.oid.hex(), f"chunk is {size} bytes, its file's chunk list says {p.size}", where)


def _write_raw(odb: ObjectDatabase, fd: int, p: _Piece, packs: _Packs | None, shared: _Shared) -> bool:
    """Verify a raw chunk in its mapped pack and have the kernel copy it; False if the pack is gone."""
    assert packs is not None and p.pack is not None and p.entry is not None
    e = p.entry
    where = pack_path(p.pack)
    try:
        pack_fd, m = packs.get(p.pack)
    except (FileNotFoundError, ValueError):  # repacked meanwhile, or empty: the object database finds it
        return False
    end = e.offset + e.stored_length
    if end > len(m):
        raise CorruptObject(p.oid.hex(), "pack is truncated", where)
    view = memoryview(m)[e.offset : end]
    try:
        odb.decode_verified(p.oid, e, view, where)  # raw: hashed in place
        _check_chunk(p, e.type_tag, e.stored_length - 1, where)
        done = 0
        if shared.kernel_copy:
            done = _kernel_copy(pack_fd, fd, e.offset + 1, p.out, p.size, shared)
        if done < p.size:
            _pwrite_all(fd, view[1 + done :], p.out + done)
    finally:
        view.release()
    # Drop the pages from this process (the page cache keeps them), so memory
    # stays flat however large the file. From 64 KiB before the chunk: the
    # kernel's fault-around maps the whole aligned block around a fault.
    start = max(0, e.offset - _FAULT_AROUND)
    start -= start % mmap.PAGESIZE
    try:
        m.madvise(mmap.MADV_DONTNEED, start, end - start)
    except (AttributeError, OSError, ValueError):
        pass  # only a memory hint
    return True


def write_chunks(
    odb: ObjectDatabase,
    fd: int,
    chunks: Sequence[tuple[ObjectId, int]],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the chunks of a file into ``fd`` (each at its offset); return the bytes written.

    Every chunk is verified against its id first; ``CorruptObject`` names
    the first bad one met. When this returns or raises, no write into
    ``fd`` is still running.
    """
    batches = _plan(odb, chunks)
    shared = _Shared()
    if len(batches) <= 1:
        total = sum(_write_batch(odb, fd, b, shared) for b in batches)
        if progress is not None and total:
            progress(total)
        return total
    ex = pool()
    window = workers() + 1
    inflight: deque[Future[int]] = deque()
    total = 0
    try:
        for batch in batches:
            inflight.append(ex.submit(_write_batch, odb, fd, batch, shared))
            while len(inflight) >= window:
                n = inflight.popleft().result()
                total += n
                if progress is not None:
                    progress(n)
        while inflight:
            n = inflight.popleft().result()
            total += n
            if progress is not None:
                progress(n)
    except BaseException:
        shared.failed.set()
        for f in inflight:
            f.cancel()
        wait(inflight)  # the caller closes fd next: nothing may still write into it
        raise
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
