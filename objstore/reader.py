"""Streaming, seekable reads of a stored file, one verified chunk at a time."""

from __future__ import annotations

import bisect
import io
import itertools

from .ids import ObjectId
from .objects import Blob, ChunkedBlob
from .odb import ObjectDatabase


class BlobReader(io.RawIOBase):
    """A read-only, seekable raw stream over a Blob or ChunkedBlob.

    Only the chunks a read touches are fetched (and verified); memory holds
    one chunk at a time.
    """

    def __init__(self, odb: ObjectDatabase, object_id: ObjectId, name: str = "") -> None:
        super().__init__()
        self.odb = odb
        self.name = name or object_id
        obj = odb.get(object_id)
        if isinstance(obj, ChunkedBlob):
            self._chunks = [c for c, _ in obj.chunks]
            self._starts = [0, *itertools.accumulate(s for _, s in obj.chunks)]
        elif isinstance(obj, Blob):
            self._chunks = [object_id]
            self._starts = [0, obj.size]
        else:
            raise TypeError(f"object {object_id} is not file content")
        self.size = self._starts[-1]
        self._pos = 0
        self._cached: tuple[int, bytes | memoryview] | None = None
        if isinstance(obj, Blob):
            self._cached = (0, memoryview(obj.data))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        pos = base + offset
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def _chunk(self, i: int) -> bytes | memoryview:
        if self._cached is None or self._cached[0] != i:
            encoded = self.odb.get_encoded(self._chunks[i])
            self._cached = (i, memoryview(encoded)[1:])
        return self._cached[1]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        written = 0
        while written < len(out) and self._pos < self.size:
            i = bisect.bisect_right(self._starts, self._pos) - 1
            try:
                data = self._chunk(i)
            except Exception:
                if written:
                    return written  # hand out what verified; the next read raises
                raise
            start = self._pos - self._starts[i]
            n = min(len(out) - written, len(data) - start)
            out[written : written + n] = data[start : start + n]
            written += n
            self._pos += n
            break  # one chunk per call: a small read never fetches chunks it does not need
        return written

    def readall(self) -> bytes:
        parts: list[bytes] = []
        while True:
            b = self.read(max(self.size - self._pos, 1 << 20))
            if not b:
                return b"".join(parts)
            parts.append(b)


def open_blob(odb: ObjectDatabase, object_id: ObjectId, name: str = "", buffer_size: int = 1 << 20) -> io.BufferedReader:
    """A buffered, seekable binary file over stored file content."""
    return io.BufferedReader(BlobReader(odb, object_id, name), buffer_size=buffer_size)
