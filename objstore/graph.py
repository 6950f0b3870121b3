"""Walks over the object graph: children of an object, reachability, ancestry.

Commits point at a tree and their parents, trees at their entries, chunked
blobs at their chunks; blobs are leaves. Every walk here reads only the
structured objects it must (a blob's type is known from its pack index, so
its bytes are never read) and is iterative, so deep histories never hit the
recursion limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .objects import BLOB, CHUNKED, COMMIT, TREE, ChunkedBlob, Commit, Tree

if TYPE_CHECKING:
    from .odb import ObjectDatabase
    from .repo import Repository


def object_children(obj: Any) -> list[bytes]:
    """Raw ids a decoded object points at (tree and parents, entries, chunks)."""
    if isinstance(obj, Commit):
        return [bytes.fromhex(obj.tree), *(bytes.fromhex(p) for p in obj.parents)]
    if isinstance(obj, Tree):
        return [bytes.fromhex(e.id) for e in obj.entries if e.id is not None]
    if isinstance(obj, ChunkedBlob):
        return [bytes.fromhex(c) for c, _ in obj.chunks]
    return []


def children(odb: ObjectDatabase, oid: bytes) -> list[bytes]:
    """Children of a stored object, without reading blob contents."""
    loc = odb.locate(oid)
    tag = loc[1].type_tag if loc is not None else None
    if tag == BLOB:
        return []
    if tag is None or tag in (CHUNKED, TREE, COMMIT):
        return object_children(odb.get(oid))
    return []


def reachable_from(odb: ObjectDatabase, roots: Iterable[bytes]) -> set[bytes]:
    """Every object reachable from ``roots`` (missing objects included, not descended)."""
    seen: set[bytes] = set()
    stack = list(roots)
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        if odb.locate(oid) is None:
            continue  # missing (fsck reports it); nothing below it to keep
        stack.extend(children(odb, oid))
    return seen


def children_first_until(odb: ObjectDatabase, roots: Iterable[bytes], stop: Callable[[bytes], bool]) -> list[bytes]:
    """Objects reachable from ``roots``, children before parents, in depth-first
    order, neither listing nor descending into an object for which ``stop``
    is true (``stop`` is asked once per object).

    The order is the one a receiver can store as it goes: everything below
    an object arrives before it.
    """
    order: list[bytes] = []
    seen: set[bytes] = set()
    stack: list[tuple[bytes, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:
        oid, expanded = stack.pop()
        if expanded:
            order.append(oid)
            continue
        if oid in seen:
            continue
        seen.add(oid)
        if stop(oid):
            continue
        stack.append((oid, True))
        stack.extend((c, False) for c in reversed(children(odb, oid)))
    return order


def reachable(repo: Repository) -> set[bytes]:
    """Objects reachable from every ref and every value in any ref's history."""
    odb = repo.odb
    return reachable_from(odb, (odb.raw_id(t) for t in repo.refs.all_targets()))


def children_first(objects: Mapping[bytes, tuple[Any, ...]]) -> list[bytes]:
    """Keys of ``objects`` ordered so every object comes after its children.

    ``objects`` maps a raw id to a tuple whose last item is the decoded
    object; children outside the mapping are ignored.
    """
    order: list[bytes] = []
    done: set[bytes] = set()
    for root in objects:
        if root in done:
            continue
        stack: list[tuple[bytes, bool]] = [(root, False)]
        while stack:
            oid, expanded = stack.pop()
            if expanded:
                order.append(oid)
                continue
            if oid in done or oid not in objects:
                continue
            done.add(oid)
            stack.append((oid, True))
            stack.extend((c, False) for c in object_children(objects[oid][-1]) if c in objects)
    return order


def is_ancestor(repo: Repository, ancestor: str, descendant: str) -> bool:
    """Is ``ancestor`` reachable from commit ``descendant`` through parents (locally)?"""
    if ancestor == descendant:
        return True
    if not repo.odb.has(ancestor) or not repo.odb.has(descendant):
        return False
    try:
        for commit_id, _ in repo.log(descendant):
            if commit_id == ancestor:
                return True
    except Exception:  # not commits (trees, blobs): only equality counts
        return False
    return False


__all__ = ["children", "children_first", "is_ancestor", "object_children", "reachable", "reachable_from"]
