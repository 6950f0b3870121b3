"""Maintenance: repack, fsck and gc.

Repacking merges many small packs into one, atomically.

Every object of the packs being merged is copied (verified against its id,
never recompressed, except that group members are gathered into new groups)
into a new pack, which is published — pack, then
index — before the old indexes and packs are deleted. A reader that still
holds an old index finds the object again in the new pack (the object
database retries after a refresh), a writer that skipped an object because
an old pack had it is still right, and a crash at any instant leaves every
object in at least one published pack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from . import codec
from .errors import CorruptObject, FormatError, ObjectNotFound
from .graph import object_children, reachable
from .limits import MAX_PACK_OBJECTS
from .objects import BLOB, Commit
from .odb import ObjectDatabase
from .packs import PACK_DIR, IndexEntry, PackWriter, index_path, pack_path
from .progress import announce_total, wants_total
from .storage import LocalStorage, Storage

if TYPE_CHECKING:
    from .repo import Repository


@dataclass(frozen=True)
class RepackResult:
    """What a repack did."""

    packs_before: int
    packs_merged: int
    packs_after: int
    objects_copied: int
    bytes_before: int
    bytes_after: int
    new_pack: str | None


def repack(odb: ObjectDatabase, *, only_smaller_than: int | None = None, min_packs: int = 2) -> RepackResult:
    """Merge packs (all, or those under ``only_smaller_than`` bytes) into one.

    Nothing happens unless at least ``min_packs`` packs qualify.
    """
    odb.flush()
    odb.refresh()
    storage = odb.storage
    before = odb.pack_names
    sizes = {}
    for name in before:
        try:
            sizes[name] = storage.size(pack_path(name))
        except FileNotFoundError:
            continue
    chosen = [n for n in sizes if only_smaller_than is None or sizes[n] < only_smaller_than]
    if len(chosen) < min_packs:
        return RepackResult(len(before), 0, len(before), 0, sum(sizes.values()), sum(sizes.values()), None)
    writers = _Writers(odb)
    copied = 0
    try:
        for name in chosen:
            idx = odb.index(name)
            for oid, entry in _in_pack_order(idx.items()):
                if oid in writers:
                    continue
                _copy(odb, writers, name, oid, entry)
                copied += 1
        new_names = writers.finish()
    except BaseException:
        writers.abort()
        raise
    new_name = new_names[-1] if new_names else None
    for name in chosen:
        if name in new_names:
            continue
        storage.delete(index_path(name))
        storage.delete(pack_path(name))
    odb.refresh()
    after = odb.pack_names
    size_after = 0
    for name in after:
        try:
            size_after += storage.size(pack_path(name))
        except FileNotFoundError:
            pass
    return RepackResult(len(before), len(chosen), len(after), copied, sum(sizes.values()), size_after, new_name)


def _in_pack_order(items: Iterable[tuple[bytes, IndexEntry]]) -> list[tuple[bytes, IndexEntry]]:
    """Entries sorted by where they are stored, so each group is decoded once (from the cache)."""
    return sorted(items, key=lambda it: it[1].offset)


def _copy(odb: ObjectDatabase, writers: _Writers, name: str, oid: bytes, entry: IndexEntry) -> None:
    """Copy one verified object of pack ``name`` to ``writers``: its stored bytes
    verbatim, or for a group member its typed encoding (grouped again there)."""
    if entry.codec == codec.GROUPED:
        writers.add(oid, entry.type_tag, codec.RAW, odb.get_at(name, oid, entry), entry.raw_length)
    else:
        writers.add(oid, entry.type_tag, entry.codec, _read_verified(odb, name, oid, entry), entry.raw_length)


def _read_verified(odb: ObjectDatabase, name: str, oid: bytes, entry: IndexEntry) -> bytes | memoryview:
    """The stored bytes of one object of pack ``name``, checked (sizes first) against its id."""
    where = pack_path(name)
    odb.check_entry(oid, entry, where)
    try:
        data = odb.storage.read_range(where, entry.offset, entry.stored_length)
    except (EOFError, FileNotFoundError):
        raise CorruptObject(oid.hex(), "pack is missing or truncated", where) from None
    odb.decode_verified(oid, entry, data, where)
    return data


class _Writers:
    """New packs for maintenance: a fresh one whenever a pack holds the format's most objects."""

    def __init__(self, odb: ObjectDatabase) -> None:
        self.storage = odb.storage
        self.digest_size = odb.digest_size
        self.group_size = odb.group_size
        self.level = odb.level
        self._open: PackWriter | None = None
        self._done: list[str] = []
        self._seen: set[bytes] = set()

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._seen

    def add(self, oid: bytes, type_tag: int, codec_id: int, data: bytes | memoryview, raw_length: int) -> None:
        if oid in self._seen:
            return
        if self._open is not None and len(self._open) >= MAX_PACK_OBJECTS:
            self._finish_open()
        if self._open is None:
            self._open = PackWriter(self.storage, self.digest_size, group_size=self.group_size, level=self.level)
        self._open.add(oid, type_tag, codec_id, data, raw_length)
        self._seen.add(oid)

    def _finish_open(self) -> None:
        w, self._open = self._open, None
        if w is not None:
            name = w.finish()
            if name is not None:
                self._done.append(name)

    def finish(self) -> list[str]:
        """Publish the open pack; the names of every pack published."""
        self._finish_open()
        return self._done

    def abort(self) -> None:
        """Drop the open pack (packs already published stay: their objects are copies)."""
        if self._open is not None:
            self._open.abort()
            self._open = None


# -- fsck -----------------------------------------------------------------------


@dataclass
class FsckReport:
    """What fsck found: nothing in the lists means the repository is sound."""

    packs_checked: int = 0
    objects_checked: int = 0
    refs_checked: int = 0
    bad_packs: dict[str, str] = field(default_factory=dict)
    """pack name -> what is wrong with the pack or its index."""
    bad_objects: dict[str, str] = field(default_factory=dict)
    """object id -> why it cannot be trusted (corrupt, truncated, wrong hash)."""
    missing_objects: dict[str, list[str]] = field(default_factory=dict)
    """object id -> refs whose graph needs it."""
    damaged_refs: dict[str, list[str]] = field(default_factory=dict)
    """ref name -> bad or missing objects in its graph."""
    bad_refs: dict[str, str] = field(default_factory=dict)
    """ref name -> why its log cannot be read."""
    stray_files: list[str] = field(default_factory=list)
    """temp files left by interrupted writers (harmless; gc removes them)."""

    @property
    def ok(self) -> bool:
        return not (self.bad_packs or self.bad_objects or self.missing_objects or self.damaged_refs or self.bad_refs)


def _stored_total(odb: ObjectDatabase, names: list[str]) -> int:
    """The stored bytes the indexes of ``names`` describe (what fsck reads)."""
    total = 0
    for name in names:
        try:
            groups: set[int] = set()
            for _, e in odb._load_index(name).items():
                if e.codec == codec.GROUPED:
                    if e.offset in groups:
                        continue
                    groups.add(e.offset)
                total += e.stored_length
        except (FormatError, FileNotFoundError):
            pass
    return total


def fsck(repo: Repository, *, full: bool = True, progress: Callable[[int], None] | None = None) -> FsckReport:
    """Check every pack against its index, every object against its id
    (``full``), and every ref's graph for completeness."""
    report = FsckReport()
    odb = repo.odb
    storage = repo.storage
    odb.flush()
    names = sorted({n[: -len(".idx")] for n in storage.listdir(PACK_DIR) if n.endswith(".idx")})
    if wants_total(progress):
        announce_total(progress, _stored_total(odb, names))
    for name in names:
        report.packs_checked += 1
        try:
            idx = odb._load_index(name)
        except (FormatError, FileNotFoundError) as exc:
            report.bad_packs[name] = f"index unreadable: {exc}"
            continue
        try:
            size = storage.size(pack_path(name))
        except FileNotFoundError:
            report.bad_packs[name] = "pack file missing"
            for oid in idx.ids():
                report.bad_objects[oid.hex()] = f"its pack {name} is missing"
            continue
        groups: set[int] = set()  # a group's bytes count once, for its first member
        for oid, entry in _in_pack_order(idx.items()):
            report.objects_checked += 1
            first_in_group = entry.codec != codec.GROUPED or entry.offset not in groups
            groups.add(entry.offset)
            if progress is not None and first_in_group:
                progress(entry.stored_length)
            try:
                odb.check_entry(oid, entry, pack_path(name))
            except CorruptObject as exc:
                report.bad_objects[oid.hex()] = exc.reason + f" (pack {name})"
                continue
            if entry.offset + entry.stored_length > size:
                report.bad_objects[oid.hex()] = f"truncated: pack {name} ends at {size}"
                continue
            if not full:
                continue
            try:
                if entry.codec == codec.GROUPED:
                    odb.get_at(name, oid, entry)  # each group is read once: members come in pack order
                else:
                    data = storage.read_range(pack_path(name), entry.offset, entry.stored_length)
                    odb.decode_verified(oid, entry, data, pack_path(name))
            except EOFError as exc:
                report.bad_objects[oid.hex()] = f"undecodable in pack {name}: {exc}"
                continue
            except CorruptObject as exc:
                reason = exc.reason
                if reason == "content does not hash to its id":
                    report.bad_objects[oid.hex()] = f"content does not hash to its id (pack {name})"
                elif reason == "type tag disagrees with the pack index":
                    report.bad_objects[oid.hex()] = f"type tag disagrees with the index (pack {name})"
                else:
                    report.bad_objects[oid.hex()] = f"undecodable in pack {name}: {reason}"
    for path in storage.listdir("tmp"):
        report.stray_files.append(f"tmp/{path}")
    _check_refs(repo, report)
    return report


def _check_refs(repo: Repository, report: FsckReport) -> None:
    odb = repo.odb
    shallow = {str(c) for c in repo.shallow_commits()}
    good: set[bytes] = set()  # objects whose whole graph checked out
    try:
        names = repo.refs.names()
    except FormatError as exc:  # the packed refs (format version 3): no ref can be read
        report.bad_refs["(packed refs)"] = str(exc)
        return
    for name in names:
        report.refs_checked += 1
        try:
            head = repo.refs.head(name)
        except FormatError as exc:
            report.bad_refs[name] = str(exc)
            continue
        if head is None or head.new is None:
            continue
        problems = _graph_problems(odb, odb.raw_id(head.new), good, report, shallow)
        if problems:
            report.damaged_refs[name] = problems
            for oid in problems:
                if oid in report.missing_objects:
                    report.missing_objects[oid].append(name)


def _graph_problems(odb: ObjectDatabase, root: bytes, good: set[bytes], report: FsckReport, shallow: set[str]) -> list[str]:
    """Bad or missing objects in the graph under ``root``."""
    stack = [root]
    seen: set[bytes] = set()
    problems: set[str] = set()
    while stack:
        oid = stack.pop()
        if oid in seen or oid in good:
            continue
        seen.add(oid)
        hexid = oid.hex()
        if hexid in report.bad_objects:
            problems.add(hexid)
            continue
        loc = odb.locate(oid)
        if loc is None:
            report.missing_objects.setdefault(hexid, [])
            problems.add(hexid)
            continue
        if loc[1].type_tag == BLOB:
            continue
        try:
            obj = odb.get(oid)
        except (CorruptObject, FormatError, ObjectNotFound) as exc:
            report.bad_objects.setdefault(hexid, str(exc))
            problems.add(hexid)
            continue
        kids = object_children(obj)
        if isinstance(obj, Commit) and hexid in shallow:
            kids = [bytes.fromhex(obj.tree)] + [bytes.fromhex(p) for p in obj.parents if odb.has(p)]
        stack.extend(kids)
    if not problems:
        good.update(seen)
    return sorted(problems)


# -- gc -------------------------------------------------------------------------


@dataclass(frozen=True)
class GcResult:
    """What gc removed."""

    objects_removed: int
    bytes_freed: int
    packs_rewritten: int
    packs_deleted: int
    temp_files_removed: int


def gc(repo: Repository, grace: timedelta = timedelta(hours=1), progress: Callable[[int], None] | None = None) -> GcResult:
    """Remove objects no ref (nor ref history) reaches, by rewriting packs.

    Packs younger than ``grace`` are left alone: a writer may have just
    stored objects it is about to commit (and writers refresh the age of a
    pack whose objects they reuse). Survivors are copied, verified, into a
    new pack published before the old packs are deleted, so a crash at any
    point loses nothing.
    """
    odb = repo.odb
    storage = repo.storage
    odb.flush()
    odb.refresh()
    cutoff = time.time() - grace.total_seconds()
    live = reachable(repo)
    removed = freed = rewritten = deleted = 0
    writers = _Writers(odb)
    doomed: list[str] = []
    try:
        for name in list(odb.pack_names):
            if _age_marker(storage, name) > cutoff:
                continue
            idx = odb.index(name)
            dead = [(oid, e) for oid, e in idx.items() if oid not in live]
            if not dead:
                continue
            keep = _in_pack_order((oid, e) for oid, e in idx.items() if oid in live)
            for oid, e in keep:
                if progress is not None:
                    progress(odb.stored_share(name, e))
                try:
                    _copy(odb, writers, name, oid, e)
                except CorruptObject as exc:
                    raise CorruptObject(oid.hex(), f"{exc.reason}; run fsck before gc", exc.where) from None
            removed += len(dead)
            freed += sum(odb.stored_share(name, e) for _, e in dead)
            doomed.append(name)
            if keep:
                rewritten += 1
            else:
                deleted += 1
        writers.finish()
    except BaseException:
        writers.abort()
        raise
    for name in doomed:
        storage.delete(index_path(name))
        storage.delete(pack_path(name))
    temps = 0
    for leaf in storage.listdir("tmp"):
        if _mtime(storage, f"tmp/{leaf}") < cutoff:
            storage.delete(f"tmp/{leaf}")
            temps += 1
    odb.refresh()
    return GcResult(removed, freed, rewritten, deleted, temps)


def _mtime(storage: Storage, path: str) -> float:
    if isinstance(storage, LocalStorage):
        try:
            return os.stat(storage.full(path)).st_mtime
        except FileNotFoundError:
            return time.time()
    try:
        info = storage.fs.info(storage.full(path))  # type: ignore[attr-defined]
    except FileNotFoundError:
        return time.time()
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return value.timestamp() if hasattr(value, "timestamp") else float(value)
    return time.time()  # unknown age: treat as young, never delete


def _age_marker(storage: Storage, name: str) -> float:
    """When a pack was last written or had its objects reused (the newer of pack and index)."""
    return max(_mtime(storage, pack_path(name)), _mtime(storage, index_path(name)))
