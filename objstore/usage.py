"""Storage accounting: how many stored bytes each version adds.

A version's files share chunks with the versions before it, so the honest
answer to "what did logging this cost?" is the on-storage (compressed) size
of the objects it introduced: its commit, the trees and chunks no earlier
version in the sequence already had. Unchanged subtrees and files are
skipped by id without being read; only chunk lists of new large files are
decoded, never file contents.
"""

from __future__ import annotations

from collections.abc import Iterable

from .objects import CHUNKED, COMMIT, TREE, ChunkedBlob, Commit, Tree
from .odb import ObjectDatabase


def stored_length(odb: ObjectDatabase, raw: bytes) -> tuple[int, int]:
    """(bytes on storage, type tag) of one published object; (0, 0) if absent here.

    A group member counts its share of the group's bytes (by raw size).
    """
    hit = odb.locate(raw)
    if hit is None:
        odb.refresh()
        hit = odb.locate(raw)
    return (0, 0) if hit is None else (odb.stored_share(hit[0], hit[1]), hit[1].type_tag)


class GrowthCounter:
    """Counts the stored bytes each successive commit or tree adds to a shared set."""

    def __init__(self, odb: ObjectDatabase) -> None:
        self.odb = odb
        self.seen: set[bytes] = set()

    def _new(self, object_id: str) -> bytes | None:
        raw = self.odb.raw_id(object_id)
        if raw in self.seen:
            return None
        self.seen.add(raw)
        return raw

    def add(self, object_id: str) -> int:
        """Stored bytes of ``object_id`` (a commit or tree) and everything under it not counted yet."""
        total = 0
        stack = [object_id]
        while stack:
            oid = stack.pop()
            raw = self._new(oid)
            if raw is None:
                continue
            n, tag = stored_length(self.odb, raw)
            total += n
            if tag in (TREE, CHUNKED, COMMIT):  # containers are read (and cached); content never is
                obj = self.odb.get(raw)
                if isinstance(obj, Tree):
                    stack.extend(e.id for e in obj.entries if e.id is not None)
                elif isinstance(obj, ChunkedBlob):
                    stack.extend(c for c, _ in obj.chunks)
                elif isinstance(obj, Commit):
                    stack.append(obj.tree)  # parents are not followed: the caller orders the sequence
        return total


def added_bytes(odb: ObjectDatabase, ids: Iterable[str]) -> list[int]:
    """Stored bytes each commit or tree in ``ids`` adds over the ones before it."""
    counter = GrowthCounter(odb)
    return [counter.add(i) for i in ids]
