"""The packed-refs file: the logs of every ref up to one generation, in one file.

A repository of format version 3 compacts its ref logs the way git packs
refs: now and then the loose log entries are merged into a new, immutable
``refs/!packed@<generation>`` file and deleted, so a store with thousands
of versions holds a handful of ref files, and listing every ref reads one
directory and one file. :mod:`objstore.refs` decides what goes in and when
(and why that is safe with concurrent writers); this module only turns one
generation into bytes and back, checking every length against
:data:`~objstore.limits.MAX_PACKED_REFS_SIZE` and
:data:`~objstore.limits.MAX_PACKED_REFS_CONTENT` first.

Layout (``docs/format.md#packed-refs``)::

    header   16 bytes: magic "OSRF" | u16 version = 1 | u16 0 | u64 generation
    body     one zstd frame (content size declared) of the msgpack array
             [[name, count, head_at, log], ...] sorted by name
    checksum 8 bytes: XXH3-64 of everything before it

``log`` is the ref's entries 1..``count``, each exactly the msgpack bytes
its loose file held, back to back; ``head_at`` is where entry ``count``
starts in it (so the heads of all refs are read without decoding a log).
"""

from __future__ import annotations

import bisect
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import xxhash
import zstandard

from .errors import FormatError, TooLarge
from .limits import MAX_PACKED_REFS_CONTENT, MAX_PACKED_REFS_SIZE, MAX_ZSTD_WINDOW

MAGIC = b"OSRF"
VERSION = 1
_HEADER = struct.Struct("<4sHHQ")
_CHECKSUM = 8
LEVEL = 3
"""zstd level of the body: ref logs are small and repetitive, and written far less often than read."""


_local = threading.local()


def _zstd() -> zstandard.ZstdCompressor:
    # One context per thread, kept: a fresh one per compaction costs its
    # tables each time, and glibc keeps the freed megabytes as fragments.
    c: zstandard.ZstdCompressor | None = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=LEVEL, write_content_size=True)
    return c


def _unzstd() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


@dataclass(frozen=True)
class PackedLog:
    """One ref's log as packed: ``count`` entries, the last one starting at ``head_at``."""

    count: int
    head_at: int
    log: bytes

    def head(self) -> bytes:
        """The msgpack bytes of entry ``count`` (the ref's head when packed)."""
        return self.log[self.head_at :]

    def entries(self) -> Iterator[bytes]:
        """The msgpack bytes of entries 1..``count``, in order (split, not decoded)."""
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(self.log), 1))
        unpacker.feed(self.log)
        start = 0
        for _ in unpacker:
            end = unpacker.tell()
            yield self.log[start:end]
            start = end
        if start != len(self.log):
            raise FormatError("packed ref log ends inside an entry")


class PackedRefs:
    """One generation of packed ref logs (immutable once written)."""

    def __init__(self, generation: int, logs: Mapping[str, PackedLog]) -> None:
        if generation < 1:
            raise ValueError("a packed-refs generation starts at 1")
        self.generation = generation
        self.logs = dict(logs)
        self.names = sorted(self.logs)
        self.heads: dict[str, Any] = {}
        """Decoded head entries, filled by :mod:`objstore.refs` as it reads them (a generation never changes)."""

    def __contains__(self, name: str) -> bool:
        return name in self.logs

    def __len__(self) -> int:
        return len(self.logs)

    def count(self, name: str) -> int:
        """Entries of ``name`` this generation holds (0: none)."""
        log = self.logs.get(name)
        return log.count if log is not None else 0

    def names_with(self, prefix: str) -> list[str]:
        """Packed ref names starting with ``prefix``, sorted (a bisect, not a scan)."""
        if not prefix:
            return list(self.names)
        lo = bisect.bisect_left(self.names, prefix)
        hi = lo
        while hi < len(self.names) and self.names[hi].startswith(prefix):
            hi += 1
        return self.names[lo:hi]

    def merged(self, additions: Mapping[str, Iterable[bytes]]) -> PackedRefs:
        """The next generation: this one with ``additions`` (entries' bytes, in order) appended."""
        logs = dict(self.logs)
        for name, new in additions.items():
            pieces = list(new)
            if not pieces:
                continue
            old = logs.get(name)
            base = old.log if old is not None else b""
            head_at = len(base) + sum(len(p) for p in pieces[:-1])
            logs[name] = PackedLog((old.count if old is not None else 0) + len(pieces), head_at, base + b"".join(pieces))
        return PackedRefs(self.generation + 1, logs)

    @classmethod
    def first(cls, additions: Mapping[str, Iterable[bytes]]) -> PackedRefs:
        """Generation 1, from the loose entries of a store never packed before."""
        return _EMPTY.merged(additions)

    def encode(self) -> bytes:
        """The file's bytes; ``TooLarge`` if they would exceed the format's bounds."""
        body = msgpack.packb([[n, self.logs[n].count, self.logs[n].head_at, self.logs[n].log] for n in self.names], use_bin_type=True)
        if len(body) > MAX_PACKED_REFS_CONTENT:
            raise TooLarge("the packed refs (uncompressed)", len(body), MAX_PACKED_REFS_CONTENT)
        frame = _zstd().compress(body)
        data = _HEADER.pack(MAGIC, VERSION, 0, self.generation) + frame
        data += xxhash.xxh3_64_digest(data)
        if len(data) > MAX_PACKED_REFS_SIZE:
            raise TooLarge("the packed refs file", len(data), MAX_PACKED_REFS_SIZE)
        return data

    @classmethod
    def decode(cls, data: bytes, where: str) -> PackedRefs:
        """Parse and check a packed-refs file (``FormatError`` saying what is wrong)."""
        if len(data) > MAX_PACKED_REFS_SIZE:
            raise TooLarge(where, len(data), MAX_PACKED_REFS_SIZE)
        if len(data) < _HEADER.size + _CHECKSUM:
            raise FormatError(f"packed refs {where} is truncated ({len(data)} bytes)")
        magic, version, zero, generation = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise FormatError(f"packed refs {where} does not start with {MAGIC!r}")
        if version != VERSION:
            raise FormatError(f"packed refs {where} has version {version}; this objstore reads version {VERSION}: upgrade objstore")
        if zero != 0 or generation < 1:
            raise FormatError(f"packed refs {where} has a malformed header")
        if xxhash.xxh3_64_digest(data[:-_CHECKSUM]) != data[-_CHECKSUM:]:
            raise FormatError(f"packed refs {where} fails its checksum")
        frame = data[_HEADER.size : -_CHECKSUM]
        try:
            params = zstandard.get_frame_parameters(frame)
        except zstandard.ZstdError as exc:
            raise FormatError(f"packed refs {where}: the body is not a zstd frame ({exc})") from None
        size = params.content_size
        if size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
            raise FormatError(f"packed refs {where}: the zstd frame does not declare its size")
        if params.dict_id or params.window_size > MAX_ZSTD_WINDOW:
            raise FormatError(f"packed refs {where}: the zstd frame needs a dictionary or a window over {MAX_ZSTD_WINDOW} bytes")
        if size > MAX_PACKED_REFS_CONTENT:
            raise TooLarge(f"{where} (uncompressed)", size, MAX_PACKED_REFS_CONTENT)
        try:
            body = _unzstd().decompress(frame, max_output_size=size)
        except zstandard.ZstdError as exc:
            raise FormatError(f"packed refs {where}: the body does not decompress ({exc})") from None
        if len(body) != size:
            raise FormatError(f"packed refs {where}: the body is {len(body)} bytes, its frame says {size}")
        try:
            raw = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception as exc:
            raise FormatError(f"packed refs {where} is not valid msgpack: {exc}") from None
        if not isinstance(raw, list):
            raise FormatError(f"packed refs {where} has the wrong shape")
        logs: dict[str, PackedLog] = {}
        last = None
        for rec in raw:
            if not (
                isinstance(rec, list)
                and len(rec) == 4
                and isinstance(rec[0], str)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in rec[1:3])
                and isinstance(rec[3], bytes)
            ):
                raise FormatError(f"packed refs {where} has a malformed record")
            name, count, head_at, log = rec
            if last is not None and name <= last:
                raise FormatError(f"packed refs {where}: ref names are not sorted and unique at {name!r}")
            if count < 1 or not 0 <= head_at < len(log):
                raise FormatError(f"packed refs {where}: the log of {name!r} has impossible bounds")
            last = name
            logs[name] = PackedLog(count, head_at, log)
        return cls(generation, logs)


class _Empty(PackedRefs):
    def __init__(self) -> None:
        self.generation = 0
        self.logs = {}
        self.names = []
        self.heads = {}


_EMPTY = _Empty()
