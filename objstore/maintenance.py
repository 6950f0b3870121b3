"""Repacking: merging many small packs into one, atomically.

Every object of the packs being merged is copied (verified against its id,
never recompressed) into a new pack, which is published — pack, then
index — before the old indexes and packs are deleted. A reader that still
holds an old index finds the object again in the new pack (the object
database retries after a refresh), a writer that skipped an object because
an old pack had it is still right, and a crash at any instant leaves every
object in at least one published pack.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import codec
from .errors import CorruptObject, FormatError
from .odb import ObjectDatabase
from .packs import PackWriter, index_path, pack_path


@dataclass(frozen=True)
class RepackResult:
    """What a repack did."""

    packs_before: int
    packs_merged: int
    packs_after: int
    objects_copied: int
    bytes_before: int
    bytes_after: int
    new_pack: str | None


def repack(odb: ObjectDatabase, *, only_smaller_than: int | None = None, min_packs: int = 2) -> RepackResult:
    """Merge packs (all, or those under ``only_smaller_than`` bytes) into one.

    Nothing happens unless at least ``min_packs`` packs qualify.
    """
    odb.flush()
    odb.refresh()
    storage = odb.storage
    before = odb.pack_names
    sizes = {}
    for name in before:
        try:
            sizes[name] = storage.size(pack_path(name))
        except FileNotFoundError:
            continue
    chosen = [n for n in sizes if only_smaller_than is None or sizes[n] < only_smaller_than]
    if len(chosen) < min_packs:
        return RepackResult(len(before), 0, len(before), 0, sum(sizes.values()), sum(sizes.values()), None)
    writer = PackWriter(storage, odb.digest_size)
    copied = 0
    try:
        for name in chosen:
            idx = odb.index(name)
            for oid, entry in idx.items():
                if oid in writer:
                    continue
                try:
                    data = storage.read_range(pack_path(name), entry.offset, entry.stored_length)
                except (EOFError, FileNotFoundError):
                    raise CorruptObject(oid.hex(), "pack is missing or truncated", pack_path(name)) from None
                try:
                    raw = codec.decode_stored(entry.codec, data, entry.raw_length)
                except FormatError as exc:
                    raise CorruptObject(oid.hex(), str(exc), pack_path(name)) from None
                if odb.hash(raw) != oid:
                    raise CorruptObject(oid.hex(), "content does not hash to its id", pack_path(name))
                writer.add(oid, entry.type_tag, entry.codec, data, entry.raw_length)
                copied += 1
        new_name = writer.finish()
    except BaseException:
        writer.abort()
        raise
    for name in chosen:
        if name == new_name:
            continue
        storage.delete(index_path(name))
        storage.delete(pack_path(name))
    odb.refresh()
    after = odb.pack_names
    size_after = 0
    for name in after:
        try:
            size_after += storage.size(pack_path(name))
        except FileNotFoundError:
            pass
    return RepackResult(len(before), len(chosen), len(after), copied, sum(sizes.values()), size_after, new_name)
