"""What the server does to its store: verify uploads, move refs, choose objects to send.

Nothing here keeps state a second server process would need: objects are
verified and published as packs, and refs move by the store's own
compare-and-set, so N processes over one bucket behave as one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .. import graph, limits
from ..errors import CorruptObject, FormatError, InvalidRefName, ObjectNotFound, RefConflict
from ..ids import ObjectId
from ..objects import BLOB, COMMIT, KIND_NAMES, Commit, decode
from ..packs import IndexEntry, PackWriter
from ..refs import ABSENT, RefLogEntry, validate_ref_name
from ..repo import Repository
from ..wire import MAX_OBJECT, StreamReader

MAX_REF_NAME = 1024
"""Longest ref name the server accepts (each component also stays under 255 bytes)."""


class Refused(Exception):
    """A request the server turns down: ``status`` is the HTTP answer, ``ref`` the ref it names."""

    def __init__(self, status: int, message: str, ref: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.ref = ref
        self.extra = extra


def check_ref_name(name: object) -> str:
    """A ref name the server will touch, or :class:`Refused` (400) saying why not."""
    if not isinstance(name, str):
        raise Refused(400, f"ref name must be a string, got {type(name).__name__}")
    shown = name if len(name) <= 80 else name[:80] + "..."
    if len(name.encode("utf-8", "surrogatepass")) > MAX_REF_NAME:
        raise Refused(400, f"ref name {shown!r} is longer than {MAX_REF_NAME} bytes", ref=shown)
    if any(len(part) > 255 for part in name.split("/")):
        raise Refused(400, f"ref name {shown!r} has a component longer than 255 bytes", ref=shown)
    try:
        return validate_ref_name(name)
    except InvalidRefName as exc:
        raise Refused(400, str(exc), ref=shown) from None


def check_id(value: object, digest_size: int, what: str) -> bytes:
    """A raw object id from its hex form, or :class:`Refused` (400)."""
    if not isinstance(value, str) or len(value) != digest_size * 2:
        raise Refused(400, f"{what}: {str(value)[:80]!r} is not a {digest_size * 2}-digit object id")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise Refused(400, f"{what}: {value[:80]!r} is not a hex object id") from None


class Ingest:
    """Verify the objects of one uploaded pack stream and store the new ones.

    Each object is decoded and hashed against its id, its type tag checked
    against the bytes, and structured objects parsed, before it is written;
    the first bad one aborts the upload and the open pack is dropped unseen.
    Full packs are published as they fill (pack, then index), so a long
    upload cut short keeps what arrived whole and a retry skips it.
    """

    def __init__(self, repo: Repository, *, max_object: int = MAX_OBJECT) -> None:
        self.repo = repo
        self.odb = repo.odb
        self.reader = StreamReader(self.odb.digest_size, self._object, max_object=max_object)
        self.writer: PackWriter | None = None
        self.received = 0
        self.stored = 0
        self.bytes_stored = 0
        self.packs: list[str] = []
        self.odb.refresh()

    def _object(self, oid: bytes, type_tag: int, codec_id: int, stored: memoryview, raw_length: int) -> None:
        self.received += 1
        if type_tag not in KIND_NAMES:
            raise CorruptObject(oid.hex(), f"unknown type tag {type_tag}", "the upload")
        entry = IndexEntry(0, len(stored), raw_length, type_tag, codec_id)
        limits.check_entry(oid, entry, self.odb.max_blob, "the upload")  # the format's bounds for its type
        encoded = self.odb.decode_verified(oid, entry, stored, "the upload")
        if type_tag != BLOB:
            try:
                decode(encoded, self.odb.digest_size)
            except FormatError as exc:
                raise CorruptObject(oid.hex(), str(exc), "the upload") from None
        if (self.writer is not None and oid in self.writer) or self.odb.has_raw(oid):
            return
        if self.writer is not None and len(self.writer) and self.writer.size + len(stored) > self.odb.pack_size:
            self._publish()
        if self.writer is None:
            self.writer = PackWriter(self.odb.storage, self.odb.digest_size, group_size=self.odb.group_size, level=self.odb.level)
        self.writer.add(oid, type_tag, codec_id, stored, raw_length)
        self.stored += 1
        self.bytes_stored += len(stored)

    def _publish(self) -> None:
        w, self.writer = self.writer, None
        if w is not None:
            name = self.odb.publish_writer(w)
            if name is not None:
                self.packs.append(name)

    def feed(self, data: bytes) -> None:
        self.reader.feed(data)

    def feed_all(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.reader.feed(piece)

    def finish(self) -> None:
        """Check the stream ended properly, then publish what is left."""
        self.reader.finish()
        self._publish()
        self.repo.flush()  # refresh, and merge small packs once there are many

    def abort(self) -> None:
        w, self.writer = self.writer, None
        if w is not None:
            w.abort()


@dataclass
class RefUpdate:
    name: str
    old: ObjectId | None
    new: ObjectId | None


@dataclass
class StoreOps:
    """The operations behind the endpoints, over one open repository."""

    repo: Repository
    append_only: bool = False
    _ref_lock: threading.Lock = field(default_factory=threading.Lock)
    _complete: set[bytes] = field(default_factory=set)
    _complete_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- push ---------------------------------------------------------------------

    def heads(self, names: Iterable[str] | None = None) -> dict[str, tuple[int, str | None]]:
        """(log sequence number, current value) of the given refs (default: all)."""
        refs = self.repo.refs
        if names is None:
            return {n: (e.seq, e.new) for n, e in refs.heads().items()}
        wanted = list(names)
        if len(wanted) > 8:  # one listing beats a listing per ref
            every = refs.heads()
            return {n: (every[n].seq, every[n].new) if n in every else (0, None) for n in wanted}
        out: dict[str, tuple[int, str | None]] = {}
        for n in wanted:
            e = refs.head(n)
            out[n] = (e.seq, e.new) if e is not None else (0, None)
        return out

    def lacking(self, ids: list[bytes]) -> list[bytes]:
        """Which of ``ids`` the store does not hold."""
        odb = self.repo.odb
        odb.refresh()
        return [o for o in ids if not odb.has_raw(o)]

    def _incomplete(self, root: bytes) -> tuple[bytes, str] | None:
        """The first missing or unreadable object under ``root`` (None: the graph is whole)."""
        odb = self.repo.odb
        seen: set[bytes] = set()
        stack = [root]
        with self._complete_lock:
            known = set(self._complete) if len(self._complete) < 1_000_000 else set()
        verified: list[bytes] = []
        while stack:
            oid = stack.pop()
            if oid in seen or oid in known:
                continue
            seen.add(oid)
            loc = odb.locate(oid)
            if loc is None:
                odb.refresh()
                loc = odb.locate(oid)
                if loc is None:
                    return oid, "is not stored"
            if loc[1].type_tag == BLOB:
                continue
            try:
                obj = odb.get(oid)
            except (CorruptObject, FormatError, ObjectNotFound) as exc:
                return oid, f"cannot be read ({exc})"
            verified.append(oid)
            stack.extend(graph.object_children(obj))
        with self._complete_lock:
            if len(self._complete) > 1_000_000:
                self._complete.clear()
            self._complete.update(verified)
        return None

    def forget_completeness(self) -> None:
        """After a gc: objects once known whole may have lost parts."""
        with self._complete_lock:
            self._complete.clear()

    def check_updates(self, updates: list[RefUpdate]) -> None:
        """Refuse an update the store's rules forbid, before anything moves."""
        seen: set[str] = set()
        for u in updates:
            if u.name in seen:
                raise Refused(400, f"ref {u.name!r} appears twice in one update", ref=u.name)
            seen.add(u.name)
            if u.new is None:
                if self.append_only:
                    raise Refused(403, f"ref {u.name!r}: this server is append-only; refs cannot be deleted", ref=u.name)
                continue
            problem = self._incomplete(bytes.fromhex(u.new))
            if problem is not None:
                oid, why = problem
                raise Refused(400, f"ref {u.name!r} -> {u.new}: object {oid.hex()} {why}; upload it first", ref=u.name, object=oid.hex())

    def _fast_forward(self, old: ObjectId, new: ObjectId) -> bool:
        repo = self.repo
        if repo.odb.type_of(new) != "commit" or repo.odb.type_of(old) != "commit":
            return old == new
        return graph.is_ancestor(repo, old, new)

    def apply(self, updates: list[RefUpdate], who: str, message: str) -> dict[str, tuple[str | None, str | None]]:
        """Move every ref (compare-and-set on its old value), all or none.

        The store offers compare-and-set per ref only: refs are moved one by
        one in name order and, if one of them lost its race, those already
        moved are moved back (with compare-and-set too) before the conflict
        is reported, so a push never leaves part of its refs moved.
        """
        self.check_updates(updates)
        refs = self.repo.refs
        done: list[RefUpdate] = []
        with self._ref_lock:  # within one process, transactions do not interleave
            try:
                for u in sorted(updates, key=lambda u: u.name):
                    head = refs.head(u.name)
                    current = head.new if head else None
                    if current != u.old:
                        raise RefConflict(u.name, u.old, current)
                    if self.append_only and current is not None and u.new is not None and not self._fast_forward(current, u.new):
                        raise Refused(
                            403,
                            f"ref {u.name!r}: this server is append-only and {u.new} does not descend from {current}",
                            ref=u.name,
                        )
                    self._append_checked(u, message, who, head)
                    done.append(u)
            except RefConflict as exc:
                self._roll_back(done, who)
                raise Refused(409, f"ref {exc.name!r} moved: expected {exc.expected or '<absent>'}, found {exc.actual or '<absent>'}",
                              ref=exc.name, expected=exc.expected, actual=exc.actual) from None
            except BaseException:
                self._roll_back(done, who)
                raise
        return {u.name: (u.old, u.new) for u in updates}

    def _append_checked(self, u: RefUpdate, message: str, who: str, head: RefLogEntry | None) -> None:
        """Append the ref's next log entry, then read it back from the store.

        A store whose put-if-absent is not atomic (moto's S3 checks, then
        writes) can let two writers both "create" the same entry, the second
        replacing the first. Reading the entry back catches the writer that
        was replaced before it reports success: it answers 409 and its
        client tries again, so no update is lost silently.
        """
        refs = self.repo.refs
        entry = refs._append(u.name, u.new, u.old if u.old is not None else ABSENT, message, who, known_head=head)
        path = refs._path(u.name, entry.seq)
        stored = refs.read_back(u.name, entry.seq)
        if stored != entry.encode():
            refs._cache_entry(path, stored)  # the cache holds what we wrote: put the store's entry there
            raise RefConflict(u.name, u.old, RefLogEntry.decode(stored, path).new)

    def _roll_back(self, done: list[RefUpdate], who: str) -> None:
        for u in reversed(done):
            try:
                self.repo.refs._append(u.name, u.old, u.new if u.new is not None else ABSENT, "roll back an incomplete push", who)
            except RefConflict:
                pass  # moved again since: the newer value stands

    # -- fetch --------------------------------------------------------------------

    def to_send(self, wants: list[bytes], haves: list[bytes], depth: int | None, shallow: frozenset[bytes] = frozenset()) -> list[bytes]:
        """Objects reachable from ``wants`` that a client holding ``haves`` lacks, children first.

        A client's have is complete (it holds everything below it), so the
        walk stops at any have commit or one of its ancestors, and skips
        every object under the trees of the haves. With ``depth``, commit
        history stops after that many commits per want. ``shallow`` are
        the client's commits whose parents it does not hold.
        """
        odb = self.repo.odb
        odb.refresh()
        for w in wants:
            if odb.locate(w) is None:
                raise Refused(404, f"object {w.hex()} is not stored on this server")
        have = [h for h in haves if odb.locate(h) is not None]
        excluded = self._closure_of_haves(have, shallow)
        order: list[bytes] = []
        seen: set[bytes] = set()
        commit_depth: dict[bytes, int] = {w: 1 for w in wants}
        stack: list[tuple[bytes, bool]] = [(w, False) for w in reversed(wants)]
        while stack:
            oid, expanded = stack.pop()
            if expanded:
                order.append(oid)
                continue
            if oid in seen or oid in excluded:
                continue
            seen.add(oid)
            loc = odb.locate(oid)
            if loc is None:
                raise Refused(500, f"object {oid.hex()} is referenced in the store but missing; run objstore fsck on the server")
            stack.append((oid, True))
            if loc[1].type_tag == BLOB:
                continue
            obj = odb.get(oid)
            kids = graph.object_children(obj)
            if isinstance(obj, Commit):
                d = commit_depth.get(oid, 1)
                if depth is not None and d >= depth:
                    kids = [bytes.fromhex(obj.tree)]
                else:
                    for p in obj.parents:
                        pr = bytes.fromhex(p)
                        commit_depth[pr] = min(commit_depth.get(pr, d + 1), d + 1)
            stack.extend((c, False) for c in reversed(kids))
        return order

    def _closure_of_haves(self, have: list[bytes], shallow: frozenset[bytes], commit_budget: int = 20_000) -> set[bytes]:
        """Have commits, their ancestors (up to a budget) and every object under the haves' trees."""
        odb = self.repo.odb
        excluded: set[bytes] = set()
        roots: list[bytes] = []
        stack = list(have)
        first = set(have)
        commits = 0
        while stack and commits < commit_budget:
            oid = stack.pop()
            if oid in excluded:
                continue
            loc = odb.locate(oid)
            if loc is None:
                continue
            excluded.add(oid)
            if loc[1].type_tag != COMMIT:
                if oid in first:
                    roots.append(oid)
                continue
            commits += 1
            c = odb.get(oid)
            assert isinstance(c, Commit)
            if oid in first:
                roots.append(bytes.fromhex(c.tree))
            if oid not in shallow:
                stack.extend(bytes.fromhex(p) for p in c.parents)
        stack = roots
        while stack:
            oid = stack.pop()
            if oid in excluded and oid not in first:
                continue
            excluded.add(oid)
            loc = odb.locate(oid)
            if loc is None or loc[1].type_tag == BLOB:
                continue
            stack.extend(c for c in graph.children(odb, oid) if c not in excluded)
        return excluded

    def records(self, order: list[bytes]) -> Iterator[tuple[bytes, int, int, bytes | memoryview, int]]:
        """Stored records of ``order`` (the client verifies each on arrival).

        A group member goes out as a record of its own (see :meth:`ObjectDatabase.export`).
        """
        odb = self.repo.odb
        # Each fetch reads the packs as they are now: damage since an earlier
        # request is met (and refused by the client) as it would be without groups.
        odb.forget_groups()
        for oid in order:
            yield (oid, *odb.export(oid, verify=False))


__all__ = ["MAX_REF_NAME", "Ingest", "RefUpdate", "Refused", "StoreOps", "check_id", "check_ref_name"]
