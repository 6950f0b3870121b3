"""The bounds of the format: the largest size anything read from outside may claim.

Every length that comes from a pack, an index, a ref log entry, the config
or a remote is checked against one of these numbers *before* a buffer of
that size exists, so a lying record costs a comparison, never memory. They
are part of the format (``docs/format.md`` lists them) and are chosen from
real use: a directory of 1,000,000 entries, a file of hundreds of GiB.

The object database checks each index entry with :func:`check_entry` (a
few comparisons per object, never per byte) and each zstd frame header with
:func:`check_frame`; ref entries, the config and indexes are read with
:meth:`~objstore.storage.Storage.read_bounded`. Code serving the format
over the network (an HTTP server) should bound request bodies with
:func:`check_size` and the same constants.
"""

from __future__ import annotations

from typing import Protocol

import zstandard

from .errors import CorruptObject, FormatError, TooLarge

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

MAX_CHUNK_SIZE = 16 * MiB
"""Largest ``chunking.max_size`` a repository may choose."""

MAX_SMALL_FILE = 64 * MiB
"""Largest ``chunking.small_file`` a repository may choose."""

MAX_TREE_SIZE = 256 * MiB
"""Largest typed encoding of a tree (1,000,000 entries with 200-byte names fit)."""

MAX_TREE_ENTRIES = 1 << 22
"""Most entries in one tree (4,194,304)."""

MAX_CHUNKED_SIZE = 256 * MiB
"""Largest typed encoding of a chunk list."""

MAX_CHUNKS = 1 << 22
"""Most chunks in one file (640 GiB at the default ~160 KiB chunks, 64 TiB at 16 MiB)."""

MAX_LEGACY_BLOB = 64 * MiB
"""Format version 1 repositories (written before the blob bound existed) may
hold whole blobs of any size made by ``store_bytes`` (e.g. a run's metrics);
their readers accept blobs up to this size instead of the chunking bound."""

MAX_COMMIT_SIZE = 16 * MiB
"""Largest typed encoding of a commit (its metadata included)."""

MAX_REF_ENTRY_SIZE = 1 * MiB
"""Largest ref log entry file."""

MAX_PACKED_REFS_SIZE = 64 * MiB
"""Largest packed-refs file (``refs/!packed@<generation>``), read with one ranged request."""

MAX_PACKED_REFS_CONTENT = 256 * MiB
"""Largest uncompressed body of a packed-refs file (about a million log entries)."""

MAX_CONFIG_SIZE = 64 * KiB
"""Largest repository config file."""

MAX_PACK_OBJECTS = 1 << 22
"""Most objects in one pack (and so entries in one index); writers start a new pack before this."""

MAX_ZSTD_WINDOW = 1 << 27
"""Largest zstd window a stored frame may ask a reader for (128 MiB, zstd's own default limit)."""

STREAM_THRESHOLD = 8 * MiB
"""Compressed objects larger than this are hashed while they decompress, piece by piece,
before they are decompressed whole: a frame that lies about its content costs its
pieces, not its claimed size."""

MAX_GROUP_RAW = 4 * MiB
"""Largest raw size of a group record: the summed typed encodings of its members
(the one zstd frame decompresses to this, declared in its header)."""

MAX_GROUP_MEMBER = 1 * MiB
"""Largest typed encoding one group member may have (writers group far smaller ones)."""

MAX_GROUP_MEMBERS = 1 << 16
"""Most members in one group record."""

def max_group_stored() -> int:
    """Largest ``stored_length`` of a group record (member table plus zstd's worst case)."""
    return 4 + 4 * MAX_GROUP_MEMBERS + max_stored_size(_ZSTD, MAX_GROUP_RAW)


_INDEX_FIXED = 16 + 1024 + 16 + 8  # header, fanout, pack name, checksum
_INDEX_ENTRY = 26

_OBJECT_LIMITS = {"chunked": MAX_CHUNKED_SIZE, "tree": MAX_TREE_SIZE, "commit": MAX_COMMIT_SIZE}
_KIND_NAMES = {1: "blob", 2: "chunked", 3: "tree", 4: "commit"}  # the type tags of docs/format.md
_RAW, _ZSTD, _GROUPED = 0, 1, 2  # the codecs of docs/format.md


class Entry(Protocol):
    """What :func:`check_entry` reads of an index entry."""

    @property
    def stored_length(self) -> int: ...

    @property
    def raw_length(self) -> int: ...

    @property
    def type_tag(self) -> int: ...

    @property
    def codec(self) -> int: ...


def max_blob_size(max_chunk: int, small_file: int) -> int:
    """Largest typed encoding of a blob in a repository with these chunking settings.

    A blob is a whole file of at most ``small_file`` bytes or one chunk of at
    most ``max_chunk`` bytes, plus its tag byte.
    """
    return 1 + max(max_chunk, small_file)


def max_object_size(type_tag: int, max_blob: int) -> int:
    """Largest ``raw_length`` an object of this type may have (0 for an unknown tag)."""
    kind = _KIND_NAMES.get(type_tag)
    if kind is None:
        return 0
    if kind == "blob":
        return max_blob
    return _OBJECT_LIMITS[kind]


def max_stored_size(codec: int, raw_length: int) -> int:
    """Largest ``stored_length`` for ``raw_length`` bytes: equal when raw, zstd's
    worst-case bound when compressed (a writer keeps zstd only if it is smaller);
    for a group member, the bound of a whole group record (its entry points at the group)."""
    if codec == _RAW:
        return raw_length
    if codec == _GROUPED:
        return _MAX_GROUP_STORED
    return raw_length + (raw_length >> 8) + 128


def max_index_size(digest_size: int) -> int:
    """Largest pack index file for ids of ``digest_size`` bytes."""
    return _INDEX_FIXED + MAX_PACK_OBJECTS * (digest_size + _INDEX_ENTRY)


def check_size(what: str, size: int, limit: int) -> int:
    """Return ``size``, or raise :class:`TooLarge` if it is negative or over ``limit``."""
    if size < 0 or size > limit:
        raise TooLarge(what, size, limit)
    return size


_MAX_BY_TAG = {2: MAX_CHUNKED_SIZE, 3: MAX_TREE_SIZE, 4: MAX_COMMIT_SIZE}
_MAX_GROUP_STORED = max_group_stored()


def check_entry(object_id: str | bytes, entry: Entry, max_blob: int, where: str | None = None) -> None:
    """Refuse an index entry whose type, codec or lengths no honest writer produces.

    ``CorruptObject`` naming the object (``object_id``, hex or raw) and
    ``where`` (its pack) if the ``raw_length`` is over the bound of its type
    (``max_blob`` for blobs), or the ``stored_length`` cannot hold that much.
    Runs once per object read, so the common case is a handful of comparisons.
    """
    tag, codec, raw, stored = entry.type_tag, entry.codec, entry.raw_length, entry.stored_length
    limit = max_blob if tag == 1 else _MAX_BY_TAG.get(tag, 0)
    if 1 <= raw <= limit and stored >= 1 and (stored <= raw if codec == _RAW else codec == _ZSTD and stored <= raw + (raw >> 8) + 128):
        return
    if codec == _GROUPED and 1 <= raw <= min(limit, MAX_GROUP_MEMBER) and 4 < stored <= _MAX_GROUP_STORED:
        return
    _refuse(object_id if isinstance(object_id, str) else object_id.hex(), entry, max_blob, where)


def _refuse(object_id: str, entry: Entry, max_blob: int, where: str | None) -> None:
    limit = max_object_size(entry.type_tag, max_blob)
    if limit == 0:
        raise CorruptObject(object_id, f"the index gives it unknown type tag {entry.type_tag}", where)
    kind = _KIND_NAMES[entry.type_tag]
    if entry.codec not in (_RAW, _ZSTD, _GROUPED):
        raise CorruptObject(object_id, f"the index gives it unknown codec {entry.codec}", where)
    if entry.codec == _GROUPED and entry.raw_length > MAX_GROUP_MEMBER:
        raise CorruptObject(
            object_id, f"the index claims a grouped {kind} of {entry.raw_length} bytes; group members are at most {MAX_GROUP_MEMBER}", where
        )
    if not 1 <= entry.raw_length <= limit:
        raise CorruptObject(
            object_id, f"the index claims a {kind} of {entry.raw_length} bytes; the format allows 1..{limit}", where
        )
    stored_limit = max_stored_size(entry.codec, entry.raw_length)
    raise CorruptObject(
        object_id,
        f"the index claims {entry.stored_length} stored bytes for {entry.raw_length} raw ones (at most {stored_limit})",
        where,
    )


def check_frame(stored: bytes | memoryview, raw_length: int) -> None:
    """Refuse a zstd frame whose header disagrees with ``raw_length``, before decompressing it.

    ``FormatError`` unless the frame declares its content size, that size is
    ``raw_length``, it needs no dictionary and its window is at most
    :data:`MAX_ZSTD_WINDOW`.
    """
    try:
        params = zstandard.get_frame_parameters(stored)
    except zstandard.ZstdError as exc:
        raise FormatError(f"zstd frame header does not parse: {exc}") from None
    size = params.content_size
    if size == raw_length and params.window_size <= MAX_ZSTD_WINDOW and not params.dict_id:
        return
    if size == zstandard.CONTENTSIZE_UNKNOWN or size == zstandard.CONTENTSIZE_ERROR:
        raise FormatError("zstd frame does not declare its content size")
    if size != raw_length:
        raise FormatError(f"zstd frame declares {size} bytes, index says {raw_length}")
    if params.dict_id:
        raise FormatError(f"zstd frame needs dictionary {params.dict_id}")
    raise FormatError(f"zstd frame asks for a {params.window_size}-byte window (at most {MAX_ZSTD_WINDOW})")


__all__ = [
    "GiB",
    "KiB",
    "MAX_CHUNKED_SIZE",
    "MAX_CHUNKS",
    "MAX_CHUNK_SIZE",
    "MAX_COMMIT_SIZE",
    "MAX_CONFIG_SIZE",
    "MAX_GROUP_MEMBER",
    "MAX_GROUP_MEMBERS",
    "MAX_GROUP_RAW",
    "MAX_PACK_OBJECTS",
    "MAX_REF_ENTRY_SIZE",
    "MAX_SMALL_FILE",
    "MAX_TREE_ENTRIES",
    "MAX_TREE_SIZE",
    "MAX_ZSTD_WINDOW",
    "STREAM_THRESHOLD",
    "MiB",
    "check_entry",
    "check_frame",
    "check_size",
    "max_blob_size",
    "max_group_stored",
    "max_index_size",
    "max_object_size",
    "max_stored_size",
]
