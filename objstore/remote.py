"""Push, fetch and clone between a repository and any fsspec URL.

A remote is a folder with the same layout as a local repository. Transfers
move only what the other side lacks, and their round trips depend on the
number of packs and refs, not on the number of objects:

* **push** reads the remote's pack indexes (cached locally by name, since
  packs are immutable), walks the local graph from the pushed refs and stops
  at anything the remote has, writes exactly the missing objects, leaves
  first, into new packs (uploaded pack then index, so a half-done upload is
  invisible and a resumed push re-sends only whole packs that did not
  arrive), then moves each remote ref with put-if-absent of its next log
  entry. A remote ref that moved to something that is not an ancestor of
  ours is never overwritten: :class:`PushRejected` names it.
* **fetch** lists the remote's refs in one request (log entries are cached
  locally), then pulls the missing closure level by level with coalesced
  ranged reads of the remote packs. Every object is verified against its id
  on arrival. File contents are written as they arrive; trees, chunk lists
  and commits are written last, leaves first, so the local store never holds
  an object without everything below it, and an interrupted fetch resumes
  without downloading the file contents again.

An ``http(s)://`` URL served by ``objstore serve`` is not a folder: there
:class:`Remote` hands push and fetch to :class:`~objstore.smart.SmartRemote`,
which does each in a fixed handful of requests (see ``docs/server.md``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from . import codec
from .config import CONFIG_PATH, RepoConfig
from .errors import (
    CorruptObject,
    FormatError,
    NotARepository,
    ObjectNotFound,
    PushRejected,
    RefConflict,
    RefNotFound,
    RemoteError,
)
from .graph import children_first, children_first_until, is_ancestor, object_children
from .ids import ObjectId
from .limits import MAX_CONFIG_SIZE
from .objects import BLOB, Commit, decode
from .odb import ObjectDatabase
from .packs import IndexEntry, PackWriter, pack_path
from .parallel import bounded_map
from .refs import ABSENT, RefLogEntry, RefStore
from .storage import Storage, open_storage

if TYPE_CHECKING:
    from .http import HttpStorage
    from .repo import Repository
    from .smart import SmartRemote

_GAP = 256 * 1024  # read across gaps smaller than this rather than make another request
_SPAN = 16 * 1024 * 1024  # but no single read larger than this (memory stays bounded)


class CountingStorage(Storage):
    """A Storage that counts the operations (≈ requests) made through it."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.url = inner.url
        self.is_local = inner.is_local
        self.requests = 0
        self._count_lock = threading.Lock()

    def _count(self) -> None:
        with self._count_lock:  # uploads run on a background thread
            self.requests += 1

    def read(self, path: str) -> bytes:
        self._count()
        return self.inner.read(path)

    def read_bounded(self, path: str, limit: int) -> bytes:
        self._count()
        return self.inner.read_bounded(path, limit)

    def read_range(self, path: str, start: int, length: int) -> bytes | memoryview:
        self._count()
        return self.inner.read_range(path, start, length)

    def write_atomic(self, path: str, data: bytes) -> None:
        self._count()
        self.inner.write_atomic(path, data)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        self._count()
        return self.inner.put_if_absent(path, data)

    def publish_file(self, local_path: str, path: str) -> None:
        self._count()
        self.inner.publish_file(local_path, path)

    def listdir(self, dirpath: str) -> list[str]:
        self._count()
        return self.inner.listdir(dirpath)

    def walk_files(self, dirpath: str) -> list[str]:
        self._count()
        return self.inner.walk_files(dirpath)

    def exists(self, path: str) -> bool:
        self._count()
        return self.inner.exists(path)

    def size(self, path: str) -> int:
        self._count()
        return self.inner.size(path)

    def delete(self, path: str) -> None:
        self._count()
        self.inner.delete(path)

    def local_temp_dir(self) -> str:
        return self.inner.local_temp_dir()

    def close(self) -> None:
        self.inner.close()


@dataclass
class TransferResult:
    """What a push or fetch moved."""

    objects: int = 0
    bytes: int = 0
    packs: int = 0
    refs_updated: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    refs_unchanged: list[str] = field(default_factory=list)
    refs_rejected: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    requests: int = 0

    @property
    def nothing_to_do(self) -> bool:
        return self.objects == 0 and not self.refs_updated


def _backend_reason(exc: OSError) -> str:
    """"no objstore repository", with what the backend said when it is more than a missing file
    (e.g. S3's "The specified bucket does not exist")."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if exc.errno is not None or not text or CONFIG_PATH in text:
        return "no objstore repository"  # just the config file missing: says nothing more
    return f"no objstore repository ({text})"


class Remote:
    """An objstore repository at a URL, seen from a local repository."""

    def __init__(
        self,
        local: Repository,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        create: bool = False,
        progress: Callable[[int], None] | None = None,
        missing_hint: str = "",
    ) -> None:
        self.local = local
        self.missing_hint = missing_hint
        self.progress = progress
        self.url = url
        inner = open_storage(url, storage_options)
        self.storage = CountingStorage(inner)
        key = hashlib.sha256(self.storage.url.encode()).hexdigest()[:24]
        self.cache_dir = os.path.join(local.cache_dir, "remotes", key)
        self._smart: SmartRemote | None = None
        if inner.smart:
            from .smart import SmartRemote  # only for a server: requests is not needed otherwise

            inner = cast("HttpStorage", inner)
            # An objstore server: the smart protocol, a few requests per transfer.
            self.config = inner.config
            self._check_hash()
            self._smart = SmartRemote(self, inner, self.cache_dir)
            return
        self.config = self._config(create)
        self._check_hash()
        self.odb = ObjectDatabase(
            self.storage,
            local.algorithm,
            level=local.config.compression_level,
            pack_size=self.config.pack_size,
            index_cache_dir=os.path.join(self.cache_dir, "packs"),
            max_blob=self.config.max_blob,
            group_size=self.config.group_size,
        )
        self.refs = RefStore(
            self.storage,
            check_target=ObjectId,
            # By repository id too: a bucket emptied and made again under the same
            # URL reuses entry and generation numbers for other contents.
            entry_cache_dir=os.path.join(self.cache_dir, "refs", self.config.repo_id),
            packed=self.config.packed_refs,
        )
        self._upload_failed = threading.Event()

    def _check_hash(self) -> None:
        if self.config.hash != self.local.config.hash:
            raise RemoteError(
                f"remote {self.url} uses {self.config.hash} ids, this repository {self.local.config.hash}; they cannot exchange objects"
            )

    def _config(self, create: bool) -> RepoConfig:
        try:
            return RepoConfig.decode(self.storage.read_bounded(CONFIG_PATH, MAX_CONFIG_SIZE), self.url)
        except (FileNotFoundError, NotADirectoryError) as exc:
            if not create:
                raise NotARepository(self.url, _backend_reason(exc), hint=self.missing_hint) from None
        mine = self.local.config
        fresh = RepoConfig(hash=mine.hash, chunking=mine.chunking, compression_level=mine.compression_level, pack_size=mine.pack_size)
        if not self.storage.put_if_absent(CONFIG_PATH, fresh.encode()):
            return RepoConfig.decode(self.storage.read_bounded(CONFIG_PATH, MAX_CONFIG_SIZE), self.url)
        return fresh

    def close(self) -> None:
        if self._smart is None:
            self.odb.abort()
        self.storage.close()

    # -- shared helpers ---------------------------------------------------------

    def _selected(self, refs: Iterable[str] | None, available: dict[str, Any]) -> list[str]:
        if refs is None:
            return sorted(available)
        if isinstance(refs, str):
            refs = [refs]
        chosen: list[str] = []
        for r in refs:
            matches = [n for n in available if n == r or n.startswith(r.rstrip("/") + "/")]
            if not matches:
                raise RefNotFound(r)
            chosen.extend(m for m in matches if m not in chosen)
        return sorted(chosen)

    # -- push -----------------------------------------------------------------

    def push(self, refs: Iterable[str] | None = None, *, force: bool = False) -> TransferResult:
        result = TransferResult()
        local = self.local
        local.flush()
        local_refs = local.refs.list()
        names = self._selected(refs, local_refs)
        if self._smart is not None:
            return self._smart.push(names, local_refs, force, result)
        missing = self._missing_on_remote([local_refs[n] for n in names])
        # Each full pack is uploaded on one background thread while the next
        # one is built; one thread keeps publishing in order (leaves first),
        # so whatever the remote has, it has everything below.
        uploads: deque[tuple[Future[str | None], PackWriter]] = deque()
        self._upload_failed = threading.Event()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="objstore-upload") as uploader:
            try:
                for oid in missing:
                    entry, stored, where = local.odb.read_stored(oid)
                    encoded = local.odb.decode_verified(oid, entry, stored, where)
                    self._fits_locally(oid, entry, self.odb.max_blob, f"the remote {self.url}")
                    codec_id = entry.codec
                    if codec_id == codec.GROUPED:  # the remote's writer groups it again, or compresses it alone
                        codec_id, stored = self.odb.encode_stored(encoded)
                    w = self.odb._writer
                    if w is not None and len(w) and w.size + len(stored) > self.odb.pack_size:
                        self._ship(uploader, uploads, result, limit=1)
                    self.odb.add_stored(oid, entry.type_tag, codec_id, stored, entry.raw_length)
                    result.objects += 1
                    result.bytes += len(stored)
                    if self.progress is not None:
                        self.progress(len(stored))
                self._ship(uploader, uploads, result, limit=0)
            except BaseException:
                self.odb.abort()
                for f, w in uploads:
                    if f.cancel():
                        w.abort()  # never started: drop its temp file
                raise
            finally:
                self.odb.refresh()
        remote_heads = self.refs.heads()
        for name in names:
            self._push_ref(name, local_refs[name], remote_heads.get(name), force, result)
        result.requests = self.storage.requests
        if result.refs_rejected:
            raise PushRejected(result.refs_rejected, result)
        return result

    def _ship(
        self,
        uploader: ThreadPoolExecutor,
        uploads: deque[tuple[Future[str | None], PackWriter]],
        result: TransferResult,
        limit: int,
    ) -> None:
        """Queue the open pack for upload; wait until at most ``limit`` uploads are pending."""
        w = self.odb.detach_writer()
        if w is not None:
            uploads.append((uploader.submit(self._upload, w), w))
        while len(uploads) > limit:
            if uploads[0][0].result() is not None:
                result.packs += 1
            uploads.popleft()

    def _upload(self, w: PackWriter) -> str | None:
        """Publish one pack on the upload thread; after a failed upload, queued packs are dropped, not sent."""
        if self._upload_failed.is_set():
            w.abort()
            raise RemoteError(f"push to {self.url} stopped: an earlier pack failed to upload")
        try:
            return self.odb.publish_writer(w)
        except BaseException:
            self._upload_failed.set()
            raise

    def _missing_on_remote(self, targets: list[ObjectId]) -> list[bytes]:
        """Objects reachable from ``targets`` that the remote lacks, children first.

        The walk stops at anything the remote has: its packs were written
        leaves first, so having an object means having everything below it.
        """
        odb = self.local.odb
        return children_first_until(odb, [odb.raw_id(t) for t in targets], self.odb.has_raw)

    def _push_ref(self, name: str, target: ObjectId, head: RefLogEntry | None, force: bool, result: TransferResult) -> None:
        current = head.new if head else None
        while True:
            if current == target:
                result.refs_unchanged.append(name)
                return
            if current is not None and not force and not is_ancestor(self.local, current, target):
                result.refs_rejected[name] = (current, target)
                return
            try:
                self.refs._append(name, target, current if current else ABSENT, "push", None, known_head=head)
                result.refs_updated[name] = (current, target)
                return
            except RefConflict:
                head = self.refs.head(name)
                current = head.new if head else None

    # -- fetch ----------------------------------------------------------------

    def fetch(self, refs: Iterable[str] | None = None, *, depth: int | None = None) -> TransferResult:
        result = TransferResult()
        if self._smart is not None:
            return self._smart.fetch(lambda available: self._selected(refs, available), depth, result)
        local = self.local
        heads = {n: e for n, e in self.refs.heads().items() if e.new is not None}
        names = self._selected(refs, heads)
        targets = [e.new for e in (heads[n] for n in names) if e.new is not None]
        try:
            self.fetch_objects(targets, result, depth=depth)
        except BaseException:
            local.odb.abort()
            raise
        local.flush()
        for name in names:
            self._update_local_ref(name, ObjectId(heads[name].new or ""), result)
        result.requests = self.storage.requests
        return result

    def fetch_objects(self, targets: list[ObjectId], result: TransferResult | None = None, *, depth: int | None = None) -> TransferResult:
        """Bring in the closure of ``targets`` (objects only; no ref moves).

        With ``depth``, commit history is cut after that many commits per
        target; the cut commits are recorded as shallow.
        """
        result = result or TransferResult()
        if self._smart is not None:
            return self._smart.fetch_objects(targets, result, depth)
        local = self.local.odb
        metadata: dict[bytes, tuple[IndexEntry, bytes, Any]] = {}
        commit_depth: dict[bytes, int] = {}
        shallow: set[bytes] = set()
        frontier = {local.raw_id(t) for t in targets}
        frontier = {o for o in frontier if not local.has_raw(o)}
        for o in frontier:
            commit_depth[o] = 1
        deepened: list[ObjectId] = []
        if depth is None:  # a full fetch also completes history cut by earlier shallow fetches
            for commit_id in self.local.shallow_commits():
                missing = [p for p in self.local.get_commit(commit_id).parents if not local.has(p)]
                if all(self.odb.has(p) for p in missing):
                    frontier.update(local.raw_id(p) for p in missing)
                    deepened.append(commit_id)
        while frontier:
            found: set[bytes] = set()
            for oid, entry, stored, obj, n in self._download(sorted(frontier)):
                result.objects += 1
                result.bytes += n
                if self.progress is not None and n:
                    self.progress(n)
                if entry.type_tag == BLOB:
                    local.add_stored(oid, BLOB, entry.codec, stored, entry.raw_length)
                    continue
                metadata[oid] = (entry, bytes(stored), obj)
                kids = object_children(obj)
                if isinstance(obj, Commit):
                    d = commit_depth.get(oid, 1)
                    parents = [bytes.fromhex(p) for p in obj.parents]
                    if depth is not None and d >= depth:
                        kids = [bytes.fromhex(obj.tree)]
                        if any(not local.has_raw(p) for p in parents):
                            shallow.add(oid)
                    else:
                        for p in parents:
                            commit_depth[p] = min(commit_depth.get(p, d + 1), d + 1)
                for child in kids:
                    if child not in metadata and not local.has_raw(child):
                        found.add(child)
            frontier = found - set(metadata)
        # Shallow markers go first: a commit is never stored without either
        # its parents or the record that they were left behind on purpose.
        for oid in shallow:
            self.local.mark_shallow(oid.hex())
        # Structured objects last, children before parents.
        for oid in children_first(metadata):
            entry, stored, _ = metadata[oid]
            local.add_stored(oid, entry.type_tag, entry.codec, stored, entry.raw_length)
        local.flush()
        for commit_id in deepened:
            self.local.unmark_shallow(commit_id)
        return result

    def _download(self, oids: list[bytes]) -> Iterator[tuple[bytes, IndexEntry, bytes | memoryview, Any, int]]:
        """Fetch objects with coalesced ranged reads; verify each; yield it decoded,
        with the bytes it took to download (a group's count once, for its first member
        read; its members come as raw records of their own)."""
        by_pack: dict[str, list[tuple[bytes, IndexEntry]]] = {}
        located = [(oid, self.odb.locate(oid)) for oid in oids]
        if any(loc is None for _, loc in located):
            # The packs were listed when this remote was opened; a ref read
            # since may name objects another writer published after that.
            self.odb.refresh()
            located = [(oid, loc or self.odb.locate(oid)) for oid, loc in located]
        for oid, loc in located:
            if loc is None:
                raise CorruptObject(oid.hex(), f"referenced on the remote {self.url} but stored in none of its packs")
            # Sizes are checked before any read is planned: a span is never
            # sized by a claim the format does not allow.
            self.odb.check_entry(oid, loc[1], f"{self.url}/{pack_path(loc[0])}")
            self._fits_locally(oid, loc[1], self.local.odb.max_blob, "this repository")
            by_pack.setdefault(loc[0], []).append((oid, loc[1]))
        spans: list[tuple[str, int, int, list[tuple[bytes, IndexEntry]]]] = []
        for pack, items in by_pack.items():
            items.sort(key=lambda it: it[1].offset)
            start, end = items[0][1].offset, items[0][1].offset
            group: list[tuple[bytes, IndexEntry]] = []
            for oid, e in items:
                e_end = e.offset + e.stored_length
                if group and (e.offset - end > _GAP or e_end - start > _SPAN):
                    spans.append((pack, start, end, group))
                    start, group = e.offset, []
                group.append((oid, e))
                end = max(end, e_end)
            spans.append((pack, start, end, group))

        def read(span: tuple[str, int, int, list[tuple[bytes, IndexEntry]]]) -> tuple[str, int, bytes | memoryview | None, list[tuple[bytes, IndexEntry]]]:
            pack, start, end, group = span
            try:
                data = self.storage.read_range(pack_path(pack), start, end - start)
            except FileNotFoundError:
                return pack, start, None, group  # gone since the listing: read one by one below
            except EOFError as exc:
                raise CorruptObject(group[0][0].hex(), f"remote pack is truncated ({exc})", f"{self.url}/{pack_path(pack)}") from None
            return pack, start, data, group

        for pack, start, data, group in bounded_map(read, spans, window=4):
            if data is None:
                # A concurrent repack or gc replaced this pack: its objects were
                # published in another before it went, and the odb finds them.
                self.odb.refresh()
                for oid, _ in group:
                    try:
                        e, moved, where = self.odb.read_stored(oid)
                    except ObjectNotFound:
                        raise CorruptObject(oid.hex(), "its remote pack was removed and no other pack holds it", f"{self.url}/{pack_path(pack)}") from None
                    yield self._received(oid, e, moved, f"{self.url}/{where}", e.stored_length)
                continue
            view = memoryview(data)
            seen_groups: set[int] = set()
            for oid, e in group:
                stored: bytes | memoryview = view[e.offset - start : e.offset - start + e.stored_length]
                # A group's download is counted once, for its first member read.
                n = 0 if e.codec == codec.GROUPED and e.offset in seen_groups else e.stored_length
                seen_groups.add(e.offset)
                yield self._received(oid, e, stored, f"{self.url}/{pack_path(pack)}", n)

    def _received(self, oid: bytes, e: IndexEntry, stored: bytes | memoryview, where: str, n: int) -> tuple[bytes, IndexEntry, bytes | memoryview, Any, int]:
        """Verify one downloaded object; hand it on decoded (a group member as a raw record of its own)."""
        raw = self.odb.decode_verified(oid, e, stored, where)
        if e.codec == codec.GROUPED:
            stored = raw
            e = IndexEntry(0, len(raw), len(raw), e.type_tag, codec.RAW)
        obj = None
        if e.type_tag != BLOB:
            try:
                obj = decode(raw, self.local.odb.digest_size)
            except FormatError as exc:
                raise CorruptObject(oid.hex(), str(exc), where) from None
        return oid, e, stored, obj, n

    def _fits_locally(self, oid: bytes, entry: IndexEntry, max_blob: int, destination: str) -> None:
        """``RemoteError`` if a blob is larger than ``destination``'s chunking allows.

        Both repositories are sound, but their chunking differs: the blob
        would be refused by every later read of the destination.
        """
        if entry.type_tag == BLOB and entry.raw_length > max_blob:
            raise RemoteError(
                f"blob {oid.hex()} is {entry.raw_length - 1} bytes, more than the chunking of {destination} allows "
                f"({max_blob - 1}); repositories with different chunking cannot exchange it"
            )

    def _update_local_ref(self, name: str, remote_target: ObjectId, result: TransferResult) -> None:
        refs = self.local.refs
        head = refs.head(name)
        current = head.new if head else None
        if current == remote_target:
            result.refs_unchanged.append(name)
            return
        if current is not None and not is_ancestor(self.local, current, remote_target):
            if is_ancestor(self.local, remote_target, current):
                result.refs_unchanged.append(name)  # we are ahead: the next push moves the remote
            else:
                result.refs_rejected[name] = (current, remote_target)  # diverged: left for the caller
            return
        try:
            refs.set(name, remote_target, expect=current if current else ABSENT, message=f"fetch from {self.url}")
            result.refs_updated[name] = (current, remote_target)
        except RefConflict:
            result.refs_rejected[name] = (current, remote_target)


__all__ = ["CountingStorage", "Remote", "TransferResult"]
