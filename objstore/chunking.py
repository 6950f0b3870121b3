"""Content-defined chunking of large files (FastCDC, compiled).

Cut points depend on content, not offsets, so an insertion near the start
of a file shifts only the chunks it touches and everything else dedups.
The parameters are fixed per repository (recorded in its config) because
changing them changes every cut point.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO, TypeVar

from pyfastcdc import FastCDC

T = TypeVar("T")


@dataclass(frozen=True)
class ChunkParams:
    """FastCDC bounds (bytes) and the size below which a file stays one blob.

    pyfastcdc's ``avg_size`` is the target *past* ``min_size``, so chunks
    average about ``min_size + avg_size``. The defaults (~160 KiB chunks)
    were picked with ``benchmarks/bench_chunk_size.py``; see docs/format.md.
    """

    min_size: int = 32 * 1024
    avg_size: int = 128 * 1024
    max_size: int = 512 * 1024
    small_file: int = 512 * 1024

    def __post_init__(self) -> None:
        if not 64 <= self.min_size <= 1 << 20:
            raise ValueError(f"min_size {self.min_size} outside [64, 1 MiB]")
        if not 256 <= self.avg_size <= 1 << 22:
            raise ValueError(f"avg_size {self.avg_size} outside [256, 4 MiB]")
        if not max(1024, self.min_size, self.avg_size) <= self.max_size <= 1 << 24:
            raise ValueError(f"max_size {self.max_size} must be >= min/avg and <= 16 MiB")
        if self.small_file < 0:
            raise ValueError("small_file must be >= 0")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> ChunkParams:
        return cls(**{k: int(data[k]) for k in ("min_size", "avg_size", "max_size", "small_file")})

    def chunker(self) -> FastCDC:
        return FastCDC(self.avg_size, min_size=self.min_size, max_size=self.max_size)


def iter_chunks(stream: BinaryIO, params: ChunkParams) -> Iterator[memoryview]:
    """Yield the chunks of a stream; each view is valid only until the next."""
    for chunk in params.chunker().cut_stream(stream):
        yield chunk.data


_AHEAD_BLOCK = 4 * 1024 * 1024
_DONE = object()


def _read_full(stream: BinaryIO, into: memoryview) -> int:
    """Fill ``into`` from ``stream``; fewer bytes only at end of file."""
    got = 0
    while got < len(into):
        n = stream.readinto(into[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def map_chunks_ahead(stream: BinaryIO, params: ChunkParams, fn: Callable[[memoryview], T], depth: int = 2) -> Iterator[T]:
    """``fn(chunk)`` for each chunk of :func:`iter_chunks`, computed on a background thread.

    The caller stores chunk *k* while this thread reads, cuts (FastCDC
    releases the GIL) and runs ``fn`` (e.g. hashing, which does too) on the
    chunks after it, so two cores work on one large file. Blocks are never
    reused: a chunk's view stays valid for as long as it is held. At most
    ``depth`` blocks (4 MiB, or four times ``max_size``) wait in the queue.

    Cut points are identical to a sequential pass: a chunk is taken from a
    block only when at least ``max_size`` bytes follow its start (FastCDC
    decides a cut from at most that many bytes) or at end of file; the rest
    carries over into the next block. ``stream`` belongs to the background
    thread until the generator is exhausted or closed.
    """
    block = max(_AHEAD_BLOCK, 4 * params.max_size)
    out: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            cdc = params.chunker()
            max_size = params.max_size
            carry: memoryview = memoryview(b"")
            while not stop.is_set():
                buf = bytearray(len(carry) + block)
                buf[: len(carry)] = carry
                n = _read_full(stream, memoryview(buf)[len(carry) :])
                total = len(carry) + n
                eof = n < block
                view = memoryview(buf)[:total]
                results: list[T] = []
                carry = memoryview(b"")
                for chunk in cdc.cut_buf(view):
                    if not eof and total - chunk.offset < max_size:
                        carry = view[chunk.offset :]
                        break
                    results.append(fn(chunk.data))
                if results and not put(results):
                    return
                if eof:
                    break
            put(_DONE)
        except BaseException as exc:  # handed to the consumer and raised there
            put(exc)

    worker = threading.Thread(target=produce, name="objstore-chunker", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():
            try:
                out.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()
