"""Differences between two trees, file by file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .ids import ObjectId
from .objects import Tree, TreeEntry


@dataclass(frozen=True)
class Change:
    """One path that differs: ``added``, ``removed`` or ``modified``."""

    status: str
    path: str
    old: TreeEntry | None
    new: TreeEntry | None

    @property
    def size_delta(self) -> int:
        return (self.new.size if self.new else 0) - (self.old.size if self.old else 0)


def _expand(get_tree: Callable[[ObjectId], Tree], entry: TreeEntry, path: str) -> Iterator[tuple[str, TreeEntry]]:
    """The leaves under an entry (an empty directory is its own leaf)."""
    if entry.kind != "dir":
        yield path, entry
        return
    assert entry.id is not None
    tree = get_tree(entry.id)
    if not tree.entries:
        yield path, entry
    for child in tree.entries:
        yield from _expand(get_tree, child, f"{path}/{child.name}")


def diff_trees(get_tree: Callable[[ObjectId], Tree], a: ObjectId | None, b: ObjectId | None, prefix: str = "") -> Iterator[Change]:
    """Changes from tree ``a`` to tree ``b``, sorted by path; equal subtrees are skipped by id."""
    if a == b:
        return
    old = {e.name: e for e in get_tree(a).entries} if a else {}
    new = {e.name: e for e in get_tree(b).entries} if b else {}
    for name in sorted(old.keys() | new.keys(), key=lambda n: n.encode("utf-8")):
        path = f"{prefix}{name}"
        o, n = old.get(name), new.get(name)
        if o == n:
            continue
        if o is not None and n is not None and o.kind == "dir" and n.kind == "dir":
            yield from diff_trees(get_tree, o.id, n.id, path + "/")
            continue
        if o is not None and n is not None and o.kind != "dir" and n.kind != "dir":
            yield Change("modified", path, o, n)
            continue
        if o is not None:
            for p, leaf in _expand(get_tree, o, path):
                yield Change("removed", p, leaf, None)
        if n is not None:
            for p, leaf in _expand(get_tree, n, path):
                yield Change("added", p, None, leaf)
