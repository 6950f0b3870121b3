"""Corruption: a flipped bit or a truncated pack is named, never returned as data.

fsck names the damaged object (``bad_objects``) and every ref whose graph
needs it (``damaged_refs``); the read that meets it raises ``CorruptObject``
naming it; checkout and ``Artifact.download`` never leave a wrong file at the
target path (a file already there stays as it was).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import tree_snapshot

from objstore import ChunkedBlob, ChunkParams, Repository
from objstore.errors import CorruptObject

CHUNKING = ChunkParams(min_size=1024, avg_size=4096, max_size=16384, small_file=4096)
RNG = random.Random(7)
FILES = {
    "text.txt": b"a small compressible file " * 40,  # one blob, zstd
    "random.bin": RNG.randbytes(3000),  # one blob, stored raw
    "big.bin": RNG.randbytes(120_000),  # chunked
    "sub/keep.txt": b"this file stays fine\n",
}


def _flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ (1 << bit)]))


def _location(repo: Repository, oid: str) -> tuple[Path, int, int]:
    loc = repo.odb.locate(bytes.fromhex(oid))
    assert loc is not None
    name, entry = loc
    return Path(repo.storage.root) / "packs" / f"{name}.pack", entry.offset, entry.stored_length


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Any]:
    """``main`` holds every file; ``side`` only ``sub/keep.txt``, so damage elsewhere spares it.

    Format version 2: one record per object, so damage to one object's bytes is
    damage to that object alone. (In version 3 small objects share group
    records, and damage to a group fails its members: tests/test_groups.py.)"""
    src = tmp_path / "src"
    for rel, data in FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=CHUNKING, version=2)
    tree = repo.snapshot(src)
    main = repo.commit(tree, message="all")
    repo.refs.set("main", main)
    side_tree = repo.snapshot(src / "sub")
    side = repo.commit(side_tree, message="side")
    repo.refs.set("side", side)
    ids = {p: e.id for p, e in repo.walk(tree) if e.kind == "file"}
    big = repo.get(ids["big.bin"])
    assert isinstance(big, ChunkedBlob) and len(big.chunks) > 4
    objects = {
        "text.txt": ids["text.txt"],
        "random.bin": ids["random.bin"],
        "chunk": big.chunks[len(big.chunks) // 2][0],
        "chunk-list": ids["big.bin"],
        "tree": tree,
        "commit": main,
    }
    locations = {k: _location(repo, oid) for k, oid in objects.items()}
    repo.close()
    return {
        "path": path,
        "tree": tree,
        "main": main,
        "side": side,
        "ids": ids,
        "objects": objects,
        "locations": locations,
    }


def _read_that_meets(repo: Repository, what: str, store: dict[str, Any]) -> None:
    if what in ("text.txt", "random.bin"):
        repo.read_file("main", what)
    elif what in ("chunk", "chunk-list"):
        repo.read_file("main", "big.bin")
    elif what == "tree":
        repo.ls("main")
    else:
        repo.get_commit("main")


# A payload bit at the start, middle and end of the object's stored bytes.
@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("what", ["text.txt", "random.bin", "chunk", "chunk-list", "tree", "commit"])
def test_flipped_bit_is_reported_and_never_read(store: dict[str, Any], tmp_path: Path, what: str, where: float) -> None:
    pack, offset, length = store["locations"][what]
    oid = store["objects"][what]
    _flip_bit(pack, offset + min(int(length * where), length - 1), bit=(len(what) * 3 + int(where * 4)) % 8)

    repo = Repository.open(store["path"])
    try:
        report = repo.fsck(full=True)
        assert not report.ok
        assert oid in report.bad_objects, report.bad_objects
        assert list(report.bad_objects) == [oid]  # nothing else is blamed
        assert report.damaged_refs == {"main": [oid]}  # side does not need it
        with pytest.raises(CorruptObject) as info:
            _read_that_meets(repo, what, store)
        assert info.value.object_id == oid and oid in str(info.value)
        assert repo.read_file("side", "keep.txt") == FILES["sub/keep.txt"]
        _no_wrong_file_after_checkout(repo, tmp_path, what)
    finally:
        repo.close()


def _no_wrong_file_after_checkout(repo: Repository, tmp_path: Path, what: str) -> None:
    # Into an empty destination: an error, and no file holds anything but its true content.
    dest = tmp_path / "out"
    with pytest.raises(CorruptObject):
        repo.checkout("main", dest)
    for rel, state in tree_snapshot(dest).items():
        assert ".objstore-tmp" not in rel, rel
        if state[0] == "file":
            assert (dest / rel).read_bytes() == FILES[rel], f"{rel} was written with wrong content"
    # Over existing files: the damaged one is left as the user had it.
    if what in ("text.txt", "random.bin", "chunk", "chunk-list"):
        victim = "big.bin" if what.startswith("chunk") else what
        old = tmp_path / "old"
        old.mkdir()
        (old / victim).write_bytes(b"the user's previous version")
        with pytest.raises(CorruptObject):
            repo.checkout("main", old, paths=[victim])
        assert (old / victim).read_bytes() == b"the user's previous version"
        assert [p.name for p in old.iterdir()] == [victim]


def test_truncated_pack_is_reported_and_never_read(store: dict[str, Any], tmp_path: Path) -> None:
    pack, offset, length = store["locations"]["chunk"]
    chunk = store["objects"]["chunk"]
    cut = offset + length // 2
    os.truncate(pack, cut)

    repo = Repository.open(store["path"])
    try:
        # Everything in that pack at or past the cut is damaged.
        damaged = set()
        for oid_raw, entry in repo.odb.index(pack.stem).items():
            if entry.offset + entry.stored_length > cut:
                damaged.add(oid_raw.hex())
        assert chunk in damaged
        report = repo.fsck(full=True)
        assert set(report.bad_objects) == damaged, report.bad_objects
        assert "truncated" in report.bad_objects[chunk]
        # main is named; fsck stops at the first bad object on each path (here the truncated
        # tree above the chunk), so what it lists are damaged objects of this pack.
        assert "main" in report.damaged_refs
        assert all(set(problems) <= damaged for problems in report.damaged_refs.values()), report.damaged_refs
        with pytest.raises(CorruptObject) as info:
            repo.read_file("main", "big.bin")
        assert info.value.object_id in damaged
        with pytest.raises(CorruptObject) as info:
            repo.get(chunk)
        assert info.value.object_id == chunk
        _no_wrong_file_after_checkout(repo, tmp_path, "chunk")
    finally:
        repo.close()


# -- through trackio ----------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_artifact_download_never_leaves_a_wrong_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trackio_clean: None, damage: str
) -> None:
    import trackio
    import trackio.store

    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "model"
    src.mkdir()
    weights = random.Random(3).randbytes(2_000_000)  # several default-size chunks
    (src / "weights.bin").write_bytes(weights)
    (src / "config.json").write_bytes(b'{"layers": 3}')
    trackio.init(project="p")
    art = trackio.log_artifact(src, name="model", type="model")
    trackio.finish()
    before_damage = trackio.Api(project="p").artifact("model:v0")
    repo = trackio.store.get_repo()
    weights_id = next(e["digest"] for e in art.manifest if e["path"] == "weights.bin")
    blob = repo.get(weights_id)
    assert isinstance(blob, ChunkedBlob)
    bad = blob.chunks[1][0]
    pack, offset, length = _location(repo, bad)
    if damage == "flip":
        _flip_bit(pack, offset + length // 3, bit=5)
        damaged = {bad}
    else:
        cut = offset + length // 3
        damaged = {o.hex() for o, e in repo.odb.index(pack.stem).items() if e.offset + e.stored_length > cut}
        os.truncate(pack, cut)
    trackio.store.close_all()

    report = trackio.store.get_repo().fsck(full=True)
    assert set(report.bad_objects) == damaged
    damaged_ref_names = list(report.damaged_refs)
    assert any("/artifacts/model/" in r for r in damaged_ref_names), damaged_ref_names
    assert all(set(problems) <= damaged for problems in report.damaged_refs.values()), report.damaged_refs

    try:
        fetched = trackio.Api(project="p").artifact("model:v0")
    except CorruptObject as exc:  # the truncation took the version's own commit with it
        assert damage == "truncate" and exc.object_id in damaged
        fetched = before_damage
    with pytest.raises(CorruptObject) as info, fetched.open("weights.bin") as f:
        f.read()
    assert info.value.object_id in damaged

    fresh = tmp_path / "download"
    with pytest.raises(CorruptObject) as info:
        fetched.download(fresh)
    assert info.value.object_id in damaged
    assert not (fresh / "weights.bin").exists()
    assert not [p for p in fresh.rglob("*") if "objstore-tmp" in p.name]

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "weights.bin").write_bytes(b"previous weights")
    with pytest.raises(CorruptObject):
        fetched.download(existing)
    assert (existing / "weights.bin").read_bytes() == b"previous weights"
    if (existing / "config.json").exists():  # written before the damage was met: then it is right
        assert (existing / "config.json").read_bytes() == b'{"layers": 3}'
