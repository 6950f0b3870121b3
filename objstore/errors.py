"""Typed exceptions raised by objstore.

Every error a caller can meet derives from :class:`ObjstoreError`, and each
one names the thing that was wrong (a path, an object id, a ref name).
Several also derive from the matching builtin (``KeyError``,
``FileNotFoundError``, ``ValueError``) so generic handlers keep working.
"""

from __future__ import annotations


class ObjstoreError(Exception):
    """Base class of every error raised by objstore."""


class NotARepository(ObjstoreError, FileNotFoundError):
    """The location holds no objstore repository."""

    def __init__(self, location: str, reason: str = "no objstore repository", hint: str = "") -> None:
        super().__init__(f"{reason} at {location!r}{'; ' + hint if hint else ''}")
        self.location = location


class RepositoryExists(ObjstoreError, FileExistsError):
    """``Repository.init`` was pointed at a location that already holds one."""

    def __init__(self, location: str) -> None:
        super().__init__(f"an objstore repository already exists at {location!r}")
        self.location = location


class UnsupportedFormat(ObjstoreError):
    """The repository was written by a newer or unknown format version."""


class FormatError(ObjstoreError, ValueError):
    """Bytes that should hold an objstore structure do not parse as one."""


class TooLarge(FormatError):
    """A length read from outside (a file, a record, a request) is over the bound the format sets."""

    def __init__(self, what: str, size: int, limit: int, unit: str = "bytes") -> None:
        super().__init__(f"{what} is {size} {unit}; the format allows at most {limit}")
        self.what = what
        self.size = size
        self.limit = limit


class CorruptObject(FormatError):
    """An object's stored bytes do not hash to its id, or do not decode."""

    def __init__(self, object_id: str, reason: str, where: str | None = None) -> None:
        loc = f" in {where}" if where else ""
        super().__init__(f"object {object_id} is corrupt{loc}: {reason}")
        self.object_id = object_id
        self.reason = reason
        self.where = where


class ObjectNotFound(ObjstoreError, KeyError):
    """No object with this id (or id prefix) is stored."""

    def __init__(self, object_id: str, reason: str = "no such object") -> None:
        super().__init__(object_id)
        self.object_id = object_id
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}: {self.object_id}"


class AmbiguousId(ObjstoreError, KeyError):
    """An id prefix matches more than one stored object."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(prefix)
        self.prefix = prefix
        self.matches = matches

    def __str__(self) -> str:
        shown = ", ".join(self.matches[:5])
        return f"id prefix {self.prefix!r} is ambiguous: matches {shown}"


class WrongObjectType(ObjstoreError, TypeError):
    """An object exists but is not of the kind the caller asked for."""

    def __init__(self, object_id: str, expected: str, actual: str) -> None:
        super().__init__(f"object {object_id} is a {actual}, expected a {expected}")
        self.object_id = object_id
        self.expected = expected
        self.actual = actual


class InvalidRefName(ObjstoreError, ValueError):
    """A ref name breaks the naming rules."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid ref name {name!r}: {reason}")
        self.name = name


class RefNotFound(ObjstoreError, KeyError):
    """No ref of this name exists (or it was deleted)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no such ref: {self.name!r}"


class RefConflict(ObjstoreError):
    """A compare-and-set on a ref failed: it no longer holds the expected value."""

    def __init__(self, name: str, expected: str | None, actual: str | None) -> None:
        super().__init__(
            f"ref {name!r} moved: expected {expected or '<absent>'}, found {actual or '<absent>'}"
        )
        self.name = name
        self.expected = expected
        self.actual = actual


class PathNotFound(ObjstoreError, FileNotFoundError):
    """A path (on disk, or inside a stored tree) does not exist."""

    def __init__(self, path: str, where: str = "") -> None:
        suffix = f" in {where}" if where else ""
        super().__init__(f"no such path: {path!r}{suffix}")
        self.path = path


class NotADirectory(ObjstoreError, NotADirectoryError):
    """A path that must be a directory is something else."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{reason}: {path!r}")
        self.path = path


class UnsafePath(ObjstoreError, ValueError):
    """A name or path would escape its directory or is not representable."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"unsafe path {path!r}: {reason}")
        self.path = path
        self.reason = reason


class StorageError(ObjstoreError, OSError):
    """The storage backend failed (disk full, read-only, network)."""


class PushRejected(ObjstoreError):
    """A remote ref moved to something that is not an ancestor of what we push."""

    def __init__(self, refs: dict[str, tuple[str | None, str | None]], result: object = None) -> None:
        names = ", ".join(f"{n!r} (remote has {r or '<absent>'}, we have {loc})" for n, (r, loc) in refs.items())
        super().__init__(f"push rejected: the remote moved {names}; fetch and re-base, or push with force=True")
        self.refs = refs
        self.result = result


class RemoteError(ObjstoreError):
    """A remote is not a compatible objstore repository."""


class ServerError(RemoteError):
    """An objstore server refused a request or failed; ``status`` is its HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AccessDenied(ServerError, PermissionError):
    """An objstore server wants a (better) token: 401 (none or invalid) or 403 (scope, read-only, append-only)."""


class ServerUnreachable(ServerError, StorageError):
    """An objstore server could not be reached, or the connection broke off mid-transfer."""
