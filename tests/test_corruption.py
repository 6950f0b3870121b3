"""Damaged packs and indexes: never wrong data, always an error naming the object."""

from __future__ import annotations

import os

import pytest
from helpers import SMALL, damage, flip_byte, object_location, rand_bytes, write
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import ChunkedBlob, Repository
from objstore.errors import CorruptObject, FormatError

SMALL_TEXT = b"a small file that compresses well " * 20  # <= small_file: one Blob, zstd
SMALL_RANDOM = rand_bytes(31, 700)  # one Blob, stored raw
BIG = rand_bytes(32, 40_000)  # chunked


@pytest.fixture
def stored(tmp_path):
    """A repository holding a small compressible file, a small random file and a chunked file."""
    src = tmp_path / "src"
    write(src / "text.txt", SMALL_TEXT)
    write(src / "random.bin", SMALL_RANDOM)
    write(src / "big.bin", BIG)
    write(src / "keep.txt", b"this one stays fine")
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=SMALL, version=2)  # one record per object (groups: test_groups.py)
    tree = repo.snapshot(src)
    commit = repo.commit(tree)
    repo.refs.set("main", commit)
    ids = {p: e.id for p, e in repo.walk(tree)}
    chunks = [c for c, _ in repo.get(ids["big.bin"]).chunks]
    locations = {oid: object_location(repo, oid) for oid in [*ids.values(), *chunks, tree, commit]}
    repo.close()
    return path, tree, commit, ids, chunks, locations


def _corrupt(locations, oid, where: float = 0.5) -> None:
    pack, offset, length = locations[oid]
    flip_byte(pack, offset + min(int(length * where), length - 1))


@pytest.mark.parametrize("name", ["text.txt", "random.bin"])
def test_flipped_byte_in_small_file(stored, tmp_path, name):
    path, tree, _, ids, _, loc = stored
    _corrupt(loc, ids[name])
    repo = Repository.open(path)
    with pytest.raises(CorruptObject) as info:
        repo.read_file("main", name)
    assert info.value.object_id == ids[name]
    assert ids[name] in str(info.value)
    with pytest.raises(CorruptObject), repo.open_file(tree, name) as f:
        f.read()
    # Other files are unaffected.
    assert repo.read_file("main", "keep.txt") == b"this one stays fine"

    dest = tmp_path / "out"
    with pytest.raises(CorruptObject) as info:
        repo.checkout("main", dest)
    assert info.value.object_id == ids[name]
    assert not (dest / name).exists()
    assert not [p for p in dest.rglob("*") if "objstore-tmp" in p.name]


@given(st.floats(0, 1), st.sampled_from(["text.txt", "random.bin", "big.bin", "chunk", "tree", "commit"]))
@settings(max_examples=40)
def test_any_flipped_payload_byte_is_detected(tmp_path_factory, where, what):
    tmp = tmp_path_factory.mktemp("flip")
    src = tmp / "src"
    write(src / "text.txt", SMALL_TEXT)
    write(src / "random.bin", SMALL_RANDOM)
    write(src / "big.bin", BIG[:10_000])
    repo = Repository.init(tmp / "repo", chunking=SMALL, version=2)
    tree = repo.snapshot(src)
    commit = repo.commit(tree, metadata={"k": "v" * 50})
    ids = {p: e.id for p, e in repo.walk(tree)}
    chunk = repo.get(ids["big.bin"]).chunks[1][0]
    target = {"chunk": chunk, "tree": tree, "commit": commit}.get(what) or ids[what]
    repo = damage(repo, target, where)
    with pytest.raises(CorruptObject) as info:
        if what in ("tree", "commit"):
            repo.get(target)
        else:
            repo.read_file(tree, "big.bin" if what == "chunk" else what)
    assert info.value.object_id == target
    repo.close()


def test_corrupt_chunk_in_large_file(stored, tmp_path):
    path, tree, _, ids, chunks, loc = stored
    bad = chunks[len(chunks) // 2]
    _corrupt(loc, bad)
    repo = Repository.open(path)
    blob = repo.get(ids["big.bin"])
    assert isinstance(blob, ChunkedBlob)
    start_of_bad = sum(s for c, s in blob.chunks[: len(chunks) // 2])

    # Bytes before the damage: correct, or (read-ahead reached the damage) CorruptObject; never other bytes.
    for offset, n in [(0, 1000), (start_of_bad - 300, 200), (100, 5)]:
        with repo.open_file(tree, "big.bin") as f:
            f.seek(offset)
            try:
                assert f.read(n) == BIG[offset : offset + n]
            except CorruptObject as exc:
                assert exc.object_id == bad
    # Bytes in the damaged chunk: always CorruptObject naming it.
    for offset in [start_of_bad, start_of_bad + 5]:
        with repo.open_file(tree, "big.bin") as f:
            f.seek(offset)
            with pytest.raises(CorruptObject) as info:
                f.read(10)
            assert info.value.object_id == bad
    # Chunks after the damage are still readable on their own.
    with repo.open_file(tree, "big.bin") as f:
        f.seek(-10, os.SEEK_END)
        assert f.read() == BIG[-10:]
    with pytest.raises(CorruptObject) as info:
        repo.read_file(tree, "big.bin")
    assert info.value.object_id == bad

    # Checkout must not leave a wrong (or partial) big.bin behind.
    dest = tmp_path / "out"
    with pytest.raises(CorruptObject):
        repo.checkout(tree, dest)
    assert not (dest / "big.bin").exists()
    assert not [p for p in dest.rglob("*") if "objstore-tmp" in p.name]

    # An existing good copy at the target name is not replaced by damaged data.
    write(dest / "big.bin", b"old content the user had")
    with pytest.raises(CorruptObject):
        repo.checkout(tree, dest, paths=["big.bin"])
    assert (dest / "big.bin").read_bytes() == b"old content the user had"


def test_corrupt_tree_and_commit(stored):
    path, tree, commit, _, _, loc = stored
    _corrupt(loc, tree)
    repo = Repository.open(path)
    with pytest.raises(CorruptObject) as info:
        repo.ls("main")
    assert info.value.object_id == tree
    with pytest.raises(CorruptObject):
        list(repo.walk(commit))
    repo.close()

    _corrupt(loc, tree)  # undo
    _corrupt(loc, commit)
    repo = Repository.open(path)
    with pytest.raises(CorruptObject) as info:
        repo.get_commit("main")
    assert info.value.object_id == commit
    assert repo.ls(tree)  # the tree itself is fine again


def test_truncated_pack(stored, tmp_path):
    path, tree, _, _, chunks, loc = stored
    pack, offset, _ = loc[chunks[-1]]
    # Cut the pack in the middle of the last chunk of big.bin (and so everything after it).
    cut = offset + 10
    os.truncate(pack, cut)
    damaged = {oid for oid, (p, o, n) in loc.items() if p == pack and o + n > cut}
    assert chunks[-1] in damaged
    repo = Repository.open(path)
    with pytest.raises(CorruptObject) as info:
        repo.read_file(tree, "big.bin")
    assert info.value.object_id in damaged
    with pytest.raises(CorruptObject):
        repo.checkout(tree, tmp_path / "out")
    assert not (tmp_path / "out" / "big.bin").exists()


def test_pack_truncated_to_nothing(stored):
    path, tree, _, ids, _, loc = stored
    pack, _, _ = loc[ids["keep.txt"]]
    os.truncate(pack, 0)
    in_pack = {oid for oid, (p, _, _) in loc.items() if p == pack}
    repo = Repository.open(path)
    with pytest.raises(CorruptObject) as info:
        repo.read_file(tree, "keep.txt")
    assert info.value.object_id in in_pack
    with pytest.raises(CorruptObject) as info:
        repo.get(ids["keep.txt"])
    assert info.value.object_id == ids["keep.txt"]


def test_missing_pack(stored):
    path, tree, _, ids, _, loc = stored
    pack, _, _ = loc[ids["keep.txt"]]
    os.unlink(pack)
    with pytest.raises(CorruptObject):
        Repository.open(path).read_file(tree, "keep.txt")


@pytest.mark.parametrize(
    "damage", ["flip-header", "flip-id", "flip-entry", "flip-checksum", "truncate", "empty", "garbage"]
)
def test_corrupt_index_is_a_format_error(stored, damage):
    path, tree, _, ids, _, loc = stored
    idx = loc[ids["keep.txt"]][0].with_suffix(".idx")
    size = idx.stat().st_size
    if damage == "flip-header":
        flip_byte(idx, 0)
    elif damage == "flip-id":
        flip_byte(idx, 16 + 1024 + 3)
    elif damage == "flip-entry":
        flip_byte(idx, size - 8 - 16 - 20)
    elif damage == "flip-checksum":
        flip_byte(idx, size - 1)
    elif damage == "truncate":
        os.truncate(idx, size - 5)
    elif damage == "empty":
        os.truncate(idx, 0)
    else:
        idx.write_bytes(os.urandom(size))
    with pytest.raises(FormatError):
        repo = Repository.open(path)
        repo.read_file(tree, "keep.txt")


def test_corrupt_config(stored):
    path, *_ = stored
    (path / "config").write_bytes(b"{not json")
    with pytest.raises(FormatError):
        Repository.open(path)


def test_corrupt_ref_log_entry(stored):
    path, *_ = stored
    # this fixture is format version 2: one folder per ref (version 3: refs/main@<seq>)
    (entry,) = [p for p in (path / "refs" / "main").iterdir() if p.name.startswith("@")]
    entry.write_bytes(b"\xc1garbage")
    repo = Repository.open(path)
    with pytest.raises(FormatError):
        repo.refs.get("main")


def _planted_bodies(tree_id: str) -> dict[str, bytes]:
    import msgpack

    raw_tree = bytes.fromhex(tree_id)
    commit5 = msgpack.packb([raw_tree, [], 1.0, None, ""], use_bin_type=True)
    f = ["a", 0, bytes.fromhex(tree_id), 1, 0o644]
    return {
        "unsorted-tree": bytes([3]) + msgpack.packb([["b", 2, "x"], ["a", 2, "x"]], use_bin_type=True),
        "unhashable-kind": bytes([3]) + msgpack.packb([["a", [], b"x"]], use_bin_type=True),
        "bad-mode": bytes([3]) + msgpack.packb([[*f[:4], 0o777]], use_bin_type=True),
        "unsorted-metadata": bytes([4])
        + msgpack.packb([raw_tree, [], 1.0, None, "", {"b": 1, "a": 2}], use_bin_type=True),
        "deep-metadata": bytes([4, 0x96]) + commit5[1:] + b"\x81\xa1a" * 1000 + b"\x01",
        "chunk-sizes-wrong": bytes([2]) + msgpack.packb([3, bytes.fromhex(tree_id), [4]], use_bin_type=True),
    }


@pytest.mark.parametrize("kind", list(_planted_bodies("00" * 16)))
def test_malformed_object_with_valid_id_is_reported_as_corrupt(tmp_path, kind):
    """Anyone who can write to a store can add bytes under their correct id; reading them must fail cleanly."""
    repo = Repository.init(tmp_path / "repo")
    empty = repo.make_tree([])
    oid = repo.odb.put_encoded(_planted_bodies(empty)[kind])
    repo.odb.flush()
    fresh = Repository.open(tmp_path / "repo")
    with pytest.raises(CorruptObject) as info:
        fresh.get(oid)
    assert info.value.object_id == oid
