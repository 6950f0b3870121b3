"""Pack files and their sorted indexes.

A pack holds many objects back to back; its index lists their ids in sorted
order with where each one lives, so a lookup is a fanout step plus a binary
search over an mmap. Packs are immutable and named by the xxh3-128 of their
bytes. A writer builds a pack in a local temp file, fsyncs it, publishes it,
then publishes the index: a pack without an index is invisible, so a crash
at any instant leaves either nothing or a complete pack behind.

See ``docs/format.md`` for the byte layout.
"""

from __future__ import annotations

import itertools
import operator
import os
import struct
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import xxhash

from .errors import FormatError
from .limits import MAX_PACK_OBJECTS
from .storage import Storage, storage_errors, temp_name

PACK_MAGIC = b"OSPK"
INDEX_MAGIC = b"OSIX"
PACK_VERSION = 1
INDEX_VERSION = 1

_PACK_HEADER = struct.Struct("<4sHBB")  # magic, version, digest size, reserved
_RECORD_TAIL = struct.Struct("<BBQQ")  # type tag, codec, stored length, raw length
_INDEX_HEADER = struct.Struct("<4sHBBQ")  # magic, version, digest size, reserved, count
_INDEX_ENTRY = struct.Struct("<QQQBB")  # offset, stored length, raw length, type tag, codec
_FANOUT = struct.Struct("<256I")
_CHECKSUM = struct.Struct("<Q")

PACK_DIR = "packs"
PACK_NAME_SIZE = 16  # packs are named by the xxh3-128 of their bytes, whatever the id hash
DEFAULT_PACK_SIZE = 64 * 1024 * 1024


def pack_path(name: str) -> str:
    return f"{PACK_DIR}/{name}.pack"


def index_path(name: str) -> str:
    return f"{PACK_DIR}/{name}.idx"


class IndexEntry(NamedTuple):
    """Where one object lives inside a pack (a named tuple: one is made per object written or looked up)."""

    offset: int
    stored_length: int
    raw_length: int
    type_tag: int
    codec: int


_new_entry = tuple.__new__
"""``_new_entry(IndexEntry, fields)``: a named tuple without its Python-level ``__new__`` (hot loops)."""


def encode_index(entries: list[tuple[bytes, IndexEntry]], digest_size: int, pack_name: bytes) -> bytes:
    """Serialize an index (entries in any order; they are sorted here)."""
    if len(entries) > MAX_PACK_OBJECTS:
        raise ValueError(f"a pack of {len(entries)} objects is over the format's {MAX_PACK_OBJECTS}")
    entries = sorted(entries, key=operator.itemgetter(0))
    ids = [oid for oid, _ in entries]
    firsts = bytes([oid[0] for oid in ids])
    fanout = [bisect_right(firsts, b) for b in range(256)]  # ids are sorted: so are their first bytes
    parts = [
        _INDEX_HEADER.pack(INDEX_MAGIC, INDEX_VERSION, digest_size, 0, len(entries)),
        _FANOUT.pack(*fanout),
        b"".join(ids),
        b"".join(itertools.starmap(_INDEX_ENTRY.pack, [e for _, e in entries])),  # fields in _INDEX_ENTRY order
        pack_name,
    ]
    body = b"".join(parts)
    return body + _CHECKSUM.pack(xxhash.xxh3_64_intdigest(body))


class PackIndex:
    """A parsed, read-only pack index (backed by bytes or an mmap view)."""

    def __init__(self, name: str, data: bytes | memoryview, digest_size: int) -> None:
        self.name = name
        self.digest_size = digest_size
        view = memoryview(data)
        minimum = _INDEX_HEADER.size + _FANOUT.size + _CHECKSUM.size
        if len(view) < minimum:
            raise FormatError(f"pack index {name} is truncated ({len(view)} bytes)")
        magic, version, ds, _, count = _INDEX_HEADER.unpack_from(view, 0)
        if magic != INDEX_MAGIC:
            raise FormatError(f"pack index {name} has a bad magic number")
        if version != INDEX_VERSION:
            raise FormatError(f"pack index {name} has unsupported version {version}")
        if ds != digest_size:
            raise FormatError(f"pack index {name} uses {ds}-byte ids, the repository {digest_size}-byte ids")
        if count > MAX_PACK_OBJECTS:
            raise FormatError(f"pack index {name} claims {count} objects; the format allows at most {MAX_PACK_OBJECTS}")
        expected = minimum + count * (ds + _INDEX_ENTRY.size) + PACK_NAME_SIZE
        if len(view) != expected:
            raise FormatError(f"pack index {name} is {len(view)} bytes, expected {expected}")
        (checksum,) = _CHECKSUM.unpack_from(view, len(view) - _CHECKSUM.size)
        if xxhash.xxh3_64_intdigest(view[: len(view) - _CHECKSUM.size]) != checksum:
            raise FormatError(f"pack index {name} fails its checksum")
        self.count = count
        self._fanout: tuple[int, ...] = _FANOUT.unpack_from(view, _INDEX_HEADER.size)
        if self._fanout[255] != count or any(a > b for a, b in zip(self._fanout, self._fanout[1:])):
            raise FormatError(f"pack index {name} has an inconsistent fanout table")
        self._ids_at = _INDEX_HEADER.size + _FANOUT.size
        self._entries_at = self._ids_at + count * ds
        self.pack_name = bytes(view[self._entries_at + count * _INDEX_ENTRY.size :][:PACK_NAME_SIZE]).hex()
        self._view = view
        self._prefixes: array[int] | None = None

    def __len__(self) -> int:
        return int(self.count)

    def id_at(self, i: int) -> bytes:
        start = self._ids_at + i * self.digest_size
        return bytes(self._view[start : start + self.digest_size])

    def entry_at(self, i: int) -> IndexEntry:
        return _new_entry(IndexEntry, _INDEX_ENTRY.unpack_from(self._view, self._entries_at + i * _INDEX_ENTRY.size))

    def _prefix_table(self) -> array[int] | None:
        """The first 8 bytes of every id as big-endian integers, in index order.

        Built once with C-level copies (about 1 ms per 100k ids), it lets
        :meth:`find` binary-search with :func:`bisect.bisect_left` in C
        instead of slicing the index in a Python loop.
        """
        table = self._prefixes
        if table is None and self.digest_size % 8 == 0:
            words = array("Q")
            words.frombytes(self._view[self._ids_at : self._ids_at + self.count * self.digest_size])
            table = words[:: self.digest_size // 8]
            if sys.byteorder == "little":
                table.byteswap()
            self._prefixes = table
        return table

    def prefixes(self) -> array[int] | None:
        """The first 8 bytes of every id as sorted big-endian integers (None for ids not a multiple of 8 bytes)."""
        return self._prefix_table()

    def find(self, oid: bytes) -> int:
        """Position of ``oid`` in this index, or -1."""
        first = oid[0]
        lo = self._fanout[first - 1] if first else 0
        hi = self._fanout[first]
        view, ds, base = self._view, self.digest_size, self._ids_at
        table = self._prefix_table()
        if table is not None and len(oid) == ds:
            key = int.from_bytes(oid[:8], "big")
            i = bisect_left(table, key, lo, hi)
            while i < hi and table[i] == key:
                start = base + i * ds
                if view[start : start + ds] == oid:
                    return i
                i += 1
            return -1
        while lo < hi:
            mid = (lo + hi) >> 1
            start = base + mid * ds
            probe = view[start : start + ds]
            if probe == oid:
                return mid
            if bytes(probe) < oid:
                lo = mid + 1
            else:
                hi = mid
        return -1

    def find_many(self, oids: list[bytes]) -> list[int]:
        """:meth:`find` for a batch (positions, -1 where absent), with the bisections done by C-level ``map``."""
        table = self._prefix_table()
        ds = self.digest_size
        if table is None or any(len(o) != ds for o in oids):
            return [self.find(o) for o in oids]
        keys = [int.from_bytes(o[:8], "big") for o in oids]
        at = list(map(bisect_left, itertools.repeat(table), keys))
        view, base, count = self._view, self._ids_at, self.count
        out = []
        for oid, key, i in zip(oids, keys, at):
            if i < count and table[i] == key:
                start = base + i * ds
                # Another id sharing the 8-byte prefix is all but impossible: find() copes.
                out.append(i if view[start : start + ds] == oid else self.find(oid))
            else:
                out.append(-1)
        return out

    def get(self, oid: bytes) -> IndexEntry | None:
        i = self.find(oid)
        return self.entry_at(i) if i >= 0 else None

    def ids(self) -> Iterator[bytes]:
        for i in range(self.count):
            yield self.id_at(i)

    def items(self) -> Iterator[tuple[bytes, IndexEntry]]:
        for i in range(self.count):
            yield self.id_at(i), self.entry_at(i)

    def with_prefix(self, prefix: bytes, odd_nibble: int | None = None) -> list[bytes]:
        """Ids starting with ``prefix`` (then, if given, the high nibble ``odd_nibble``)."""
        if not prefix:
            return [oid for oid in self.ids() if odd_nibble is None or oid[0] >> 4 == odd_nibble]
        first = prefix[0]
        lo = self._fanout[first - 1] if first else 0
        hi = self._fanout[first]
        out = []
        for i in range(lo, hi):
            oid = self.id_at(i)
            if oid.startswith(prefix) and (odd_nibble is None or (len(oid) > len(prefix) and oid[len(prefix)] >> 4 == odd_nibble)):
                out.append(oid)
        return out


SYNC_EVERY = 16 * 1024 * 1024
"""Bytes written between background fdatasyncs of a growing pack."""

_SMALL_RECORD = 64 * 1024  # records below this are gathered in memory ...
_BUFFER_LIMIT = 1024 * 1024  # ... and written when this many bytes wait


class _BackgroundSync:
    """fdatasync a growing file on a helper thread while the writer goes on.

    By the time the pack is finished most of it is already on disk, so the
    final fsync waits for the last few MiB instead of the whole pack. An
    error is kept and raised by :meth:`close`: Linux reports a writeback
    error to the first fsync that asks, which may be this thread's.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cv = threading.Condition()
        self._pending = False
        self._closed = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="objstore-sync", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        with self._cv:
            self._pending = True
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                self._pending = False
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._error = exc
                return

    def close(self) -> None:
        """Stop the thread; raise the error a background sync met, if any."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error


class PackWriter:
    """Appends objects to a new pack in a local temp file, then publishes it."""

    def __init__(self, storage: Storage, digest_size: int) -> None:
        self.storage = storage
        self.digest_size = digest_size
        self._path = os.path.join(storage.local_temp_dir(), temp_name(".pack.tmp"))
        with storage_errors(self._path):
            self._fd: int | None = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self._hasher = xxhash.xxh3_128()
        self._entries: dict[bytes, IndexEntry] = {}
        self._offset = 0
        # A pack for local storage is renamed into place, so it must be on
        # disk first; one for a remote is a staging copy that gets uploaded.
        self._durable = storage.is_local
        self._synced_to = 0
        self._syncer: _BackgroundSync | None = None
        self._buf = bytearray()  # small records not written yet
        self.index_data: bytes | None = None
        try:
            self._write([_PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION, digest_size, 0)])
        except BaseException:
            self.abort()
            raise

    def _write(self, parts: Sequence[bytes | memoryview]) -> None:
        # A small record is appended to a buffer that goes out in one write
        # per ~1 MiB (thousands of small files, few syscalls). A large one is
        # written at once with writev: header and payload without being
        # joined (no copy of a large chunk), in a single syscall.
        total = sum(len(p) for p in parts)
        if total < _SMALL_RECORD:
            for p in parts:
                self._buf += p
            self._offset += total
            if len(self._buf) >= _BUFFER_LIMIT:
                self._flush_buffer()
            return
        self._flush_buffer()
        self._write_now(parts)
        self._offset += total
        self._maybe_sync()

    def _flush_buffer(self) -> None:
        if not self._buf:
            return
        data, self._buf = self._buf, bytearray()
        self._write_now([data])
        self._maybe_sync()

    def _write_now(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        assert self._fd is not None
        views = [memoryview(p).cast("B") for p in parts]
        for v in views:
            self._hasher.update(v)
        with storage_errors(self._path):
            while views:
                n = os.writev(self._fd, views)
                while views and n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                if views and n:
                    views[0] = views[0][n:]

    def _maybe_sync(self) -> None:
        if self._durable and self._offset - self._synced_to >= SYNC_EVERY:
            self._synced_to = self._offset
            if self._syncer is None:
                assert self._fd is not None
                self._syncer = _BackgroundSync(self._fd)
            self._syncer.kick()

    def _stop_syncer(self) -> None:
        syncer, self._syncer = self._syncer, None
        if syncer is not None:
            syncer.close()

    @property
    def size(self) -> int:
        return self._offset

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._entries

    def add(
        self,
        oid: bytes,
        type_tag: int,
        codec: int,
        stored: bytes | memoryview | Sequence[bytes | memoryview],
        raw_length: int,
    ) -> None:
        """Append one object; ``stored`` may be a list of buffers (written back to back)."""
        if oid in self._entries:
            return
        parts: list[bytes | memoryview] = list(stored) if isinstance(stored, (list, tuple)) else [stored]  # type: ignore[list-item]
        length = sum(len(p) for p in parts)
        header = oid + _RECORD_TAIL.pack(type_tag, codec, length, raw_length)
        self._entries[oid] = IndexEntry(self._offset + len(header), length, raw_length, type_tag, codec)
        self._write([header, *parts])

    def add_many(self, records: Sequence[tuple[bytes, int, int, bytes | memoryview, int]]) -> None:
        """Append many small objects ``(id, type tag, codec, stored, raw length)`` with one buffer write.

        What :meth:`add` does for each, without its per-call work: a
        directory's worth of small files costs one append.
        """
        entries = self._entries
        tail = _RECORD_TAIL.pack
        offset = self._offset
        parts: list[bytes | memoryview] = []
        for oid, type_tag, codec, stored, raw_length in records:
            if oid in entries:
                continue
            n = len(stored)
            offset += len(oid) + _RECORD_TAIL.size
            entries[oid] = _new_entry(IndexEntry, (offset, n, raw_length, type_tag, codec))
            offset += n
            parts += (oid, tail(type_tag, codec, n, raw_length), stored)
        if parts:
            self._write([b"".join(parts)])
            assert self._offset == offset

    def read_back(self, oid: bytes) -> tuple[IndexEntry, bytes] | None:
        """Bytes of an object written to this (unpublished) pack."""
        entry = self._entries.get(oid)
        if entry is None or self._fd is None:
            return None
        with storage_errors(self._path):
            self._flush_buffer()
        return entry, os.pread(self._fd, entry.stored_length, entry.offset) if entry.stored_length else b""

    def finish(self) -> str | None:
        """Fsync and publish pack then index; return the pack name (None if empty)."""
        try:
            with storage_errors(self._path):
                assert self._fd is not None
                self._flush_buffer()
                self._stop_syncer()
                if self._durable:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
            if not self._entries:
                os.unlink(self._path)
                return None
            raw_name = self._hasher.digest()
            name = raw_name.hex()
            index = encode_index(list(self._entries.items()), self.digest_size, raw_name)
            self.storage.publish_file(self._path, pack_path(name))
            self.storage.write_atomic(index_path(name), index)
            self.index_data = index
            return name
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            try:
                self._stop_syncer()
            except OSError:
                pass  # the pack is being thrown away
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
