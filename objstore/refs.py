"""Named pointers to objects, each with an append-only history.

A ref is a folder ``refs/<name>/`` of numbered log entries ``@<seq>``. The
entry with the highest number is the current value; an entry whose ``new``
is null records a deletion. Moving a ref writes entry ``seq + 1`` with
put-if-absent, so of two writers racing for the same number exactly one
wins and the other re-reads and retries (or raises :class:`RefConflict` when
it asked for a compare-and-set). Nothing is ever rewritten, so the history
of every ref (who moved ``prod``, when, from what) is kept.

Every value a ref's log names is a gc root, so data a ref once pointed at is
never lost by accident. To let gc free such data on purpose (deleting a
version), an entry may *release* ids: from then on, the ref's earlier
entries naming them keep the history readable but no longer keep the
objects alive. Releasing is itself an entry, so it too is history.
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
from typing import Any, Final

import msgpack

from .errors import FormatError, InvalidRefName, RefConflict, RefNotFound
from .ids import ObjectId, is_hex
from .limits import MAX_REF_ENTRY_SIZE, check_size
from .storage import Storage

REFS_DIR = "refs"
_ENTRY_PREFIX = "@"
_SEQ_DIGITS = 16
_COMPONENT = re.compile(r"[A-Za-z0-9._+,=~-]+")
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


class RefStore:
    """The refs of one repository."""

    def __init__(
        self,
        storage: Storage,
        check_target: Callable[[str], ObjectId] | None = None,
        entry_cache_dir: str | None = None,
    ) -> None:
        self.storage = storage
        # Log entries never change once written, so a remote's can be cached
        # locally by (name, seq): listing then costs one request.
        self.entry_cache_dir = entry_cache_dir
        # Resolves and checks a target before any ref points at it (the
        # repository passes one that requires the object to be stored).
        self._check_target = check_target or (lambda t: ObjectId(t))

    def _dir(self, name: str) -> str:
        return f"{REFS_DIR}/{name}"

    def _seqs(self, name: str) -> builtins.list[int]:
        seqs = [s for s in map(_parse_seq, self.storage.listdir(self._dir(name))) if s is not None]
        seqs.sort()
        return seqs

    def _read_entry(self, name: str, seq: int) -> RefLogEntry:
        path = f"{self._dir(name)}/{_entry_name(seq)}"
        cached = os.path.join(self.entry_cache_dir, *path.split("/")) if self.entry_cache_dir else None
        if cached is not None:
            try:
                with open(cached, "rb") as f:
                    check_size(cached, os.fstat(f.fileno()).st_size, MAX_REF_ENTRY_SIZE)
                    entry = RefLogEntry.decode(f.read(), path)
                if entry.name == name and entry.seq == seq:
                    return entry
            except (OSError, FormatError):
                pass
        data = self.storage.read_bounded(path, MAX_REF_ENTRY_SIZE)
        entry = RefLogEntry.decode(data, path)
        if entry.name != name or entry.seq != seq:
            raise FormatError(f"ref log entry {path} claims to be {entry.name!r} #{entry.seq}")
        self._cache_entry(path, data)
        return entry

    def _cache_entry(self, path: str, data: bytes) -> None:
        if not self.entry_cache_dir:
            return
        cached = os.path.join(self.entry_cache_dir, *path.split("/"))
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            tmp = f"{cached}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, cached)
        except OSError:
            pass  # only a cache

    def head(self, name: str) -> RefLogEntry | None:
        """The latest log entry of a ref (a deletion included), or None."""
        validate_ref_name(name)
        seqs = self._seqs(name)
        return self._read_entry(name, seqs[-1]) if seqs else None

    def get(self, name: str) -> ObjectId:
        """Current target of a ref; ``RefNotFound`` if absent or deleted."""
        entry = self.head(name)
        if entry is None or entry.new is None:
            raise RefNotFound(name)
        return entry.new

    def exists(self, name: str) -> bool:
        entry = self.head(name)
        return entry is not None and entry.new is not None

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
            if self.storage.put_if_absent(f"{self._dir(name)}/{_entry_name(seq)}", data):
                self._cache_entry(f"{self._dir(name)}/{_entry_name(seq)}", data)
                return entry
            # Another writer took this number first: re-read and decide again.

    def history(self, name: str) -> builtins.list[RefLogEntry]:
        """Every move of a ref, oldest first; ``RefNotFound`` if it never existed."""
        validate_ref_name(name)
        seqs = self._seqs(name)
        if not seqs:
            raise RefNotFound(name)
        return [self._read_entry(name, s) for s in seqs]

    def _latest_seqs(self, prefix: str = "") -> dict[str, int]:
        """Every ref name under ``prefix`` with its highest entry number (one listing).

        Only the folder the prefix names is walked: listing one artifact's
        aliases must not cost a walk over every ref of the store.
        """
        found: dict[str, int] = {}
        folder = prefix.rpartition("/")[0]
        for path in self.storage.walk_files(f"{REFS_DIR}/{folder}" if folder else REFS_DIR):
            folder, _, leaf = path.rpartition("/")
            seq = _parse_seq(leaf)
            if seq is None:
                continue
            name = folder[len(REFS_DIR) + 1 :]
            if name.startswith(prefix) and seq > found.get(name, 0):
                found[name] = seq
        return found

    def names(self, prefix: str = "") -> builtins.list[str]:
        """Names of refs with any history under ``prefix`` (deleted ones included)."""
        return sorted(self._latest_seqs(prefix))

    def heads(self, prefix: str = "") -> dict[str, RefLogEntry]:
        """The latest log entry of every ref under ``prefix`` (deletions included)."""
        return {name: self._read_entry(name, seq) for name, seq in sorted(self._latest_seqs(prefix).items())}

    def list(self, prefix: str = "") -> dict[str, ObjectId]:
        """Live refs whose names start with ``prefix``: name -> target, sorted."""
        return {name: e.new for name, e in self.heads(prefix).items() if e.new is not None}

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
        separate look.
        """
        out: builtins.set[ObjectId] = builtins.set()
        for name in self.names():
            out |= self.roots_in(self.history(name))
        return out
