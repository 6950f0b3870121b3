"""The pack stream: objects on the wire between an objstore client and server.

A push uploads one, a fetch downloads one. It is a pack written for a
socket rather than a disk: self-delimiting records, then an end record that
counts them and a checksum of everything before it, so a stream cut at any
byte (even between two records) is told apart from a complete one::

    header    b"OSWP" | version u16 | digest size u8 | 0 u8
    record    id | type tag u8 | codec u8 | stored length u64 | raw length u64 | stored bytes
    ...
    end       zero id | 0 u8 | 0 u8 | record count u64 | 0 u64
    trailer   xxh3-128 of the header, every record's id and lengths, and the end record

The payloads are not in the checksum: every object is hashed against its id
on arrival anyway, which covers them (hashing them twice costs more than the
network on loopback).
Records use the pack record layout of ``docs/format.md``, codecs 0 and 1
only (a group member is sent as a record of its own; the receiver groups it again). Both sides parse
incrementally, holding at most one object (bounded by ``max_object``) plus
one network read in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator

import xxhash

from . import limits
from .codec import ZSTD
from .errors import FormatError

STREAM_MAGIC = b"OSWP"
STREAM_VERSION = 1
CONTENT_TYPE = "application/x-objstore-pack"

_HEADER = struct.Struct("<4sHBB")
_TAIL = struct.Struct("<BBQQ")  # type tag, codec, stored length, raw length
_TRAILER = 16
_MAX_CODEC = ZSTD  # group records (codec 2) live in packs only: a stream carries members as records of their own
_BATCH = 1 << 20  # small records are joined into writes of about this size

MAX_OBJECT = limits.max_stored_size(ZSTD, max(limits.MAX_TREE_SIZE, limits.MAX_CHUNKED_SIZE, limits.MAX_SMALL_FILE + 1))
"""Largest stored or raw object length a reader accepts by default: the
largest object the format allows (``objstore.limits``), compressed at worst."""

ObjectSink = Callable[[bytes, int, int, memoryview, int], None]
"""Called with (id, type tag, codec, stored bytes, raw length) for each record."""


class StreamError(FormatError):
    """A pack stream is malformed, truncated or fails its checksum."""


def encode_stream(digest_size: int, records: Iterable[tuple[bytes, int, int, bytes | memoryview, int]]) -> Iterator[bytes | memoryview]:
    """The pack stream of ``records`` (id, type tag, codec, stored, raw length), in pieces.

    Small records are gathered into ~1 MiB pieces; a large one is yielded
    as is, so no object is copied more than once.
    """
    h = xxhash.xxh3_128()
    head = _HEADER.pack(STREAM_MAGIC, STREAM_VERSION, digest_size, 0)
    h.update(head)
    parts: list[bytes | memoryview] = [head]
    size = len(head)
    count = 0
    for oid, type_tag, codec_id, stored, raw_length in records:
        if len(oid) != digest_size:
            raise ValueError(f"object id of {len(oid)} bytes in a stream of {digest_size}-byte ids")
        rec = oid + _TAIL.pack(type_tag, codec_id, len(stored), raw_length)
        h.update(rec)
        count += 1
        if len(stored) >= _BATCH:
            parts.append(rec)
            yield b"".join(parts)
            parts, size = [], 0
            yield stored
            continue
        parts += (rec, stored)
        size += len(rec) + len(stored)
        if size >= _BATCH:
            yield b"".join(parts)  # one copy of each small record, one write
            parts, size = [], 0
    end = bytes(digest_size) + _TAIL.pack(0, 0, count, 0)
    h.update(end)
    parts += (end, h.digest())
    yield b"".join(parts)


class StreamReader:
    """Parse a pack stream fed in arbitrary pieces; hand each record to ``sink``.

    ``feed`` raises :class:`StreamError` on the first malformed byte;
    ``finish`` raises it unless the end record and a matching checksum
    arrived. The memoryview given to ``sink`` is only valid during the call.
    """

    def __init__(self, digest_size: int, sink: ObjectSink, *, max_object: int = MAX_OBJECT) -> None:
        self.digest_size = digest_size
        self.sink = sink
        self.max_object = max_object
        self.objects = 0
        self.bytes = 0
        self._buf = bytearray()
        self._hash = xxhash.xxh3_128()
        self._state = "header"
        self._record_size = digest_size + _TAIL.size

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._state == "done":
            if len(data):
                raise StreamError("bytes after the end of the pack stream")
            return
        view = memoryview(data).cast("B")
        self.bytes += len(view)
        off = 0
        # A unit (header, record, trailer) cut by the last piece is completed
        # in the buffer with only the bytes it lacks; the rest of the piece
        # is parsed in place, so bulk data is never copied here.
        while self._buf and off < len(view) and self._state != "done":
            take = min(max(self._need() - len(self._buf), 1), len(view) - off)
            self._buf += view[off : off + take]
            off += take
            pos = self._parse(self._buf)
            if pos:
                del self._buf[:pos]
        if off < len(view):
            if self._state == "done":
                raise StreamError("bytes after the end of the pack stream")
            pos = self._parse(view[off:])
            self._buf += view[off + pos :]

    def _need(self) -> int:
        """Bytes the buffer must hold before the unit it starts can be parsed."""
        if self._state == "header":
            return _HEADER.size
        if self._state == "trailer":
            return _TRAILER
        if len(self._buf) < self._record_size:
            return self._record_size
        type_tag, _, stored_length, _ = _TAIL.unpack_from(self._buf, self.digest_size)
        return self._record_size + (0 if type_tag == 0 else min(stored_length, self.max_object + 1))

    def _parse(self, buf: bytes | bytearray | memoryview) -> int:
        view = memoryview(buf).cast("B")
        try:
            pos = 0
            ds = self.digest_size
            while True:
                avail = len(view) - pos
                if self._state == "header":
                    if avail < _HEADER.size:
                        return pos
                    magic, version, digest_size, _ = _HEADER.unpack_from(buf, pos)
                    if magic != STREAM_MAGIC:
                        raise StreamError("not an objstore pack stream (bad magic)")
                    if version != STREAM_VERSION:
                        raise StreamError(f"pack stream version {version} is not supported (this objstore speaks {STREAM_VERSION})")
                    if digest_size != ds:
                        raise StreamError(f"pack stream carries {digest_size}-byte ids, the repository uses {ds}-byte ids")
                    self._hash.update(view[pos : pos + _HEADER.size])
                    pos += _HEADER.size
                    self._state = "records"
                elif self._state == "records":
                    if avail < self._record_size:
                        return pos
                    type_tag, codec_id, stored_length, raw_length = _TAIL.unpack_from(buf, pos + ds)
                    if type_tag == 0:
                        if any(view[pos : pos + ds]) or codec_id or raw_length:
                            raise StreamError("malformed end record")
                        if stored_length != self.objects:
                            raise StreamError(f"the end record counts {stored_length} objects, the stream held {self.objects}")
                        self._hash.update(view[pos : pos + self._record_size])
                        pos += self._record_size
                        self._state = "trailer"
                        continue
                    if codec_id > _MAX_CODEC:
                        raise StreamError(
                            f"object {bytes(view[pos : pos + ds]).hex()} has codec {codec_id}; "
                            "a pack stream carries raw (0) and zstd (1) records only"
                        )
                    if stored_length > self.max_object or raw_length > self.max_object:
                        raise StreamError(
                            f"object {bytes(view[pos : pos + ds]).hex()} claims {max(stored_length, raw_length)} bytes, "
                            f"over the limit of {self.max_object}"
                        )
                    end = pos + self._record_size + stored_length
                    if len(view) < end:
                        return pos
                    self._hash.update(view[pos : pos + self._record_size])
                    oid = bytes(view[pos : pos + ds])
                    self.sink(oid, type_tag, codec_id, view[pos + self._record_size : end], raw_length)
                    self.objects += 1
                    pos = end
                elif self._state == "trailer":
                    if avail < _TRAILER:
                        return pos
                    if bytes(view[pos : pos + _TRAILER]) != self._hash.digest():
                        raise StreamError("pack stream checksum mismatch (the bytes were altered or cut)")
                    pos += _TRAILER
                    self._state = "done"
                    if pos != len(view):
                        raise StreamError("bytes after the end of the pack stream")
                    return pos
                else:
                    return pos
        finally:
            view.release()

    def finish(self) -> None:
        """Check that the stream ended where it should."""
        if self._state != "done":
            where = {"header": "before its header", "records": "inside its records", "trailer": "before its checksum"}[self._state]
            raise StreamError(f"pack stream truncated {where} (after {self.objects} objects, {self.bytes} bytes)")


__all__ = ["CONTENT_TYPE", "MAX_OBJECT", "StreamError", "StreamReader", "encode_stream"]
