"""The format's bounds (objstore.limits): what they refuse, and that honest data at the bounds still works."""

from __future__ import annotations

import os
import struct
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from helpers import SMALL, rand_bytes, write

from objstore import ChunkedBlob, ChunkParams, Repository, Tree, TreeEntry, limits
from objstore.codec import RAW, ZSTD
from objstore.errors import CorruptObject, FormatError, RemoteError, TooLarge
from objstore.objects import BLOB, COMMIT, TREE
from objstore.packs import IndexEntry
from objstore.storage import open_storage

MiB = 1 << 20


def _bomb(size: int) -> bytes:
    """A zstd frame of RLE blocks declaring ``size`` zero bytes."""
    block = 128 * 1024
    out = bytearray(struct.pack("<IBBQ", 0xFD2FB528, 0xC0, 7 << 3, size))
    n = -(-size // block)
    for i in range(n):
        length = min(block, size - i * block)
        out += struct.pack("<I", (length << 3) | 2 | (i == n - 1))[:3] + b"\0"
    return bytes(out)


# -- index entries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (IndexEntry(8, 10, 10, 9, RAW), "unknown type tag 9"),
        (IndexEntry(8, 10, 10, BLOB, 7), "unknown codec 7"),
        (IndexEntry(8, 10, 0, BLOB, RAW), "claims a blob of 0 bytes"),
        (IndexEntry(8, 10, 4098, BLOB, RAW), "claims a blob of 4098 bytes; the format allows 1..4097"),
        (IndexEntry(8, 100, 6 << 30, COMMIT, ZSTD), f"claims a commit of {6 << 30} bytes"),
        (IndexEntry(8, 100, limits.MAX_TREE_SIZE + 1, TREE, ZSTD), "claims a tree of"),
        (IndexEntry(8, 11, 10, BLOB, RAW), "claims 11 stored bytes for 10 raw ones"),
        (IndexEntry(8, 196_622, 4096, COMMIT, ZSTD), "claims 196622 stored bytes for 4096 raw ones"),
        (IndexEntry(8, 0, 10, BLOB, ZSTD), "claims 0 stored bytes"),
    ],
)
def test_check_entry_refuses_claims_no_writer_makes(entry: IndexEntry, reason: str) -> None:
    with pytest.raises(CorruptObject) as info:
        limits.check_entry("ab" * 16, entry, limits.max_blob_size(SMALL.max_size, SMALL.small_file), "packs/x.pack")
    assert info.value.object_id == "ab" * 16 and info.value.where == "packs/x.pack"
    assert reason in info.value.reason


@pytest.mark.parametrize(
    "entry",
    [
        IndexEntry(8, 4097, 4097, BLOB, RAW),
        IndexEntry(8, 4000, 4097, BLOB, ZSTD),
        IndexEntry(8, 10, limits.MAX_TREE_SIZE, TREE, ZSTD),
        IndexEntry(8, limits.MAX_COMMIT_SIZE, limits.MAX_COMMIT_SIZE, COMMIT, RAW),
    ],
)
def test_check_entry_accepts_what_writers_make(entry: IndexEntry) -> None:
    limits.check_entry("ab" * 16, entry, 4097, "packs/x.pack")


def test_the_blob_bound_follows_the_chunking() -> None:
    assert limits.max_blob_size(ChunkParams().max_size, ChunkParams().small_file) == 512 * 1024 + 1
    assert limits.max_blob_size(4096, 1 << 20) == (1 << 20) + 1
    with pytest.raises(ValueError):
        ChunkParams(small_file=limits.MAX_SMALL_FILE + 1)


def test_check_size_is_the_helper_for_request_bodies() -> None:
    assert limits.check_size("a push body", 10, 10) == 10
    with pytest.raises(TooLarge) as info:
        limits.check_size("a push body", 11, 10)
    assert (info.value.what, info.value.size, info.value.limit) == ("a push body", 11, 10)
    assert isinstance(info.value, FormatError) and "a push body is 11 bytes" in str(info.value)


# -- zstd frames ------------------------------------------------------------------------


def test_frame_header_is_checked_before_decompressing() -> None:
    honest = zstandard.ZstdCompressor(write_content_size=True).compress(b"x" * 1000)
    limits.check_frame(honest, 1000)
    with pytest.raises(FormatError, match="declares 1000 bytes, index says 999"):
        limits.check_frame(honest, 999)
    with pytest.raises(FormatError, match="does not declare its content size"):
        limits.check_frame(zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 1000), 1000)
    with pytest.raises(FormatError, match="header does not parse"):
        limits.check_frame(b"not zstd", 8)
    bomb = _bomb(6 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=f"declares {6 << 30} bytes"):
            limits.check_frame(bomb, 4096)
        assert tracemalloc.get_traced_memory()[1] < MiB
    finally:
        tracemalloc.stop()


# -- large objects are hashed while they decompress ------------------------------------------


def test_large_lying_object_is_refused_without_holding_its_claim(tmp_path: Path) -> None:
    """A tree entry of 200 MiB (within the tree bound) whose frame really decompresses to
    200 MiB of zeros: hashed piece by piece, refused, never held whole."""
    repo = Repository.init(tmp_path / "r")
    claim = 200 * MiB
    oid = bytes(range(16))
    repo.odb.add_stored(oid, TREE, ZSTD, _bomb(claim), claim)
    repo.odb.flush()
    tracemalloc.start()
    try:
        with pytest.raises(CorruptObject) as info:
            repo.odb.get(oid)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.object_id == oid.hex() and "does not hash to its id" in info.value.reason
    assert info.value.where is not None and info.value.where.startswith("packs/")
    assert peak < 16 * MiB, f"peak {peak / MiB:.0f} MiB"
    report = repo.fsck(full=True)
    assert "does not hash to its id" in report.bad_objects[oid.hex()]
    repo.close()


def _wide_tree(repo: Repository, n: int) -> Tree:
    blob = repo.store_bytes(b"same")
    return Tree.from_entries(TreeEntry(f"file-{i:07d}.txt", "file", blob, 4) for i in range(n))


def test_tree_over_the_streaming_threshold_reads_back(tmp_path: Path) -> None:
    """An honest 300,000-entry directory (about 12 MB encoded): verified streaming, then decoded."""
    repo = Repository.init(tmp_path / "r")
    tree = _wide_tree(repo, 300_000)
    encoded = tree.encode()
    assert len(encoded) > limits.STREAM_THRESHOLD
    tree_id = repo.odb.put(tree)
    repo.odb.flush()
    fresh = Repository.open(tmp_path / "r")
    got = fresh.get_tree(tree_id)
    assert len(got.entries) == 300_000 and got.entries[-1].name == "file-0299999.txt"
    assert fresh.fsck(full=True).ok
    fresh.close()
    repo.close()


@pytest.mark.slow
def test_a_directory_of_a_million_entries_still_works(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r")
    tree = _wide_tree(repo, 1_000_000)
    assert len(tree.encode()) < limits.MAX_TREE_SIZE
    commit = repo.commit(repo.odb.put(tree), message="wide")
    repo.refs.set("main", commit)
    clone = Repository.clone(str(tmp_path / "r"), tmp_path / "clone")
    assert len(clone.ls("main")) == 1_000_000
    clone.close()
    repo.close()


# -- writers stay within the bounds --------------------------------------------------------


def test_store_bytes_chunks_data_over_small_file(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r", chunking=SMALL)
    data = rand_bytes(5, 20_000)
    oid = repo.store_bytes(data)
    assert isinstance(repo.odb.get(oid), ChunkedBlob)
    write(tmp_path / "src" / "f.bin", data)
    assert repo.entry(repo.snapshot(tmp_path / "src"), "f.bin").id == oid  # the id a file of these bytes gets
    tree = repo.make_tree([TreeEntry("f.bin", "file", oid, len(data))])
    assert repo.read_file(tree, "f.bin") == data
    assert repo.odb.type_of(repo.store_bytes(b"small")) == "blob"


def test_a_blob_over_the_bound_is_not_written(tmp_path: Path) -> None:
    from objstore.objects import Blob

    repo = Repository.init(tmp_path / "r", chunking=SMALL)
    with pytest.raises(TooLarge, match="a blob"):
        repo.odb.put(Blob(b"x" * 5000))
    assert repo.odb.pack_names == []
    repo.odb.put(Blob(b"x" * 4096))  # exactly the bound


def test_ref_entries_and_config_are_bounded(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r")
    blob = repo.store_bytes(b"x")
    commit = repo.commit(repo.make_tree([TreeEntry("x", "file", blob, 1)]))
    with pytest.raises(TooLarge, match="log entry"):
        repo.refs.set("main", commit, message="m" * limits.MAX_REF_ENTRY_SIZE)
    assert repo.refs.names() == []
    repo.close()
    (tmp_path / "r" / "config").write_bytes(b" " * (limits.MAX_CONFIG_SIZE + 1))
    with pytest.raises(TooLarge, match="config"):
        Repository.open(tmp_path / "r")


def test_read_bounded_over_fsspec(tmp_path: Path) -> None:
    storage = open_storage("memory://i19-bounded")
    storage.write_atomic("f", b"y" * 100)
    assert storage.read_bounded("f", 100) == b"y" * 100
    with pytest.raises(TooLarge) as info:
        storage.read_bounded("f", 99)
    assert info.value.size == 100 and info.value.limit == 99


def test_repositories_with_different_chunking_cannot_swap_oversized_blobs(tmp_path: Path) -> None:
    """A sound remote whose chunking makes larger blobs than ours: a clear RemoteError,
    nothing stored, never a CorruptObject."""
    big = Repository.init(tmp_path / "big")  # default chunking: blobs up to 512 KiB
    data = rand_bytes(9, 6000)  # one blob there, over the 4 KiB bound here
    c = big.commit(big.make_tree([TreeEntry("f", "file", big.store_bytes(data), len(data))]))
    big.refs.set("main", c)
    big.close()
    small = Repository.init(tmp_path / "small", chunking=SMALL)  # blobs up to 1 KiB + 4 KiB chunks
    with pytest.raises(RemoteError, match="chunking"):
        small.fetch(str(tmp_path / "big"))
    assert small.refs.list() == {} and small.odb.pack_names == []
    small.close()


def test_a_format_1_store_keeps_reading_whole_blobs_written_before_the_bound(tmp_path):
    """Before the blob bound, store_bytes wrote any size as one blob (a run's metrics):
    such a repository (config version 1) must stay readable, and new ones are strict."""
    import json

    from objstore import Blob, Repository
    from objstore.config import CONFIG_PATH, FORMAT_VERSION
    from objstore.errors import TooLarge

    path = tmp_path / "old"
    Repository.init(path).close()
    cfg = json.loads((path / CONFIG_PATH).read_text())
    cfg["version"] = 1
    (path / CONFIG_PATH).write_text(json.dumps(cfg))
    old = Repository.open(path)
    data = os.urandom(3 * 1024 * 1024)
    blob = old.odb.put(Blob(data))  # what the old store_bytes did
    tree = old.make_tree([TreeEntry("metrics.msgpack", "file", blob, len(data))])
    old.refs.set("run", old.commit(tree))
    old.close()
    again = Repository.open(path)
    assert again.read_file("run", "metrics.msgpack") == data
    assert json.loads((path / CONFIG_PATH).read_text())["version"] == 1  # left as it was

    new = Repository.init(tmp_path / "new")
    assert json.loads((tmp_path / "new" / CONFIG_PATH).read_text())["version"] == FORMAT_VERSION
    with pytest.raises(TooLarge):
        new.odb.put(Blob(data))
