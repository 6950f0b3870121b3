"""Content-defined chunking of large files (FastCDC, compiled).

Cut points depend on content, not offsets, so an insertion near the start
of a file shifts only the chunks it touches and everything else dedups.
The parameters are fixed per repository (recorded in its config) because
changing them changes every cut point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC


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
