"""How one object's typed encoding is stored: zstd, or raw when that does not pay.

Compression never changes an object's id (ids hash the uncompressed typed
encoding). Large payloads are first probed: a few KiB from the start and
the middle are compressed at the fastest level, and if they do not shrink
the whole payload is stored raw, so random weights cost a few microseconds
of zstd instead of a full pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import zstandard

from .errors import FormatError
from .limits import MAX_ZSTD_WINDOW, MiB, check_frame

RAW = 0
ZSTD = 1
GROUPED = 2
"""Index-only codec: the object is a member of a group record (docs/format.md#groups)."""
DEFAULT_LEVEL = 1

PROBE_MIN = 32 * 1024  # payloads smaller than this are compressed outright
_PROBE_SAMPLE = 4096
_PROBE_RATIO = 0.95  # a sample that keeps more than this fraction is "incompressible"

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def looks_incompressible(payload: bytes | memoryview) -> bool:
    """Cheap probe: do two small samples fail to shrink at zstd level 1?"""
    n = len(payload)
    mid = n // 2
    sample = bytes(payload[:_PROBE_SAMPLE]) + bytes(payload[mid : mid + _PROBE_SAMPLE])
    return len(_compressor(1).compress(sample)) > _PROBE_RATIO * len(sample)


def encode_stored(payload: bytes | memoryview, level: int = DEFAULT_LEVEL) -> tuple[int, bytes | memoryview]:
    """Return ``(codec, stored_bytes)`` for a typed encoding."""
    if level <= 0 or len(payload) < 64:
        return RAW, payload
    if len(payload) >= PROBE_MIN and looks_incompressible(payload):
        return RAW, payload
    packed = _compressor(level).compress(payload)
    if len(packed) >= len(payload):
        return RAW, payload
    return ZSTD, packed


def compress_frame(payload: bytes | memoryview, level: int = DEFAULT_LEVEL) -> bytes:
    """One zstd frame of ``payload`` with its content size and a content checksum
    (XXH64, 4 bytes), whether or not it shrinks: a group's frame, so damage
    anywhere in it fails the whole group instead of silently altering one
    member that no reader is looking at."""
    cache = getattr(_local, "checked", None)
    if cache is None:
        cache = _local.checked = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=max(level, 1), write_content_size=True, write_checksum=True)
    return c.compress(payload)


def compress_many(payloads: list[bytes], level: int = DEFAULT_LEVEL, threads: int = 2) -> list[tuple[int, bytes]]:
    """``(codec, stored)`` for each payload, compressed in parallel by zstd's own threads.

    python-zstandard holds the GIL in ``compress()``, so a Python thread
    pool does not spread it over cores; ``multi_compress_to_buffer`` runs
    the batch on ``threads`` native threads. Callers have already decided
    these payloads are worth compressing (see :func:`looks_incompressible`);
    one that does not shrink is kept raw.
    """
    if level <= 0 or not payloads:
        return [(RAW, p) for p in payloads]
    cctx = _compressor(level)
    multi = getattr(cctx, "multi_compress_to_buffer", None)  # absent from the cffi backend
    if multi is None or len(payloads) == 1:
        packed_all = [cctx.compress(p) for p in payloads]
    else:
        out = multi(payloads, threads=threads)
        packed_all = [out[i].tobytes() for i in range(len(out))]
    return [(ZSTD, packed) if len(packed) < len(p) else (RAW, p) for p, packed in zip(payloads, packed_all, strict=True)]


def decode_stored(codec: int, stored: bytes | memoryview, raw_length: int) -> bytes | memoryview:
    """Undo :func:`encode_stored`; ``FormatError`` if the bytes do not decode.

    A zstd frame's header must declare ``raw_length`` (see
    :func:`~objstore.limits.check_frame`) before anything is decompressed,
    so the output buffer is never larger than the index entry allows.
    """
    if codec == RAW:
        if len(stored) != raw_length:
            raise FormatError(f"raw object is {len(stored)} bytes, index says {raw_length}")
        return stored
    if codec != ZSTD:
        raise FormatError(f"unknown codec {codec}")
    check_frame(stored, raw_length)
    try:
        out = _decompressor().decompress(stored, max_output_size=raw_length)
    except zstandard.ZstdError as exc:
        raise FormatError(f"zstd frame does not decode: {exc}") from None
    if len(out) != raw_length:
        raise FormatError(f"zstd frame gives {len(out)} bytes, index says {raw_length}")
    return out


PIECE = 1 * MiB
"""Size of the pieces :func:`iter_decoded` hands out."""


def iter_decoded(codec: int, stored: bytes | memoryview, raw_length: int) -> Iterator[bytes | memoryview]:
    """The typed encoding in ``stored``, in pieces of at most :data:`PIECE` bytes.

    Memory stays at a piece (plus zstd's window) whatever the frame claims;
    ``FormatError`` as soon as the output disagrees with ``raw_length``.
    """
    if codec == RAW:
        if len(stored) != raw_length:
            raise FormatError(f"raw object is {len(stored)} bytes, index says {raw_length}")
        view = memoryview(stored)
        for start in range(0, raw_length, PIECE):
            yield view[start : start + PIECE]
        return
    if codec != ZSTD:
        raise FormatError(f"unknown codec {codec}")
    check_frame(stored, raw_length)
    produced = 0
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
    try:
        for piece in dctx.read_to_iter(stored, read_size=PIECE, write_size=PIECE):
            produced += len(piece)
            if produced > raw_length:
                raise FormatError(f"zstd frame gives more than the {raw_length} bytes the index says")
            yield piece
    except zstandard.ZstdError as exc:
        raise FormatError(f"zstd frame does not decode: {exc}") from None
    if produced != raw_length:
        raise FormatError(f"zstd frame gives {produced} bytes, index says {raw_length}")
