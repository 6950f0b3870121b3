"""Stat cache: what a re-snapshot may trust without reading a file.

Like git's index, it lets a re-snapshot of unchanged files skip reading
them, at two levels:

- per file: (size, mtime_ns, inode, ctime_ns, mode) -> object id;
- per directory: a signature (xxh3-128 over every entry's name and stat,
  packed as columns, and each subdirectory's tree id) -> the directory's
  tree id, so an unchanged directory costs one ``lstat`` per entry and no
  per-file Python work (on Linux a forked child does those of about half
  the directories meanwhile: :mod:`objstore.preload`).

An entry is only recorded when its mtime is older than the start of the
read by more than the timestamp granularity of common filesystems, so a
write that lands in the same clock tick as the read can never be mistaken
for "unchanged" (git's racy-clean problem). A write after the ``lstat``
that was recorded changes the file's mtime and ctime, so it is seen next
time whatever content was read.

On disk it is one file read with one call, version 3 (``docs/format.md``):
a msgpack list ``[3, salt, {dir: [signature, tree id, size, files, names,
stats, ids]}]`` whose per-file part is packed binary (the names joined by
NUL, one 36-byte stat record and one raw id per name): about 53 bytes plus
the name per file, against git's index at 62 plus the name. A directory's
files are unpacked only when its signature no longer matches. A missing,
damaged or older cache only costs a re-read.
"""

from __future__ import annotations

import itertools
import operator
import os
import struct
import time
from collections.abc import Sequence
from typing import Any

import msgpack
import xxhash

from .ids import ObjectId

RACY_NS = 100_000_000  # 100 ms: well above ext4/xfs/btrfs/tmpfs timestamp granularity
_VERSION = 3
_STAT = struct.Struct("<QqQqI")  # size, mtime_ns, inode, ctime_ns, st_mode
_KEY, _ID = operator.itemgetter(0), operator.itemgetter(1)

StatKey = tuple[int, int, int, int, int]
"""(size, mtime_ns, inode, ctime_ns, st_mode) of a file."""

stat_fields = operator.attrgetter("st_size", "st_mtime_ns", "st_ino", "st_ctime_ns", "st_mode")
"""A stat result's :data:`StatKey` (a C-level getter: cheap enough to map over a directory)."""


def stat_key(st: os.stat_result) -> StatKey:
    return stat_fields(st)  # type: ignore[no-any-return]


_COLUMN_FIELDS = tuple(
    operator.attrgetter(name) for name in ("st_size", "st_mtime_ns", "st_ino", "st_ctime_ns", "st_mode")
)
_COLUMN_CODES = "QqQqQ"
_columns_structs: dict[int, struct.Struct] = {}
_SIG_HEAD = struct.Struct("<4sII")


def _columns_struct(n: int) -> struct.Struct:
    s = _columns_structs.get(n)
    if s is None:
        s = struct.Struct("<" + "".join(f"{n}{code}" for code in _COLUMN_CODES))
        if len(_columns_structs) < 4096:
            _columns_structs[n] = s
    return s


def stat_columns(stats: Sequence[os.stat_result]) -> bytes | None:
    """The stats of a directory's entries as columns: every size, then every
    mtime_ns, inode, ctime_ns and st_mode, 8 bytes each, little-endian (``<QqQqQ``
    per column); None if a value does not fit (a timestamp beyond the year 2262).

    Each column is one C-level ``map`` over the stats and the whole one ``pack``:
    no Python object per entry.
    """
    try:
        return _columns_struct(len(stats)).pack(*itertools.chain.from_iterable(map(f, stats) for f in _COLUMN_FIELDS))
    except struct.error:
        return None


class DirSignature:
    """A directory's signature: its entries' names and stats, and its subdirectories' tree ids.

    Built in bulk from the entries' :func:`stat_columns`, because it is the
    whole cost of re-snapshotting an unchanged directory (see
    ``docs/format.md``). ``flavor`` tells apart snapshots of one directory
    that make different trees of it (e.g. symlinks stored as links, or
    followed).
    """

    __slots__ = ("_columns", "_count", "_digest", "_flavor", "_names", "_trees", "newest_mtime_ns")

    def __init__(self, names: list[str], stats: Sequence[os.stat_result], flavor: int | str = 0) -> None:
        self._init("\0".join(names).encode("utf-8", "surrogateescape"), len(names), stat_columns(stats), flavor)

    @classmethod
    def from_columns(cls, names: bytes, count: int, columns: bytes | None, flavor: int | str = 0) -> DirSignature:
        """The signature of ``count`` entries: their names joined by NUL (UTF-8,
        surrogateescape) and their :func:`stat_columns`."""
        sig = cls.__new__(cls)
        sig._init(names, count, columns, flavor)
        return sig

    def _init(self, names: bytes, count: int, columns: bytes | None, flavor: int | str) -> None:
        self._names = names
        self._count = count
        self._columns = columns
        self._trees: dict[int, str] = {}
        self._flavor = flavor
        self._digest: bytes | None = None
        self.newest_mtime_ns = 0
        """The newest mtime of the files (subdirectories count by their trees), known after :meth:`digest`."""

    def set_tree(self, index: int, tree_id: str) -> None:
        """Entry ``index`` is a directory: its tree id stands for its stat (before :meth:`digest`)."""
        if self._digest is not None:
            raise RuntimeError("the signature is already computed")
        self._trees[index] = tree_id

    def digest(self) -> bytes:
        """The signature, b"" if there is none (a stat that does not fit); computed once,
        when the names and stats are let go, so signatures kept until a snapshot's end
        cost 16 bytes each."""
        if self._digest is None:
            columns = self._columns
            if columns is None:
                self._digest = b""
            else:
                n = self._count
                if self._trees:  # a subdirectory's stat does not count, its tree does
                    zeroed = bytearray(columns)
                    words = memoryview(zeroed).cast("Q")
                    for i in self._trees:
                        for k in range(0, 5 * n, n):
                            words[k + i] = 0
                    columns = bytes(zeroed)
                self.newest_mtime_ns = max(memoryview(columns)[8 * n : 16 * n].cast("q"), default=0)
                h = xxhash.xxh3_128(_SIG_HEAD.pack(b"sig4", n, len(self._names)))
                h.update(self._names)
                h.update(columns)
                if self._trees:
                    h.update(msgpack.packb(sorted(self._trees.items())))
                if self._flavor:
                    h.update(msgpack.packb(self._flavor))
                self._digest = h.digest()
            self._names, self._columns, self._trees = b"", None, {}
        return self._digest


_Table = dict[str, tuple[StatKey, bytes]]
"""One directory's files: name -> (stat key, raw object id)."""


class StatCache:
    """A per-repository map from local files and directories to the ids of their content."""

    def __init__(self, path: str, salt: str) -> None:
        self.path = path
        self.salt = salt  # hash algorithm + chunk params: a change invalidates all
        self._dirs: dict[str, list[Any]] | None = None
        self._tables: dict[str, _Table] = {}  # decoded per-file tables
        self._changed: set[str] = set()  # directories whose table must be re-encoded
        self._dirty = False

    def _load(self) -> dict[str, list[Any]]:
        if self._dirs is None:
            self._dirs = {}
            try:
                with open(self.path, "rb", buffering=0) as f:
                    data = msgpack.unpackb(f.readall(), raw=False)
                if isinstance(data, list) and len(data) == 3 and data[0] == _VERSION and data[1] == self.salt and isinstance(data[2], dict):
                    self._dirs = data[2]
            except (OSError, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                pass  # a missing or damaged cache only costs a re-read
        return self._dirs

    def _record_of(self, dirpath: str) -> list[Any]:
        dirs = self._load()
        rec = dirs.get(dirpath)
        if not isinstance(rec, list) or len(rec) != 7:
            rec = dirs[dirpath] = [None, None, 0, 0, b"", b"", b""]
        return rec

    def files(self, dirpath: str) -> _Table:
        """The recorded files of one directory: name -> (stat key, raw id); do not modify."""
        table = self._tables.get(dirpath)
        if table is None:
            table = self._tables[dirpath] = _decode_table(self._record_of(dirpath))
        return table

    # -- files ------------------------------------------------------------

    def lookup(self, path: str, st: os.stat_result) -> ObjectId | None:
        dirpath, name = os.path.split(path)
        if dirpath not in self._load():
            return None
        hit = self.files(dirpath).get(name)
        if hit is not None and hit[0] == stat_key(st):
            return ObjectId(hit[1].hex())
        return None

    def previous(self, path: str) -> ObjectId | None:
        """The id last recorded for ``path``, whatever its stat now (a hint, never to be trusted as is).

        A large file re-snapshotted after an edit is checked against its
        previous chunks (see :func:`objstore.chunking.hinted_runs`).
        """
        dirpath, name = os.path.split(path)
        if dirpath not in self._load():
            return None
        hit = self.files(dirpath).get(name)
        return ObjectId(hit[1].hex()) if hit is not None else None

    def record(self, path: str, before: os.stat_result, after: os.stat_result, object_id: str) -> None:
        """Remember ``object_id`` for ``path`` if it is safe to trust later."""
        if stat_key(before) != stat_key(after):
            return
        if after.st_mtime_ns >= time.time_ns() - RACY_NS:
            return
        dirpath, name = os.path.split(path)
        self.files(dirpath)[name] = (stat_key(after), bytes.fromhex(object_id))
        self._changed.add(dirpath)
        self._dirty = True

    def record_files(self, dirpath: str, table: _Table) -> None:
        """Replace a directory's recorded files with ``table`` (name -> (stat key, raw id)).

        The caller has already left out files too recent to trust (see :data:`RACY_NS`).
        """
        if table != self._tables.get(dirpath):
            self._record_of(dirpath)
            self._tables[dirpath] = table
            self._changed.add(dirpath)
            self._dirty = True

    def record_files_encoded(self, dirpath: str, record: list[bytes]) -> None:
        """:meth:`record_files` with the table already encoded by :func:`encode_table`
        (by a reading child: this process need not build the table)."""
        self._record_of(dirpath)[4:] = record
        self._tables.pop(dirpath, None)
        self._changed.discard(dirpath)
        self._dirty = True

    def forget(self, path: str) -> None:
        dirpath, name = os.path.split(path)
        if dirpath in self._load() and self.files(dirpath).pop(name, None) is not None:
            self._record_of(dirpath)[0] = None
            self._changed.add(dirpath)
            self._dirty = True

    # -- directories ------------------------------------------------------

    def lookup_dir(self, dirpath: str, signature: bytes) -> tuple[ObjectId, int, int] | None:
        """(tree id, total bytes, files) of a directory whose signature is unchanged."""
        rec = self._load().get(dirpath)
        if signature and isinstance(rec, list) and len(rec) == 7 and rec[0] == signature and isinstance(rec[1], bytes) and rec[1]:
            return ObjectId(rec[1].hex()), int(rec[2]), int(rec[3])
        return None

    def record_dir(self, dirpath: str, sig: DirSignature, started_ns: int, tree_id: str, size: int, files: int) -> None:
        """Remember a directory's tree, unless one of its files is too recent to trust
        (a subdirectory's own mtime does not count: its tree does)."""
        digest = sig.digest()
        if not digest or sig.newest_mtime_ns >= started_ns - RACY_NS:
            return
        rec = self._record_of(dirpath)
        raw_tree = bytes.fromhex(tree_id)
        if rec[0] != digest or rec[1] != raw_tree or rec[2] != size or rec[3] != files:
            rec[:4] = [digest, raw_tree, size, files]
            self._dirty = True

    def dirs_under(self, root: str) -> list[tuple[str, int, int]]:
        """The directories at or under ``root`` the cache knows, sorted: (path, its own
        files, bytes of their names) as of their last snapshot."""
        prefix = root.rstrip(os.sep) + os.sep
        out = []
        for path, rec in self._load().items():
            if (path == root or path.startswith(prefix)) and isinstance(rec, list) and len(rec) == 7:
                files, names = rec[3], rec[4]
                out.append((path, files if isinstance(files, int) else 0, len(names) if isinstance(names, bytes) else 0))
        out.sort()
        return out

    def save(self) -> None:
        """Write the cache atomically (best effort: it is only a cache)."""
        if not self._dirty or self._dirs is None:
            return
        for dirpath in self._changed:
            self._record_of(dirpath)[4:] = encode_table(self._tables.get(dirpath, {}))
        self._changed.clear()
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "wb", buffering=0) as f:
                f.write(msgpack.packb([_VERSION, self.salt, self._dirs], use_bin_type=True))
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def encode_table(table: _Table) -> list[bytes]:
    """``[names, stats, ids]`` of a directory's files (see the module docstring), as
    :meth:`StatCache.record_files_encoded` takes them."""
    if not table:
        return [b"", b"", b""]
    rows = list(table.values())
    return [
        "\0".join(table).encode("utf-8", "surrogateescape"),
        b"".join(itertools.starmap(_STAT.pack, map(_KEY, rows))),  # C-level: one map per directory
        b"".join(map(_ID, rows)),
    ]


def _decode_table(rec: list[Any]) -> _Table:
    """The inverse of :func:`encode_table`; an inconsistent record decodes as empty."""
    names_blob, stats, ids = rec[4], rec[5], rec[6]
    if not (isinstance(names_blob, bytes) and isinstance(stats, bytes) and isinstance(ids, bytes)) or not names_blob:
        return {}
    try:
        names = names_blob.decode("utf-8", "surrogateescape").split("\0")
    except UnicodeDecodeError:
        return {}
    n = len(names)
    if len(stats) != n * _STAT.size or not ids or len(ids) % n:
        return {}
    width = len(ids) // n
    keys = _STAT.iter_unpack(stats)
    return {name: (key, ids[i * width : (i + 1) * width]) for i, (name, key) in enumerate(zip(names, keys))}
