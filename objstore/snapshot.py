"""Turning files and directories on disk into stored objects.

Small files become one Blob; larger ones are cut by FastCDC into chunk
Blobs plus a ChunkedBlob listing them. Hashing and compression run on the
shared thread pool with a bounded window, so a file of any size streams
through in flat memory while both cores work. Unchanged files are answered
from the stat cache without being read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import itertools
import operator
import os
import stat
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import closing
from dataclasses import dataclass
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import Any, BinaryIO

import msgpack

from . import codec, limits, preload
from .chunking import (
    PARALLEL_SEGMENT,
    ChunkParams,
    FileChanged,
    hinted_runs,
    map_chunk_runs_ahead,
    map_chunk_runs_parallel,
)
from .errors import CorruptObject, ObjectNotFound, PathNotFound, TooLarge, UnsafePath
from .ids import ObjectId, to_hex
from .nogc import no_cyclic_gc
from .objects import (
    BLOB,
    DIR,
    FILE,
    MODE_EXEC,
    MODE_FILE,
    TREE,
    ChunkedBlob,
    Tree,
    TreeEntry,
    file_mode_from_stat,
    validate_name,
)
from .odb import ObjectDatabase
from .parallel import pool, workers
from .preload import Preload, may_fork, usable_cpus
from .readchild import ReaderChild, walk_names
from .statcache import RACY_NS, DirSignature, StatCache, StatKey, encode_table, stat_columns, stat_fields

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
"""Files are opened non-blocking: a path listed as a file and swapped for a FIFO (or a
device) before it is opened must not block the snapshot. A regular file ignores the flag."""
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = _READ_FLAGS | getattr(os, "O_DIRECTORY", 0)
_BLOB_TAG = bytes((BLOB,))
_TREE_TAG = bytes((TREE,))
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
_MODE = operator.attrgetter("st_mode")
_SIZE = operator.attrgetter("st_size")
_ONE_MORE = (1).__add__
_ONE_LESS = (-1).__add__
_FILE_MODES = (MODE_FILE, MODE_EXEC)  # by "has an execute bit"
_OPEN_AT_ONCE = 256  # descriptors a directory's small files are opened with at a time
_READ_SLICE = 2048  # small files of a directory read before their contents are queued: a huge
# directory's compression then overlaps its reading
_FILES_AND_DIRS = frozenset((stat.S_IFREG, stat.S_IFDIR))
_SMALL_BATCH = 1024 * 1024  # bytes of small files handed to zstd at once
_COMPRESS_BATCH = 8 * 1024 * 1024  # bytes of compressible chunks handed to zstd at once
_COMPRESS_WINDOW = 3  # batches in flight
PARALLEL_MIN_CPUS = 2
"""Cores (this process may use) from which a large file's segments are read,
cut and hashed on the pool while the snapshotting thread writes: three
threads' work spread over both cores (fresh process, tmpfs, medians, the
machine's other load kept off with SCHED_FIFO: 256 MiB 0.266 -> 0.225 s,
a 64 MiB log 0.075 -> 0.063 s, CPU unchanged). With one core a single
reading thread cuts ahead of the writing one."""

Progress = Callable[[int], None]


@dataclass
class _Prepared:
    oid: bytes
    codec: int
    stored: bytes | memoryview | None  # None: already stored, nothing to write
    raw_length: int


_Compressed = tuple[
    list[tuple[bytes, int, int, bytes | memoryview, int]],  # records for ObjectDatabase.add_many
    list[tuple[list[tuple[bytes, int, int]], bytes, int]],  # group records for ObjectDatabase.add_groups
    list[bytes],  # every id of the batch
]
"""A batch of small objects compressed on the pool (see :meth:`Snapshotter._compress_small`)."""

_SmallResult = tuple[os.stat_result, os.stat_result, "_Prepared | ObjectId | None"]


@dataclass(frozen=True)
class FilesUnder:
    """A source for :meth:`Repository.build_tree`: every regular file under a directory.

    Unlike a directory given as a plain path (stored as it is, symlinks as
    links), symlinks to files are followed, and symlinks to directories,
    dangling symlinks, sockets and the like are left out, as are
    directories without a file under them, like ``os.walk`` listing files.
    Unchanged directories are answered from the stat cache.
    """

    path: str | os.PathLike[str]
    forbidden: str = ""
    """Characters no name under ``path`` may hold (``UnsafePath`` naming the first such path)."""

    @property
    def flavor(self) -> str:
        """What tells its directory signatures from a plain snapshot's."""
        return f"files-under:{self.forbidden}"


Source = str | os.PathLike[str] | TreeEntry | FilesUnder
"""What :meth:`Snapshotter.tree_from_files` takes for one logical path."""


class _NoLongerAFile(PathNotFound):
    """A path listed as a regular file is something else by the time it is opened."""


class _EarlierChunkGone(FileChanged):
    """A chunk of a file's earlier version is not stored (any more): the file goes through a plain pass."""


class Snapshotter:
    """Stores the files under a path and returns the ids of their trees."""

    def __init__(
        self,
        odb: ObjectDatabase,
        params: ChunkParams,
        statcache: StatCache | None,
        progress: Progress | None = None,
    ) -> None:
        self.odb = odb
        self.params = params
        self.statcache = statcache
        self.progress = progress
        self.files = 0
        self.bytes_read = 0
        self._digest = odb.algorithm.oneshot
        self._depth = 0
        self._batch: list[tuple[bytes, bytes]] = []
        self._batch_bytes = 0
        self._pending: set[bytes] = set()  # queued for storing, not yet in the pack
        self._inflight: deque[Future[_Compressed]] = deque()
        self._dir_records: list[tuple[str, DirSignature, int, ObjectId, int, int]] = []
        self._preload: Preload | None = None
        self._reader: ReaderChild | None = None
        self._walked: dict[str, tuple[list[str], list[str]]] = {}  # directory -> (sorted names, subdirectories), from walk_names
        self.tree_rows: dict[bytes, list[Any]] | None = None
        """Set to a dict to be given the rows of every tree built from a directory listing
        (raw tree id -> the rows encoded, as :func:`objstore.objects.tree_rows` decodes them)."""

    # -- one encoded object ------------------------------------------------

    def _prepare(self, encoded: bytes | memoryview) -> _Prepared:
        oid = self.odb.hash(encoded)
        if self.odb.has_raw(oid):
            return _Prepared(oid, codec.RAW, None, len(encoded))
        codec_id, stored = self.odb.encode_stored(encoded)  # raw when it goes into a group
        return _Prepared(oid, codec_id, stored, len(encoded))

    def _store(self, p: _Prepared) -> None:
        if p.stored is not None:
            self.odb.add_stored(p.oid, BLOB, p.codec, p.stored, p.raw_length, checked=True)

    # -- files -------------------------------------------------------------

    def _tick(self, n: int) -> None:
        self.bytes_read += n
        if self.progress is not None:
            self.progress(n)

    def file_id(self, path: str, st: os.stat_result | None = None) -> ObjectId:
        """Store one regular file; return the id of its Blob or ChunkedBlob."""
        return self.file_entry(path, st)[0]

    def file_entry(self, path: str, st: os.stat_result | None = None) -> tuple[ObjectId, int]:
        """Store one regular file; return the id of its Blob or ChunkedBlob and
        the bytes stored under it: those read, which differ from ``st``'s size
        when the file was written to since it was listed."""
        try:
            before = st or os.stat(path)
            if self.statcache is not None:
                cached = self.statcache.lookup(path, before)
                if cached is not None and self.odb.has(cached):
                    self._tick(before.st_size)
                    self.files += 1
                    return cached, before.st_size
            hint = self.statcache.previous(path) if self.statcache is not None else None
            with _open_regular(path) as f:
                if before.st_size <= self.params.small_file:
                    data = f.read(self.params.small_file + 1)
                    if len(data) <= self.params.small_file:
                        self._tick(len(data))
                        p = self._prepare(bytes((BLOB,)) + data)
                        self._store(p)
                        object_id, stored = to_hex(p.oid), len(data)
                        after = os.fstat(f.fileno())
                    else:  # grew since stat: chunk it after all
                        f.seek(0)
                        object_id, after, stored = self._chunked(f)
                else:
                    object_id, after, stored = self._chunked(f, hint)
        except _NoLongerAFile:
            raise  # a PathNotFound (a FileNotFoundError) that says more
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path, "local filesystem") from None
        self.files += 1
        if self.statcache is not None:
            self.statcache.record(path, before, after, object_id)
        return object_id, stored

    def _previous_chunks(self, hint: ObjectId | None) -> tuple[tuple[ObjectId, int], ...] | None:
        """The chunks of the file's last snapshot (from the stat cache), if it is still stored."""
        if hint is None:
            return None
        try:
            obj = self.odb.get(hint)
        except (ObjectNotFound, CorruptObject):
            return None
        return obj.chunks if isinstance(obj, ChunkedBlob) else None

    def _rechunked(
        self, f: BinaryIO, size: int, previous: tuple[tuple[ObjectId, int], ...]
    ) -> tuple[ObjectId, os.stat_result, int]:
        """Store a large file guided by the chunks of its last snapshot (see :func:`hinted_runs`).

        Runs of earlier chunks whose bytes are unchanged go straight into
        the new chunk list; only the chunks cut anew in edited stretches
        pass through :meth:`_chunked_from`. Each earlier chunk is still
        looked up (on this thread, while the workers hash the next spans),
        which also marks its pack as in use against a concurrent gc; one
        that is gone sends the file through a plain pass, which stores it.
        """
        odb = self.odb
        tag = bytes((BLOB,))
        chunks: list[tuple[ObjectId, int]] = []
        ids = bytes.fromhex("".join(c for c, _ in previous))
        ds = odb.digest_size
        runs = hinted_runs(f, size, self.params, lambda v: odb.hash(tag, v), ids, [n for _, n in previous])
        near: list[str] = []

        def cut() -> Iterator[tuple[memoryview, bytes, bool | None]]:
            for item in runs:
                if isinstance(item, range):
                    if not odb.has_run([ids[m * ds : (m + 1) * ds] for m in item], near):
                        raise _EarlierChunkGone(f"a chunk of the earlier version {item.start}..{item.stop} is not stored")
                    run = previous[item.start : item.stop]
                    chunks.extend(run)  # in order: the chunks cut before it are in the list already
                    self._tick(sum(n for _, n in run))
                else:
                    yield item[0], item[1], None

        with closing(runs):
            return self._chunked_from(f, cut(), chunks)

    def _chunked(self, f: BinaryIO, hint: ObjectId | None = None) -> tuple[ObjectId, os.stat_result, int]:
        """Store a large file chunk by chunk.

        Each chunk is hashed straight from FastCDC's buffer. Chunks already
        stored are skipped; incompressible ones (the cheap probe says so) are
        written as they are, a run of them (headers and payloads) in one
        writev, with no copy. Compressible ones are copied out and gathered
        into batches that zstd compresses on its own native threads
        (python-zstandard's one-shot ``compress`` holds the GIL), on the pool
        while this thread cuts the next ones; at most three batches are in
        flight.

        With two cores or more the file's segments are read, cut, hashed and
        probed on the pool while this thread writes; with one, a reading
        thread does that ahead of this one.
        """
        odb = self.odb
        tag = bytes((BLOB,))
        level = odb.level

        def hashed(v: memoryview) -> tuple[memoryview, bytes, bool | None]:
            # The probe runs here too, off the storing thread (pack writes).
            return v, odb.hash(tag, v), level <= 0 or (len(v) >= codec.PROBE_MIN and codec.looks_incompressible(v))

        size = os.fstat(f.fileno()).st_size
        previous = self._previous_chunks(hint)
        if previous is not None:
            # Re-snapshot of an edited file: its earlier chunks are checked
            # in place on every core, only the edited stretches are cut.
            try:
                return self._rechunked(f, size, previous)
            except FileChanged:
                f.seek(0)
        if size >= 2 * PARALLEL_SEGMENT and usable_cpus() >= PARALLEL_MIN_CPUS:
            try:
                # Recycled segment buffers: the loop below is done with a run's views when it asks for the next.
                cut = map_chunk_runs_parallel(f.fileno(), size, self.params, hashed, segment=PARALLEL_SEGMENT, recycle=True)
                with closing(cut):
                    return self._chunked_runs(f, cut)
            except FileChanged:
                f.seek(0)  # it changed under us: a sequential pass reads what is there now
        # Recycled blocks: the loop below is done with a run's views when it asks for the next.
        # Closed here, before ``f``: an exception (Ctrl-C) must stop the reading thread while
        # its file descriptor is still open, not when the traceback is freed.
        with closing(map_chunk_runs_ahead(f, self.params, hashed, recycle=True)) as ahead:
            return self._chunked_runs(f, ahead)

    def _chunked_from(
        self,
        f: BinaryIO,
        hashed_chunks: Iterator[tuple[memoryview, bytes, bool | None]],
        chunks: list[tuple[ObjectId, int]] | None = None,
    ) -> tuple[ObjectId, os.stat_result, int]:
        """Store the chunks (view, id, stored raw? or None: not probed yet); return the file's id.

        ``chunks``: the file's chunk list, to append to (the iterator may add
        stored chunks to it between the ones it yields). A chunk's view is used
        only until the next chunk is asked for.
        """
        return self._chunked_runs(f, ([chunk] for chunk in hashed_chunks), chunks)

    def _chunked_runs(
        self,
        f: BinaryIO,
        runs: Iterator[list[tuple[memoryview, bytes, bool | None]]],
        chunks: list[tuple[ObjectId, int]] | None = None,
    ) -> tuple[ObjectId, os.stat_result, int]:
        """:meth:`_chunked_from` for runs of chunks, each run's new raw chunks
        written with one writev; a run's views are used only until the next
        run is asked for."""
        odb = self.odb
        tag = bytes((BLOB,))
        chunks = [] if chunks is None else chunks
        pending: set[bytes] = set()  # queued or written: not looked up again
        batch: list[tuple[bytes, bytes]] = []
        batch_bytes = 0
        inflight: deque[Future[list[_Prepared]]] = deque()

        def submit() -> None:
            nonlocal batch, batch_bytes
            inflight.append(pool().submit(self._compress_batch, batch))
            batch, batch_bytes = [], 0
            while len(inflight) > _COMPRESS_WINDOW:
                self._store_all(inflight.popleft().result())

        for run in runs:
            raws: list[tuple[bytes, int, list[bytes | memoryview], int]] = []
            run_bytes = 0
            for view, oid, raw in run:
                n = len(view)
                run_bytes += n
                chunks.append((to_hex(oid), n))
                if oid in pending or odb.has_raw(oid):
                    continue
                pending.add(oid)
                if raw is None:
                    raw = odb.level <= 0 or (n >= codec.PROBE_MIN and codec.looks_incompressible(view))
                if raw:
                    raws.append((oid, codec.RAW, [tag, view], n + 1))
                    continue
                batch.append((oid, b"".join((tag, view))))
                batch_bytes += n
                if batch_bytes >= _COMPRESS_BATCH:
                    submit()
            if raws:
                odb.add_stored_many(BLOB, raws)
            self._tick(run_bytes)
        if batch:
            submit()
        while inflight:
            self._store_all(inflight.popleft().result())
        after = os.fstat(f.fileno())
        stored = sum(n for _, n in chunks)  # the file's size when it was listed may be out of date
        if not chunks:  # the file shrank to nothing while we looked
            p = self._prepare(bytes((BLOB,)))
            self._store(p)
            return to_hex(p.oid), after, 0
        if len(chunks) == 1:
            return chunks[0][0], after, stored
        return self.odb.put(ChunkedBlob(tuple(chunks))), after, stored

    def _compress_batch(self, batch: list[tuple[bytes, bytes]]) -> list[_Prepared]:
        grouped = [self.odb.groups(len(payload)) for _, payload in batch]  # compressed with their group instead
        packed = iter(codec.compress_many([p for (_, p), g in zip(batch, grouped) if not g], self.odb.level, workers()))
        out = []
        for (oid, payload), g in zip(batch, grouped):
            codec_id, stored = (codec.RAW, payload) if g else next(packed)
            out.append(_Prepared(oid, codec_id, stored, len(payload)))
        return out

    def _store_all(self, prepared: list[_Prepared]) -> None:
        for p in prepared:
            self._store(p)

    # -- trees -------------------------------------------------------------

    def entry_for(self, path: str, name: str, st: os.stat_result) -> TreeEntry | None:
        """The tree entry for one path (a directory is stored recursively)."""
        try:
            validate_name(name)
        except UnsafePath as exc:
            raise UnsafePath(path, exc.reason) from None
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            return TreeEntry(name, "symlink", target=os.readlink(path))
        if stat.S_ISDIR(mode):
            tree_id, size = self.tree_id(path)
            return TreeEntry(name, "dir", tree_id, size)
        if stat.S_ISREG(mode):
            try:
                return TreeEntry(name, "file", *self.file_entry(path, st), file_mode_from_stat(mode))
            except _NoLongerAFile:
                return self._slow_entry(path, name, False)  # swapped since listed: taken as what it now is
        warnings.warn(f"objstore: skipping {path!r}: not a file, directory or symlink", stacklevel=3)
        return None

    def tree_id(self, dirpath: str) -> tuple[ObjectId, int]:
        """Store a directory tree; return (tree id, total bytes).

        With a stat cache, a directory whose entries all kept their stat
        (and whose subdirectories kept their trees) is answered from its
        signature: one ``lstat`` per entry, nothing read, nothing hashed.
        """
        with self._batching():
            got = self._root_dir(dirpath, None)
            assert got is not None
            return got

    def _root_dir(self, dirpath: str, under: FilesUnder | None) -> tuple[ObjectId, int] | None:
        """:meth:`_dir` of the top of a walk, with a forked helper where it pays: with a stat
        cache that knows many files under it, the directories near the walk's end are listed
        and stat-ed by a child meanwhile (see :mod:`objstore.preload`); without, a child reads,
        hashes and compresses their small files (see :mod:`objstore.readchild`)."""
        if self._preload is not None or self._reader is not None:
            return self._dir(dirpath, under)
        known = self.statcache.dirs_under(dirpath) if self.statcache is not None else []
        cpus = usable_cpus()
        if preload.knows_enough(known):
            self._preload = Preload.start(known, cpus)
        elif may_fork(cpus):
            self._reader = self._start_reader(dirpath, under, cpus)
        try:
            got = self._dir(dirpath, under)
            if self._reader is not None:
                self._reader.finish()  # its last objects stored before the batches are
            return got
        finally:
            if self._preload is not None:
                self._preload.close()
                self._preload = None
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            self._walked = {}

    def _start_reader(self, dirpath: str, under: FilesUnder | None, cpus: int) -> ReaderChild | None:
        walked = walk_names(dirpath)
        self._walked = {path: (names, dirs) for path, names, dirs in walked}
        return ReaderChild.start(
            walked,
            functools.partial(self._scan_for_child, under=under),
            self._compress_for_child,
            self.odb.missing,
            self._store_from_child,
            self.odb.group_size or _SMALL_BATCH,
            cpus,
        )

    def _compress_for_child(self, batch: list[tuple[bytes, bytes]]) -> list[Any]:
        """In the reading child: a batch compressed for :meth:`_store_from_child`."""
        records, groups, _ = self._compress_small(batch)
        return [records, groups]

    def _store_from_child(self, compressed: list[Any]) -> None:
        records, groups = compressed
        self._store_compressed((records, groups, []))

    @contextlib.contextmanager
    def _batching(self) -> Iterator[None]:
        """Small files read meanwhile are stored (compressed in batches) by the time it exits."""
        self._depth += 1
        try:
            with no_cyclic_gc():
                yield
            if self._depth == 1:
                self._flush_small(final=True)
                # A directory's tree may reach a pack before its small files
                # do: it is remembered only now that they are stored too.
                if self.statcache is not None:
                    for record in self._dir_records:
                        self.statcache.record_dir(*record)
                self._dir_records.clear()
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._drain(store=False)  # an error: let the batches in flight finish, store nothing
                self._dir_records.clear()

    # -- a directory of small files, in bulk -------------------------------

    def _dir(self, dirpath: str, under: FilesUnder | None) -> tuple[ObjectId, int] | None:
        """A directory's (tree id, total bytes); ``under`` is set for a :class:`FilesUnder` one (None if it holds no file)."""
        started = time.time_ns()
        subs: dict[str, tuple[ObjectId, int] | None] = {}
        if self._reader is not None:
            if self._reader.owns(dirpath):
                # Its subdirectories first, as the child's results come in the order of a walk.
                for name in self._walked[dirpath][1] if dirpath in self._walked else ():
                    subs[name] = self._dir(os.path.join(dirpath, name), under)
                left = self._reader.names_left(dirpath)
                own = self._scan_own(dirpath, left, under) if left is not None else None
                got = self._reader.take(dirpath)
                if got is not None and (left is None or own is not None):
                    return self._dir_from_child(dirpath, under, got if own is None else _joined(own, got), subs)
            else:
                self._reader.poll()
        listing = self._preload.take(dirpath) if self._preload is not None else None
        if listing is not None:
            hit = self._dir_preloaded(dirpath, under, listing, subs)
            if hit is not None:
                return hit
        try:
            dfd = os.open(dirpath, _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(dirpath, "local filesystem") from None
        try:
            return self._dir_at(dirpath, dfd, under, started, subs)
        finally:
            os.close(dfd)

    def _dir_preloaded(
        self,
        dirpath: str,
        under: FilesUnder | None,
        listing: tuple[bytes, int, bytes | None],
        subs: dict[str, tuple[ObjectId, int] | None],
    ) -> tuple[ObjectId, int] | None:
        """A directory answered by its signature from the child's listing (see
        :mod:`objstore.preload`), or None; its subdirectories' results go into ``subs``
        either way, for :meth:`_dir_at` to take instead of walking them again."""
        blob, count, columns = listing
        cache = self.statcache
        if columns is None or cache is None:
            return None
        modes = memoryview(columns)[32 * count :].cast("Q")
        kinds = set(map(stat.S_IFMT, set(modes)))
        if under is not None and not kinds <= _FILES_AND_DIRS:
            return None  # a symlink to follow, or something to leave out: the plain path decides
        sig = DirSignature.from_columns(blob, count, columns, under.flavor if under is not None else 0)
        total = 0
        if stat.S_IFDIR in kinds:
            names = blob.decode("utf-8", "surrogateescape").split("\0")
            for i, mode in enumerate(modes):
                if S_ISDIR(mode):
                    sub = subs[names[i]] = self._dir(os.path.join(dirpath, names[i]), under)
                    sig.set_tree(i, sub[0] if sub is not None else "")
                    total += sub[1] if sub is not None else 0
        return self._signature_hit(dirpath, sig, total)

    def _dir_at(
        self,
        dirpath: str,
        dfd: int,
        under: FilesUnder | None,
        started: int,
        subs: dict[str, tuple[ObjectId, int] | None],
    ) -> tuple[ObjectId, int] | None:
        """The batched small-file path: one listing and one ``lstat`` per entry;
        ``subs``: subdirectories walked already (by :meth:`_dir_preloaded`); then,
        unless the directory's signature answers it, every small file
        not answered by its stat read with ``os.open``/``os.read`` relative to
        the directory, hashed in one call each and queued for compression in
        batches, and the tree encoded straight from msgpack rows."""
        walked = self._walked.pop(dirpath, None)  # listed by the walk that started a reading child
        names, stats = _entries(dfd, walked[0] if walked is not None else sorted(os.listdir(dfd)), under is not None)
        follow = under is not None
        cache = self.statcache
        sig = DirSignature(names, stats, under.flavor if under is not None else 0) if cache is not None else None
        is_dir = list(map(S_ISDIR, map(_MODE, stats)))  # C-level: most directories hold none
        rows, total, left_out = self._subdirs(dirpath, names, is_dir, under, sig, subs)
        hit = self._signature_hit(dirpath, sig, total)
        if hit is not None:
            return hit
        _check_names(dirpath, [n for n in names if n not in left_out] if left_out else names, under.forbidden if under is not None else "")
        files_before = self.files
        known = cache.files(dirpath) if cache is not None else {}
        file_rows, table, slow, files, read = self._files_of(dfd, names, stats, is_dir, known, follow, started, self._queue_small)
        rows += file_rows
        self.files += files
        self._tick(read)
        total += read + self._slow_rows(dirpath, list(map(_FIRST, slow)), follow, rows)
        for name, _ in slow:
            rec = known.get(name)
            if rec is not None:
                table[name] = rec  # recorded by file_entry just now, or still true
        if cache is not None:
            cache.record_files(dirpath, table)
        return self._finish_dir(dirpath, rows, sig, started, total, self.files - files_before, follow)

    def _dir_from_child(
        self, dirpath: str, under: FilesUnder | None, got: list[Any], subs: dict[str, tuple[ObjectId, int] | None]
    ) -> tuple[ObjectId, int] | None:
        """A directory whose small files the reading child did (see :mod:`objstore.readchild`):
        its subdirectories, the entries it left and the tree are done here."""
        started, blob, count, columns, file_rows, record, slow, files, read = got
        names = blob.decode("utf-8", "surrogateescape").split("\0") if count else []
        is_dir = list(map(S_ISDIR, memoryview(columns)[32 * count :].cast("Q")))
        cache = self.statcache
        sig = DirSignature.from_columns(blob, count, columns, under.flavor if under is not None else 0) if cache is not None else None
        rows, total, _ = self._subdirs(dirpath, names, is_dir, under, sig, subs)
        hit = self._signature_hit(dirpath, sig, total)
        if hit is not None:
            return hit
        files_before = self.files
        if cache is not None and record is not None:
            cache.record_files_encoded(dirpath, record)  # before the slow entries: they may add to it
        rows += file_rows
        self.files += files
        self._tick(read)
        total += read + self._slow_rows(dirpath, slow, under is not None, rows)
        return self._finish_dir(dirpath, rows, sig, started, total, self.files - files_before, under is not None)

    def _scan_for_child(
        self, dirpath: str, names: list[str], under: FilesUnder | None, queue: Callable[[dict[bytes, bytes]], None] | None = None
    ) -> tuple[list[Any], dict[bytes, bytes]] | None:
        """In the reading child: what :meth:`_dir_at` does for a directory's own small files
        (the result :meth:`_dir_from_child` takes, and the encodings to store: given to
        ``queue`` instead if it is set), or None."""
        encodings: dict[bytes, bytes] = {}
        started = time.time_ns()
        try:
            dfd = os.open(dirpath, _DIR_FLAGS)
        except OSError:
            return None
        try:
            names, stats = _entries(dfd, names, under is not None)
            follow = under is not None
            try:
                _check_names(dirpath, names, under.forbidden if under is not None else "")
            except UnsafePath:
                return None  # this process raises it (unless the name is left out)
            columns = stat_columns(stats)
            if columns is None:
                return None
            is_dir = list(map(S_ISDIR, map(_MODE, stats)))
            known = self.statcache.files(dirpath) if self.statcache is not None else {}
            file_rows, table, slow, files, read = self._files_of(dfd, names, stats, is_dir, known, follow, started, queue or encodings.update)
        finally:
            os.close(dfd)
        slow_names = list(map(_FIRST, slow))
        for name in slow_names:
            rec = known.get(name)
            if rec is not None:
                table[name] = rec
        record = encode_table(table) if self.statcache is not None else None
        blob = "\0".join(names).encode("utf-8", "surrogateescape")
        return [started, blob, len(names), columns, file_rows, record, slow_names, files, read], encodings

    def _scan_own(self, dirpath: str, names: list[str], under: FilesUnder | None) -> list[Any] | None:
        """This process's part of a directory shared with the reading child, as the child
        would give it (its files queued for storing); None if it must walk it all itself."""
        got = self._scan_for_child(dirpath, names, under, self._queue_small)
        return got[0] if got is not None else None

    def _subdirs(
        self,
        dirpath: str,
        names: list[str],
        is_dir: list[bool],
        under: FilesUnder | None,
        sig: DirSignature | None,
        subs: dict[str, tuple[ObjectId, int] | None],
    ) -> tuple[list[list[Any]], int, set[str]]:
        """Walk a directory's subdirectories (those in ``subs`` are walked already): their
        rows, total bytes, and the names of those without a file (:class:`FilesUnder`)."""
        rows: list[list[Any]] = []
        total = 0
        left_out: set[str] = set()
        for i in itertools.compress(range(len(names)), is_dir):
            sub = subs[names[i]] if names[i] in subs else self._dir(os.path.join(dirpath, names[i]), under)
            if sig is not None:
                sig.set_tree(i, sub[0] if sub is not None else "")
            if sub is not None:
                rows.append([names[i], DIR, bytes.fromhex(sub[0]), sub[1]])
                total += sub[1]
            else:
                left_out.add(names[i])
        return rows, total, left_out

    def _signature_hit(self, dirpath: str, sig: DirSignature | None, subdirs_total: int) -> tuple[ObjectId, int] | None:
        """The stored tree of a directory whose signature the stat cache knows, or None."""
        if sig is None or self.statcache is None:
            return None
        hit = self.statcache.lookup_dir(dirpath, sig.digest())
        if hit is None or not self.odb.has(hit[0]):
            return None
        tree_id, size, files = hit
        self._tick(size - subdirs_total)
        self.files += files
        return tree_id, size

    def _files_of(
        self,
        dfd: int,
        names: list[str],
        stats: list[os.stat_result],
        is_dir: list[bool],
        known: Mapping[str, tuple[StatKey, bytes]],
        follow: bool,
        started: int,
        queue: Callable[[dict[bytes, bytes]], None],
    ) -> tuple[list[list[Any]], dict[str, tuple[StatKey, bytes]], list[tuple[str, os.stat_result]], int, int]:
        """A directory's small regular files: answered by their stat (``known``) or read (their
        typed encodings, by raw id, handed to ``queue`` as they are read). Returns their rows,
        stat-cache records, the entries left to the slow path (not directories), the files and
        their bytes."""
        rows: list[list[Any]] = []
        table: dict[str, tuple[StatKey, bytes]] = {}
        small = self.params.small_file
        to_read: list[tuple[str, os.stat_result]] = []
        slow: list[tuple[str, os.stat_result]] = []
        files = total = 0
        if not known and not any(is_dir) and all(map(S_ISREG, map(_MODE, stats))) and max(map(_SIZE, stats), default=0) <= small:
            to_read = list(zip(names, stats))  # the usual first snapshot of a directory of small files
        else:
            has_raw = self.odb.has_raw
            for name, st in zip(names, stats):
                mode = st.st_mode
                if S_ISREG(mode) and st.st_size <= small:
                    if known:
                        rec = known.get(name)
                        if rec is not None and rec[0] == stat_fields(st) and has_raw(rec[1]):
                            table[name] = rec
                            rows.append([name, FILE, rec[1], st.st_size, MODE_EXEC if mode & 0o111 else MODE_FILE])
                            total += st.st_size
                            files += 1
                            continue
                    to_read.append((name, st))
                elif not S_ISDIR(mode):
                    slow.append((name, st))
        for at in range(0, len(to_read), _READ_SLICE):
            read, count = self._read_small_files(dfd, follow, started, to_read[at : at + _READ_SLICE], rows, table, slow, queue)
            total += read
            files += count
        return rows, table, slow, files, total

    def _slow_rows(self, dirpath: str, names: list[str], follow: bool, rows: list[list[Any]]) -> int:
        """Add the rows of entries the bulk path does not take (large, special, or changed
        under it); return their bytes."""
        total = 0
        for name in names:
            entry = self._slow_entry(os.path.join(dirpath, name), name, follow)
            if entry is not None:
                rows.append(entry._encode())
                total += max(entry.size, 0) if entry.kind != "symlink" else 0
        return total

    def _finish_dir(
        self, dirpath: str, rows: list[list[Any]], sig: DirSignature | None, started: int, total: int, files: int, follow: bool
    ) -> tuple[ObjectId, int] | None:
        """Encode and store a directory's tree from its rows (None for a :class:`FilesUnder`
        one without files); its signature is recorded once its files are stored."""
        if follow and not rows:
            return None
        if len(rows) > limits.MAX_TREE_ENTRIES:
            raise TooLarge("a directory", len(rows), limits.MAX_TREE_ENTRIES, "entries")
        rows.sort(key=_FIRST)  # names are unique: the listing's order (code points = UTF-8 bytes)
        # Trees go to the writer's open group, not the files' batches: trees then share groups
        # with trees, and a walk of the new tree (the façade's manifest) decodes a few groups.
        tree_id = self.odb.put_encoded(_TREE_TAG + msgpack.packb(rows, use_bin_type=True))
        if self.tree_rows is not None:
            self.tree_rows[bytes.fromhex(tree_id)] = rows
        if sig is not None:
            self._dir_records.append((dirpath, sig, started, tree_id, total, files))
        return tree_id, total

    def _read_small_files(
        self,
        dfd: int,
        follow: bool,
        started: int,
        todo: list[tuple[str, os.stat_result]],
        rows: list[Any],
        table: dict[str, tuple[StatKey, bytes]],
        slow: list[tuple[str, os.stat_result]],
        queue: Callable[[dict[bytes, bytes]], None],
    ) -> tuple[int, int]:
        """Read and hash ``todo``'s small files; add their rows (and trusted stats); hand their
        typed encodings (by raw id) to ``queue``; return their bytes and how many. One that
        vanished, changed type or grew goes to ``slow``.

        Everything per file runs in C (``map`` over the descriptors and the
        contents): three syscalls and one hash each, no Python bytecode."""
        flags = _READ_FLAGS if follow else _READ_FLAGS | _NOFOLLOW
        names = list(map(_FIRST, todo))
        # Each read asks for one byte more than the lstat said: a file that grew since
        # shows it. (Asking for small_file + 1 had os.read allocate and shrink a 512 KiB
        # buffer per file: ~16 us each, the largest cost of a first snapshot.)
        listed = list(map(_SIZE, map(_SECOND, todo)))
        wanted = list(map(_ONE_MORE, listed))
        datas: list[bytes | None] = []
        for at in range(0, len(names), _OPEN_AT_ONCE):
            datas += _read_all(dfd, names[at : at + _OPEN_AT_ONCE], flags, wanted[at : at + _OPEN_AT_ONCE])
        if None in datas or any(map(operator.gt, map(len, datas), listed)):  # type: ignore[arg-type]
            kept = [i for i, d in enumerate(datas) if d is not None and len(d) <= listed[i]]
            keep = set(kept)
            slow += [todo[i] for i in range(len(todo)) if i not in keep]
            todo = [todo[i] for i in kept]
            names = list(map(_FIRST, todo))
            datas = [datas[i] for i in kept]
        got: list[bytes] = datas  # type: ignore[assignment]
        stats = list(map(_SECOND, todo))
        encoded = list(map(_BLOB_TAG.__add__, got))
        oids = list(map(self._digest, encoded))
        sizes = list(map(len, got))
        modes = map(_FILE_MODES.__getitem__, map(bool, map(operator.and_, map(_MODE, stats), itertools.repeat(0o111))))
        rows += zip(names, itertools.repeat(FILE), oids, sizes, modes)
        # The lstat from before the read is what is remembered: a write since
        # then changes mtime and ctime, so the next snapshot reads it again.
        trusted = started - RACY_NS
        keys = list(map(stat_fields, stats))
        if keys and max(map(_SECOND, keys)) < trusted:
            table.update(zip(names, zip(keys, oids)))
        else:
            table.update((name, (key, oid)) for name, key, oid in zip(names, keys, oids) if key[1] < trusted)
        queue(dict(zip(oids, encoded)))
        return sum(sizes), len(todo)

    def _slow_entry(self, path: str, name: str, follow: bool) -> TreeEntry | None:
        """One entry the bulk path does not take (large, special, or changed under it)."""
        try:
            now = os.stat(path) if follow else os.lstat(path)
        except FileNotFoundError:
            raise PathNotFound(path, "local filesystem (it vanished during the snapshot)") from None
        if follow and not S_ISREG(now.st_mode):
            return None
        return self.entry_for(path, name, now)

    # -- small objects, compressed in batches --------------------------------

    def _queue_small(self, new: dict[bytes, bytes]) -> None:
        """Queue typed encodings (by id) for storing, unless stored or queued already."""
        pending = self._pending
        fresh = self.odb.missing([o for o in new if o not in pending] if not pending.isdisjoint(new) else new)
        if not fresh:
            return
        pending.update(fresh)
        got = list(map(new.__getitem__, fresh))
        self._batch += zip(fresh, got)
        self._batch_bytes += sum(map(len, got))
        if self._batch_bytes >= (self.odb.group_size or _SMALL_BATCH):
            self._flush_small(final=False)

    def _compress_small(self, batch: list[tuple[bytes, bytes]]) -> _Compressed:
        """On the pool: group records of the objects this repository groups (a batch is
        about one group), the others compressed one by one on zstd's threads."""
        odb = self.odb
        if odb.group_size and odb.groups(max(map(len, map(_SECOND, batch)))):
            grouped, rest = batch, []  # the usual batch: C-level maps only (see encode_groups)
        else:
            grouped = [(o, p) for o, p in batch if odb.groups(len(p))]
            rest = [(o, p) for o, p in batch if not odb.groups(len(p))]
        packed = codec.compress_many([p for _, p in rest], odb.level, workers())
        records: list[tuple[bytes, int, int, bytes | memoryview, int]] = [
            (o, p[0], c, stored, len(p)) for (o, p), (c, stored) in zip(rest, packed)
        ]
        return records, odb.encode_groups(grouped) if grouped else [], list(map(_FIRST, batch))

    def _store_compressed(self, done: _Compressed) -> None:
        records, groups, _ = done
        self.odb.add_groups(groups)
        if records:
            self.odb.add_many(records)

    def _flush_small(self, final: bool) -> None:
        """Hand the gathered small objects to zstd on the pool (it compresses on its own
        threads while this one reads on); store what is done; with ``final``, everything."""
        if self._batch:
            self._inflight.append(pool().submit(self._compress_small, self._batch))
            self._batch, self._batch_bytes = [], 0
        while len(self._inflight) > (0 if final else _COMPRESS_WINDOW):
            done = self._inflight.popleft().result()
            self._store_compressed(done)
            self._pending.difference_update(done[2])  # in the pack now: has_raw sees them
        if final:
            self._pending.clear()

    def _drain(self, store: bool) -> None:
        while self._inflight:
            done = self._inflight.popleft()
            try:
                got = done.result()
            except BaseException:
                if store:
                    raise
                continue
            if store:
                self._store_compressed(got)
        self._batch, self._batch_bytes = [], 0
        self._pending.clear()

    def _read_small(self, path: str, st: os.stat_result) -> _SmallResult:
        if self.statcache is not None:
            cached = self.statcache.lookup(path, st)
            if cached is not None and self.odb.has(cached):
                return st, st, cached
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return st, st, None
        try:
            data = os.read(fd, st.st_size + 1)  # sized by the stat: see _read_small_files
            after = os.fstat(fd)
        except BlockingIOError:  # a FIFO with a writer, in the file's place
            return st, st, None
        finally:
            os.close(fd)
        if len(data) > st.st_size or not S_ISREG(after.st_mode):
            return st, after, None  # it grew, or is no longer a file: the slow path takes it
        return st, after, self._prepare(bytes((BLOB,)) + data)

    def _small_entry(self, path: str, name: str, hit: _SmallResult) -> TreeEntry:
        before, after, result = hit
        try:
            validate_name(name)
        except UnsafePath as exc:
            raise UnsafePath(path, exc.reason) from None
        if result is None:  # vanished or grew while we read it: take the slow path
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                raise PathNotFound(path, "local filesystem (it vanished during the snapshot)") from None
            entry = self.entry_for(path, name, st)
            if entry is None:
                raise PathNotFound(path, "changed while being read")
            return entry
        if isinstance(result, _Prepared):
            self._store(result)
            object_id = to_hex(result.oid)
            self._tick(result.raw_length - 1)
            if self.statcache is not None:
                self.statcache.record(path, before, after, object_id)
        else:
            object_id = result
            self._tick(after.st_size)
        self.files += 1
        return TreeEntry(name, "file", object_id, after.st_size, file_mode_from_stat(after.st_mode))

    def snapshot(self, path: str) -> ObjectId:
        """Store ``path`` (a directory, file or symlink) and return a Tree id.

        A directory becomes its own tree; a single file or symlink becomes a
        tree holding one entry named after it.
        """
        path = os.path.abspath(path)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path, "local filesystem") from None
        if stat.S_ISDIR(st.st_mode):
            return self.tree_id(path)[0]
        entry = self.entry_for(path, os.path.basename(path), st)
        if entry is None:
            raise PathNotFound(path, "not a regular file, directory or symlink")
        return self.odb.put(Tree.from_entries([entry]))

    def tree_from_files(self, files: Mapping[str, Source]) -> ObjectId:
        """Store a tree laid out by logical paths; return its id.

        Each value is a local path (a file, followed if it is a symlink, or a
        directory, stored recursively), a :class:`FilesUnder` directory, or a
        ready TreeEntry (a reference, a symlink, or a file whose object is
        already stored). Paths are ``/``-separated and relative;
        ``UnsafePath`` for ``..``, absolute paths, duplicates, or a path that
        is both a file and a directory. The path ``""`` may name one
        :class:`FilesUnder` alone: the tree is then its directory's.
        """
        root_dir = files.get("")
        if isinstance(root_dir, FilesUnder) and len(files) == 1:
            with self._batching():
                got = self._root_dir(_absolute(root_dir.path), root_dir)
            return got[0] if got is not None else self.odb.put(Tree())
        items = sorted((split_logical_path(k), v) for k, v in files.items())
        for (a, _), (b, _) in itertools.pairwise(items):
            if a == b or b[: len(a)] == a:
                raise UnsafePath("/".join(b), f"collides with {'/'.join(a)!r}")
        with self._batching():
            root: dict[str, Any] = {}
            for (parts, src), hit in zip(items, map(self._prepare_source, items)):
                node = root
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                entry = self._source_entry(parts[-1], src, hit)
                if entry is not None:
                    node[parts[-1]] = entry
            return self._store_nested(root)[0]

    def _prepare_source(self, item: tuple[tuple[str, ...], Source]) -> _SmallResult | None:
        src = item[1]
        if isinstance(src, (TreeEntry, FilesUnder)):
            return None
        path = _absolute(src)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path, "local filesystem") from None
        if stat.S_ISREG(st.st_mode) and st.st_size <= self.params.small_file:
            return self._read_small(path, st)
        return None

    def _source_entry(self, name: str, src: Source, hit: _SmallResult | None) -> TreeEntry | None:
        if isinstance(src, TreeEntry):
            if src.id is not None and not self.odb.has(src.id):
                raise ObjectNotFound(src.id, f"entry {name!r} points at a missing object")
            return dataclasses.replace(src, name=name)
        if isinstance(src, FilesUnder):
            got = self._dir(_absolute(src.path), src)
            return None if got is None else TreeEntry(name, "dir", got[0], got[1])
        path = _absolute(src)
        if hit is not None:
            return self._small_entry(path, name, hit)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(path, "local filesystem") from None
        if stat.S_ISDIR(st.st_mode):
            tree_id, size = self.tree_id(path)
            return TreeEntry(name, "dir", tree_id, size)
        if stat.S_ISREG(st.st_mode):
            return TreeEntry(name, "file", *self.file_entry(path, st), file_mode_from_stat(st.st_mode))
        raise PathNotFound(path, "not a regular file or directory")

    def _store_nested(self, node: dict[str, Any]) -> tuple[ObjectId, int]:
        entries = []
        for name, child in node.items():
            if isinstance(child, dict):
                if not child:
                    continue  # only FilesUnder sources without files were under it
                tree_id, size = self._store_nested(child)
                entries.append(TreeEntry(name, "dir", tree_id, size))
            else:
                entries.append(child)
        tree = Tree.from_entries(entries)
        return self.odb.put(tree), tree.size


def _joined(first: list[Any], then: list[Any]) -> list[Any]:
    """One result of :meth:`Snapshotter._scan_for_child` for a directory from those of two runs
    of its sorted names (this process's part, then the child's)."""
    started, blob, count, columns, rows, record, slow, files, read = first
    started2, blob2, count2, columns2, rows2, record2, slow2, files2, read2 = then
    width, width2 = 8 * count, 8 * count2  # stat_columns: five columns of 8 bytes per entry
    merged = b"".join(columns[i * width : (i + 1) * width] + columns2[i * width2 : (i + 1) * width2] for i in range(5))
    if record is not None and record2 is not None:
        record = [b"\0".join(p for p in (record[0], record2[0]) if p), record[1] + record2[1], record[2] + record2[2]]
    else:
        record = None
    return [
        min(started, started2),
        b"\0".join(b for b, n in ((blob, count), (blob2, count2)) if n),
        count + count2,
        merged,
        rows + rows2,
        record,
        slow + slow2,
        files + files2,
        read + read2,
    ]


def _read_all(dfd: int, names: list[str], flags: int, limits: list[int]) -> list[bytes | None]:
    """Up to ``limits[i]`` bytes of each file (None for one that cannot be opened or read): one
    open, one read and one close per file, all driven from C; per file in Python after an error."""
    fds: list[int] = []
    try:
        fds.extend(map(functools.partial(os.open, flags=flags, dir_fd=dfd), names))
        datas: list[bytes | None] = list(map(os.read, fds, limits))  # type: ignore[arg-type]
        # Fewer bytes than listed: shrunk, or no longer a file (opened non-blocking, a FIFO
        # in its place reads as empty). Rare, so only those are fstat-ed.
        for i in itertools.compress(range(len(fds)), map(operator.lt, map(len, datas), map(_ONE_LESS, limits))):  # type: ignore[arg-type]
            if not S_ISREG(os.fstat(fds[i]).st_mode):
                datas[i] = None
        return datas
    except OSError:
        pass
    finally:
        deque(map(os.close, fds), maxlen=0)
    out: list[bytes | None] = []
    for name, limit in zip(names, limits):
        try:
            fd = os.open(name, flags, dir_fd=dfd)
        except OSError:
            out.append(None)
            continue
        try:
            data = os.read(fd, limit)
            out.append(data if len(data) >= limit - 1 or S_ISREG(os.fstat(fd).st_mode) else None)
        except OSError:
            out.append(None)
        finally:
            os.close(fd)
    return out


def _open_regular(path: str) -> io.FileIO:
    """``path`` opened for reading, unbuffered; :class:`PathNotFound` if it is no longer a
    regular file (swapped since it was listed: opened non-blocking, so a FIFO does not block)."""
    f = io.FileIO(os.open(path, _READ_FLAGS), "rb")
    if not S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise _NoLongerAFile(path, "local filesystem (it is no longer a regular file)")
    return f


def _entries(dfd: int, names: list[str], follow: bool) -> tuple[list[str], list[os.stat_result]]:
    """The listed ``names`` that still exist and their lstats (with ``follow``: only those
    :class:`FilesUnder` takes, symlinks to files followed, see :func:`_followed`)."""
    try:
        stats = list(map(functools.partial(os.lstat, dir_fd=dfd), names))
    except FileNotFoundError:  # one vanished since the listing: as if listed a moment later
        names, stats = _lstat_each(dfd, names)
    return _followed(dfd, names, stats) if follow else (names, stats)


def _lstat_each(dfd: int, names: list[str]) -> tuple[list[str], list[os.stat_result]]:
    """Names and lstats of the entries that still exist."""
    kept: list[str] = []
    stats: list[os.stat_result] = []
    for name in names:
        try:
            stats.append(os.lstat(name, dir_fd=dfd))
        except FileNotFoundError:
            continue
        kept.append(name)
    return kept, stats


def _followed(dfd: int, names: list[str], stats: list[os.stat_result]) -> tuple[list[str], list[os.stat_result]]:
    """The entries :class:`FilesUnder` takes: regular files (symlinks to them followed) and real directories."""
    if set(map(stat.S_IFMT, map(_MODE, stats))) <= _FILES_AND_DIRS:
        return names, stats  # the usual case: nothing to follow or leave out
    kept: list[str] = []
    out: list[os.stat_result] = []
    for name, st in zip(names, stats):
        mode = st.st_mode
        if S_ISLNK(mode):
            try:
                st = os.stat(name, dir_fd=dfd)
            except OSError:
                continue  # dangling, or a loop
            if not S_ISREG(st.st_mode):
                continue  # a symlink to a directory is not descended
        elif not (S_ISREG(mode) or S_ISDIR(mode)):
            continue
        kept.append(name)
        out.append(st)
    return kept, out


def _check_names(dirpath: str, names: list[str], forbidden: str = "") -> None:
    """``UnsafePath`` for a name a tree cannot hold (listings never give '/', NUL, '.'
    or '..'), or one with a ``forbidden`` character."""
    joined = "".join(names)
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        for name in names:
            try:
                validate_name(name)
            except UnsafePath as exc:
                raise UnsafePath(os.path.join(dirpath, name), exc.reason) from None
    for ch in forbidden:
        if ch in joined:
            bad = next(n for n in names if ch in n)
            raise UnsafePath(os.path.join(dirpath, bad), f"a name may not contain {ch!r} here")


def _absolute(src: str | os.PathLike[str]) -> str:
    path = os.fspath(src)
    return path if os.path.isabs(path) and "/." not in path and "//" not in path else os.path.abspath(path)


def split_logical_path(path: str) -> tuple[str, ...]:
    """Split a relative ``/``-separated path into validated names."""
    if not isinstance(path, str) or not path:
        raise UnsafePath(str(path), "a path must be a non-empty string")
    if path.startswith("/") or "\\" in path:
        raise UnsafePath(path, "a path must be relative and use '/' separators")
    parts = tuple(path.split("/"))
    for p in parts:
        try:
            validate_name(p)
        except UnsafePath as exc:
            raise UnsafePath(path, exc.reason) from None
    return parts
