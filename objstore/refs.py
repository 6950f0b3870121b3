"""Named pointers to objects, each with an append-only history.

A ref's log is a series of numbered entries; the entry with the highest
number is the current value, and an entry whose ``new`` is null records a
deletion. Moving a ref writes entry ``seq + 1`` with put-if-absent, so of
two writers racing for the same number exactly one wins and the other
re-reads and retries (or raises :class:`RefConflict` when it asked for a
compare-and-set). Nothing is ever rewritten, so the history of every ref
(who moved ``prod``, when, from what) is kept.

Where the entries live depends on the repository's format version
(``docs/format.md#refs``):

* up to version 2, one folder per ref, ``refs/<name>/@<seq>``, one file per
  entry, kept forever;
* from version 3, *loose* entries ``refs/<key>@<seq>`` in one flat folder
  (``key`` is the name with ``/`` written as ``!``), which a compaction
  merges now and then into an immutable, generation-numbered packed file
  ``refs/!packed@<gen>`` (:mod:`objstore.packedrefs`) before deleting them.
  Listing every ref then costs one directory listing and one file read,
  and the store holds a handful of ref files however many versions it has.

Every value a ref's log names is a gc root, so data a ref once pointed at is
never lost by accident. To let gc free such data on purpose (deleting a
version), an entry may *release* ids: from then on, the ref's earlier
entries naming them keep the history readable but no longer keep the
objects alive. Releasing is itself an entry, so it too is history.

**Compaction and the stale writer.** A compaction reads the newest packed
generation ``G`` and the loose entries beyond it, creates ``G + 1`` with
put-if-absent (of racing compactions one wins), checks that no newer
generation exists, and only then deletes the loose entries it packed and
generations older than ``G``. A loose entry whose number a newer generation
already holds is *shadowed*: readers ignore it. A writer that read head
``n`` before a compaction can still create ``@n+1`` after that compaction
packed (and deleted) another writer's ``@n+1``; so every writer, after its
put-if-absent succeeded, lists the folder again and looks at the newest
generation: if it holds ``@n+1`` the write is shadowed, it never happened,
and the writer re-reads (a compare-and-set then fails as a conflict).
Generations only grow and a loose entry is deleted only once a generation
holding its number exists, so a write found unshadowed once stays in the
log for good. The argument in full is in ``docs/format.md#refs``.
"""

from __future__ import annotations

import builtins
import getpass
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgpack
import xxhash

from .errors import FormatError, InvalidRefName, RefConflict, RefNotFound, StorageError
from .ids import ObjectId, is_hex
from .limits import MAX_PACKED_REFS_SIZE, MAX_REF_ENTRY_SIZE, check_size
from .packedrefs import PackedRefs
from .storage import LocalStorage, Storage

REFS_DIR = "refs"
_ENTRY_PREFIX = "@"
_SEQ_DIGITS = 16
PACKED_KEY = "!packed"
"""Flat layout: ``refs/!packed@<generation>`` are the packed-refs files."""
_SLASH = "!"
_MAX_KEY = 200
"""Flat layout: names whose key would be longer are stored under ``!`` + their xxh3-128."""
COMPACT_AT = 8
"""Loose entries (flat layout) past which a writer compacts the ref logs after its write.

Small, so that listing every ref stays a few reads (the listing, the packed
file and at most this many loose heads); a compaction costs one read of the
loose entries and one write of the packed file, about a millisecond per
thousand refs."""
_ATTEMPTS = 50
_COMPONENT = re.compile(r"[A-Za-z0-9._+,=~-]+")
_VALID_NAME = re.compile(r"(?!\.\.?(?:/|$))[A-Za-z0-9._+,=~-]+(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._+,=~-]+)*")
"""What :func:`validate_ref_name` accepts, as one regex (for the names of a packed file)."""
ENTRY_VERSION = 2
"""The newest entry layout; entries that release nothing and carry no meta are
still written as version 1, so older readers keep reading them."""


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()
"""Pass as ``expect=`` to require that the ref does not exist yet."""


def validate_ref_name(name: str) -> str:
    """Check a ref name (``/``-separated components); return it unchanged."""
    if not isinstance(name, str) or not name:
        raise InvalidRefName(str(name), "a ref name must be a non-empty string")
    for part in name.split("/"):
        if not part:
            raise InvalidRefName(name, "empty component (leading, trailing or double '/')")
        if part in (".", ".."):
            raise InvalidRefName(name, "'.' and '..' are not allowed as components")
        if not _COMPONENT.fullmatch(part):
            raise InvalidRefName(name, "components may use only letters, digits and . _ + , = ~ -")
    return name


def default_who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class RefLogEntry:
    """One move of a ref: ``old`` -> ``new`` (``new`` None = deleted).

    ``released`` lists ids that stop being gc roots of this ref with this
    entry (earlier entries naming them stay, for the record); ``meta`` is a
    free msgpack map for the writer's own notes (objstore never reads it).
    An entry whose ``old`` equals its ``new`` moved nothing: it only released
    ids or recorded a note.
    """

    name: str
    seq: int
    old: ObjectId | None
    new: ObjectId | None
    time: float
    who: str
    message: str
    released: tuple[ObjectId, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def moved(self) -> bool:
        """Did this entry change the ref's value?"""
        return self.old != self.new

    def encode(self) -> bytes:
        head = [self.name, self.seq, self.old, self.new, self.time, self.who, self.message]
        if not self.released and not self.meta:
            return msgpack.packb([1, *head], use_bin_type=True)  # type: ignore[no-any-return]
        try:
            return msgpack.packb(  # type: ignore[no-any-return]
                [ENTRY_VERSION, *head, list(self.released), self.meta], use_bin_type=True
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"ref log meta cannot be stored (msgpack: str keys; str, bytes, int, float, bool, None, lists, maps): {exc}") from None

    @classmethod
    def decode(cls, data: bytes, where: str) -> RefLogEntry:
        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:
            raise FormatError(f"ref log entry {where} is not valid msgpack: {exc}") from None
        if isinstance(raw, list) and raw and isinstance(raw[0], int) and raw[0] > ENTRY_VERSION:
            raise FormatError(f"ref log entry {where} has version {raw[0]}, newer than this objstore reads ({ENTRY_VERSION}): upgrade objstore")
        ok = (
            isinstance(raw, list)
            and ((len(raw) == 8 and raw[0] == 1) or (len(raw) == 10 and raw[0] == 2))
            and isinstance(raw[1], str)
            and isinstance(raw[2], int)
            and all(isinstance(v, (str, type(None))) for v in raw[3:5])
            and isinstance(raw[5], float)
            and isinstance(raw[6], str)
            and isinstance(raw[7], str)
        )
        if ok and raw[0] == 2:
            ok = (
                isinstance(raw[8], list)
                and all(isinstance(v, str) and is_hex(v) for v in raw[8])
                and isinstance(raw[9], dict)
                and all(isinstance(k, str) for k in raw[9])
            )
        if not ok:
            raise FormatError(f"ref log entry {where} has the wrong shape")
        if raw[0] == 1:
            return cls(raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7])
        return cls(raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7], tuple(ObjectId(v) for v in raw[8]), raw[9])


def _entry_name(seq: int) -> str:
    return f"{_ENTRY_PREFIX}{seq:0{_SEQ_DIGITS}d}"


def _parse_seq(entry_name: str) -> int | None:
    if entry_name.startswith(_ENTRY_PREFIX) and len(entry_name) == _SEQ_DIGITS + 1 and entry_name[1:].isdigit():
        return int(entry_name[1:])
    return None


def flat_key(name: str) -> str:
    """The file-name key of ref ``name`` in the flat layout (format version 3)."""
    key = name.replace("/", _SLASH)
    if len(key.encode()) <= _MAX_KEY:
        return key
    return _SLASH + xxhash.xxh3_128_hexdigest(name.encode())


def _parse_flat(leaf: str) -> tuple[str, int] | None:
    """``(key, seq)`` of a flat-layout file name, or None for anything else."""
    key, at, digits = leaf.rpartition(_ENTRY_PREFIX)
    if not at or not key or len(digits) != _SEQ_DIGITS or not digits.isdigit():
        return None
    return key, int(digits)


def _name_of_key(key: str) -> str | None:
    """The ref name a plain key spells (None for a hashed key or anything malformed)."""
    if key.startswith(_SLASH):
        return None
    name = key.replace(_SLASH, "/")
    try:
        return validate_ref_name(name)
    except InvalidRefName:
        return None


def _read_cached(path: str | None, bound: int) -> bytes | None:
    """A local cache file's bytes, or None if there is no cache, or it is unreadable or over ``bound``."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            check_size(path, os.fstat(f.fileno()).st_size, bound)
            return f.read()
    except (OSError, FormatError):
        return None


class _Moved(Exception):
    """A file a listing showed is gone (or another's): a compaction ran meanwhile; list again."""


_Seen = builtins.list[tuple["RefLogEntry", bytes, bool]]
"""Loose entries a read went through: (entry, its bytes, read from the store rather than the cache)."""


def _seen() -> _Seen:
    return []


T = TypeVar("T")


@dataclass
class _View:
    """What one listing of the refs shows.

    ``loose`` maps a ref name to the numbers of its loose entries beyond
    what ``packed`` holds (ascending); ``shadowed`` are loose entry paths a
    packed generation already holds (a compaction's leftovers, or the write
    of a stale writer): readers ignore them.
    """

    packed: PackedRefs | None
    loose: dict[str, builtins.list[int]]
    shadowed: builtins.list[str]
    generations: builtins.list[int]
    loose_files: int

    @property
    def generation(self) -> int:
        return self.packed.generation if self.packed is not None else 0

    def count(self, name: str) -> int:
        return self.packed.count(name) if self.packed is not None else 0

    def names(self, prefix: str) -> builtins.list[str]:
        found = builtins.set(n for n in self.loose if n.startswith(prefix))
        if self.packed is not None:
            found.update(self.packed.names_with(prefix))
        return sorted(found)


@dataclass(frozen=True)
class CompactResult:
    """What one compaction of the ref logs did."""

    generation: int
    """The packed generation written."""
    entries: int
    """Loose entries it packed."""
    deleted: int
    """Files it deleted (packed loose entries, shadowed ones and old generations)."""


class RefStore:
    """The refs of one repository."""

    def __init__(
        self,
        storage: Storage,
        check_target: Callable[[str], ObjectId] | None = None,
        entry_cache_dir: str | None = None,
        *,
        packed: bool = False,
        compact_at: int = COMPACT_AT,
    ) -> None:
        self.storage = storage
        # Log entries never change once written, so a remote's can be cached
        # locally by (name, seq): listing then costs one request. The same
        # holds for a packed generation (its number names one content).
        self.entry_cache_dir = entry_cache_dir
        # Resolves and checks a target before any ref points at it (the
        # repository passes one that requires the object to be stored).
        self._check_target = check_target or (lambda t: ObjectId(t))
        self.packed = packed
        """The flat layout with packed generations (format version 3)."""
        self.compact_at = compact_at
        """Loose entries past which a write triggers a compaction (0: never automatically)."""
        self._generation: PackedRefs | None = None  # the newest generation read, kept: it never changes
        self._too_large_at = -1  # a generation whose successor would be over the bound: not retried

    # -- layout ---------------------------------------------------------------

    def _dir(self, name: str) -> str:
        return f"{REFS_DIR}/{name}"

    def _path(self, name: str, seq: int) -> str:
        if self.packed:
            return f"{REFS_DIR}/{flat_key(name)}{_entry_name(seq)}"
        return f"{self._dir(name)}/{_entry_name(seq)}"

    @staticmethod
    def _packed_path(generation: int) -> str:
        return f"{REFS_DIR}/{PACKED_KEY}{_entry_name(generation)}"

    def _view(self, prefix: str = "", exact: str | None = None) -> _View:
        """List the refs once: the packed generation and the loose entries beyond it.

        ``exact`` names the one ref the caller needs; ``prefix`` limits the
        names (in the folder layout, only the folder the prefix names is
        walked: listing one artifact's aliases must not cost a walk over
        every ref of the store).
        """
        if not self.packed:
            loose: dict[str, builtins.list[int]] = {}
            if exact is not None:
                seqs = sorted(s for s in map(_parse_seq, self.storage.listdir(self._dir(exact))) if s is not None)
                if seqs:
                    loose[exact] = seqs
                return _View(None, loose, [], [], len(seqs))
            folder = prefix.rpartition("/")[0]
            files = 0
            for path in self.storage.walk_files(f"{REFS_DIR}/{folder}" if folder else REFS_DIR):
                parent, _, leaf = path.rpartition("/")
                seq = _parse_seq(leaf)
                if seq is None:
                    continue
                ref = parent[len(REFS_DIR) + 1 :]
                if ref.startswith(prefix):
                    loose.setdefault(ref, []).append(seq)
                    files += 1
            for seqs in loose.values():
                seqs.sort()
            return _View(None, loose, [], [], files)
        keys: dict[str, builtins.list[int]] = {}
        generations: builtins.list[int] = []
        files = 0
        for leaf in self.storage.listdir(REFS_DIR):
            parsed = _parse_flat(leaf)
            if parsed is None:
                continue
            key, seq = parsed
            if key == PACKED_KEY:
                generations.append(seq)
            else:
                keys.setdefault(key, []).append(seq)
                files += 1
        generations.sort()
        packed = self._load_packed(generations[-1]) if generations else None
        wanted = flat_key(exact) if exact is not None else None
        view = _View(packed, {}, [], generations, files)
        for key, seqs in keys.items():
            if wanted is not None and key != wanted:
                continue
            name: str | None = exact if exact is not None else _name_of_key(key)
            if name is None:
                if not key.startswith(_SLASH):
                    continue  # not a ref entry
                name = self._read_path(f"{REFS_DIR}/{key}{_entry_name(max(seqs))}").name  # a long name, hashed
                if flat_key(name) != key:
                    raise FormatError(f"ref log entry {REFS_DIR}/{key}{_entry_name(max(seqs))} names {name!r}, whose key differs")
            if not name.startswith(prefix):
                continue
            done = view.count(name)
            beyond = sorted(s for s in seqs if s > done)
            view.shadowed.extend(f"{REFS_DIR}/{key}{_entry_name(s)}" for s in seqs if s <= done)
            if beyond:
                view.loose[name] = beyond
        return view

    def _generations(self) -> builtins.list[int]:
        """The packed generations a listing shows, oldest first."""
        found = (p for p in map(_parse_flat, self.storage.listdir(REFS_DIR)) if p is not None and p[0] == PACKED_KEY)
        return sorted(seq for _, seq in found)

    def _load_packed(self, generation: int) -> PackedRefs:
        known = self._generation
        if known is not None and known.generation == generation:
            return known
        path = self._packed_path(generation)
        data = None
        cached = os.path.join(self.entry_cache_dir, "packed", str(generation)) if self.entry_cache_dir else None
        local = _read_cached(cached, MAX_PACKED_REFS_SIZE)
        if local is not None:
            try:
                got = PackedRefs.decode(local, cached or path)
                if got.generation == generation:
                    self._generation = got
                    return got
            except FormatError:
                pass
        try:
            data = self.storage.read_bounded(path, MAX_PACKED_REFS_SIZE)
        except FileNotFoundError:
            raise _Moved(path) from None
        got = PackedRefs.decode(data, path)
        if got.generation != generation:
            raise FormatError(f"packed refs {path} claims to be generation {got.generation}")
        for name in got.names:
            if not _VALID_NAME.fullmatch(name):  # one regex per name; the precise reason only when it fails
                try:
                    validate_ref_name(name)
                except InvalidRefName as exc:
                    raise FormatError(f"packed refs {path}: {exc}") from None
        if cached is not None:
            self._cache_file(cached, data)
        self._generation = got
        return got

    def _retrying(self, op: Callable[[], T]) -> T:
        """Run a read, again if a compaction deleted what its listing showed."""
        for _ in range(_ATTEMPTS):
            try:
                return op()
            except _Moved:
                continue
        raise StorageError(f"the refs of {self.storage.url} kept changing under {_ATTEMPTS} attempts to read them")

    # -- entries --------------------------------------------------------------

    def _read_path(self, path: str) -> RefLogEntry:
        try:
            data = self.storage.read_bounded(path, MAX_REF_ENTRY_SIZE)
        except FileNotFoundError:
            if self.packed:
                raise _Moved(path) from None
            raise
        return RefLogEntry.decode(data, path)

    def _read_entry(self, name: str, seq: int, seen: _Seen) -> RefLogEntry:
        """Loose entry ``seq`` of ``name``; its bytes are added to ``seen``, for
        :meth:`_confirm` (which caches them once they are known to be the ref's)."""
        path = self._path(name, seq)
        cached = os.path.join(self.entry_cache_dir, *path.split("/")) if self.entry_cache_dir else None
        local = _read_cached(cached, MAX_REF_ENTRY_SIZE)
        if local is not None:
            try:
                entry = RefLogEntry.decode(local, path)
                if entry.name == name and entry.seq == seq:
                    seen.append((entry, local, False))
                    return entry
            except FormatError:
                pass
        try:
            data = self.storage.read_bounded(path, MAX_REF_ENTRY_SIZE)
        except FileNotFoundError:
            if self.packed:
                raise _Moved(path) from None
            raise
        entry = RefLogEntry.decode(data, path)
        if entry.name != name or entry.seq != seq:
            raise FormatError(f"ref log entry {path} claims to be {entry.name!r} #{entry.seq}")
        seen.append((entry, data, True))
        return entry

    def _confirm(self, view: _View, seen: _Seen) -> None:
        """Check the loose entries read through ``view`` against the refs as they are now.

        A stale writer (see the module docstring) creates its shadowed entry
        under the path of one a compaction packed and deleted, and deletes it
        only once it has looked. A reader that listed before that compaction
        finds the path in its listing and reads the stale writer's entry, one
        the ref never held: its value, and a write based on it, would be
        wrong (a compare-and-set would pass against a phantom). The generation
        that shadows such an entry existed before the entry was written, so
        one listing after the reads tells: raises :class:`_Moved` (read again)
        if a newer generation holds one of the entries with other bytes.
        Confirmed entries read from the store are cached.
        """
        if not seen:
            return
        if self.packed:
            newest = max(self._generations(), default=0)
            if newest > view.generation:
                packed = self._load_packed(newest)
                for entry, data, _ in seen:
                    if packed.count(entry.name) >= entry.seq and self._bytes_in(packed, entry.name, entry.seq) != data:
                        raise _Moved(f"{entry.name}@{entry.seq}")
        self._cache_seen(seen)

    def _cache_seen(self, seen: _Seen) -> None:
        for entry, data, fresh in seen:
            if fresh:
                self._cache_entry(self._path(entry.name, entry.seq), data)

    def _cache_entry(self, path: str, data: bytes) -> None:
        if self.entry_cache_dir:
            self._cache_file(os.path.join(self.entry_cache_dir, *path.split("/")), data)

    @staticmethod
    def _cache_file(cached: str, data: bytes) -> None:
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            tmp = f"{cached}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, cached)
        except OSError:
            pass  # only a cache

    def _packed_head(self, view: _View, name: str) -> RefLogEntry:
        assert view.packed is not None
        cache = view.packed.heads
        entry = cache.get(name)
        if entry is None:
            log = view.packed.logs[name]
            entry = cache[name] = self._packed_entry(view, name, log.head(), log.count)
        return entry  # type: ignore[no-any-return]

    def _packed_entry(self, view: _View, name: str, data: bytes, seq: int) -> RefLogEntry:
        where = f"{self._packed_path(view.generation)} ({name!r} #{seq})"
        entry = RefLogEntry.decode(data, where)
        if entry.name != name or entry.seq != seq:
            raise FormatError(f"ref log entry {where} claims to be {entry.name!r} #{entry.seq}")
        return entry

    def _head_in(self, view: _View, name: str, seen: _Seen) -> RefLogEntry | None:
        seqs = view.loose.get(name)
        if seqs:
            return self._read_entry(name, seqs[-1], seen)
        if view.packed is not None and name in view.packed:
            return self._packed_head(view, name)
        return None

    def _history_in(self, view: _View, name: str, seen: _Seen) -> builtins.list[RefLogEntry]:
        out: builtins.list[RefLogEntry] = []
        if view.packed is not None and name in view.packed:
            log = view.packed.logs[name]
            try:
                out = [self._packed_entry(view, name, data, i) for i, data in enumerate(log.entries(), 1)]
            except FormatError as exc:
                raise FormatError(f"packed refs {self._packed_path(view.generation)}, log of {name!r}: {exc}") from None
            if len(out) != log.count:
                raise FormatError(f"packed refs {self._packed_path(view.generation)}: the log of {name!r} holds {len(out)} entries, not {log.count}")
        seqs = view.loose.get(name, [])
        if self.packed and seqs != builtins.list(range(len(out) + 1, len(out) + 1 + len(seqs))):
            raise _Moved(name)  # a gap: a compaction between the listing and now (or, if it stays, a damaged store)
        out.extend(self._read_entry(name, s, seen) for s in seqs)
        return out

    @classmethod
    def _packed_bytes(cls, view: _View, name: str, seq: int) -> bytes | None:
        if view.packed is None:
            return None
        return cls._bytes_in(view.packed, name, seq)

    @staticmethod
    def _bytes_in(packed: PackedRefs, name: str, seq: int) -> bytes | None:
        if not 1 <= seq <= packed.count(name):
            return None
        log = packed.logs[name]
        if seq == log.count:
            return log.head()
        for i, data in enumerate(log.entries(), 1):
            if i == seq:
                return data
        return None

    def read_back(self, name: str, seq: int) -> bytes:
        """The stored bytes of entry ``seq`` of ``name`` (loose, or packed since)."""
        validate_ref_name(name)

        def op() -> bytes:
            view = self._view(exact=name)
            if seq in view.loose.get(name, []):
                path = self._path(name, seq)
                try:
                    data = self.storage.read_bounded(path, MAX_REF_ENTRY_SIZE)
                except FileNotFoundError:
                    raise _Moved(name) from None
                self._confirm(view, [(RefLogEntry.decode(data, path), data, False)])
                return data
            packed = self._packed_bytes(view, name, seq)
            if packed is not None:
                return packed
            raise RefNotFound(f"{name}@{seq}")

        return self._retrying(op)

    # -- reading ----------------------------------------------------------------

    def head(self, name: str) -> RefLogEntry | None:
        """The latest log entry of a ref (a deletion included), or None."""
        validate_ref_name(name)

        def op() -> RefLogEntry | None:
            view, seen = self._view(exact=name), _seen()
            entry = self._head_in(view, name, seen)
            self._confirm(view, seen)
            return entry

        return self._retrying(op)

    def get(self, name: str) -> ObjectId:
        """Current target of a ref; ``RefNotFound`` if absent or deleted."""
        entry = self.head(name)
        if entry is None or entry.new is None:
            raise RefNotFound(name)
        return entry.new

    def exists(self, name: str) -> bool:
        entry = self.head(name)
        return entry is not None and entry.new is not None

    def history(self, name: str) -> builtins.list[RefLogEntry]:
        """Every move of a ref, oldest first; ``RefNotFound`` if it never existed."""
        validate_ref_name(name)

        def op() -> builtins.list[RefLogEntry]:
            view, seen = self._view(exact=name), _seen()
            entries = self._history_in(view, name, seen)
            self._confirm(view, seen)
            return entries

        entries = self._retrying(op)
        if not entries:
            raise RefNotFound(name)
        return entries

    def names(self, prefix: str = "") -> builtins.list[str]:
        """Names of refs with any history under ``prefix`` (deleted ones included)."""
        return self._retrying(lambda: self._view(prefix).names(prefix))

    def heads(self, prefix: str = "") -> dict[str, RefLogEntry]:
        """The latest log entry of every ref under ``prefix`` (deletions included)."""

        def op() -> dict[str, RefLogEntry]:
            view, seen = self._view(prefix), _seen()
            out: dict[str, RefLogEntry] = {}
            for name in view.names(prefix):
                entry = self._head_in(view, name, seen)
                if entry is not None:
                    out[name] = entry
            self._confirm(view, seen)
            return out

        return self._retrying(op)

    def list(self, prefix: str = "") -> dict[str, ObjectId]:
        """Live refs whose names start with ``prefix``: name -> target, sorted."""
        return {name: e.new for name, e in self.heads(prefix).items() if e.new is not None}

    # -- writing ----------------------------------------------------------------

    def set(
        self,
        name: str,
        target: str,
        expect: str | _Absent | None = None,
        *,
        message: str = "",
        who: str | None = None,
        released: Iterable[str] = (),
        meta: dict[str, Any] | None = None,
    ) -> RefLogEntry:
        """Point ``name`` at ``target``.

        With ``expect`` (an id, or :data:`ABSENT`) this is a compare-and-set
        that raises :class:`RefConflict` if the ref holds anything else; with
        the default ``None`` the update is unconditional but still never lost.
        ``released`` ids stop being gc roots of this ref with this entry (see
        :meth:`release`); ``meta`` is stored with the entry for the caller.
        """
        validate_ref_name(name)
        new = self._check_target(target)
        return self._append(name, new, expect, message, who, released=released, meta=meta)

    def delete(
        self,
        name: str,
        expect: str | _Absent | None = None,
        *,
        message: str = "",
        who: str | None = None,
        released: Iterable[str] = (),
        meta: dict[str, Any] | None = None,
    ) -> RefLogEntry:
        """Delete a ref (its history stays); ``RefNotFound`` if it does not exist."""
        validate_ref_name(name)
        if not self.exists(name):
            raise RefNotFound(name)
        return self._append(name, None, expect, message, who, released=released, meta=meta)

    def release(
        self,
        name: str,
        ids: Iterable[str],
        *,
        message: str = "",
        who: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> RefLogEntry | None:
        """Let gc free ``ids`` as far as this ref's history is concerned.

        Appends an entry that does not move the ref but records the release;
        earlier entries naming the ids stay (history is never rewritten), so
        they can still be listed once gc has freed the objects. The ref's
        current value cannot be released (move or delete the ref first, or
        pass ``released=`` to that move). Ids the history never named, or
        already released, are skipped; returns the entry, or None when there
        was nothing to release. ``RefNotFound`` if the ref never existed.
        """
        validate_ref_name(name)
        wanted = {ObjectId(i) for i in ids}
        while True:
            history = self.history(name)
            head = history[-1]
            if head.new in wanted:
                raise ValueError(f"ref {name!r} points at {head.new}: move or delete it to release that id")
            todo = sorted(wanted & self.roots_in(history))
            if not todo:
                return None
            try:
                return self._append(name, head.new, head.new or ABSENT, message, who, released=todo, meta=meta, known_head=head)
            except RefConflict:
                continue  # the ref moved meanwhile: look again

    def _append(
        self,
        name: str,
        new: ObjectId | None,
        expect: Any,
        message: str,
        who: str | None,
        known_head: RefLogEntry | _Absent | None = ABSENT,
        *,
        released: Iterable[str] = (),
        meta: dict[str, Any] | None = None,
    ) -> RefLogEntry:
        if expect is not None and expect is not ABSENT:
            expect = self._check_target(expect)
        freed = tuple(sorted({ObjectId(i) for i in released}))
        for oid in freed:
            if not isinstance(oid, str) or not is_hex(oid):
                raise ValueError(f"cannot release {oid!r}: not an object id")
        if new is not None and new in freed:
            raise ValueError(f"ref {name!r} cannot release {new}, the value it is moved to")
        who = who or default_who()
        while True:
            if known_head is ABSENT:
                head = self.head(name)
            else:
                head, known_head = known_head, ABSENT  # type: ignore[assignment]
            current = head.new if head else None
            if expect is ABSENT and current is not None:
                raise RefConflict(name, None, current)
            if expect is not None and expect is not ABSENT and expect != current:
                raise RefConflict(name, expect, current)
            seq = head.seq + 1 if head else 1
            entry = RefLogEntry(name, seq, current, new, time.time(), who, message, freed, dict(meta or {}))
            data = entry.encode()
            check_size(f"the log entry moving ref {name!r}", len(data), MAX_REF_ENTRY_SIZE)
            path = self._path(name, seq)
            if not self.storage.put_if_absent(path, data):
                continue  # another writer took this number first: re-read and decide again
            if self.packed:
                after = self._retrying(lambda: self._view(exact=name))
                if after.count(name) >= seq and self._packed_bytes(after, name, seq) != data:
                    # Shadowed: a compaction had already packed another
                    # writer's entry with this number (we read a stale head).
                    # Ours never counted; drop it and decide again. (A
                    # compaction may also have packed ours since: then the
                    # bytes are ours and the write stands.)
                    self.storage.delete(path)
                    continue
                self._cache_entry(path, data)
                if self.compact_at and after.loose_files >= self.compact_at:
                    self._auto_compact()
                return entry
            self._cache_entry(path, data)
            return entry

    # -- compaction ---------------------------------------------------------------

    def compact(self) -> CompactResult | None:
        """Pack every loose log entry into a new generation; delete what it replaces.

        Returns None when there was nothing to do, or when a concurrent
        compaction won (its generation holds the same entries). A no-op for
        repositories of format version 2 and older (their refs are folders).
        Racing writers, readers and compactions are safe at every instant
        (see the module docstring); a crash leaves at worst files a later
        compaction deletes.
        """
        if not self.packed:
            return None
        try:
            return self._compact()
        except _Moved:
            return None  # a concurrent compaction deleted what we listed: it did the work

    def _compact(self, view: _View | None = None) -> CompactResult | None:
        view = view if view is not None else self._view()
        if not view.loose and not view.shadowed and len(view.generations) <= 2:
            return None
        additions: dict[str, builtins.list[bytes]] = {}
        entries = 0
        for name, seqs in view.loose.items():
            if seqs != builtins.list(range(view.count(name) + 1, view.count(name) + 1 + len(seqs))):
                return None  # a gap: another compaction ran after our listing
            pieces = []
            for s in seqs:
                path = self._path(name, s)
                try:
                    data = self.storage.read_bounded(path, MAX_REF_ENTRY_SIZE)
                except FileNotFoundError:
                    return None  # packed and deleted by a concurrent compaction
                entry = RefLogEntry.decode(data, path)
                if entry.name != name or entry.seq != s:
                    raise FormatError(f"ref log entry {path} claims to be {entry.name!r} #{entry.seq}")
                pieces.append(data)
            additions[name] = pieces
            entries += len(pieces)
        generation = view.generation + 1
        if additions:
            if view.generation <= self._too_large_at:
                return None
            base = view.packed if view.packed is not None else None
            nxt = base.merged(additions) if base is not None else PackedRefs.first(additions)
            try:
                data = nxt.encode()
            except FormatError:
                self._too_large_at = view.generation  # stays loose; refs keep working, unpacked
                raise
            path = self._packed_path(generation)
            if not self.storage.put_if_absent(path, data):
                return None  # another compaction made this generation first
            if not self._still_newest(generation, data):
                return None
            self._generation = nxt
        else:
            generation = view.generation  # only clean-up to do
        deleted = 0
        for name, seqs in view.loose.items():
            for s in seqs:
                self.storage.delete(self._path(name, s))
                deleted += 1
        for path in view.shadowed:
            self.storage.delete(path)
            deleted += 1
        # Keep the generation before the new one: a reader that listed just
        # before it appeared can still read what it listed.
        for g in view.generations:
            if g < generation - 1:
                self.storage.delete(self._packed_path(g))
                deleted += 1
        return CompactResult(generation, entries, deleted)

    def _still_newest(self, generation: int, data: bytes) -> bool:
        """After creating ``generation``: is it the newest, and ours?

        A compaction that read a generation long ago can create a number
        that existed and was deleted since (only the newest two are kept);
        then a newer generation exists, ours is stale and must go, and the
        loose entries it holds must not be deleted on its account. On an
        object store whose put-if-absent is not atomic (moto's check, then
        write) a racing compaction could also have replaced ours: the
        checksum read back tells.
        """
        newest = max(self._generations(), default=0)
        path = self._packed_path(generation)
        if newest > generation:
            self.storage.delete(path)
            return False
        if not isinstance(self.storage, LocalStorage):
            try:
                tail = self.storage.read_range(path, len(data) - 8, 8)
            except (FileNotFoundError, EOFError):
                return False
            if bytes(tail) != data[-8:]:
                return False
        return True

    def _auto_compact(self) -> None:
        try:
            self.compact()
        except (OSError, FormatError):
            pass  # a concurrent compaction, a read-only store or a packed file at its bound: next time

    # -- gc roots -------------------------------------------------------------------

    def forget(self, name: str, ids: builtins.set[str]) -> int:
        """Release ``ids`` from the gc roots of ``name`` (kept for compatibility).

        History is never rewritten: this appends one :meth:`release` entry
        (the ref's current value is left alone). Returns the number of
        earlier entries that moved the ref to one of the released ids.
        """
        validate_ref_name(name)
        try:
            history = self.history(name)
        except RefNotFound:
            return 0
        current = history[-1].new
        todo = {i for i in ids if i != current}
        entry = self.release(name, todo, message="forget")
        if entry is None:
            return 0
        return sum(1 for e in history if e.new in entry.released)

    @staticmethod
    def roots_in(history: builtins.list[RefLogEntry]) -> builtins.set[ObjectId]:
        """Values a ref's log (as :meth:`history` returns it) keeps alive: every ``new``, less what a later entry released."""
        live: builtins.set[ObjectId] = builtins.set()
        for e in history:
            live.difference_update(e.released)
            if e.new is not None:
                live.add(e.new)
        return live

    def roots(self, name: str) -> builtins.set[ObjectId]:
        """The ids ``name``'s history keeps from gc (its current value always among them)."""
        return self.roots_in(self.history(name))

    def released(self, name: str) -> builtins.set[ObjectId]:
        """Ids the history of ``name`` names but no longer keeps from gc."""
        history = self.history(name)
        named = {e.new for e in history if e.new is not None} | {e.old for e in history if e.old is not None}
        return named - self.roots_in(history)

    def all_targets(self) -> builtins.set[ObjectId]:
        """Every value any ref holds or was ever moved to, less released ones: the gc roots.

        An entry's ``old`` is the previous entry's ``new``, so it needs no
        separate look. The logs are read from one listing, checked against a
        second one: a compaction in between (whose listing could have missed
        loose entries it was deleting) makes it read again, so no root is
        missed.
        """

        def op() -> builtins.set[ObjectId]:
            view, seen = self._view(), _seen()
            out: builtins.set[ObjectId] = builtins.set()
            for name in view.names(""):
                out |= self.roots_in(self._history_in(view, name, seen))
            if self.packed and max(self._generations(), default=0) != view.generation:
                raise _Moved("a new generation")
            self._cache_seen(seen)  # the check above is stricter than _confirm's
            return out

        return self._retrying(op)
