"""Child process: hypothesis rewrites one length field of a real repository at a time.

The fields are the ones a reader takes from outside: an index's count, each
index entry's offset, stored length and raw length, each pack record
header's lengths, the content size in each zstd frame header, and in each
group record its member count and member lengths. The store is built twice:
format version 2 (one record per object) and 3 (small objects in groups). The new
values range from off-by-one to 2^64 - 1. After each rewrite the store is
read the ways a user reads it (every object by id, fsck, checkout, a fetch
over fsspec); each read must give the honest bytes or raise an objstore
error. The process runs with its address space capped at what it used for
an honest pass plus 300 MiB, so any allocation of a claimed size fails
with MemoryError, which fails the search.

``python mutate_lengths.py <work dir> <examples>`` prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash
from hostile_sizes import peak_rss  # beside this script, so on sys.path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objstore import ChunkParams, Repository
from objstore.codec import GROUPED, ZSTD
from objstore.errors import ObjstoreError
from objstore.packs import PackIndex

MiB = 1 << 20
BUDGET = 300 * MiB
CHUNKING = ChunkParams(min_size=256, avg_size=1024, max_size=4096, small_file=1024)


@dataclass(frozen=True)
class Field:
    """``size`` little-endian bytes at ``offset`` of file ``path`` (relative to the store)."""

    path: str
    offset: int
    size: int
    what: str
    fix_index_checksum: bool


def build(root: Path) -> tuple[str, dict[str, bytes], dict[str, bytes]]:
    """The pristine store: small and chunked files, compressed and raw, in trees under one commit."""
    src = root / "src"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "text.txt").write_bytes(b"a line of text\n" * 40)
    (src / "random.bin").write_bytes(os.urandom(20_000))  # chunks stored raw
    (src / "pattern.bin").write_bytes(bytes(range(256)) * 60)  # chunks stored zstd
    (src / "deep" / "er" / "small").write_bytes(b"x" * 10)
    for i in range(30):
        (src / "deep" / f"f{i:02d}").write_bytes(f"file {i}\n".encode() * (i + 1))
    for version in VERSIONS:
        with Repository.init(root / "pristine" / version, chunking=CHUNKING, version=int(version[1:])) as repo:
            commit = repo.commit(repo.snapshot(src), message="pristine", metadata={"k": list(range(50))}, timestamp=1.0)
            repo.refs.set("main", commit)
            repo.repack()  # one pack, one index
            objects = {oid: bytes(repo.odb.get_encoded(oid)) for oid in repo.odb.iter_ids()}
    return commit, objects, files_under(src)


VERSIONS = ("v2", "v3")
"""The stores under ``pristine/``: one record per object, and grouped small objects."""


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def fields(root: Path, digest_size: int) -> list[Field]:
    out: list[Field] = []
    for idx_path in sorted(root.glob("*/packs/*.idx")):
        version = idx_path.parent.parent.name
        rel_idx = f"{version}/packs/{idx_path.name}"
        rel_pack = f"{version}/packs/{idx_path.stem}.pack"
        data = idx_path.read_bytes()
        idx = PackIndex(idx_path.stem, data, digest_size)
        pack = (root / rel_pack).read_bytes()
        entries_at = 16 + 1024 + idx.count * digest_size
        for fix in (True, False):
            out.append(Field(rel_idx, 8, 8, "index count", fix))
        groups: set[int] = set()
        for i in range(idx.count):
            e = idx.entry_at(i)
            at = entries_at + 26 * i
            for delta, name in ((0, "offset"), (8, "stored_length"), (16, "raw_length")):
                out.append(Field(rel_idx, at + delta, 8, f"index entry {i} {name}", True))
            out.append(Field(rel_pack, e.offset - 16, 8, f"record {i} stored_length", False))
            out.append(Field(rel_pack, e.offset - 8, 8, f"record {i} raw_length", False))
            if e.codec == ZSTD:
                fcs = _frame_content_size_field(pack, e.offset)
                if fcs is not None:
                    out.append(Field(rel_pack, fcs[0], fcs[1], f"record {i} zstd content size", False))
            if e.codec == GROUPED and e.offset not in groups:
                groups.add(e.offset)
                out.extend(_group_fields(rel_pack, pack, e.offset))
    return out


def _group_fields(rel_pack: str, pack: bytes, at: int) -> list[Field]:
    """The member count, every member length and the frame content size of the group at ``at``."""
    (count,) = struct.unpack_from("<I", pack, at)
    out = [Field(rel_pack, at, 4, f"group at {at} member count", False)]
    for j in range(count):
        out.append(Field(rel_pack, at + 4 + 4 * j, 4, f"group at {at} member {j} length", False))
    fcs = _frame_content_size_field(pack, at + 4 + 4 * count)
    if fcs is not None:
        out.append(Field(rel_pack, fcs[0], fcs[1], f"group at {at} zstd content size", False))
    return out


def _frame_content_size_field(pack: bytes, at: int) -> tuple[int, int] | None:
    """(offset, size) of the Frame_Content_Size field of the zstd frame at ``at``."""
    descriptor = pack[at + 4]
    single_segment = bool(descriptor & 0x20)
    fcs_size = {0: 1 if single_segment else 0, 1: 2, 2: 4, 3: 8}[descriptor >> 6]
    did_size = {0: 0, 1: 1, 2: 2, 3: 4}[descriptor & 3]
    if fcs_size == 0:
        return None
    return at + 5 + (0 if single_segment else 1) + did_size, fcs_size


def apply(store: Path, field: Field, value: int) -> None:
    path = store / field.path
    data = bytearray(path.read_bytes())
    data[field.offset : field.offset + field.size] = (value % (1 << (8 * field.size))).to_bytes(field.size, "little")
    if field.path.endswith(".idx") and field.fix_index_checksum:
        struct.pack_into("<Q", data, len(data) - 8, xxhash.xxh3_64_intdigest(bytes(data[:-8])))
    path.write_bytes(bytes(data))


def read_everything(root: Path, work: Path, commit: str, honest: dict[str, bytes], files: dict[str, bytes]) -> list[str]:
    """Read both stores every way a user would; return what was refused (any other error propagates)."""
    return [f"{v}: {r}" for v in VERSIONS for r in read_store(root / v, work, commit, honest, files)]


def read_store(store: Path, work: Path, commit: str, honest: dict[str, bytes], files: dict[str, bytes]) -> list[str]:
    refused: list[str] = []
    try:
        repo = Repository.open(store)
    except ObjstoreError as exc:
        return [f"open: {exc}"]
    with repo:
        for oid, good in honest.items():
            try:
                got = repo.odb.get_encoded(oid)
            except ObjstoreError as exc:
                refused.append(f"{oid}: {exc}")
                continue
            assert bytes(got) == good, f"object {oid} came back with other bytes"
        report = repo.fsck(full=True)
        assert report.ok == (not refused), f"fsck says ok={report.ok}, reads refused {refused}"
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        try:
            repo.checkout(commit, out)
        except ObjstoreError as exc:
            refused.append(f"checkout: {exc}")
        else:
            assert files_under(out) == files, "checkout wrote other bytes"
    local = work / "local"
    shutil.rmtree(local, ignore_errors=True)
    with Repository.init(local, chunking=CHUNKING) as mine:
        try:
            mine.fetch(f"local://{store}")
        except ObjstoreError as exc:
            refused.append(f"fetch: {exc}")
        else:
            for oid, good in honest.items():
                assert bytes(mine.odb.get_encoded(oid)) == good, f"fetched {oid} differs"
    return refused


def vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def main() -> None:
    work, examples = Path(sys.argv[1]), int(sys.argv[2])
    commit, honest, files = build(work)
    pristine = work / "pristine"
    digest_size = 16
    all_fields = fields(pristine, digest_size)
    scratch = work / "scratch"

    def fresh() -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(pristine, scratch, ignore=shutil.ignore_patterns("cache", "tmp"))

    fresh()
    assert read_everything(scratch, work, commit, honest, files) == []  # warm up: every pool and cache exists
    limit = vm_size() + BUDGET
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stats = {"examples": 0, "refused": 0}

    values = st.one_of(
        st.integers(0, (1 << 64) - 1),
        st.sampled_from([0, 1, 2, 255, 4096, 1 << 24, (1 << 31), (1 << 32) - 1, 1 << 40, 6 << 30, 64 << 30, (1 << 63), (1 << 64) - 1]),
        st.integers(-64, 64).map(lambda d: ("delta", d)),
    )

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(all_fields), values)
    def mutated_reads_are_verified_or_refused(field: Field, value: Any) -> None:
        fresh()
        if isinstance(value, tuple):
            raw = (scratch / field.path).read_bytes()[field.offset : field.offset + field.size]
            value = int.from_bytes(raw, "little") + value[1]
        apply(scratch, field, value)
        try:
            refused = read_everything(scratch, work, commit, honest, files)
        except MemoryError:
            raise AssertionError(f"MemoryError after setting {field.what} to {value}") from None
        stats["examples"] += 1
        stats["refused"] += bool(refused)

    result: dict[str, Any] = {}
    try:
        mutated_reads_are_verified_or_refused()
        result["failure"] = None
    except BaseException as exc:  # reported to the parent with hypothesis's falsifying example
        result["failure"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=12)}"
    result.update(stats)
    result["fields"] = len(all_fields)
    result["address_space_limit"] = limit
    result["maxrss"] = peak_rss()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
