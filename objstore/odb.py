"""The object database: content-addressed objects in packs on a Storage.

Writes go through one open :class:`PackWriter` (objects already stored are
skipped); :meth:`ObjectDatabase.flush` publishes it. Reads locate an object
through the pack indexes, decompress it and check that it hashes to its id
before handing it out, so corrupt bytes are never returned as data.
"""

from __future__ import annotations

import os
import threading
import uuid
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from . import codec, limits
from .errors import AmbiguousId, CorruptObject, FormatError, ObjectNotFound, TooLarge, WrongObjectType
from .ids import MIN_PREFIX, HashAlgorithm, ObjectId, from_hex, is_hex, to_hex
from .objects import KIND_NAMES, Blob, ChunkedBlob, StoredObject, Tree, decode
from .packs import (
    DEFAULT_PACK_SIZE,
    GROUP_MEMBER_SIZE,
    PACK_DIR,
    Group,
    IndexEntry,
    PackIndex,
    PackWriter,
    decode_group,
    encode_groups,
    index_path,
    pack_path,
)
from .storage import LocalStorage, Storage

T = TypeVar("T", bound=StoredObject)

_CACHE_SIZE = 4096
"""Decoded trees, commits and chunk lists kept in memory."""

_GROUP_CACHE = 16
"""Decoded group records kept in memory (about 8 MiB at the default group size):
reading the members of a pack in pack order decompresses each group once."""


_RUN_GAP = 256 * 1024
"""Bytes of other records :meth:`ObjectDatabase.iter_encoded` reads over rather than start a new read."""
_RUN_SPAN = 8 * 1024 * 1024
"""The most one of its reads covers."""
_BATCH = 1024
"""Records of a run (not grouped) :meth:`ObjectDatabase.iter_encoded_batches` yields at once."""
_UNGROUPED = 64
"""Ids :meth:`ObjectDatabase.iter_by_group` looks up one by one before it takes the rest as not grouped."""


class _Publishing:
    """A full pack being published on a helper thread while its writer's thread fills the next.

    Publishing a local pack waits on fsyncs (the pack's tail, its index,
    their directory); a large snapshot crosses several pack boundaries,
    and the storing thread would otherwise stand still at each one while
    the pool has nothing left to hand it. The pack's objects are answered
    from :attr:`writer` (its id table outlives the file descriptor) until
    the thread is joined and the indexes refreshed.
    """

    def __init__(self, odb: ObjectDatabase, writer: PackWriter) -> None:
        self.writer = writer
        self.error: BaseException | None = None
        self._odb = odb
        self._thread = threading.Thread(target=self._run, name="objstore-publish", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._odb._publish_sealed(self.writer)  # sealed and counted by the writer's thread
        except BaseException as exc:  # raised by join(), on the writer's thread
            self.error = exc

    def join(self) -> None:
        """Wait for the pack to be published; raise what publishing it raised."""
        self._thread.join()
        if self.error is not None:
            raise self.error


class ObjectDatabase:
    """has / get / put over the packs of one repository."""

    def __init__(
        self,
        storage: Storage,
        algorithm: HashAlgorithm,
        *,
        level: int = codec.DEFAULT_LEVEL,
        pack_size: int = DEFAULT_PACK_SIZE,
        index_cache_dir: str | None = None,
        max_blob: int = limits.max_blob_size(512 * 1024, 512 * 1024),
        group_size: int = 0,
    ) -> None:
        """``group_size`` > 0 (format version 3) stores small objects in group
        records of about that many raw bytes; 0 gives every object its own record."""
        self.storage = storage
        self.algorithm = algorithm
        self.digest_size = algorithm.digest_size
        self.level = level
        self.pack_size = pack_size
        self.group_size = group_size if level > 0 else 0
        self._groups: OrderedDict[tuple[str, int, int], Group] = OrderedDict()  # (pack, offset, stored length)
        # The largest blob this repository's chunking can produce: an index
        # entry claiming more is refused before anything is read.
        self.max_blob = max_blob
        # Pack indexes of a remote store are cached locally by pack name:
        # packs are immutable, so a cached index never goes stale.
        self.index_cache_dir = index_cache_dir
        self._indexes: dict[str, PackIndex] = {}
        # Each thread writes its own pack: one thread's abort (or flush)
        # never drops (or half-publishes) another thread's objects.
        self._tls = threading.local()
        self._freshened: set[str] = set()
        self._lock = threading.RLock()
        self._cache: OrderedDict[bytes, StoredObject] = OrderedDict()
        self.added_objects = 0
        """Objects this handle appended to packs (a dedup hit adds none)."""
        self.added_bytes = 0
        """Their stored (compressed) bytes: what writing cost on storage (group members
        count as the groups they filled, once sealed)."""
        self._last_hit: str | None = None
        self._absent: _Absent | None = None
        self.refresh()

    @property
    def _writer(self) -> PackWriter | None:
        return getattr(self._tls, "writer", None)

    @_writer.setter
    def _writer(self, writer: PackWriter | None) -> None:
        self._tls.writer = writer

    @property
    def _rolled(self) -> list[_Publishing]:
        """This thread's full packs still being published (see :meth:`_roll`)."""
        rolled: list[_Publishing] | None = getattr(self._tls, "rolled", None)
        if rolled is None:
            rolled = self._tls.rolled = []
        return rolled

    def _in_rolled(self, oid: bytes) -> bool:
        rolled: list[_Publishing] | None = getattr(self._tls, "rolled", None)
        return bool(rolled) and any(oid in p.writer for p in rolled or ())

    def _await_rolled(self, *, refresh: bool = True) -> None:
        """Wait until this thread's full packs are published (raise the first error), then look at them."""
        rolled = getattr(self._tls, "rolled", None)
        if not rolled:
            return
        error: BaseException | None = None
        while rolled:
            try:
                rolled.pop(0).join()
            except BaseException as exc:
                error = error or exc
        if refresh:
            self.refresh()
        if error is not None:
            raise error

    # -- indexes ---------------------------------------------------------

    def refresh(self) -> None:
        """Load indexes of packs published since the last look (by anyone)."""
        names = {n[: -len(".idx")] for n in self.storage.listdir(PACK_DIR) if n.endswith(".idx")}
        with self._lock:
            for gone in set(self._indexes) - names:
                del self._indexes[gone]
            for name in sorted(names - set(self._indexes)):
                try:
                    self._indexes[name] = self._load_index(name)
                except FileNotFoundError:
                    continue  # removed by a concurrent repack or gc since the listing
            self._absent = _Absent.update(self._absent, self._indexes)

    def _load_index(self, name: str) -> PackIndex:
        path = index_path(name)
        if isinstance(self.storage, LocalStorage):
            return PackIndex(name, self.storage.mmap(path), self.digest_size)
        limit = limits.max_index_size(self.digest_size)
        cached = os.path.join(self.index_cache_dir, f"{name}.idx") if self.index_cache_dir else None
        if cached is not None:
            try:
                with open(cached, "rb") as f:
                    limits.check_size(f"cached pack index {cached}", os.fstat(f.fileno()).st_size, limit)
                    return PackIndex(name, f.read(), self.digest_size)
            except (OSError, FormatError):
                pass  # missing or damaged: read it again
        data = self.storage.read_bounded(path, limit)
        idx = PackIndex(name, data, self.digest_size)
        if cached is not None:
            self.remember_index(name, data)
        return idx

    def remember_index(self, name: str, data: bytes) -> None:
        """Put an index in the local cache (after writing it to a remote ourselves)."""
        if not self.index_cache_dir:
            return
        try:
            os.makedirs(self.index_cache_dir, exist_ok=True)
            tmp = os.path.join(self.index_cache_dir, f".{name}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, os.path.join(self.index_cache_dir, f"{name}.idx"))
        except OSError:
            pass  # only a cache

    @property
    def pack_names(self) -> list[str]:
        return list(self._indexes)

    def index(self, name: str) -> PackIndex:
        return self._indexes[name]

    def locate(self, oid: bytes, skip: str | None = None) -> tuple[str, IndexEntry] | None:
        """(pack name, entry) of a published object, or None; ``skip`` names a pack not to look in.

        The pack of the last hit is asked first (a large file's chunks sit
        side by side in a few packs), and an id in none of the packs merged
        into :class:`_Absent` is answered after looking only at the packs
        published since (a new chunk would otherwise cost one index search
        per pack).
        """
        last = self._last_hit
        if last is not None and last != skip:
            idx = self._indexes.get(last)
            e = idx.get(oid) if idx is not None else None
            if e is not None:
                return last, e
        absent = self._absent
        if absent is not None and skip is None and absent.excludes(oid):
            names: list[str] = [n for n in absent.unmerged if n in self._indexes]
        else:
            names = list(self._indexes)
        for name in names:
            if name in (skip, last):
                continue
            idx = self._indexes.get(name)
            e = idx.get(oid) if idx is not None else None
            if e is not None:
                self._last_hit = name
                return name, e
        return None

    # -- ids -------------------------------------------------------------

    def hash(self, *parts: bytes | memoryview) -> bytes:
        return self.algorithm.digest(*parts)

    def raw_id(self, object_id: str) -> bytes:
        try:
            return from_hex(object_id, self.digest_size)
        except ValueError:
            raise ObjectNotFound(str(object_id), "not a valid object id") from None

    def has_raw(self, oid: bytes) -> bool:
        w = self._writer
        if w is not None and oid in w:
            return True
        if self._in_rolled(oid):
            return True
        loc = self.locate(oid)
        if loc is None:
            return False
        self._freshen(loc[0])
        return True

    def missing(self, oids: Iterable[bytes]) -> list[bytes]:
        """The ids of ``oids`` not stored (in order): :meth:`has_raw` for a batch, one pass per pack."""
        w = self._writer
        out = w.missing(oids) if w is not None else list(oids)
        if getattr(self._tls, "rolled", None):
            out = [o for o in out if not self._in_rolled(o)]
        for name, idx in self._search_order():
            if not out:
                break
            left = idx.absent(out)
            if len(left) < len(out):
                self._freshen(name)
                self._last_hit = name
            out = left
        return out

    def has_run(self, oids: list[bytes], near: list[str]) -> bool:
        """True if every one of ``oids`` is stored: :meth:`has_raw` for a run of
        objects stored together (a file's chunks), their packs marked as in use.

        ``near`` (kept by the caller from run to run) names the pack that held
        most of the last run: it is asked for all of them at once, and only
        the others are looked up one by one.
        """
        left = oids
        idx = self._indexes.get(near[0]) if near else None
        if idx is not None:
            left = [o for o, i in zip(oids, idx.find_many(oids)) if i < 0]
        found: dict[str, int] = {}
        w = self._writer
        for oid in left:
            if (w is not None and oid in w) or self._in_rolled(oid):
                continue
            loc = self.locate(oid)
            if loc is None:
                return False
            self._freshen(loc[0])
            found[loc[0]] = found.get(loc[0], 0) + 1
        if found:
            best = max(found, key=found.__getitem__)
            if idx is None or found[best] > len(oids) - len(left):
                near[:] = [best]
        return True

    def _search_order(self) -> list[tuple[str, PackIndex]]:
        """The indexes, the one the last batch found something in first
        (objects stored together are looked up together)."""
        order = list(self._indexes.items())
        last = self._last_hit
        if last is not None and len(order) > 1:
            order.sort(key=lambda item: item[0] != last)
        return order

    def _freshen(self, pack: str) -> None:
        """Mark a pack whose object is being reused as recently used, so a
        concurrent gc (which spares young packs) cannot remove the object
        between this check and the commit that will refer to it."""
        if pack in self._freshened or not isinstance(self.storage, LocalStorage):
            return
        self._freshened.add(pack)
        try:
            os.utime(self.storage.full(index_path(pack)))
        except OSError:
            pass  # read-only store: nothing will be written that needs it

    def has(self, object_id: str) -> bool:
        """True if an object with this full id is stored (looking for new packs on a miss)."""
        try:
            oid = from_hex(object_id, self.digest_size)
        except ValueError:
            return False
        if self.has_raw(oid):
            return True
        self.refresh()
        return self.has_raw(oid)

    def resolve_prefix(self, prefix: str) -> ObjectId:
        """The full id starting with ``prefix`` (8+ hex digits)."""
        prefix = prefix.lower()
        if len(prefix) < MIN_PREFIX or not is_hex(prefix) or len(prefix) > self.digest_size * 2:
            raise ObjectNotFound(prefix, f"not an object id or a prefix of {MIN_PREFIX}+ hex digits")
        if len(prefix) == self.digest_size * 2:
            if self.has(prefix):
                return ObjectId(prefix)
            self.refresh()
            if self.has(prefix):
                return ObjectId(prefix)
            raise ObjectNotFound(prefix)
        raw = bytes.fromhex(prefix[: len(prefix) // 2 * 2])
        nibble = int(prefix[-1], 16) if len(prefix) % 2 else None
        matches: set[bytes] = set()
        self._await_rolled(refresh=False)
        self.refresh()
        for idx in list(self._indexes.values()):
            matches.update(idx.with_prefix(raw, nibble))
        if self._writer is not None:
            matches.update(o for o in self._writer.ids() if o.hex().startswith(prefix))
        if not matches:
            raise ObjectNotFound(prefix, "no object with id prefix")
        if len(matches) > 1:
            raise AmbiguousId(prefix, sorted(m.hex() for m in matches))
        return to_hex(matches.pop())

    # -- writing ---------------------------------------------------------

    def _writer_for(self, incoming: int) -> PackWriter:
        w = self._writer
        if w is not None and len(w) and (w.size + incoming > self.pack_size or len(w) >= limits.MAX_PACK_OBJECTS):
            if self.storage.is_local:
                self._roll(w)
            else:
                self.flush()
            w = None
        if w is None:
            w = self._writer = PackWriter(self.storage, self.digest_size, group_size=self.group_size, level=self.level)
        return w

    def _roll(self, w: PackWriter) -> None:
        """Hand this thread's full pack to a helper thread to publish, and go on with a new one.

        At most one is in flight: the one before is waited for first (it
        has had a whole pack's worth of writing to finish). :meth:`flush`,
        :meth:`abort` and :meth:`detach_writer` wait for it.
        """
        with self._lock:
            self._writer = None
            self._seal(w)  # here, not on the helper: the byte count is this thread's
        self._await_rolled()
        self._rolled.append(_Publishing(self, w))

    def add_stored(
        self,
        oid: bytes,
        type_tag: int,
        codec_id: int,
        stored: bytes | memoryview | Sequence[bytes | memoryview],
        raw_length: int,
        *,
        checked: bool = False,
    ) -> None:
        """Append an already-encoded object unless it is stored (caller hashed it).

        ``stored`` may be a list of buffers, written back to back. With
        ``checked`` the caller has just seen :meth:`has_raw` say no, and the
        lookup is not repeated (at worst a racing writer stores a second copy,
        which readers do not mind).
        """
        if not checked and self.has_raw(oid):
            return
        size = sum(len(p) for p in stored) if isinstance(stored, (list, tuple)) else len(stored)
        w = self._writer_for(size)
        sealed = w.group_bytes
        w.add(oid, type_tag, codec_id, stored, raw_length)
        self.added_objects += 1
        # A group member costs nothing until its group is sealed, then the group's bytes count.
        self.added_bytes += w.group_bytes - sealed if self.groups(raw_length) else size

    def add_stored_many(self, type_tag: int, records: Sequence[tuple[bytes, int, Sequence[bytes | memoryview], int]]) -> None:
        """:meth:`add_stored` with ``checked`` for many objects of one type
        ``(id, codec, stored parts, raw length)``, written with as few
        syscalls as the pack size allows (a run of large raw chunks: one)."""
        sizes = [n if c == codec.RAW else sum(len(p) for p in parts) for _, c, parts, n in records]  # raw: stored == typed
        at = 0
        while at < len(records):
            w = self._writer_for(sizes[at])
            room, slots = self.pack_size - w.size - sizes[at], limits.MAX_PACK_OBJECTS - len(w) - 1
            end = at + 1
            while end < len(records) and slots > 0 and sizes[end] <= room:
                room -= sizes[end]
                slots -= 1
                end += 1
            sealed = w.group_bytes
            w.add_records(type_tag, records[at:end])
            self.added_objects += end - at
            self.added_bytes += sum(n for r, n in zip(records[at:end], sizes[at:end]) if not self.groups(r[3]))
            self.added_bytes += w.group_bytes - sealed  # a group member counts once its group is sealed
            at = end

    def groups(self, raw_length: int) -> bool:
        """True if an object of this typed-encoding size is stored in a group here."""
        return bool(self.group_size) and raw_length <= GROUP_MEMBER_SIZE

    def encode_stored(self, encoded: bytes | memoryview) -> tuple[int, bytes | memoryview]:
        """``(codec, stored)`` to hand :meth:`add_stored` for a typed encoding.

        An object this repository groups is passed raw (its group is
        compressed as a whole when sealed); others are compressed on their own.
        """
        if self.groups(len(encoded)):
            return codec.RAW, encoded
        return codec.encode_stored(encoded, self.level)

    def add_many(self, records: Sequence[tuple[bytes, int, int, bytes | memoryview, int]]) -> None:
        """:meth:`add_stored` with ``checked`` for a batch of small objects
        ``(id, type tag, codec, stored, raw length)``, appended in one write."""
        size = sum(len(r[3]) for r in records)
        w = self._writer_for(size)
        before, sealed = len(w), w.group_bytes
        w.add_many(records)
        self.added_objects += len(w) - before
        # In a grouping writer the members cost the groups they sealed (see add_stored).
        self.added_bytes += w.group_bytes - sealed if w.group_size else size

    def encode_groups(self, encodings: Sequence[tuple[bytes, bytes]]) -> list[tuple[list[tuple[bytes, int, int]], bytes, int]]:
        """Small typed encodings ``(id, encoding)``, each one :meth:`groups` takes, compressed into
        group records for :meth:`add_groups` (thread-safe: meant for a pool thread)."""
        return encode_groups(encodings, self.group_size, self.level)

    def add_groups(self, groups: Sequence[tuple[list[tuple[bytes, int, int]], bytes, int]]) -> None:
        """Append group records made by :meth:`encode_groups` (the caller checked their members
        are not stored, as :meth:`add_stored` with ``checked``)."""
        for members, stored, raw_length in groups:
            w = self._writer_for(len(stored))
            before, sealed = len(w), w.group_bytes
            w.add_group(members, stored, raw_length)
            self.added_objects += len(w) - before
            self.added_bytes += w.group_bytes - sealed

    def put_encoded(self, encoded: bytes | memoryview) -> ObjectId:
        """Store a typed encoding; return its id (``TooLarge`` over the format's bound for its type)."""
        limit = limits.max_object_size(encoded[0], self.max_blob) if len(encoded) else 0
        if len(encoded) > limit:
            kind = KIND_NAMES.get(encoded[0], "object") if len(encoded) else "object"
            hint = " (store large data as a file: snapshot and store_bytes chunk it)" if kind == "blob" else ""
            raise TooLarge(f"a {kind}{hint}", len(encoded), limit)
        oid = self.hash(encoded)
        if not self.has_raw(oid):
            codec_id, stored = self.encode_stored(encoded)
            self.add_stored(oid, encoded[0], codec_id, stored, len(encoded), checked=True)
        return to_hex(oid)

    def put(self, obj: StoredObject) -> ObjectId:
        """Store an object; return its id (trees, commits and chunk lists go to the read cache)."""
        if isinstance(obj, Tree) and len(obj.entries) > limits.MAX_TREE_ENTRIES:
            raise TooLarge("a directory", len(obj.entries), limits.MAX_TREE_ENTRIES, "entries")
        if isinstance(obj, ChunkedBlob) and len(obj.chunks) > limits.MAX_CHUNKS:
            raise TooLarge("a file", len(obj.chunks), limits.MAX_CHUNKS, "chunks")
        object_id = self.put_encoded(obj.encode())
        if not isinstance(obj, Blob):
            self._remember(self.raw_id(object_id), obj)
        return object_id

    def _remember(self, oid: bytes, obj: StoredObject) -> None:
        with self._lock:
            self._cache[oid] = obj
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)

    def detach_writer(self) -> PackWriter | None:
        """Take this thread's open pack away, unpublished (see :meth:`publish_writer`).

        Its objects are not visible to readers until it is published; the
        caller must publish it (or abort it).
        """
        with self._lock:
            self._await_rolled()
            w = self._writer
            self._writer = None
            return w

    def publish_writer(self, writer: PackWriter) -> str | None:
        """Publish a detached pack (pack, then index); return its name.

        Safe to call from another thread while this one fills a new pack.
        The caller refreshes (or calls :meth:`flush`) to see it.
        """
        self._seal(writer)
        return self._publish_sealed(writer)

    def _seal(self, writer: PackWriter) -> None:
        """Seal the writer's open group and count its bytes (dropping the pack if sealing fails)."""
        sealed = writer.group_bytes
        try:
            writer.seal_group()
        except BaseException:
            writer.abort()
            raise
        self.added_bytes += writer.group_bytes - sealed

    def _publish_sealed(self, writer: PackWriter) -> str | None:
        """:meth:`publish_writer` for a pack whose group is sealed (and counted) already."""
        name = writer.finish()
        if name is not None and writer.index_data is not None:
            self.remember_index(name, writer.index_data)
        return name

    def flush(self) -> str | None:
        """Publish the open pack (pack, then index); return its name."""
        with self._lock:
            rolled = bool(getattr(self._tls, "rolled", None))
            try:
                self._await_rolled(refresh=False)
            except BaseException:
                self.abort()
                raise
            w = self._writer
            if w is None:
                if rolled:
                    self.refresh()
                return None
            self._writer = None
            name = self.publish_writer(w)
            self.refresh()
        return name

    def abort(self) -> None:
        """Drop the open pack without publishing anything."""
        with self._lock:
            try:
                self._await_rolled()  # complete packs: published all the same, as a flush would have
            except Exception:
                pass  # what is being aborted matters more than a pack that failed to publish
            if self._writer is not None:
                self._writer.abort()
                self._writer = None
                self._cache.clear()  # it may hold objects of the dropped pack

    # -- reading ---------------------------------------------------------

    def read_stored(self, oid: bytes) -> tuple[IndexEntry, bytes | memoryview, str]:
        """Stored bytes of an object, unverified: (entry, bytes, where).

        For a group member (codec :data:`~objstore.codec.GROUPED`) the bytes
        are its whole group record's; :meth:`decode_verified` slices it out.
        """
        return self._read_stored(oid, self.locate(oid))

    def _read_stored(self, oid: bytes, loc: tuple[str, IndexEntry] | None) -> tuple[IndexEntry, bytes | memoryview, str]:
        if loc is None:
            w = self._writer
            if w is not None:
                hit = w.read_back(oid)
                if hit is not None:
                    return hit[0], hit[1], f"the open pack {w.temp_path}"
            self._await_rolled(refresh=False)  # a pack being published is read once it is
            self.refresh()
            loc = self.locate(oid)
            if loc is None:
                raise ObjectNotFound(oid.hex())
        name, entry = loc
        where = pack_path(name)
        self.check_entry(oid, entry, where)
        try:
            data = self.storage.read_range(where, entry.offset, entry.stored_length)
        except FileNotFoundError:
            # A concurrent repack may have replaced this pack: its objects
            # are in the new pack, published before the old one was removed.
            # Look in every other pack: two repacks racing over the same packs
            # can leave the old index behind its deleted pack for a moment.
            self.refresh()
            moved = self.locate(oid, skip=name)
            if moved is None:
                raise CorruptObject(oid.hex(), "its pack file is missing", where) from None
            name, entry = moved
            where = pack_path(name)
            self.check_entry(oid, entry, where)
            try:
                data = self.storage.read_range(where, entry.offset, entry.stored_length)
            except (EOFError, FileNotFoundError) as exc:
                raise CorruptObject(oid.hex(), f"pack is missing or truncated ({exc})", where) from None
        except EOFError as exc:
            raise CorruptObject(oid.hex(), f"pack is truncated ({exc})", where) from None
        return entry, data, where

    def get_encoded(self, object_id: str | bytes) -> bytes | memoryview:
        """The verified typed encoding of an object."""
        return self.get_encoded_from(object_id)[0]

    def get_encoded_from(self, object_id: str | bytes) -> tuple[bytes | memoryview, str]:
        """(verified typed encoding, where it was read): for an error about its content
        found later (e.g. a tree that does not decode) to name the pack."""
        oid = object_id if isinstance(object_id, bytes) else self.raw_id(object_id)
        return self._get_encoded(oid)

    def iter_encoded(self, oids: Iterable[bytes]) -> Iterator[tuple[bytes, bytes | memoryview]]:
        """``(id, verified typed encoding)`` of each object (once per distinct id), in pack order.

        For reading many small objects (a checkout's files): records lying
        close together in a pack are read with one ranged read (runs of up to
        :data:`_RUN_SPAN` bytes with gaps under :data:`_RUN_GAP`), then each is
        checked against its index entry, decoded and hashed as
        :meth:`get_encoded` does; a group record is decoded once for all its
        members asked for. An encoding may be a view of a buffer read for it.
        """
        for batch in self.iter_encoded_batches(oids):
            yield from batch

    def iter_encoded_batches(self, oids: Iterable[bytes]) -> Iterator[list[tuple[bytes, bytes | memoryview]]]:
        """:meth:`iter_encoded` a batch at a time: one list per group record read
        (the members asked for), else per at most :data:`_BATCH` records of a run.

        Every encoding is verified before its batch is yielded, so a consumer
        may hand a batch to another thread (the views stay valid as long as
        they are referenced).
        """
        located: list[tuple[str, int, bytes, IndexEntry]] = []
        todo = list(dict.fromkeys(oids))
        for name, idx in self._search_order():
            if not todo:
                break
            left = []
            entry_at = idx.entry_at
            for oid, i in zip(todo, idx.find_many(todo)):
                if i < 0:
                    left.append(oid)
                else:
                    e = entry_at(i)
                    located.append((name, e.offset, oid, e))
            if len(left) < len(todo):
                self._last_hit = name
            todo = left
        elsewhere = todo
        located.sort()  # pack order: by pack, offset, then id (unique), never comparing entries
        check, max_blob = limits.check_entry, self.max_blob
        i, n = 0, len(located)
        while i < n:
            name, start, _, first = located[i]
            end = start + first.stored_length
            j = i + 1
            while j < n:
                pack, offset, _, e = located[j]
                if pack != name or offset - end > _RUN_GAP or offset + e.stored_length - start > _RUN_SPAN:
                    break
                if offset + e.stored_length > end:
                    end = offset + e.stored_length
                j += 1
            where = pack_path(name)
            for _, _, oid, e in located[i:j]:
                check(oid, e, max_blob, where)  # before reading what it claims (as self.check_entry)
            try:
                run = memoryview(self.storage.read_range(where, start, end - start))
            except (FileNotFoundError, EOFError):
                # Repacked meanwhile, or truncated: one by one, as get_encoded copes.
                yield [(oid, self.get_encoded(oid)) for _, _, oid, _ in located[i:j]]
                i = j
                continue
            yield from self._run_batches(located, i, j, start, run, where)
            i = j
        for oid in elsewhere:  # in the open pack, or published since the last refresh
            yield [(oid, self.get_encoded(oid))]

    def iter_by_group(self, oids: Iterable[bytes]) -> Iterator[list[tuple[bytes, bytes | memoryview]]]:
        """:meth:`iter_encoded_batches` for objects that mostly share group records (a
        checkout's small files): a batch per group, in the order of ``oids``.

        The first id not yet given is looked up, its group record decoded
        (once: decoded groups are kept) and every other id asked for that the
        group holds is taken from it at once, by a set intersection with the
        group's members, with no index lookup per object. Each member is
        known by the hash of its bytes, so every encoding given is what its
        id says; the index entries of the others are not read, so a caller
        checks the type tag and length it expects. Ids not stored in groups
        come last, from :meth:`iter_encoded_batches` (all of them once the
        first :data:`_UNGROUPED` looked up were in none: a version 2 store).
        """
        order = list(dict.fromkeys(oids))
        left = set(order)
        rest: list[bytes] = []
        grouped = False
        for at, oid in enumerate(order):
            if oid not in left:
                continue
            if not grouped and len(rest) >= _UNGROUPED:
                rest.extend(o for o in order[at:] if o in left)
                break
            loc = self.locate(oid)
            group = None
            if loc is not None and loc[1].codec == codec.GROUPED:
                name, entry = loc
                where = pack_path(name)
                self.check_entry(oid, entry, where)
                with self._lock:
                    group = self._groups.get((where, entry.offset, entry.stored_length))
                if group is None:
                    entry, stored, where = self._read_stored(oid, loc)  # copes with a repack meanwhile
                    group = self._group(oid, entry, stored, where) if entry.codec == codec.GROUPED else None
            if group is None:
                rest.append(oid)
                left.discard(oid)
                continue
            self._member_checked(oid, entry, group, where)  # the one looked up agrees with its index entry
            grouped = True
            members = group.members
            hits = members.keys() & left
            left -= hits
            raw = memoryview(group.raw)
            batch: list[tuple[bytes, bytes | memoryview]] = []
            for hit in sorted(hits, key=members.__getitem__):
                start, length = members[hit]
                batch.append((hit, raw[start : start + length]))
            yield batch
        if rest:
            yield from self.iter_encoded_batches(rest)

    def _run_batches(
        self, located: list[tuple[str, int, bytes, IndexEntry]], i: int, j: int, start: int, run: memoryview, where: str
    ) -> Iterator[list[tuple[bytes, bytes | memoryview]]]:
        """The verified encodings of ``located[i:j]``, whose records lie in ``run`` (read from ``where`` at ``start``)."""
        digest = self.algorithm.oneshot
        batch: list[tuple[bytes, bytes | memoryview]] = []
        k = i
        while k < j:
            _, offset, oid, e = located[k]
            at = offset - start
            if e.codec == codec.GROUPED:
                # Members of one group lie together in pack order: the group is decoded
                # once (its members found by the hash of their bytes: verified), then
                # each is looked up by id.
                length = e.stored_length
                m = k + 1
                while m < j and located[m][1] == offset and located[m][3].stored_length == length and located[m][3].codec == codec.GROUPED:
                    m += 1
                if batch:
                    yield batch
                    batch = []
                group = self._group(oid, e, run[at : at + length], where)
                members, raw = group.members, memoryview(group.raw)
                out: list[tuple[bytes, bytes | memoryview]] = []
                for _, _, oid, e in located[k:m]:
                    hit = members.get(oid)
                    if hit is not None and hit[1] == e.raw_length and raw[hit[0]] == e.type_tag:
                        out.append((oid, raw[hit[0] : hit[0] + hit[1]]))
                    else:
                        out.append((oid, self._member_checked(oid, e, group, where)))  # raises, naming what is wrong
                yield out
                k = m
                continue
            stored = run[at : at + e.stored_length]
            if e.codec == codec.RAW and e.stored_length == e.raw_length and e.raw_length and stored[0] == e.type_tag and digest(stored) == oid:
                batch.append((oid, stored))  # what _decode_checked checks of a raw record, inline
            else:
                batch.append((oid, self._decode_checked(oid, e, stored, where)))
            if len(batch) >= _BATCH:
                yield batch
                batch = []
            k += 1
        if batch:
            yield batch

    def _get_encoded(self, oid: bytes) -> tuple[bytes | memoryview, str]:
        """(verified typed encoding, where it was read); a group member whose group
        is cached is sliced out without reading its pack."""
        loc = self.locate(oid)
        if loc is not None and loc[1].codec == codec.GROUPED:
            where = pack_path(loc[0])
            with self._lock:
                group = self._groups.get((where, loc[1].offset, loc[1].stored_length))
            if group is not None:
                self.check_entry(oid, loc[1], where)
                return self._member_checked(oid, loc[1], group, where), where
        entry, stored, where = self._read_stored(oid, loc)  # checks the entry
        return self._decode_checked(oid, entry, stored, where), where

    def get_at(self, name: str, oid: bytes, entry: IndexEntry) -> bytes | memoryview:
        """The verified typed encoding of ``oid``, stored in pack ``name`` at ``entry``.

        For walks over a pack's entries (fsck, repack, gc): a group read for
        one member serves the next ones from the group cache, so walking
        entries in offset order reads and decompresses each group once.
        ``CorruptObject`` if anything is wrong with it or its pack.
        """
        where = pack_path(name)
        self.check_entry(oid, entry, where)
        if entry.codec == codec.GROUPED:
            with self._lock:
                group = self._groups.get((where, entry.offset, entry.stored_length))
            if group is not None:
                return self._member_checked(oid, entry, group, where)
        try:
            data = self.storage.read_range(where, entry.offset, entry.stored_length)
        except (EOFError, FileNotFoundError) as exc:
            raise CorruptObject(oid.hex(), f"pack is missing or truncated ({exc})", where) from None
        return self._decode_checked(oid, entry, data, where)

    def export(self, oid: bytes, *, verify: bool = True) -> tuple[int, int, bytes | memoryview, int]:
        """``(type tag, codec, stored, raw length)`` of an object, as a record of its own.

        What push and the server send: stored bytes verbatim, except that a
        group member is compressed on its own (a receiver groups it again if
        its repository groups). ``stored`` is never a codec-2 group. With
        ``verify`` (push) a corrupt object raises ``CorruptObject``; without
        (the server, whose client verifies every record) its stored bytes go
        out as they are, and a member whose group does not decode goes out as
        an empty record, which every receiver refuses as corrupt, naming it.
        """
        entry, stored, where = self.read_stored(oid)
        if not verify and entry.codec != codec.GROUPED:
            return entry.type_tag, entry.codec, stored, entry.raw_length
        try:
            encoded = self._decode_checked(oid, entry, stored, where)
        except CorruptObject:
            if verify:
                raise
            return entry.type_tag, codec.RAW, b"", entry.raw_length
        if entry.codec != codec.GROUPED:
            return entry.type_tag, entry.codec, stored, entry.raw_length
        codec_id, packed = codec.encode_stored(encoded, max(self.level, 1))
        return entry.type_tag, codec_id, packed, entry.raw_length

    def forget_groups(self) -> None:
        """Drop the decoded groups kept in memory (the next read of a member decodes its group again)."""
        with self._lock:
            self._groups.clear()

    def stored_share(self, name: str, entry: IndexEntry) -> int:
        """Bytes on storage an object takes: its stored length, or for a group
        member its share of the group's stored bytes by raw size."""
        if entry.codec != codec.GROUPED:
            return entry.stored_length
        key = (pack_path(name), entry.offset, entry.stored_length)
        with self._lock:
            group = self._groups.get(key)
        if group is not None:
            total = len(group.raw)
        else:
            # The group's raw length is the last field of its record header.
            if entry.offset < 8:
                return entry.raw_length
            try:
                total = int.from_bytes(self.storage.read_range(key[0], entry.offset - 8, 8), "little")
            except (EOFError, OSError, ValueError):
                return entry.raw_length
        return max(1, entry.stored_length * entry.raw_length // total) if total > 0 else entry.raw_length

    def check_entry(self, oid: bytes, entry: IndexEntry, where: str | None) -> None:
        """``CorruptObject`` if an index entry claims sizes the format does not allow
        (see :func:`objstore.limits.check_entry`); call it before reading the bytes."""
        limits.check_entry(oid, entry, self.max_blob, where)

    def decode_verified(self, oid: bytes, entry: IndexEntry, stored: bytes | memoryview, where: str) -> bytes | memoryview:
        """The typed encoding in ``stored`` (read from ``where``), checked against its id and index entry.

        ``CorruptObject`` if it does not decode, hash to ``oid`` or carry the
        entry's type tag. A raw object comes back as ``stored`` itself. A
        compressed object over :data:`~objstore.limits.STREAM_THRESHOLD` is
        first hashed piece by piece as it decompresses, and decompressed
        whole only once it proved to be what its id says.
        """
        self.check_entry(oid, entry, where)
        return self._decode_checked(oid, entry, stored, where)

    def _decode_checked(self, oid: bytes, entry: IndexEntry, stored: bytes | memoryview, where: str) -> bytes | memoryview:
        """:meth:`decode_verified` for an entry :meth:`check_entry` already passed."""
        if entry.codec == codec.GROUPED:
            return self._member_checked(oid, entry, self._group(oid, entry, stored, where), where)
        try:
            if entry.codec == codec.ZSTD and entry.raw_length > limits.STREAM_THRESHOLD:
                self._verify_streaming(oid, entry, stored, where)
                return codec.decode_stored(entry.codec, stored, entry.raw_length)
            encoded = codec.decode_stored(entry.codec, stored, entry.raw_length)
        except FormatError as exc:
            raise CorruptObject(oid.hex(), str(exc), where) from None
        if self.hash(encoded) != oid:
            raise CorruptObject(oid.hex(), "content does not hash to its id", where)
        if len(encoded) == 0 or encoded[0] != entry.type_tag:
            raise CorruptObject(oid.hex(), "type tag disagrees with the pack index", where)
        return encoded

    def _group(self, oid: bytes, entry: IndexEntry, stored: bytes | memoryview, where: str) -> Group:
        """The decoded group record in ``stored`` (cached when it comes from a published pack, or
        from the open one: a tree written moments ago is read back by the façade's manifest)."""
        # Published packs are immutable; the open one is appended to, never rewritten (its temp name is unique).
        key = (where, entry.offset, entry.stored_length) if where.endswith((".pack", ".pack.tmp")) else None
        if key is not None:
            with self._lock:
                hit = self._groups.get(key)
                if hit is not None:
                    self._groups.move_to_end(key)
                    return hit
        if len(stored) != entry.stored_length:
            raise CorruptObject(oid.hex(), f"its group is {len(stored)} bytes, the index says {entry.stored_length}", where)
        try:
            group = decode_group(stored, self.algorithm.oneshot)
        except FormatError as exc:
            raise CorruptObject(oid.hex(), f"its group does not decode: {exc}", where) from None
        if key is not None:
            with self._lock:
                self._groups[key] = group
                while len(self._groups) > _GROUP_CACHE:
                    self._groups.popitem(last=False)
        return group

    def _member_checked(self, oid: bytes, entry: IndexEntry, group: Group, where: str) -> bytes | memoryview:
        encoded = group.member(oid)  # found by the hash of its bytes: verified
        if encoded is None:
            raise CorruptObject(oid.hex(), "its group holds no member that hashes to its id", where)
        if len(encoded) != entry.raw_length:
            raise CorruptObject(oid.hex(), f"its group holds {len(encoded)} bytes of it, the index says {entry.raw_length}", where)
        if encoded[0] != entry.type_tag:
            raise CorruptObject(oid.hex(), "type tag disagrees with the pack index", where)
        return encoded

    def _verify_streaming(self, oid: bytes, entry: IndexEntry, stored: bytes | memoryview, where: str) -> None:
        h = self.algorithm.new()
        tag = -1
        for piece in codec.iter_decoded(entry.codec, stored, entry.raw_length):
            if tag < 0 and len(piece):
                tag = piece[0]
            h.update(piece)
        if h.digest() != oid:
            raise CorruptObject(oid.hex(), "content does not hash to its id", where)
        if tag != entry.type_tag:
            raise CorruptObject(oid.hex(), "type tag disagrees with the pack index", where)

    def get(self, object_id: str | bytes) -> StoredObject:
        """Decode a verified object (trees, commits and chunk lists are cached)."""
        oid = object_id if isinstance(object_id, bytes) else self.raw_id(object_id)
        hit = self._cache.get(oid)
        if hit is not None:
            return hit
        encoded, where = self._get_encoded(oid)
        try:
            obj = decode(encoded, self.digest_size)
        except FormatError as exc:
            raise CorruptObject(oid.hex(), str(exc), where) from None
        if not isinstance(obj, Blob):
            self._remember(oid, obj)
        return obj

    def get_as(self, object_id: str, cls: type[T]) -> T:
        obj = self.get(object_id)
        if not isinstance(obj, cls):
            raise WrongObjectType(str(object_id), KIND_NAMES[cls.type_tag], KIND_NAMES[obj.type_tag])
        return obj

    def type_of(self, object_id: str) -> str:
        oid = self.raw_id(object_id)
        loc = self.locate(oid)
        if loc is None:
            return KIND_NAMES[self.get(oid).type_tag]
        return KIND_NAMES.get(loc[1].type_tag, "unknown")

    def iter_ids(self) -> Iterator[ObjectId]:
        seen: set[bytes] = set()
        for idx in list(self._indexes.values()):
            for oid in idx.ids():
                if oid not in seen:
                    seen.add(oid)
                    yield to_hex(oid)

    def close(self) -> None:
        self.abort()
        self._cache.clear()
        self._groups.clear()
        self._indexes.clear()
        self.storage.close()


class _Absent:
    """A sorted table of the first 8 bytes of every id in a set of packs: a fast "in none of them".

    Packs published later are listed in ``unmerged`` and searched one by
    one; once there are more than :data:`MERGE_AFTER` of them the table is
    rebuilt over all packs (C-level concatenation and a merge of sorted
    runs). A pack removed since only leaves ids that answer "maybe", which
    costs a full search, never a wrong answer. Below :data:`MIN_PACKS` packs
    there is no table: searching each index is as fast.
    """

    MIN_PACKS = 4
    MERGE_AFTER = 8

    def __init__(self, merged: set[str], table: array[int], unmerged: list[str]) -> None:
        self.merged = merged
        self.table = table
        self.unmerged = unmerged

    @classmethod
    def update(cls, old: _Absent | None, indexes: dict[str, PackIndex]) -> _Absent | None:
        if len(indexes) < cls.MIN_PACKS:
            return None
        if old is not None:
            new = [n for n in indexes if n not in old.merged]
            if len(new) <= cls.MERGE_AFTER:
                return cls(old.merged, old.table, new)
        tables = []
        for idx in indexes.values():
            t = idx.prefixes()
            if t is None:
                return None
            tables.append(t)
        table = array("Q")
        for t in tables:
            table.extend(t)
        return cls(set(indexes), array("Q", sorted(table)), [])

    def excludes(self, oid: bytes) -> bool:
        """True if no merged pack holds ``oid``."""
        key = int.from_bytes(oid[:8], "big")
        i = bisect_left(self.table, key)
        return i == len(self.table) or self.table[i] != key
