"""``Repository``: the public face of an objstore repository.

A repository is a folder, local or on any fsspec filesystem::

    config              format version, hash algorithm, chunking (JSON)
    packs/<name>.pack   objects, back to back
    packs/<name>.idx    sorted index of one pack
    refs/<key>@<seq>    one loose entry of a ref's append-only log
    refs/!packed@<gen>  every ref's log up to a generation (format version 3;
                        version 2 and older: refs/<name>/@<seq>)
    tmp/                temp files of writers in progress
    cache/              local caches (stat cache), never required
"""

from __future__ import annotations

import heapq
import io
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .checkout import CheckoutResult, Materializer, content_id
from .chunking import iter_chunks
from .config import CONFIG_PATH, RepoConfig
from .diff import Change, diff_trees
from .errors import (
    CorruptObject,
    FormatError,
    NotARepository,
    ObjectNotFound,
    PathNotFound,
    RefNotFound,
    RepositoryExists,
    StorageError,
    WrongObjectType,
)
from .ids import ObjectId, get_algorithm, is_hex
from .lastcheckout import CheckoutRecord, prune
from .limits import MAX_CONFIG_SIZE
from .maintenance import FsckReport, GcResult, RepackResult, fsck, gc, repack
from .objects import (
    COMMIT,
    KIND_NAMES,
    TREE,
    Blob,
    ChunkedBlob,
    Commit,
    Tree,
    TreeEntry,
    canonical,
    tree_rows,
    validate_name,
)
from .odb import ObjectDatabase
from .reader import open_blob
from .refs import RefStore, validate_ref_name
from .remote import Remote, TransferResult
from .snapshot import FilesUnder, Snapshotter
from .statcache import StatCache
from .storage import LocalStorage, Storage, open_storage

AUTO_REPACK_PACKS = 32
"""Packs in a repository past which its small packs are merged after a write."""

Progress = Callable[[int], None]
_ANCESTRY = re.compile(r"(.+?)((?:[~^]\d*)+)")
_STEP = re.compile(r"([~^])(\d*)")


@dataclass(frozen=True)
class RepoStats:
    """Sizes and counts of a repository."""

    logical_bytes: int
    """Bytes of every distinct commit's tree, as a user would count them."""
    raw_bytes: int
    """Uncompressed bytes of every distinct stored object."""
    stored_bytes: int
    """Bytes of pack files and indexes on storage."""
    objects: int
    packs: int
    refs: int
    commits: int
    files_on_disk: int

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0


@dataclass(frozen=True)
class SnapshotStats:
    """What one snapshot went through."""

    files: int
    """Regular files (unchanged ones, known from the stat cache, included)."""
    bytes: int
    """Their bytes."""


def _cache_dir(storage: Storage, repo_id: str) -> str:
    if isinstance(storage, LocalStorage):
        return os.path.join(storage.root, "cache")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "objstore", repo_id)


def _has_entries(folder: str) -> bool:
    """True if ``folder`` is a directory with anything in it."""
    try:
        with os.scandir(folder) as it:
            return next(it, None) is not None
    except OSError:
        return False


class Repository:
    """A content-addressed store of files, trees, commits and refs."""

    def __init__(self, storage: Storage, config: RepoConfig) -> None:
        self.storage = storage
        self.config = config
        self.algorithm = get_algorithm(config.hash)
        self.cache_dir = _cache_dir(storage, config.repo_id)
        remote = not isinstance(storage, LocalStorage)
        self.odb = ObjectDatabase(
            storage,
            self.algorithm,
            level=config.compression_level,
            pack_size=config.pack_size,
            index_cache_dir=os.path.join(self.cache_dir, "packs") if remote else None,
            max_blob=config.max_blob,
            group_size=config.group_size,
        )
        self.refs = RefStore(
            storage,
            self._check_ref_target,
            entry_cache_dir=os.path.join(self.cache_dir, "refs") if remote else None,
            packed=config.packed_refs,
        )
        salt = f"{config.hash}:{sorted(config.chunking.to_dict().items())}"
        self.statcache = StatCache(os.path.join(self.cache_dir, "stat"), salt)
        self._tls = threading.local()  # batch depth is per thread, like the open pack

    # -- lifecycle --------------------------------------------------------

    @classmethod
    def init(
        cls,
        location: str | os.PathLike[str],
        hash: str = "xxh3-128",
        *,
        storage_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> Repository:
        """Create a repository; ``RepositoryExists`` if there already is one.

        ``options`` may set ``chunking`` (a ChunkParams), ``compression_level``
        and ``pack_size``; they are recorded in the config.
        """
        location = os.fspath(location)
        config = RepoConfig(hash=hash, **options)
        storage = open_storage(location, storage_options)
        if isinstance(storage, LocalStorage) and os.path.isfile(storage.root):
            raise NotARepository(location, "a file, not a directory, is")
        if not storage.put_if_absent(CONFIG_PATH, config.encode()):
            raise RepositoryExists(location)
        return cls(storage, config)

    @classmethod
    def open(cls, location: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> Repository:
        """Open an existing repository; ``NotARepository`` if there is none."""
        location = os.fspath(location)
        storage = open_storage(location, storage_options)
        try:
            raw = storage.read_bounded(CONFIG_PATH, MAX_CONFIG_SIZE)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotARepository(location) from None
        return cls(storage, RepoConfig.decode(raw, location))

    def close(self) -> None:
        """Publish nothing further and release file handles."""
        self.odb.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Repository({self.storage.url!r})"

    @property
    def location(self) -> str:
        return self.storage.url

    # -- resolving names ----------------------------------------------------

    def resolve(self, spec: str) -> ObjectId:
        """A full object id from a ref name, a full id or a unique 8+ hex prefix.

        Any of these may end in parent steps, as in git: ``REF^`` (or
        ``REF^1``) is the first parent, ``REF^2`` the second, ``REF^0`` the
        commit itself, ``REF~N`` the N-th first-parent ancestor (``REF~`` =
        ``REF~1``); steps chain (``main~2^2``). A ref whose own name ends
        that way (``~`` is allowed in ref names) wins over the steps.
        """
        if not isinstance(spec, str) or not spec:
            raise ObjectNotFound(repr(spec), "not a ref name or object id")
        m = _ANCESTRY.fullmatch(spec)
        if m is not None and m.group(1):
            try:
                return self._resolve_name(spec)
            except (RefNotFound, ObjectNotFound):
                pass
            oid = self._resolve_name(m.group(1))
            for op, digits in _STEP.findall(m.group(2)):
                n = int(digits) if digits else 1
                steps, index = (n, 0) if op == "~" else (min(n, 1), n - 1)
                for _ in range(steps):
                    parents = self.odb.get_as(oid, Commit).parents
                    if index >= len(parents):
                        has = f"only {len(parents)} parent{'s' if len(parents) > 1 else ''}" if parents else "no parent"
                        raise ObjectNotFound(spec, f"no such ancestor (commit {oid[:12]} has {has})")
                    oid = ObjectId(parents[index])
                    if not self.odb.has(oid):
                        raise ObjectNotFound(spec, f"history was not fetched (shallow) past {oid[:12]}")
            return oid
        return self._resolve_name(spec)

    def _resolve_name(self, spec: str) -> ObjectId:
        full = self.algorithm.hex_length
        if len(spec) == full and is_hex(spec):
            return self.odb.resolve_prefix(spec)
        try:
            validate_ref_name(spec)
            return self.refs.get(spec)
        except (RefNotFound, ValueError):
            pass
        if is_hex(spec.lower()):
            return self.odb.resolve_prefix(spec)  # explains that a prefix needs 8+ digits
        raise RefNotFound(spec)

    def _check_ref_target(self, target: str) -> ObjectId:
        self.flush()  # a ref may only point at durable objects
        oid = self.resolve(target)
        if not self.odb.has(oid):
            raise ObjectNotFound(oid)
        return oid

    def kind(self, spec: str) -> str:
        """``blob``, ``chunked``, ``tree`` or ``commit``."""
        return self.odb.type_of(self.resolve(spec))

    def get(self, spec: str) -> Any:
        """The decoded object (Blob, ChunkedBlob, Tree or Commit)."""
        return self.odb.get(self.resolve(spec))

    def get_commit(self, spec: str) -> Commit:
        return self.odb.get_as(self.resolve(spec), Commit)

    def get_tree(self, spec: str) -> Tree:
        return self.odb.get_as(self.resolve(spec), Tree)

    def tree_of(self, commit_or_tree: str) -> ObjectId:
        """The tree id of a commit, or the id itself if it names a tree."""
        oid = self.resolve(commit_or_tree)
        # Told by the encoding's type tag: a tree is not decoded (a flat one of 100,000 files took ~0.8 s).
        tag = self.odb.get_encoded(oid)[0]
        if tag == COMMIT:
            return self.odb.get_as(oid, Commit).tree
        if tag == TREE:
            return oid
        raise WrongObjectType(oid, "commit or tree", KIND_NAMES.get(tag, "unknown object"))

    @property
    def _batch_depth(self) -> int:
        return getattr(self._tls, "batch_depth", 0)  # type: ignore[no-any-return]

    @_batch_depth.setter
    def _batch_depth(self, depth: int) -> None:
        self._tls.batch_depth = depth

    # -- writing ------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[Repository]:
        """Group writes into one pack: snapshots and commits inside the block
        publish together when it ends (or when a ref is moved, since a ref
        may only point at durable objects). On an exception nothing written
        in the block is published.
        """
        self._batch_depth += 1
        try:
            yield self
        except BaseException:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self.odb.abort()
            raise
        self._batch_depth -= 1
        if self._batch_depth == 0:
            self.flush()

    def _durable(self) -> None:
        if self._batch_depth == 0:
            self.flush()

    def flush(self) -> None:
        """Publish pending writes; once many small packs exist, merge them.

        Each small commit makes a small pack, so a busy store would grow one
        file per commit; past :data:`AUTO_REPACK_PACKS` packs the small ones
        are merged (atomically, racing writers safely).
        """
        self.odb.flush()
        if len(self.odb.pack_names) >= AUTO_REPACK_PACKS:
            try:
                repack(self.odb, only_smaller_than=self.odb.pack_size // 16, min_packs=AUTO_REPACK_PACKS)
            except (FileNotFoundError, CorruptObject):
                pass  # a concurrent repack got there first, or fsck has work to do: try next time

    def snapshot(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> ObjectId:
        """Store a directory or file (symlinks as links, never followed); return its Tree id.

        Everything is durable when this returns. Unchanged files (same size,
        mtime, inode) are recognized from the stat cache without reading them.
        """
        snap = Snapshotter(self.odb, self.config.chunking, self.statcache, progress)
        tree = self._writing(lambda: snap.snapshot(os.fspath(path)))
        self._tls.last_snapshot = SnapshotStats(snap.files, snap.bytes_read)
        return tree

    @property
    def last_snapshot(self) -> SnapshotStats | None:
        """Files and bytes the last :meth:`snapshot` in this thread went through (None before one)."""
        return getattr(self._tls, "last_snapshot", None)

    def build_tree(
        self,
        files: Mapping[str, str | os.PathLike[str] | TreeEntry | FilesUnder],
        *,
        progress: Progress | None = None,
        rows: dict[bytes, list[Any]] | None = None,
    ) -> ObjectId:
        """Store a tree laid out by logical paths (``{"sub/a.bin": "/local/a.bin", ...}``).

        Values are local files (symlinks followed), local directories
        (stored recursively, as :meth:`snapshot` does), :class:`FilesUnder`
        directories (their regular files only, symlinks to files followed;
        unchanged ones answered from the stat cache) or ready ``TreeEntry``
        values such as external references. Intermediate directories are created; ``..``, absolute
        paths, duplicates and file/directory collisions raise ``UnsafePath``.

        ``rows``, if given, receives the rows of each tree this call encodes
        from a directory it lists (raw tree id -> the rows, as
        :func:`objstore.objects.tree_rows` would decode them): a caller about
        to walk the new tree need not read those trees back. Trees answered
        from the stat cache, or built from the logical paths, are not in it.
        """
        snap = Snapshotter(self.odb, self.config.chunking, self.statcache, progress)
        snap.tree_rows = rows
        return self._writing(lambda: snap.tree_from_files(files))

    def _writing(self, work: Callable[[], ObjectId]) -> ObjectId:
        try:
            oid = work()
            self._durable()
        except BaseException:
            if self._batch_depth == 0:
                self.odb.abort()
            raise
        finally:
            self.statcache.save()
        return oid

    def store_bytes(self, data: bytes) -> ObjectId:
        """Store bytes as a file's content (durable on return); return its id.

        Up to ``chunking.small_file`` bytes make one Blob; more are chunked
        like a snapshotted file (the id is the one a file of these bytes gets).
        """
        params = self.config.chunking
        if len(data) <= params.small_file:
            oid = self.odb.put(Blob(bytes(data)))
        else:
            chunks = [(self.odb.put(Blob(bytes(view))), len(view)) for view in iter_chunks(io.BytesIO(data), params)]
            oid = chunks[0][0] if len(chunks) == 1 else self.odb.put(ChunkedBlob(tuple(chunks)))
        self._durable()
        return oid

    def make_tree(self, entries: list[TreeEntry]) -> ObjectId:
        """Store a tree built from entries (their objects must be stored); return its id."""
        for e in entries:
            if e.id is not None and not self.odb.has(e.id):
                raise ObjectNotFound(e.id, f"tree entry {e.name!r} points at a missing object")
        oid = self.odb.put(Tree.from_entries(entries))
        self._durable()
        return oid

    def commit(
        self,
        tree: str,
        parents: list[str] | tuple[str, ...] = (),
        message: str = "",
        metadata: dict[str, Any] | None = None,
        author: str | None = None,
        *,
        timestamp: float | None = None,
    ) -> ObjectId:
        """Record a commit of ``tree``; return its id (durable on return)."""
        tree_id = self.resolve(tree)
        self._check_tree(tree_id)
        parent_ids = []
        for p in parents:
            pid = self.resolve(p)
            self.odb.get_as(pid, Commit)
            parent_ids.append(pid)
        try:
            meta = canonical(dict(metadata or {}))
        except TypeError as exc:
            raise TypeError(f"commit metadata cannot be stored: {exc}") from None
        except RecursionError:
            raise TypeError("commit metadata cannot be stored: it is nested too deeply") from None
        c = Commit(tree_id, tuple(parent_ids), time.time() if timestamp is None else float(timestamp), author, message, meta)
        oid = self.odb.put(c)
        self._durable()
        return oid

    def _check_tree(self, tree_id: ObjectId) -> None:
        """``tree_id`` is a stored, well-formed tree: checked as rows, without an entry
        object per file (decoding a flat tree of 100,000 files took ~0.8 s)."""
        encoded, where = self.odb.get_encoded_from(tree_id)
        if not len(encoded) or encoded[0] != TREE:
            raise WrongObjectType(tree_id, "tree", KIND_NAMES.get(encoded[0], "unknown") if len(encoded) else "empty object")
        try:
            tree_rows(encoded, self.odb.digest_size)
        except FormatError as exc:
            raise CorruptObject(tree_id, str(exc), where) from None

    # -- reading ------------------------------------------------------------

    def _entry(self, tree_id: ObjectId, path: str) -> TreeEntry | None:
        """The entry at ``path`` under a tree (None for the root itself)."""
        parts = [p for p in path.strip("/").split("/") if p]
        entry: TreeEntry | None = None
        current = tree_id
        for i, part in enumerate(parts):
            validate_name(part)
            if i and (entry is None or entry.kind != "dir"):
                raise PathNotFound(path, f"tree {tree_id}")
            entry = self.odb.get_as(current, Tree).get(part)
            if entry is None:
                raise PathNotFound(path, f"tree {tree_id}")
            if entry.kind == "dir":
                assert entry.id is not None
                current = entry.id
        return entry

    def entry(self, commit_or_tree: str, path: str) -> TreeEntry:
        """The tree entry at ``path`` (``PathNotFound`` if there is none)."""
        e = self._entry(self.tree_of(commit_or_tree), path)
        if e is None:
            raise PathNotFound(path, "(the root has no entry)")
        return e

    def open_file(self, commit_or_tree: str, path: str) -> io.BufferedReader:
        """A seekable binary stream of one stored file; reads only the chunks it needs."""
        e = self.entry(commit_or_tree, path)
        if e.kind != "file":
            raise PathNotFound(path, f"a {e.kind}, not a file,")
        assert e.id is not None
        return open_blob(self.odb, e.id, path)

    def read_file(self, commit_or_tree: str, path: str) -> bytes:
        with self.open_file(commit_or_tree, path) as f:
            return f.read()

    def ls(self, tree: str, path: str = "") -> list[TreeEntry]:
        """Entries of the directory at ``path`` (default: the root)."""
        tree_id = self.tree_of(tree)
        e = self._entry(tree_id, path)
        if e is not None:
            if e.kind != "dir":
                return [e]
            assert e.id is not None
            tree_id = e.id
        return list(self.odb.get_as(tree_id, Tree).entries)

    def walk(self, tree: str, path: str = "") -> Iterator[tuple[str, TreeEntry]]:
        """Every entry under ``path``, depth first in name order, as (path, entry)."""
        root = self.tree_of(tree)
        start = self._entry(root, path)
        prefix = path.strip("/")
        if start is not None and start.kind != "dir":
            yield prefix, start
            return
        tree_id = start.id if start is not None else root
        assert tree_id is not None
        yield from self._walk(tree_id, prefix + "/" if prefix else "")

    def _walk(self, tree_id: ObjectId, prefix: str) -> Iterator[tuple[str, TreeEntry]]:
        for e in self.odb.get_as(tree_id, Tree).entries:
            yield prefix + e.name, e
            if e.kind == "dir":
                assert e.id is not None
                yield from self._walk(e.id, f"{prefix}{e.name}/")

    def log(self, ref_or_commit: str, limit: int | None = None) -> Iterator[tuple[ObjectId, Commit]]:
        """Commits reachable from ``ref_or_commit``, newest first, as (id, commit)."""
        start = self.resolve(ref_or_commit)
        first = self.odb.get_as(start, Commit)
        heap: list[tuple[float, str, Commit]] = [(-first.time, start, first)]
        seen = {start}
        n = 0
        while heap and (limit is None or n < limit):
            _, oid, c = heapq.heappop(heap)
            yield ObjectId(oid), c
            n += 1
            for p in c.parents:
                if p not in seen:
                    seen.add(p)
                    if not self.odb.has(p) and self.is_shallow(oid):
                        continue  # history cut on purpose by a shallow fetch
                    pc = self.odb.get_as(p, Commit)
                    heapq.heappush(heap, (-pc.time, p, pc))

    def diff(self, a: str | None, b: str | None) -> list[Change]:
        """File-level changes from ``a`` to ``b`` (commits or trees; None = empty)."""
        ta = self.tree_of(a) if a else None
        tb = self.tree_of(b) if b else None
        return list(diff_trees(lambda t: self.odb.get_as(t, Tree), ta, tb))

    def checkout(
        self,
        commit_or_tree: str,
        dest: str | os.PathLike[str],
        paths: list[str] | None = None,
        *,
        skip_existing: bool = True,
        progress: Progress | None = None,
    ) -> CheckoutResult:
        """Materialize a tree (or selected ``paths`` of it) under ``dest``.

        Every byte is verified against its id; files already present with
        the right content are left alone; nothing is written outside ``dest``.

        A full checkout (no ``paths``) into a folder that holds an earlier
        checkout from this repository makes it match the version: files and
        symlinks that checkout wrote and this version lacks are removed
        (``result.removed``), unless they changed since (kept, listed in
        ``result.left``). Files no checkout wrote are never touched. What
        each checkout placed is remembered per folder in the repository's
        local cache.
        """
        tree_id = self.tree_of(commit_or_tree)
        real = os.path.realpath(os.fspath(dest))
        # Into a missing or empty folder there is nothing to tidy up: the old record is moot.
        record = CheckoutRecord.load(self.cache_dir, real) if _has_entries(real) else CheckoutRecord(real)
        materializer = Materializer(self.odb, self.config.chunking, progress)
        materializer.placed = {}
        result = materializer.run(tree_id, real, paths, skip_existing)
        if paths is None:
            result.removed, result.left = prune(
                record, materializer.selected, lambda path: content_id(path, self.config.chunking, self.algorithm)
            )
            record.paths = {}  # a file left because it changed is the user's from now on
        record.paths.update(materializer.placed)
        record.save(self.cache_dir)
        return result

    # -- remotes --------------------------------------------------------------

    def push(
        self,
        url: str,
        refs: list[str] | str | None = None,
        *,
        force: bool = False,
        create: bool = False,
        storage_options: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> TransferResult:
        """Send what ``url`` lacks of ``refs`` (default: all) and move its refs.

        ``url`` must hold a repository (``NotARepository`` naming it
        otherwise, so a mistyped URL creates nothing); with ``create=True``
        one is created there first if it holds none, with this repository's
        hash, chunking and pack settings. A remote ref that moved to
        something that is not an ancestor of ours raises
        :class:`~objstore.errors.PushRejected` (objects already sent stay)
        unless ``force``.
        """
        hint = f"create one with `objstore init {url}` or Repository.init(url), or push with --create (create=True)"
        remote = Remote(self, url, storage_options, create=create, progress=progress, missing_hint=hint)
        try:
            return remote.push(refs, force=force)
        finally:
            remote.close()

    def fetch(
        self,
        url: str,
        refs: list[str] | str | None = None,
        *,
        depth: int | None = None,
        storage_options: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> TransferResult:
        """Bring in what ``refs`` (default: all) of ``url`` need; fast-forward local refs.

        ``depth=1`` fetches only the commits the refs point at (and their
        trees), not their history. Refs that diverged locally are left alone
        and listed in ``refs_rejected``.
        """
        remote = Remote(self, url, storage_options, progress=progress)
        try:
            return remote.fetch(refs, depth=depth)
        finally:
            remote.close()

    def mark_shallow(self, commit_id: str) -> None:
        """Record that a commit's parents were deliberately not fetched."""
        self.storage.put_if_absent(f"shallow/{commit_id}", b"")

    def is_shallow(self, commit_id: str) -> bool:
        return self.storage.exists(f"shallow/{commit_id}")

    def shallow_commits(self) -> list[ObjectId]:
        """Commits whose history a shallow fetch left behind."""
        return [ObjectId(n) for n in self.storage.listdir("shallow") if is_hex(n)]

    def unmark_shallow(self, commit_id: str) -> None:
        self.storage.delete(f"shallow/{commit_id}")

    @classmethod
    def clone(
        cls,
        url: str,
        dest: str | os.PathLike[str],
        *,
        storage_options: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> Repository:
        """A new repository at ``dest`` with every ref and object of ``url``."""
        src = open_storage(url, storage_options)
        try:
            raw = src.read_bounded(CONFIG_PATH, MAX_CONFIG_SIZE)
        except (FileNotFoundError, NotADirectoryError):
            raise NotARepository(url) from None
        finally:
            src.close()
        theirs = RepoConfig.decode(raw, url)
        repo = cls.init(
            dest,
            theirs.hash,
            chunking=theirs.chunking,
            compression_level=theirs.compression_level,
            pack_size=theirs.pack_size,
        )
        repo.fetch(url, storage_options=storage_options, progress=progress)
        return repo

    # -- maintenance ----------------------------------------------------------

    def repack(self, *, only_smaller_than: int | None = None) -> RepackResult:
        """Merge packs into one (all of them, or those under a size), atomically.

        The ref logs are compacted too (format version 3): every loose entry
        goes into a new packed generation.
        """
        self.refs.compact()
        return repack(self.odb, only_smaller_than=only_smaller_than)

    def fsck(
        self,
        *,
        full: bool = True,
        url: str | None = None,
        storage_options: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> FsckReport:
        """Check packs against indexes, (``full``) every object against its id,
        and every ref's graph for completeness; report what is bad and which
        refs it damages. With ``url``, check that repository (a remote) instead."""
        if url is not None:
            with Repository.open(url, storage_options=storage_options) as other:
                return fsck(other, full=full, progress=progress)
        return fsck(self, full=full, progress=progress)

    def gc(self, grace: timedelta = timedelta(hours=1), *, progress: Progress | None = None) -> GcResult:
        """Remove objects unreachable from every ref and ref history entry
        (packs younger than ``grace`` are kept whole). The ref logs are
        compacted first (format version 3)."""
        try:
            self.refs.compact()
        except StorageError:
            pass  # a read-only store: gc may still have nothing to write
        return gc(self, grace, progress)

    # -- accounting ---------------------------------------------------------

    def reachable_commits(self) -> set[ObjectId]:
        """Every commit reachable from any live ref."""
        seen: set[ObjectId] = set()
        stack = [t for t in self.refs.list().values()]
        while stack:
            oid = stack.pop()
            if oid in seen:
                continue
            try:
                obj = self.odb.get(oid)
            except FormatError:
                continue
            if isinstance(obj, Commit):
                seen.add(oid)
                stack.extend(obj.parents)
        return seen

    def added_bytes(self, specs: list[str]) -> list[int]:
        """Stored (on-storage) bytes each commit or tree adds over the ones before it in ``specs``.

        ``specs`` in order, oldest first: the first counts everything it
        holds, each next one only the objects none before it had (its
        commit, new trees and new chunks). Their sum is what the sequence
        costs on storage together.
        """
        from .usage import added_bytes

        full = self.algorithm.hex_length
        return added_bytes(self.odb, [s if len(s) == full and is_hex(s) else self.resolve(s) for s in specs])

    def stats(self) -> RepoStats:
        """Logical and stored bytes, object/pack/ref counts, files on disk."""
        self.odb.refresh()
        raw = 0
        objects: set[bytes] = set()
        stored = 0
        for name in self.odb.pack_names:
            idx = self.odb.index(name)
            for oid, e in idx.items():
                if oid not in objects:
                    objects.add(oid)
                    raw += e.raw_length
            stored += self.storage.size(f"packs/{name}.pack") + self.storage.size(f"packs/{name}.idx")
        commits = self.reachable_commits()
        logical = sum(self.odb.get_as(self.odb.get_as(c, Commit).tree, Tree).size for c in commits)
        files = len([p for p in self.storage.walk_files("") if not p.startswith("cache/")])
        return RepoStats(logical, raw, stored, len(objects), len(self.odb.pack_names), len(self.refs.list()), len(commits), files)
