"""Immutable object types and their canonical encoding.

Every object has a *typed encoding*: one tag byte followed by a body. The
object id is the hash of that typed encoding, uncompressed, so it never
depends on how (or whether) the bytes were compressed at rest.

* ``Blob``: the body is the raw bytes (a small file, or one chunk of a big one).
* ``ChunkedBlob``: a large file as an ordered list of chunk blob ids and sizes.
* ``Tree``: one directory; entries sorted by the UTF-8 bytes of their names.
* ``Commit``: a tree, parent commits, time, author, message and metadata.

Structured bodies are msgpack arrays in one canonical form. Decoding
re-encodes and rejects anything that is not byte-for-byte canonical, so
equal content always has one encoding and therefore one id.
"""

from __future__ import annotations

import itertools
import math
import operator
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

from .errors import FormatError, UnsafePath
from .ids import ObjectId
from .limits import MAX_CHUNKS, MAX_TREE_ENTRIES

BLOB, CHUNKED, TREE, COMMIT = 1, 2, 3, 4
KIND_NAMES = {BLOB: "blob", CHUNKED: "chunked", TREE: "tree", COMMIT: "commit"}

# Tree entry kinds (the second field of an encoded entry).
FILE, DIR, SYMLINK, REFERENCE = 0, 1, 2, 3
ENTRY_KIND_NAMES = {FILE: "file", DIR: "dir", SYMLINK: "symlink", REFERENCE: "reference"}
_ENTRY_KINDS = {v: k for k, v in ENTRY_KIND_NAMES.items()}

MODE_FILE = 0o644
MODE_EXEC = 0o755
_FILE_MODES = (MODE_FILE, MODE_EXEC)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(body: bytes | memoryview, what: str, max_array: int | None = None, maps: bool = True) -> Any:
    """Decode a msgpack body; no array, map, string or bytes may claim more than the body holds.

    Every msgpack element takes at least one byte, so no honest length
    exceeds ``len(body)``; ``max_array`` lowers that for arrays (tree entries,
    chunk sizes), and ``maps=False`` refuses maps altogether. A header that
    claims more fails before msgpack allocates for it.
    """
    n = len(body)
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n if max_array is None else min(n, max_array),
            max_map_len=n if maps else 0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types on bad input
        raise FormatError(f"{what} body is not valid msgpack: {exc}") from None


def canonical(value: Any, _path: str = "metadata") -> Any:
    """Return ``value`` in canonical msgpack-ready form, or raise ``TypeError``.

    Maps get their (string) keys sorted, tuples become lists; only msgpack's
    plain types are allowed, and floats must be finite.
    """
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise TypeError(f"{_path}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{_path}: {value} is not a finite number")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key in sorted(value, key=_key_order(_path)):
            out[key] = canonical(value[key], f"{_path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{_path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{_path}: {type(value).__name__} cannot be stored (use str, int, float, bool, None, bytes, list, dict)")


def _key_order(path: str) -> Any:
    def key(k: object) -> str:
        if not isinstance(k, str):
            raise TypeError(f"{path}: map keys must be str, got {type(k).__name__}")
        return k

    return key


def validate_name(name: str) -> str:
    """Check one path component as stored in a tree; return it unchanged."""
    if not isinstance(name, str):
        raise UnsafePath(repr(name), "a name must be a string")
    if name in ("", ".", ".."):
        raise UnsafePath(name, "empty, '.' and '..' are not valid names")
    if "/" in name or "\0" in name:
        raise UnsafePath(name, "a name may not contain '/' or NUL")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePath(name, "a name must be valid UTF-8") from None
    return name


@dataclass(frozen=True)
class Blob:
    """A small file, or one chunk of a large file."""

    data: bytes
    type_tag: ClassVar[int] = BLOB

    def encode(self) -> bytes:
        return bytes((BLOB,)) + self.data

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ChunkedBlob:
    """A large file: the ordered ids and sizes of its chunk blobs."""

    chunks: tuple[tuple[ObjectId, int], ...]
    type_tag: ClassVar[int] = CHUNKED

    @property
    def size(self) -> int:
        return sum(s for _, s in self.chunks)

    def encode(self) -> bytes:
        hexes = [c for c, _ in self.chunks]
        lengths = set(map(len, hexes))
        if len(lengths) == 1 and not next(iter(lengths)) % 2:
            ids = bytes.fromhex("".join(hexes))  # one call: a 10 GB file has ~65k chunks
        else:  # each on its own, so an odd one is refused
            ids = b"".join(bytes.fromhex(c) for c in hexes)
        sizes = [s for _, s in self.chunks]
        return bytes((CHUNKED,)) + _pack([sum(sizes), ids, sizes])

    @classmethod
    def _decode(cls, body: memoryview, digest_size: int) -> ChunkedBlob:
        data = _unpack(body, "chunked blob", MAX_CHUNKS, maps=False)
        if not (isinstance(data, list) and len(data) == 3):
            raise FormatError("chunked blob must be [size, ids, sizes]")
        total, ids, sizes = data
        if not isinstance(total, int) or not isinstance(ids, bytes) or not isinstance(sizes, list):
            raise FormatError("chunked blob fields have the wrong types")
        if len(ids) != len(sizes) * digest_size:
            raise FormatError("chunked blob id list and size list differ in length")
        if not all(isinstance(s, int) and s > 0 for s in sizes) or sum(sizes) != total:
            raise FormatError("chunked blob sizes are not positive or do not add up")
        text, width = ids.hex(), 2 * digest_size  # one call, then slices: a 10 GB file has ~65k chunks
        chunks = tuple(zip([ObjectId(text[i : i + width]) for i in range(0, len(text), width)], sizes))
        return cls(chunks)


@dataclass(frozen=True)
class TreeEntry:
    """One name in a directory.

    ``kind`` is ``file`` (``id`` of a Blob or ChunkedBlob, ``size``, ``mode``
    0o644 or 0o755), ``dir`` (``id`` of a Tree, ``size`` = total bytes under
    it), ``symlink`` (``target`` text, never followed) or ``reference``
    (external data: ``target`` is its URI, ``digest`` an opaque
    ``algo:hex`` string or None, ``size`` or -1 when unknown).
    """

    name: str
    kind: str
    id: ObjectId | None = None
    size: int = 0
    mode: int = MODE_FILE
    target: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.kind not in _ENTRY_KINDS:
            raise ValueError(f"unknown tree entry kind {self.kind!r}")
        if self.kind in ("file", "dir") and not self.id:
            raise ValueError(f"{self.kind} entry {self.name!r} needs an id")
        if self.kind == "file" and self.mode not in _FILE_MODES:
            raise ValueError(f"file entry {self.name!r} has mode {oct(self.mode)}; use 0o644 or 0o755")
        if self.kind in ("symlink", "reference") and not isinstance(self.target, str):
            raise ValueError(f"{self.kind} entry {self.name!r} needs a target")

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def is_executable(self) -> bool:
        return self.kind == "file" and self.mode == MODE_EXEC

    def _encode(self) -> list[Any]:
        k = _ENTRY_KINDS[self.kind]
        if k == FILE:
            assert self.id is not None
            return [self.name, k, bytes.fromhex(self.id), self.size, self.mode]
        if k == DIR:
            assert self.id is not None
            return [self.name, k, bytes.fromhex(self.id), self.size]
        if k == SYMLINK:
            return [self.name, k, self.target]
        return [self.name, k, self.target, self.size, self.digest]

    @classmethod
    def _decode(cls, raw: Any, digest_size: int) -> TreeEntry:
        if not isinstance(raw, list) or len(raw) < 3:
            raise FormatError("tree entry must be a list of at least 3 fields")
        name, kind = raw[0], raw[1]
        if not isinstance(name, str) or not isinstance(kind, int) or kind not in ENTRY_KIND_NAMES:
            raise FormatError(f"tree entry has bad name or kind: {raw[:2]!r}")
        shape = {FILE: (bytes, int, int), DIR: (bytes, int), SYMLINK: (str,), REFERENCE: (str, int, (str, type(None)))}[kind]
        if len(raw) != 2 + len(shape) or not all(isinstance(v, t) for v, t in zip(raw[2:], shape)):
            raise FormatError(f"tree entry {name!r} does not match the {ENTRY_KIND_NAMES[kind]} layout")
        try:
            if kind in (FILE, DIR):
                if len(raw[2]) != digest_size:
                    raise FormatError(f"tree entry {name!r} has an id of the wrong length")
                if raw[3] < 0:
                    raise FormatError(f"tree entry {name!r} has a negative size")
                mode = raw[4] if kind == FILE else MODE_FILE
                return cls(name, ENTRY_KIND_NAMES[kind], ObjectId(raw[2].hex()), raw[3], mode)
            if kind == SYMLINK:
                return cls(name, "symlink", target=raw[2])
            return cls(name, "reference", size=raw[3], target=raw[2], digest=raw[4])
        except (ValueError, UnsafePath) as exc:
            raise FormatError(f"bad tree entry: {exc}") from None


def _name_key(entry: TreeEntry) -> bytes:
    return entry.name.encode("utf-8")


@dataclass(frozen=True)
class Tree:
    """One directory: entries sorted by the UTF-8 bytes of their names."""

    entries: tuple[TreeEntry, ...] = ()
    type_tag: ClassVar[int] = TREE

    @classmethod
    def from_entries(cls, entries: Iterable[TreeEntry]) -> Tree:
        """Sort entries into canonical order; ``UnsafePath`` on duplicate names."""
        ordered = sorted(entries, key=_name_key)
        for a, b in itertools.pairwise(ordered):
            if a.name == b.name:
                raise UnsafePath(a.name, "duplicate name in one directory")
        return cls(tuple(ordered))

    @property
    def size(self) -> int:
        """Logical bytes under this directory (unknown reference sizes count 0)."""
        return sum(max(e.size, 0) for e in self.entries if e.kind != "symlink")

    def __getitem__(self, name: str) -> TreeEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def get(self, name: str) -> TreeEntry | None:
        try:
            return self[name]
        except KeyError:
            return None

    def encode(self) -> bytes:
        return bytes((TREE,)) + _pack([e._encode() for e in self.entries])

    @classmethod
    def _decode(cls, body: memoryview, digest_size: int) -> Tree:
        data = _unpack(body, "tree", MAX_TREE_ENTRIES, maps=False)
        if not isinstance(data, list):
            raise FormatError("tree body must be a list of entries")
        entries = tuple(TreeEntry._decode(raw, digest_size) for raw in data)
        keys = [_name_key(e) for e in entries]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise FormatError("tree entries are not strictly sorted (duplicate or out of order)")
        return cls(entries)


@dataclass(frozen=True)
class Commit:
    """A snapshot of a tree with its history and description."""

    tree: ObjectId
    parents: tuple[ObjectId, ...] = ()
    time: float = 0.0
    author: str | None = None
    message: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    type_tag: ClassVar[int] = COMMIT

    def encode(self) -> bytes:
        body = [
            bytes.fromhex(self.tree),
            [bytes.fromhex(p) for p in self.parents],
            float(self.time),
            self.author,
            self.message,
            canonical(dict(self.metadata)),
        ]
        return bytes((COMMIT,)) + _pack(body)

    @classmethod
    def _decode(cls, body: memoryview, digest_size: int) -> Commit:
        data = _unpack(body, "commit")
        if not isinstance(data, list) or len(data) != 6:
            raise FormatError("commit must be [tree, parents, time, author, message, metadata]")
        tree, parents, time_, author, message, metadata = data
        ok = (
            isinstance(tree, bytes)
            and len(tree) == digest_size
            and isinstance(parents, list)
            and all(isinstance(p, bytes) and len(p) == digest_size for p in parents)
            and isinstance(time_, float)
            and isinstance(author, (str, type(None)))
            and isinstance(message, str)
            and isinstance(metadata, dict)
        )
        if not ok:
            raise FormatError("commit fields have the wrong types or id lengths")
        return cls(ObjectId(tree.hex()), tuple(ObjectId(p.hex()) for p in parents), time_, author, message, metadata)


StoredObject = Blob | ChunkedBlob | Tree | Commit

_BAD_NAMES = frozenset(("", ".", ".."))
_ROW_SHAPES: dict[int, tuple[Any, ...]] = {
    FILE: (bytes, int, int),
    DIR: (bytes, int),
    SYMLINK: (str,),
    REFERENCE: (str, int, (str, type(None))),
}


def tree_rows(encoded: bytes | memoryview, digest_size: int) -> list[list[Any]]:
    """A tree's entries as its msgpack rows, without building :class:`TreeEntry` objects.

    Rows are ``[name, FILE, raw id, size, mode]``, ``[name, DIR, raw id,
    size]``, ``[name, SYMLINK, target]`` or ``[name, REFERENCE, target, size,
    digest]`` (kinds as in :data:`ENTRY_KIND_NAMES`). Everything
    :func:`decode` checks of a tree is checked (shapes, id lengths, sizes,
    modes, names, strict UTF-8 order, the canonical encoding), with the same
    ``FormatError``: for walking many trees fast, e.g. in a checkout.
    """
    mv = memoryview(encoded)
    if len(mv) == 0 or mv[0] != TREE:
        raise FormatError("not a tree encoding")
    body = mv[1:]
    rows = _unpack(body, "tree", MAX_TREE_ENTRIES, maps=False)
    if not isinstance(rows, list):
        raise FormatError("tree body must be a list of entries")
    for raw in rows if not _all_plain_files(rows, digest_size) else ():
        if (
            type(raw) is list
            and len(raw) == 5
            and type(raw[1]) is int
            and raw[1] == FILE
            and type(raw[0]) is str
            and type(raw[2]) is bytes
            and len(raw[2]) == digest_size
            and type(raw[3]) is int
            and raw[3] >= 0
            and (raw[4] == MODE_FILE or raw[4] == MODE_EXEC)
            and type(raw[4]) is int
        ):
            continue  # the common case, checked in one go
        _check_row(raw, digest_size)
    names = [raw[0] for raw in rows]
    joined = "\0".join(names)
    if names and ("/" in joined or joined.count("\0") != len(names) - 1 or _BAD_NAMES.intersection(names)):
        bad = next(n for n in names if n in _BAD_NAMES or "/" in n or "\0" in n)
        raise FormatError(f"bad tree entry: {bad!r} is not a valid name")
    keys = [n.encode("utf-8") for n in names]
    if keys != sorted(set(keys)):
        raise FormatError("tree entries are not strictly sorted (duplicate or out of order)")
    if _pack(rows) != body.tobytes():  # bytes to bytes: one memcmp (a memoryview compares item by item)
        raise FormatError("tree encoding is not canonical")
    return rows


_ROW_FIELDS = [operator.itemgetter(i) for i in range(5)]
_PLAIN_FILE_TYPES = ({str}, {int}, {bytes}, {int}, {int})  # name, kind, id, size, mode


def _all_plain_files(rows: list[Any], digest_size: int) -> bool:
    """Are all rows well-formed files (the common tree)? The per-row check of
    :func:`tree_rows`, done column by column with C-level maps."""
    if not rows or set(map(type, rows)) != {list} or set(map(len, rows)) != {5}:
        return False
    name, kind, oid, size, mode = (list(map(get, rows)) for get in _ROW_FIELDS)
    return (
        (set(map(type, name)), set(map(type, kind)), set(map(type, oid)), set(map(type, size)), set(map(type, mode)))
        == _PLAIN_FILE_TYPES
        and set(kind) == {FILE}
        and set(map(len, oid)) == {digest_size}
        and min(size) >= 0
        and set(mode) <= set(_FILE_MODES)
    )


def _check_row(raw: Any, digest_size: int) -> None:
    """Check one tree row's shape (any kind) as :meth:`TreeEntry._decode` and the
    canonical re-encoding in :func:`decode` do (a bool is no kind)."""
    if not isinstance(raw, list) or len(raw) < 3:
        raise FormatError("tree entry must be a list of at least 3 fields")
    name, kind = raw[0], raw[1]
    if not isinstance(name, str) or type(kind) is not int or kind not in ENTRY_KIND_NAMES:
        raise FormatError(f"tree entry has bad name or kind: {raw[:2]!r}")
    shape = _ROW_SHAPES[kind]
    if len(raw) != 2 + len(shape) or not all(isinstance(v, t) for v, t in zip(raw[2:], shape)):
        raise FormatError(f"tree entry {name!r} does not match the {ENTRY_KIND_NAMES[kind]} layout")
    if kind in (FILE, DIR):
        if len(raw[2]) != digest_size:
            raise FormatError(f"tree entry {name!r} has an id of the wrong length")
        if raw[3] < 0:
            raise FormatError(f"tree entry {name!r} has a negative size")
        if kind == FILE and (raw[4] not in _FILE_MODES or type(raw[4]) is not int):
            raise FormatError(f"bad tree entry: file entry {name!r} has mode {oct(raw[4])}; use 0o644 or 0o755")


def decode(encoded: bytes | memoryview, digest_size: int) -> StoredObject:
    """Decode a typed encoding; ``FormatError`` unless it is canonical."""
    mv = memoryview(encoded)
    if len(mv) == 0:
        raise FormatError("empty object encoding")
    tag = mv[0]
    body = mv[1:]
    if tag == BLOB:
        return Blob(bytes(body))
    obj: StoredObject
    try:
        if tag == CHUNKED:
            obj = ChunkedBlob._decode(body, digest_size)
        elif tag == TREE:
            obj = Tree._decode(body, digest_size)
        elif tag == COMMIT:
            obj = Commit._decode(body, digest_size)
        else:
            raise FormatError(f"unknown object type tag {tag}")
    except RecursionError:
        raise FormatError(f"{KIND_NAMES.get(tag, 'object')} is nested too deeply") from None
    try:
        again = obj.encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise FormatError(f"{KIND_NAMES[tag]} does not re-encode: {exc!r}") from None
    if again != mv:
        raise FormatError(f"{KIND_NAMES[tag]} encoding is not canonical")
    return obj


def file_mode_from_stat(st_mode: int) -> int:
    """0o755 if any execute bit is set, else 0o644 (git's rule)."""
    return MODE_EXEC if st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) else MODE_FILE
