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

import functools
import itertools
import operator
import os
import struct
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

import xxhash

from . import codec as codecs
from .errors import FormatError
from .limits import MAX_GROUP_MEMBER, MAX_GROUP_MEMBERS, MAX_GROUP_RAW, MAX_PACK_OBJECTS
from .staging import hold
from .storage import Storage, storage_errors, temp_name

PACK_MAGIC = b"OSPK"
INDEX_MAGIC = b"OSIX"
PACK_VERSION = 1
GROUPED_PACK_VERSION = 2
"""Packs that may hold group records (repository format version 3)."""
PACK_VERSIONS = (PACK_VERSION, GROUPED_PACK_VERSION)
INDEX_VERSION = 1

_PACK_HEADER = struct.Struct("<4sHBB")  # magic, version, digest size, reserved
_RECORD_TAIL = struct.Struct("<BBQQ")  # type tag, codec, stored length, raw length
_INDEX_HEADER = struct.Struct("<4sHBBQ")  # magic, version, digest size, reserved, count
_INDEX_ENTRY = struct.Struct("<QQQBB")  # offset, stored length, raw length, type tag, codec
_FANOUT = struct.Struct("<256I")
_CHECKSUM = struct.Struct("<Q")
_PREFIX = operator.itemgetter(slice(0, 8))
_FIRST, _SECOND, _THIRD = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)
_from_big_endian = functools.partial(int.from_bytes, byteorder="big")
_GROUP_COUNT = struct.Struct("<I")  # members in a group record

GROUP_TAG = 0
"""Type tag of a group record's header (no object has tag 0)."""
GROUP_SIZE = 512 * 1024
"""Raw bytes a writer gathers in one group before sealing it (see docs/format.md#groups)."""
GROUP_MEMBER_SIZE = 16 * 1024
"""Typed encodings up to this size are grouped; larger ones get a record of their own."""
GROUP_MIN_LEVEL = 3
"""Groups are compressed at the repository's zstd level, but at least this one."""
GROUP_MAX_MEMBERS = 8192
"""A writer seals a group at this many members even if it is under :data:`GROUP_SIZE`."""

SET_LOOKUP_MAX = 4096
"""Indexes of at most this many ids answer batch lookups from a set of them (:meth:`PackIndex.absent`),
kept while the index is open (under ~0.5 MB each)."""

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


def encode_group(encodings: Sequence[bytes | memoryview], level: int) -> tuple[bytes, int]:
    """The stored bytes of a group record of these typed encodings, and its raw length.

    The member table (count, then each length) is followed by one zstd frame
    of the encodings back to back, in table order. Ids are not stored: each
    is the hash of its member, computed when the group is read.
    """
    if not 1 <= len(encodings) <= MAX_GROUP_MEMBERS:
        raise ValueError(f"a group holds 1..{MAX_GROUP_MEMBERS} members, not {len(encodings)}")
    lengths = array("I", map(len, encodings))
    if sys.byteorder != "little":
        lengths.byteswap()
    raw = b"".join(encodings)
    if len(raw) > MAX_GROUP_RAW:
        raise ValueError(f"a group of {len(raw)} raw bytes is over the format's {MAX_GROUP_RAW}")
    return _GROUP_COUNT.pack(len(encodings)) + lengths.tobytes() + codecs.compress_frame(raw, level), len(raw)


def encode_groups(
    encodings: Sequence[tuple[bytes, bytes]], group_size: int, level: int
) -> list[tuple[list[tuple[bytes, int, int]], bytes, int]]:
    """Typed encodings ``(id, encoding)`` of at most :data:`GROUP_MEMBER_SIZE` bytes cut into
    groups of about ``group_size`` raw bytes (a rest under a quarter of that joins the last
    group; :data:`GROUP_MAX_MEMBERS` members at most) and compressed as a writer seals its
    open group: ``(members, stored, raw length)`` for :meth:`PackWriter.add_group` each.

    Per member, only C-level maps run (it is called on a pool thread, and Python
    there would hold the GIL while the reading thread waits for it)."""
    out: list[tuple[list[tuple[bytes, int, int]], bytes, int]] = []
    level = max(level, GROUP_MIN_LEVEL)
    ends = list(itertools.accumulate(map(len, map(_SECOND, encodings))))
    n = len(ends)
    total = ends[-1] if ends else 0
    start = 0
    while start < n:
        base = ends[start - 1] if start else 0
        last = min(bisect_left(ends, base + group_size, start), n - 1, start + GROUP_MAX_MEMBERS - 1)
        if total - ends[last] < group_size // 4:
            last = min(n - 1, start + GROUP_MAX_MEMBERS - 1)
        part = encodings[start : last + 1]
        encs = list(map(_SECOND, part))
        stored, raw_length = encode_group(encs, level)
        out.append((list(zip(map(_FIRST, part), map(_FIRST, encs), map(len, encs))), stored, raw_length))
        start = last + 1
    return out


@dataclass(frozen=True)
class Group:
    """A decoded group record: where each member (by id) lies in ``raw``."""

    members: dict[bytes, tuple[int, int]]
    """id -> (start, length); every id was computed from the member's bytes."""
    raw: bytes

    def member(self, oid: bytes) -> memoryview | None:
        """The typed encoding of a member (it hashes to ``oid``); None if it is not in the group."""
        hit = self.members.get(oid)
        if hit is None:
            return None
        start, length = hit
        return memoryview(self.raw)[start : start + length]


def group_table(stored: bytes | memoryview) -> tuple[list[int], int, int]:
    """Parse a group's member table: ``(member lengths, frame offset, raw total)``.

    ``FormatError`` if the table does not fit the stored bytes or breaks a
    bound (docs/format.md#bounds): member count, a member length, or the
    sum of the lengths. Nothing is allocated beyond the table.
    """
    view = memoryview(stored)
    if len(view) < _GROUP_COUNT.size:
        raise FormatError(f"group record of {len(view)} bytes has no member table")
    (count,) = _GROUP_COUNT.unpack_from(view, 0)
    if not 1 <= count <= MAX_GROUP_MEMBERS:
        raise FormatError(f"group claims {count} members; the format allows 1..{MAX_GROUP_MEMBERS}")
    end = _GROUP_COUNT.size + 4 * count
    if end > len(view):
        raise FormatError(f"group claims {count} members, whose table does not fit its {len(view)} stored bytes")
    lengths = array("I")
    lengths.frombytes(view[_GROUP_COUNT.size : end])
    if sys.byteorder != "little":
        lengths.byteswap()
    if min(lengths) < 1 or max(lengths) > MAX_GROUP_MEMBER:
        raise FormatError(f"a group member claims {min(lengths) or max(lengths)} bytes; the format allows 1..{MAX_GROUP_MEMBER}")
    total = sum(lengths)
    if total > MAX_GROUP_RAW:
        raise FormatError(f"group members sum to {total} bytes; the format allows at most {MAX_GROUP_RAW}")
    return lengths.tolist(), end, total


def decode_group(stored: bytes | memoryview, hash: Callable[[bytes | memoryview], bytes]) -> Group:
    """Decode a group record's stored bytes; ``hash`` gives each member's id.

    The zstd frame must declare exactly the sum of the member lengths
    (checked before decompressing, so a bomb costs a header parse) and
    carry a checksum of its content, which must match.
    """
    lengths, frame_at, total = group_table(stored)
    frame = memoryview(stored)[frame_at:]
    if len(frame) < 6 or not frame[4] & 0x04:  # Frame_Header_Descriptor: Content_Checksum_flag
        raise FormatError("group frame carries no content checksum")
    raw = bytes(codecs.decode_stored(codecs.ZSTD, frame, total))
    view = memoryview(raw)
    members: dict[bytes, tuple[int, int]] = {}
    start = 0
    for length in lengths:
        members[hash(view[start : start + length])] = (start, length)
        start += length
    return Group(members, raw)


def encode_index(
    entries: list[tuple[bytes, IndexEntry]] | Mapping[bytes, IndexEntry], digest_size: int, pack_name: bytes
) -> bytes:
    """Serialize an index (entries in any order; they are sorted here).

    The entries are packed in the order given, which is the order they sit
    in memory, and only then put in id order through a permutation of
    indices sorted by id (C-level maps throughout): gathering the entries
    themselves in id order jumped around memory, and with 100k entries that
    cost more than the sort (~165 -> ~105 ms).
    """
    if len(entries) > MAX_PACK_OBJECTS:
        raise ValueError(f"a pack of {len(entries)} objects is over the format's {MAX_PACK_OBJECTS}")
    if isinstance(entries, Mapping):
        ids = list(entries)
        fields: Iterable[IndexEntry] = entries.values()
    else:
        ids = list(map(_FIRST, entries))
        fields = map(_SECOND, entries)
    packed = list(itertools.starmap(_INDEX_ENTRY.pack, fields))  # fields in _INDEX_ENTRY order
    order = sorted(range(len(ids)), key=ids.__getitem__)
    joined = b"".join(map(ids.__getitem__, order))
    firsts = joined[::digest_size]
    fanout = [bisect_right(firsts, b) for b in range(256)]  # ids are sorted: so are their first bytes
    parts = [
        _INDEX_HEADER.pack(INDEX_MAGIC, INDEX_VERSION, digest_size, 0, len(ids)),
        _FANOUT.pack(*fanout),
        joined,
        b"".join(map(packed.__getitem__, order)),
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
        self._id_set: frozenset[bytes] | None = None

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

    def absent(self, oids: list[bytes]) -> list[bytes]:
        """The ids of ``oids`` not in this index, in order.

        A small index (at most :data:`SET_LOOKUP_MAX` ids) answers from a set
        of its ids, made once: a hash probe per id, where :meth:`find_many`
        costs about 1.5 us per id even against a pack of two objects (a
        store's first log checks each directory's new files against every
        pack the store already has).
        """
        if self.count > SET_LOOKUP_MAX:
            return [o for o, i in zip(oids, self.find_many(oids)) if i < 0]
        ids = self._id_set
        if ids is None:
            ids = self._id_set = frozenset(self.ids())
        return list(itertools.filterfalse(ids.__contains__, oids))

    def find_many(self, oids: list[bytes]) -> list[int]:
        """:meth:`find` for a batch (positions, -1 where absent), with the bisections done by C-level ``map``."""
        table = self._prefix_table()
        ds = self.digest_size
        if table is None or set(map(len, oids)) - {ds}:
            return [self.find(o) for o in oids]
        count = self.count
        out = [-1] * len(oids)
        if not count:
            return out
        keys = list(map(_from_big_endian, map(_PREFIX, oids)))
        at = list(map(bisect_left, itertools.repeat(table), keys))
        # The prefix at each insertion point (the last one past the end): equal only for a hit, or
        # for another id sharing 8 bytes (all but impossible: find() copes).
        found = map(table.__getitem__, map(min, at, itertools.repeat(count - 1)))
        view, base = self._view, self._ids_at
        for j in itertools.compress(range(len(oids)), map(operator.eq, found, keys)):
            i, oid = at[j], oids[j]
            start = base + i * ds
            out[j] = i if view[start : start + ds] == oid else self.find(oid)
        return out

    def get(self, oid: bytes) -> IndexEntry | None:
        i = self.find(oid)
        return self.entry_at(i) if i >= 0 else None

    def ids(self) -> Iterator[bytes]:
        """Every id, in index order: sliced from the id table by C-level maps, lazily."""
        ds, base = self.digest_size, self._ids_at
        end = base + self.count * ds
        return map(bytes, map(self._view.__getitem__, map(slice, range(base, end, ds), range(base + ds, end + ds, ds))))

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
_IOV_MAX = 1024  # buffers per writev (Linux's UIO_MAXIOV; POSIX guarantees at least 16)
if hasattr(os, "sysconf"):
    try:
        _IOV_MAX = max(16, min(_IOV_MAX, os.sysconf("SC_IOV_MAX")))
    except (ValueError, OSError):
        pass


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

    def __init__(self, storage: Storage, digest_size: int, *, group_size: int = 0, level: int = codecs.DEFAULT_LEVEL) -> None:
        """``group_size`` > 0 gathers small objects into group records of about
        that many raw bytes, compressed at ``level`` (a pack of version 2); 0
        writes every object as a record of its own (a pack of version 1)."""
        self.storage = storage
        self.digest_size = digest_size
        self.group_size = group_size
        self.level = level
        self._group: dict[bytes, tuple[int, bytes]] = {}  # the open group: id -> (type tag, typed encoding)
        self._group_raw = 0
        self.group_bytes = 0
        """Bytes of the group records sealed so far (headers included)."""
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
            if not self._durable:
                # a staged copy for an upload: locked while this writer lives,
                # so a sweep by another process leaves it alone (objstore.staging)
                with storage_errors(self._path):
                    hold(self._fd)
            version = GROUPED_PACK_VERSION if group_size else PACK_VERSION
            self._write([_PACK_HEADER.pack(PACK_MAGIC, version, digest_size, 0)])
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
        update = self._hasher.update
        for v in views:
            update(v)
        with storage_errors(self._path):
            at = 0  # views[at:] are still to be written
            while at < len(views):
                n = os.writev(self._fd, views[at : at + _IOV_MAX])
                while at < len(views) and n >= len(views[at]):
                    n -= len(views[at])
                    at += 1
                if n:
                    views[at] = views[at][n:]

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
    def temp_path(self) -> str:
        """The local file the pack is written to until it is published (a unique name)."""
        return self._path

    @property
    def size(self) -> int:
        """Bytes written so far, plus the raw bytes of the open group (an upper bound)."""
        return self._offset + self._group_raw

    def __len__(self) -> int:
        return len(self._entries) + len(self._group)

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._entries or oid in self._group

    def ids(self) -> Iterator[bytes]:
        """Ids of every object added so far (the open group's included)."""
        yield from self._entries
        yield from self._group

    def add(
        self,
        oid: bytes,
        type_tag: int,
        codec: int,
        stored: bytes | memoryview | Sequence[bytes | memoryview],
        raw_length: int,
    ) -> None:
        """Append one object; ``stored`` may be a list of buffers (written back to back)."""
        if oid in self._entries or oid in self._group:
            return
        parts: list[bytes | memoryview] = list(stored) if isinstance(stored, (list, tuple)) else [stored]  # type: ignore[list-item]
        if codec == codecs.GROUPED:
            raise ValueError("a group member's stored bytes are its group's: add its typed encoding instead")
        if self.group_size and raw_length <= GROUP_MEMBER_SIZE:
            joined = parts[0] if len(parts) == 1 else b"".join(parts)
            encoded = joined if codec == codecs.RAW else codecs.decode_stored(codec, joined, raw_length)
            self.add_member(oid, type_tag, bytes(encoded))
            return
        length = sum(len(p) for p in parts)
        header = oid + _RECORD_TAIL.pack(type_tag, codec, length, raw_length)
        self._entries[oid] = IndexEntry(self._offset + len(header), length, raw_length, type_tag, codec)
        self._write([header, *parts])

    def add_records(self, type_tag: int, records: Sequence[tuple[bytes, int, Sequence[bytes | memoryview], int]]) -> None:
        """Append large objects ``(id, codec, stored parts, raw length)`` of one type, all with one writev.

        What :meth:`add` does for each (the parts of a record are written back
        to back, nothing large is joined or copied), in as few syscalls as the
        kernel allows: a run of big raw chunks costs one write. A record small
        enough for a group goes through :meth:`add`.
        """
        entries = self._entries
        group = self._group
        tail = _RECORD_TAIL.pack
        offset = self._offset
        iov: list[bytes | memoryview] = []
        for oid, codec, parts, raw_length in records:
            if oid in entries or oid in group:
                continue
            if codec == codecs.GROUPED or (self.group_size and raw_length <= GROUP_MEMBER_SIZE):
                if iov:
                    self._write(iov)
                    iov = []
                self.add(oid, type_tag, codec, list(parts), raw_length)
                offset = self._offset
                continue
            length = raw_length if codec == codecs.RAW else sum(len(p) for p in parts)
            header = oid + tail(type_tag, codec, length, raw_length)
            offset += len(header)
            entries[oid] = _new_entry(IndexEntry, (offset, length, raw_length, type_tag, codec))
            offset += length
            if len(parts) > 1 and len(parts[0]) < 64:  # a small first part (a type tag) rides with the header
                iov.append(header + parts[0])
                iov += parts[1:]
            else:
                iov.append(header)
                iov += parts
        if iov:
            self._flush_buffer()
            self._write_now(iov)
            self._offset = offset
            self._maybe_sync()

    def add_many(self, records: Sequence[tuple[bytes, int, int, bytes | memoryview, int]]) -> None:
        """Append many small objects ``(id, type tag, codec, stored, raw length)`` with one buffer write.

        What :meth:`add` does for each, without its per-call work: a
        directory's worth of small files costs one append.
        """
        if self.group_size:  # small objects go to the open group, one by one
            for record in records:
                self.add(*record)
            return
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

    def add_member(self, oid: bytes, type_tag: int, encoded: bytes) -> None:
        """Put one small typed encoding in the open group (sealed at :data:`GROUP_SIZE`)."""
        if oid in self._entries or oid in self._group:
            return
        self._group[oid] = (type_tag, encoded)
        self._group_raw += len(encoded)
        if self._group_raw >= self.group_size or len(self._group) >= GROUP_MAX_MEMBERS:
            self.seal_group()

    def missing(self, oids: Iterable[bytes]) -> list[bytes]:
        """The ids of ``oids`` not in this pack (nor its open group), in order."""
        out = list(itertools.filterfalse(self._entries.__contains__, oids))
        return list(itertools.filterfalse(self._group.__contains__, out)) if self._group else out

    def add_group(self, members: Sequence[tuple[bytes, int, int]], stored: bytes, raw_length: int) -> None:
        """Append a group record made elsewhere by :func:`encode_group` (on a pool thread, while
        the caller reads on); ``members`` are ``(id, type tag, typed-encoding length)`` in the
        group's table order. Ids already in this pack keep their first record (and get no entry here)."""
        if not self.group_size:
            raise ValueError("a pack of version 1 holds no group records")
        if sum(map(_THIRD, members)) != raw_length:
            raise ValueError("the group's member lengths do not add up to its raw length")
        header = bytes(self.digest_size) + _RECORD_TAIL.pack(GROUP_TAG, codecs.GROUPED, len(stored), raw_length)
        at = self._offset + len(header)
        entries, size = self._entries, len(stored)
        if not (entries.keys().isdisjoint(map(_FIRST, members)) and self._group.keys().isdisjoint(map(_FIRST, members))):
            members = [m for m in members if m[0] not in entries and m[0] not in self._group]
        fields = zip(repeat(at), repeat(size), map(_THIRD, members), map(_SECOND, members), repeat(codecs.GROUPED))
        entries.update(zip(map(_FIRST, members), map(_new_entry, repeat(IndexEntry), fields)))
        self.group_bytes += len(header) + size
        self._write([header, stored])

    def seal_group(self) -> None:
        """Compress the open group and append it as one group record."""
        if not self._group:
            return
        members = self._group
        stored, raw_length = encode_group([enc for _, enc in members.values()], max(self.level, GROUP_MIN_LEVEL))
        header = bytes(self.digest_size) + _RECORD_TAIL.pack(GROUP_TAG, codecs.GROUPED, len(stored), raw_length)
        at = self._offset + len(header)
        for oid, (tag, enc) in members.items():
            self._entries[oid] = IndexEntry(at, len(stored), len(enc), tag, codecs.GROUPED)
        self._group = {}
        self._group_raw = 0
        self.group_bytes += len(header) + len(stored)
        self._write([header, stored])

    def read_back(self, oid: bytes) -> tuple[IndexEntry, bytes] | None:
        """Bytes of an object written to this (unpublished) pack.

        A member of the open group comes back as a raw record of its own.
        """
        pending = self._group.get(oid)
        if pending is not None:
            tag, enc = pending
            return IndexEntry(0, len(enc), len(enc), tag, codecs.RAW), enc
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
                self.seal_group()
                self._flush_buffer()
                self._stop_syncer()
                if self._durable:
                    os.fsync(self._fd)
                    os.close(self._fd)
                    self._fd = None
                # a staged pack keeps its fd, and with it its lock, until uploaded
            if not self._entries:
                self.abort()
                return None
            raw_name = self._hasher.digest()
            name = raw_name.hex()
            index = encode_index(self._entries, self.digest_size, raw_name)
            self.storage.publish_file(self._path, pack_path(name))
            self.storage.write_atomic(index_path(name), index)
            self.index_data = index
            self._close()
            return name
        except BaseException:
            self.abort()
            raise

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        try:
            try:
                self._stop_syncer()
            except OSError:
                pass  # the pack is being thrown away
        finally:
            try:
                # unlinked before its fd closes: a staged file is never seen unlocked
                os.unlink(self._path)
            except FileNotFoundError:
                pass
            finally:
                self._close()
