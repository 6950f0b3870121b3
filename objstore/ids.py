"""Object ids and the hash algorithms that make them.

An id is the lowercase hex digest of an object's uncompressed typed
encoding. The algorithm is chosen once per repository (``xxh3-128`` by
default, ``blake2b-256`` where an adversary may write to a remote) and is
recorded in the repository config.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NewType, Protocol

import xxhash

ObjectId = NewType("ObjectId", str)
"""A full object id: lowercase hex, ``2 * digest_size`` characters."""

MIN_PREFIX = 8
"""Shortest id prefix accepted when resolving abbreviated ids."""

_HEX = re.compile(r"[0-9a-f]+")


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class HashAlgorithm:
    """A named hash function with a fixed digest size."""

    name: str
    digest_size: int
    _factory: Callable[[], Hasher]
    _oneshot: Callable[[bytes | memoryview], bytes] | None = None

    @property
    def oneshot(self) -> Callable[[bytes | memoryview], bytes]:
        """The digest of one buffer in one C call (what per-file loops use)."""
        return self._oneshot or self.digest

    def new(self) -> Hasher:
        """A fresh incremental hasher."""
        return self._factory()

    def digest(self, *parts: bytes | memoryview) -> bytes:
        if len(parts) == 1 and self._oneshot is not None:
            return self._oneshot(parts[0])
        h = self._factory()
        for p in parts:
            h.update(p)
        return h.digest()

    @property
    def hex_length(self) -> int:
        return self.digest_size * 2


ALGORITHMS: dict[str, HashAlgorithm] = {
    "xxh3-128": HashAlgorithm("xxh3-128", 16, xxhash.xxh3_128, xxhash.xxh3_128_digest),
    "blake2b-256": HashAlgorithm(
        "blake2b-256", 32, lambda: hashlib.blake2b(digest_size=32), lambda b: hashlib.blake2b(b, digest_size=32).digest()
    ),
}
DEFAULT_ALGORITHM = "xxh3-128"


def get_algorithm(name: str) -> HashAlgorithm:
    """Return the algorithm called ``name``; ``ValueError`` names the choices."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        choices = ", ".join(sorted(ALGORITHMS))
        raise ValueError(f"unknown hash algorithm {name!r}; choose one of: {choices}") from None


def is_hex(text: str) -> bool:
    return bool(_HEX.fullmatch(text))


def to_hex(raw: bytes) -> ObjectId:
    return ObjectId(raw.hex())


def from_hex(object_id: str, digest_size: int) -> bytes:
    """Parse a full id; ``ValueError`` if it is not one for this digest size."""
    if len(object_id) != digest_size * 2 or not is_hex(object_id):
        raise ValueError(f"not a full object id ({digest_size * 2} hex digits): {object_id!r}")
    return bytes.fromhex(object_id)
