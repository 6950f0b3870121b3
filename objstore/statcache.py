"""Stat cache: what a re-snapshot may trust without reading a file.

Like git's index, it lets a re-snapshot of unchanged files skip reading
them, at two levels:

- per file: (size, mtime_ns, inode, ctime_ns, mode) -> object id;
- per directory: a signature (xxh3-128 over every entry's name and stat,
  and each subdirectory's tree id) -> the directory's tree id, so an
  unchanged directory costs one ``lstat`` per entry and no per-file work.

An entry is only recorded when the file did not change while it was read
and its mtime is older than the read by more than the timestamp granularity
of common filesystems, so a write that lands in the same clock tick as the
read can never be mistaken for "unchanged" (git's racy-clean problem).

On disk it is one file read with one call: a msgpack list
``[2, salt, {dir: [signature | None, tree id | None, size, files, table]}]``
where ``table`` is the msgpack of that directory's per-file entries
``{name: [size, mtime_ns, ino, ctime_ns, mode, id]}``, decoded only for a
directory whose signature no longer matches. A missing, damaged or older
cache only costs a re-read.
"""

from __future__ import annotations

import operator
import os
import time
from typing import Any

import msgpack
import xxhash

from .ids import ObjectId

RACY_NS = 100_000_000  # 100 ms: well above ext4/xfs/btrfs/tmpfs timestamp granularity
_VERSION = 2


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_mode)


_stat_fields = operator.attrgetter("st_size", "st_mtime_ns", "st_ino", "st_ctime_ns", "st_mode")


class DirSignature:
    """A directory's signature: its entries' names and stats, and its subdirectories' tree ids.

    Built in bulk (C-level ``map`` and one msgpack encoding), because it is
    the whole cost of re-snapshotting an unchanged directory.
    """

    __slots__ = ("_keys", "_names", "newest_mtime_ns")
    _names: bytes

    def __init__(self, names: list[str], stats: list[os.stat_result]) -> None:
        self._names = "\0".join(names).encode("utf-8", "surrogateescape")
        self._keys: list[Any] = list(map(_stat_fields, stats))
        self.newest_mtime_ns = max(map(operator.itemgetter(1), self._keys), default=0)

    def set_tree(self, index: int, tree_id: str) -> None:
        """Entry ``index`` is a directory: its tree id stands for its stat."""
        self._keys[index] = tree_id

    def digest(self) -> bytes:
        return xxhash.xxh3_128_digest(msgpack.packb([self._names, self._keys], use_bin_type=True))


class StatCache:
    """A per-repository map from local files and directories to the ids of their content."""

    def __init__(self, path: str, salt: str) -> None:
        self.path = path
        self.salt = salt  # hash algorithm + chunk params: a change invalidates all
        self._dirs: dict[str, list[Any]] | None = None
        self._tables: dict[str, dict[str, list[Any]]] = {}  # decoded per-file tables
        self._changed: set[str] = set()  # directories whose table must be re-encoded
        self._dirty = False

    def _load(self) -> dict[str, list[Any]]:
        if self._dirs is None:
            self._dirs = {}
            try:
                with open(self.path, "rb") as f:
                    data = msgpack.unpackb(f.read(), raw=False)
                if isinstance(data, list) and len(data) == 3 and data[0] == _VERSION and data[1] == self.salt and isinstance(data[2], dict):
                    self._dirs = data[2]
            except (OSError, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                pass  # a missing or damaged cache only costs a re-read
        return self._dirs

    def _record_of(self, dirpath: str) -> list[Any]:
        dirs = self._load()
        rec = dirs.get(dirpath)
        if not isinstance(rec, list) or len(rec) != 5:
            rec = dirs[dirpath] = [None, None, 0, 0, b""]
        return rec

    def _table(self, dirpath: str) -> dict[str, list[Any]]:
        table = self._tables.get(dirpath)
        if table is None:
            blob = self._record_of(dirpath)[4]
            table = {}
            if blob:
                try:
                    decoded = msgpack.unpackb(blob, raw=False)
                    if isinstance(decoded, dict):
                        table = decoded
                except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                    pass
            self._tables[dirpath] = table
        return table

    # -- files ------------------------------------------------------------

    def lookup(self, path: str, st: os.stat_result) -> ObjectId | None:
        dirpath, name = os.path.split(path)
        if dirpath not in self._load():
            return None
        hit = self._table(dirpath).get(name)
        if isinstance(hit, list) and len(hit) == 6 and tuple(hit[:5]) == stat_key(st):
            return ObjectId(hit[5])
        return None

    def previous(self, path: str) -> ObjectId | None:
        """The id last recorded for ``path``, whatever its stat now (a hint, never to be trusted as is).

        A large file re-snapshotted after an edit is checked against its
        previous chunks (see :func:`objstore.chunking.map_chunks_hinted`).
        """
        dirpath, name = os.path.split(path)
        if dirpath not in self._load():
            return None
        hit = self._table(dirpath).get(name)
        if isinstance(hit, list) and len(hit) == 6 and isinstance(hit[5], str):
            return ObjectId(hit[5])
        return None

    def record(self, path: str, before: os.stat_result, after: os.stat_result, object_id: str) -> None:
        """Remember ``object_id`` for ``path`` if it is safe to trust later."""
        if stat_key(before) != stat_key(after):
            return
        if after.st_mtime_ns >= time.time_ns() - RACY_NS:
            return
        dirpath, name = os.path.split(path)
        self._table(dirpath)[name] = [*stat_key(after), object_id]
        self._changed.add(dirpath)
        self._dirty = True

    def forget(self, path: str) -> None:
        dirpath, name = os.path.split(path)
        if dirpath in self._load() and self._table(dirpath).pop(name, None) is not None:
            self._record_of(dirpath)[0] = None
            self._changed.add(dirpath)
            self._dirty = True

    # -- directories ------------------------------------------------------

    def lookup_dir(self, dirpath: str, signature: bytes) -> tuple[ObjectId, int, int] | None:
        """(tree id, total bytes, files) of a directory whose signature is unchanged."""
        rec = self._load().get(dirpath)
        if isinstance(rec, list) and len(rec) == 5 and rec[0] == signature and rec[1]:
            return ObjectId(rec[1]), int(rec[2]), int(rec[3])
        return None

    def record_dir(self, dirpath: str, sig: DirSignature, started_ns: int, tree_id: str, size: int, files: int) -> None:
        """Remember a directory's tree, unless one of its entries is too recent to trust."""
        if sig.newest_mtime_ns >= started_ns - RACY_NS:
            return
        rec = self._record_of(dirpath)
        digest = sig.digest()
        if rec[0] != digest or rec[1] != tree_id:
            rec[:4] = [digest, tree_id, size, files]
            self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (best effort: it is only a cache)."""
        if not self._dirty or self._dirs is None:
            return
        for dirpath in self._changed:
            self._record_of(dirpath)[4] = msgpack.packb(self._tables.get(dirpath, {}), use_bin_type=True)
        self._changed.clear()
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(msgpack.packb([_VERSION, self.salt, self._dirs], use_bin_type=True))
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
