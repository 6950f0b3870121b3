"""The repository config: format version and the choices fixed at init."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import codec, limits
from .chunking import ChunkParams
from .errors import FormatError, UnsupportedFormat
from .ids import DEFAULT_ALGORITHM, get_algorithm
from .packs import DEFAULT_PACK_SIZE, GROUP_SIZE

CONFIG_PATH = "config"
FORMAT_NAME = "objstore"
FORMAT_VERSION = 3
"""3: ref logs are a flat folder of loose entries compacted into packed
generations (docs/format.md#refs), and small objects are stored in group
records (one zstd frame per ~512 KiB of them, docs/format.md#groups).
2: blobs are bounded by the chunking settings (docs/format.md#bounds) and ref
log entries may release ids. Version 1 and 2 repositories are read and written
as they are (their config keeps its version): refs stay one folder per ref,
never packed, no group records are written, and version 1 keeps the legacy
blob bound."""


@dataclass(frozen=True)
class RepoConfig:
    """What a reader must know before touching any object."""

    hash: str = DEFAULT_ALGORITHM
    chunking: ChunkParams = field(default_factory=ChunkParams)
    compression_level: int = codec.DEFAULT_LEVEL
    pack_size: int = DEFAULT_PACK_SIZE
    repo_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        get_algorithm(self.hash)
        if not -7 <= self.compression_level <= 22:
            raise ValueError(f"compression level {self.compression_level} outside zstd's range -7..22")
        if self.pack_size < 1 << 20:
            raise ValueError("pack_size must be at least 1 MiB")

    @property
    def max_blob(self) -> int:
        """Largest typed encoding of a blob these chunking settings produce (the read bound).

        A version 1 repository may hold larger whole blobs written before the
        bound existed; it accepts up to :data:`limits.MAX_LEGACY_BLOB`.
        """
        bound = limits.max_blob_size(self.chunking.max_size, self.chunking.small_file)
        return bound if self.version >= 2 else max(bound, limits.MAX_LEGACY_BLOB + 1)

    @property
    def packed_refs(self) -> bool:
        """Ref logs in the flat layout with packed generations (format version 3)."""
        return self.version >= 3

    @property
    def group_size(self) -> int:
        """Raw bytes per group record writers gather (0: this version writes no groups)."""
        return GROUP_SIZE if self.version >= 3 else 0

    def encode(self) -> bytes:
        data = {
            "format": FORMAT_NAME,
            "version": self.version,
            "id": self.repo_id,
            "hash": self.hash,
            "chunking": self.chunking.to_dict(),
            "compression": {"codec": "zstd", "level": self.compression_level},
            "pack_size": self.pack_size,
        }
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def decode(cls, raw: bytes, where: str) -> RepoConfig:
        try:
            data: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise FormatError(f"repository config {where} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise FormatError(f"{where} is not an objstore repository config")
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise UnsupportedFormat(f"repository at {where} has format version {version!r}; this objstore reads version {FORMAT_VERSION}")
        try:
            return cls(
                hash=str(data["hash"]),
                chunking=ChunkParams.from_dict(data["chunking"]),
                compression_level=int(data["compression"]["level"]),
                pack_size=int(data["pack_size"]),
                repo_id=str(data["id"]),
                version=version,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise FormatError(f"repository config {where} is incomplete or invalid: {exc!r}") from None
