"""Stat cache: (path, size, mtime_ns, inode, ctime_ns) -> object id.

Like git's index, it lets a re-snapshot of unchanged files skip reading
them. An entry is only recorded when the file did not change while it was
read and its mtime is older than the read by more than the timestamp
granularity of common filesystems, so a write that lands in the same clock
tick as the read can never be mistaken for "unchanged" (git's racy-clean
problem).
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgpack

from .ids import ObjectId

RACY_NS = 100_000_000  # 100 ms: well above ext4/xfs/btrfs/tmpfs timestamp granularity
_VERSION = 1


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_mode)


class StatCache:
    """A per-repository map from local file paths to the ids of their content."""

    def __init__(self, path: str, salt: str) -> None:
        self.path = path
        self.salt = salt  # hash algorithm + chunk params: a change invalidates all
        self._entries: dict[str, list[Any]] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list[Any]]:
        if self._entries is None:
            self._entries = {}
            try:
                with open(self.path, "rb") as f:
                    data = msgpack.unpackb(f.read(), raw=False)
                if isinstance(data, list) and len(data) == 3 and data[0] == _VERSION and data[1] == self.salt:
                    self._entries = data[2]
            except (OSError, ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                pass  # a missing or damaged cache only costs a re-read
        return self._entries

    def lookup(self, path: str, st: os.stat_result) -> ObjectId | None:
        hit = self._load().get(path)
        if hit is not None and tuple(hit[:5]) == stat_key(st):
            return ObjectId(hit[5])
        return None

    def record(self, path: str, before: os.stat_result, after: os.stat_result, object_id: str) -> None:
        """Remember ``object_id`` for ``path`` if it is safe to trust later."""
        if stat_key(before) != stat_key(after):
            return
        if after.st_mtime_ns >= time.time_ns() - RACY_NS:
            return
        self._load()[path] = [*stat_key(after), object_id]
        self._dirty = True

    def forget(self, path: str) -> None:
        if self._load().pop(path, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (best effort: it is only a cache)."""
        if not self._dirty or self._entries is None:
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(msgpack.packb([_VERSION, self.salt, self._entries], use_bin_type=True))
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
