"""What the last checkout wrote into a folder, so the next one can tidy up after it.

A checkout into a folder that holds an earlier checkout must leave the
folder matching the new version, yet never touch the user's own files. As
git does with its index, the repository remembers, per destination folder,
every file and symlink the last full checkout placed there with the size
and mtime it left them with. The next full checkout removes those that the
new version no longer has, but only while they are exactly as the last
checkout left them; one changed since is kept and reported. Files the
record does not name (the user's own) are never looked at.

The record lives in the repository's local cache (``cache/checkouts/`` of a
local repository), never in the destination, so a later snapshot of that
folder does not pick it up. Losing it only means leftovers stay, as before.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

from .objects import TreeEntry

_VERSION = 1
FILE, SYMLINK = 0, 1


Placed = tuple[int, int, int, "str | None"]
"""One path a checkout placed: (kind, size, mtime_ns, content id of a file / text of a symlink)."""

UNSTATTED = -1
"""The mtime_ns of a file created and written in one go and never stat'ed (the bulk-written small
files of a checkout: a stat each would cost as much as the close): its content alone decides."""


def placed_from(st: os.stat_result, entry: TreeEntry) -> Placed:
    """What to remember of a file or symlink just placed for ``entry``."""
    if entry.kind == "symlink":
        return (SYMLINK, st.st_size, st.st_mtime_ns, entry.target)
    return (FILE, st.st_size, st.st_mtime_ns, entry.id)


@dataclass
class CheckoutRecord:
    """The paths (``/``-separated, relative to ``dest``) the last checkout into ``dest`` placed."""

    dest: str
    paths: dict[str, Placed] = field(default_factory=dict)

    @staticmethod
    def _file(cache_dir: str, dest: str) -> str:
        key = hashlib.sha256(os.fsencode(dest)).hexdigest()[:32]
        return os.path.join(cache_dir, "checkouts", key)

    @classmethod
    def load(cls, cache_dir: str, dest: str) -> CheckoutRecord:
        """The record for ``dest`` (a real path), or an empty one."""
        try:
            with open(cls._file(cache_dir, dest), "rb") as f:
                raw = msgpack.unpackb(f.read(), raw=False, use_list=False)
            if raw[0] != _VERSION or raw[1] != dest:
                return cls(dest)
            return cls(dest, dict(raw[2]))
        except (OSError, ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException):
            return cls(dest)  # no record, or an unreadable one: only a cache

    def save(self, cache_dir: str) -> None:
        path = self._file(cache_dir, self.dest)
        data = msgpack.packb(
            [_VERSION, self.dest, self.paths], use_bin_type=True
        )
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only repository: the next checkout just cannot tidy up

    def unchanged(self, rel: str, path: str, content_id: Callable[[str], str]) -> bool:
        """Is ``path`` still exactly what the last checkout left there?

        Same size and mtime, and (an edit within one mtime tick keeps both)
        the same content: a file is only ever removed once re-hashed. A
        file placed without its mtime (:data:`UNSTATTED`) is judged by
        size and content.
        """
        kind, size, mtime_ns, target = self.paths[rel]
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if kind == SYMLINK:
            try:
                return stat.S_ISLNK(st.st_mode) and os.readlink(path) == target
            except OSError:
                return False
        if not (stat.S_ISREG(st.st_mode) and st.st_size == size and mtime_ns in (st.st_mtime_ns, UNSTATTED)):
            return False
        try:
            return target is not None and content_id(path) == target
        except OSError:
            return False


def prune(record: CheckoutRecord, keep: set[str], content_id: Callable[[str], str]) -> tuple[list[str], list[str]]:
    """Remove what the last checkout placed that is not in ``keep``: (removed, kept because changed).

    ``keep`` holds every path of the new version, directories included;
    ``content_id`` gives the id a file's content would have.
    Directories emptied by a removal are removed too, up to (never
    including) the destination, unless the new version has them.
    """
    removed: list[str] = []
    changed: list[str] = []
    emptied: set[str] = set()
    for rel in sorted(set(record.paths) - keep):
        path = os.path.join(record.dest, *rel.split("/"))
        if not os.path.lexists(path):
            continue  # already gone
        if not record.unchanged(rel, path, content_id):
            changed.append(rel)
            continue
        try:
            os.unlink(path)
        except OSError:
            changed.append(rel)
            continue
        removed.append(rel)
        parent = rel.rpartition("/")[0]
        while parent:
            emptied.add(parent)
            parent = parent.rpartition("/")[0]
    for rel in sorted(emptied, key=lambda d: d.count("/"), reverse=True):  # deepest first
        if rel in keep:
            continue
        try:
            os.rmdir(os.path.join(record.dest, *rel.split("/")))  # only if empty: a user's file keeps it
        except OSError:
            pass
    return removed, changed


__all__ = ["UNSTATTED", "CheckoutRecord", "Placed", "placed_from", "prune"]
