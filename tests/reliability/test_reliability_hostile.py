"""Hostile input: crafted trees, escaping symlinks and lying remotes.

Anyone who can write to a store (or serve a remote) can plant any bytes
under their correct id. Trees whose names are ``..``, absolute, contain ``/``
or NUL, or repeat, are refused when decoded (``FormatError`` /
``CorruptObject``), and checkout never writes outside its destination; a
symlink (pointing outside) followed by a path through the same name can't
escape either; a remote serving bytes that do not hash to their id is
refused on fetch and the local store is left exactly as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack
import pytest
from reliability_helpers import fsck_problems, store_listing, tree_snapshot

from objstore import Commit, Repository, TreeEntry
from objstore.codec import GROUPED, RAW
from objstore.errors import CorruptObject, FormatError, ObjstoreError
from objstore.objects import BLOB, DIR, FILE, SYMLINK, TREE

# -- crafted trees ----------------------------------------------------------------------


def _entry(name: str | bytes, kind: int, payload: Any) -> list[Any]:
    if kind == FILE:
        blob_id, size = payload
        return [name, FILE, bytes.fromhex(blob_id), size, 0o644]
    if kind == DIR:
        tree_id, size = payload
        return [name, DIR, bytes.fromhex(tree_id), size]
    return [name, SYMLINK, payload]


def _plant_tree(repo: Repository, entries: list[list[Any]]) -> str:
    """Store a tree body as given (no validation, no sorting): its correct id, its bytes."""
    return repo.odb.put_encoded(bytes([TREE]) + msgpack.packb(entries, use_bin_type=True))


def _plant_commit(repo: Repository, tree_id: str) -> str:
    return repo.odb.put(Commit(tree_id, (), 1.0, None, "crafted", {}))


HOSTILE_NAMES = {
    "dotdot": "..",
    "dot": ".",
    "empty": "",
    "absolute": "/abs",
    "absolute-deep": "/tmp/objstore-escape",
    "slash": "a/b",
    "dotdot-slash": "../escape",
    "nul": "evil\0name",
    "backslash-dotdot": "..\\..",  # a plain name on POSIX: allowed, but must stay inside
}


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, Any]:
    """A store (in ``site/repo``) with a payload blob, a good subtree, and a destination beside it."""
    site = tmp_path / "site"
    site.mkdir()
    repo = Repository.init(site / "repo")
    payload = b"attacker controlled bytes\n"
    blob = repo.store_bytes(payload)
    good = repo.make_tree([TreeEntry("ok.txt", "file", blob, len(payload))])
    (site / "victim.txt").write_bytes(b"do not touch\n")
    yield {"site": site, "repo": repo, "blob": blob, "size": len(payload), "good": good, "dest": site / "out"}
    repo.close()


def _outside(site: Path, dest: Path) -> dict[str, Any]:
    """Everything under the site except the destination (and the store's own caches/temp files)."""
    snap = tree_snapshot(site)
    rel = dest.relative_to(site).as_posix()
    return {k: v for k, v in snap.items() if not (k == rel or k.startswith(rel + "/")) and not k.startswith("repo/")}


@pytest.mark.parametrize("label", list(HOSTILE_NAMES))
@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_tree_with_hostile_name_is_refused(planted: dict[str, Any], label: str, kind: str) -> None:
    repo, site, dest = planted["repo"], planted["site"], planted["dest"]
    name = HOSTILE_NAMES[label]
    payload = {
        "file": (FILE, (planted["blob"], planted["size"])),
        "dir": (DIR, (planted["good"], planted["size"])),
        "symlink": (SYMLINK, "/etc"),
    }[kind]
    evil = _plant_tree(repo, [_entry(name, *payload)])
    # Also hidden one level down, after a legitimate file that checkout writes first.
    outer = _plant_tree(
        repo, [_entry("a-first.txt", FILE, (planted["blob"], planted["size"])), _entry("z", DIR, (evil, 0))]
    )
    repo.odb.flush()
    for tree in (evil, outer):
        repo.refs.set(f"crafted/{tree[:8]}", _plant_commit(repo, tree))
    before = _outside(site, dest)

    if label == "backslash-dotdot":
        # Not a path separator on POSIX: a legal (if odd) name, which stays inside dest.
        assert repo.get_tree(evil).entries[0].name == name
        repo.checkout(outer, dest)
        assert os.path.lexists(dest / "z" / name)
        assert _outside(site, dest) == before
        return

    with pytest.raises(FormatError) as info:  # CorruptObject is a FormatError
        repo.get_tree(evil)
    assert isinstance(info.value, CorruptObject) and info.value.object_id == evil
    fresh = Repository.open(repo.storage.root)
    try:
        with pytest.raises(FormatError):
            fresh.get_tree(evil)
        for tree in (evil, outer):
            with pytest.raises(FormatError):
                fresh.checkout(tree, dest)
            with pytest.raises(FormatError):
                list(fresh.walk(tree))
        report = fresh.fsck(full=True)
        assert evil in report.bad_objects
        assert report.damaged_refs == {f"crafted/{evil[:8]}": [evil], f"crafted/{outer[:8]}": [evil]}, fsck_problems(
            report
        )
    finally:
        fresh.close()
    assert _outside(site, dest) == before
    # Nothing but the legitimate first file and the (empty, real) directory holding the
    # refused tree reached the destination.
    assert set(tree_snapshot(dest)) <= {"a-first.txt", "z"}
    assert tree_snapshot(dest).get("z", ("dir",)) == ("dir",)


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param(
            lambda p: [_entry("same", FILE, (p["blob"], p["size"])), _entry("same", FILE, (p["blob"], p["size"]))],
            id="dup-files",
        ),
        pytest.param(
            lambda p: [_entry("same", SYMLINK, "/"), _entry("same", DIR, (p["good"], p["size"]))],
            id="dup-symlink-then-dir",
        ),
        pytest.param(
            lambda p: [_entry("same", DIR, (p["good"], p["size"])), _entry("same", SYMLINK, "/")],
            id="dup-dir-then-symlink",
        ),
        pytest.param(
            lambda p: [_entry("b", FILE, (p["blob"], p["size"])), _entry("a", FILE, (p["blob"], p["size"]))],
            id="unsorted",
        ),
        pytest.param(lambda p: [_entry("x", FILE, (p["blob"], p["size"]))[:3]], id="short-entry"),
        pytest.param(lambda p: [_entry(b"bytes-name", FILE, (p["blob"], p["size"]))], id="bytes-name"),
        pytest.param(lambda p: [_entry("x", FILE, (p["blob"], -1))], id="negative-size"),
        pytest.param(lambda p: [["x", 9, b"", 0]], id="unknown-kind"),
        pytest.param(lambda p: [[*_entry("x", FILE, (p["blob"], p["size"]))[:4], 0o4755]], id="setuid-mode"),
    ],
)
def test_malformed_tree_is_refused(planted: dict[str, Any], entries: Any) -> None:
    repo, site, dest = planted["repo"], planted["site"], planted["dest"]
    evil = _plant_tree(repo, entries(planted))
    repo.odb.flush()
    before = _outside(site, dest)
    with pytest.raises(FormatError):
        repo.get_tree(evil)
    with pytest.raises(FormatError):
        repo.checkout(evil, dest)
    assert _outside(site, dest) == before
    assert tree_snapshot(dest) == {}


def test_store_side_checks_refuse_hostile_names(planted: dict[str, Any]) -> None:
    """The public constructors never produce such trees in the first place."""
    repo = planted["repo"]
    for name in ("..", ".", "", "a/b", "/abs", "x\0y"):
        with pytest.raises((ObjstoreError, ValueError)):
            repo.make_tree([TreeEntry(name, "file", planted["blob"], planted["size"])])
    with pytest.raises(ObjstoreError):
        repo.make_tree([TreeEntry("same", "file", planted["blob"], planted["size"])] * 2)
    for logical in ("../x", "/abs", "a/../../x", "a//b"):
        with pytest.raises((ObjstoreError, ValueError)):
            repo.build_tree({logical: TreeEntry("x", "symlink", target="y")})


# -- symlinks that point outside ------------------------------------------------------------


def _symlink_tree(repo: Repository, name: str, target: str) -> str:
    return repo.make_tree([TreeEntry(name, "symlink", target=target)])


def _dir_with_file(repo: Repository, name: str, file_name: str, data: bytes) -> str:
    blob = repo.store_bytes(data)
    inner = repo.make_tree([TreeEntry(file_name, "file", blob, len(data))])
    return repo.make_tree([TreeEntry(name, "dir", inner, len(data))])


@pytest.mark.parametrize("target_kind", ["absolute", "relative"])
@pytest.mark.parametrize("how", ["whole", "paths"])
def test_symlink_then_directory_of_the_same_name_cannot_escape(
    planted: dict[str, Any], target_kind: str, how: str
) -> None:
    """Checkout 1 plants ``link -> <outside dir>``; checkout 2 has a directory ``link/`` with a file."""
    repo, site, dest = planted["repo"], planted["site"], planted["dest"]
    outside = site / "outside"
    outside.mkdir()
    target = str(outside) if target_kind == "absolute" else "../outside"
    first = _symlink_tree(repo, "link", target)
    second = _dir_with_file(repo, "link", "evil.txt", b"written through the link?\n")
    repo.checkout(first, dest)
    assert os.readlink(dest / "link") == target  # a symlink is restored as a symlink, never followed
    before = _outside(site, dest)

    repo.checkout(second, dest, paths=["link/evil.txt"] if how == "paths" else None)
    assert not (outside / "evil.txt").exists()
    assert list(outside.iterdir()) == []
    assert not (dest / "link").is_symlink() and (dest / "link").is_dir()
    assert (dest / "link" / "evil.txt").read_bytes() == b"written through the link?\n"
    assert _outside(site, dest) == before


def test_symlink_then_file_of_the_same_name_replaces_the_link_not_its_target(planted: dict[str, Any]) -> None:
    repo, site, dest = planted["repo"], planted["site"], planted["dest"]
    victim = site / "victim.txt"
    first = _symlink_tree(repo, "name", str(victim))
    data = b"overwrite the victim?\n"
    second = repo.make_tree([TreeEntry("name", "file", repo.store_bytes(data), len(data))])
    repo.checkout(first, dest)
    for skip_existing in (True, False):
        repo.checkout(first, dest)
        repo.checkout(second, dest, skip_existing=skip_existing)
        assert victim.read_bytes() == b"do not touch\n"
        assert not (dest / "name").is_symlink() and (dest / "name").read_bytes() == data


def test_symlink_planted_in_destination_by_someone_else_is_not_followed(planted: dict[str, Any]) -> None:
    """The destination already holds ``data -> outside`` and ``f.txt -> victim``: checkout replaces them."""
    repo, site, dest = planted["repo"], planted["site"], planted["dest"]
    outside = site / "outside"
    outside.mkdir()
    dest.mkdir()
    os.symlink(outside, dest / "data")
    os.symlink(site / "victim.txt", dest / "f.txt")
    blob = repo.store_bytes(b"payload\n")
    inner = repo.make_tree([TreeEntry("x.bin", "file", blob, 8)])
    tree = repo.make_tree([TreeEntry("data", "dir", inner, 8), TreeEntry("f.txt", "file", blob, 8)])
    repo.checkout(tree, dest)
    assert list(outside.iterdir()) == []
    assert (site / "victim.txt").read_bytes() == b"do not touch\n"
    assert (dest / "data" / "x.bin").read_bytes() == b"payload\n" and not (dest / "data").is_symlink()
    assert (dest / "f.txt").read_bytes() == b"payload\n" and not (dest / "f.txt").is_symlink()


def test_symlink_chain_inside_one_tree_cannot_escape(planted: dict[str, Any]) -> None:
    """``a -> ..`` then ``b`` (a dir) in one tree, and the same tree again over itself."""
    repo, site, dest = planted["repo"], planted["site"], planted["dest"]
    blob = repo.store_bytes(b"inner\n")
    inner = repo.make_tree([TreeEntry("victim.txt", "file", blob, 6)])
    tree = repo.make_tree(
        [
            TreeEntry("a", "symlink", target=".."),
            TreeEntry("up", "symlink", target="../.."),
            TreeEntry("b", "dir", inner, 6),
        ]
    )
    before = _outside(site, dest)
    repo.checkout(tree, dest)
    repo.checkout(tree, dest)
    assert _outside(site, dest) == before
    assert (site / "victim.txt").read_bytes() == b"do not touch\n"
    with pytest.raises(ObjstoreError):  # and a checkout path cannot walk through the link
        repo.checkout(tree, dest, paths=["a/victim.txt"])
    assert _outside(site, dest) == before


# -- a remote that lies -------------------------------------------------------------------


def _remote_with_commit(tmp_path: Path) -> tuple[Repository, str, str]:
    """A local repo with one commit pushed to a file:// remote (random data: stored raw)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(5000))
    (src / "text.txt").write_bytes(b"hello " * 100)
    origin = Repository.init(tmp_path / "origin")
    c = origin.commit(origin.snapshot(src), message="first")
    origin.refs.set("main", c)
    url = f"file://{tmp_path / 'remote'}"
    origin.push(url, create=True)
    return origin, c, url


def _local_with_history(tmp_path: Path) -> tuple[Path, str]:
    local = Repository.init(tmp_path / "local")
    blob = local.store_bytes(b"mine")
    c = local.commit(local.make_tree([TreeEntry("mine.txt", "file", blob, 4)]), message="local")
    local.refs.set("mine", c)
    local.close()
    return tmp_path / "local", c


@pytest.mark.parametrize("what", ["data.bin", "text.txt", "tree", "commit"])
def test_remote_object_with_flipped_byte_is_refused_on_fetch(tmp_path: Path, what: str) -> None:
    origin, commit, url = _remote_with_commit(tmp_path)
    remote = Repository.open(url)
    tree = remote.tree_of("main")
    oid = {"tree": tree, "commit": commit}.get(what) or remote.entry("main", what).id
    name, entry = remote.odb.locate(bytes.fromhex(oid))
    damaged = {oid}
    if entry.codec == GROUPED:  # the flip fails oid's whole group: the first member read is named
        damaged = {o.hex() for o, e in remote.odb.index(name).items() if (e.offset, e.codec) == (entry.offset, GROUPED)}
    remote.close()
    pack = tmp_path / "remote" / "packs" / f"{name}.pack"
    with open(pack, "r+b") as f:
        f.seek(entry.offset + entry.stored_length // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x10]))

    local_path, mine = _local_with_history(tmp_path)
    before = store_listing(local_path)
    local = Repository.open(local_path)
    try:
        with pytest.raises(CorruptObject) as info:
            local.fetch(url)
        assert info.value.object_id in damaged
        assert "refused" in str(info.value) or "decode" in str(info.value) or "corrupt" in str(info.value)
        assert local.refs.list() == {"mine": mine}
        assert not any(local.odb.has(o) for o in damaged)
        with pytest.raises(CorruptObject):
            Repository.clone(url, tmp_path / "clone")
    finally:
        local.close()
    assert store_listing(local_path) == before
    report = Repository.open(local_path).fsck(full=True)
    assert report.ok and not report.stray_files, fsck_problems(report)
    origin.close()


def test_remote_serving_other_valid_bytes_under_an_id_is_refused(tmp_path: Path) -> None:
    """The remote's pack and index are self-consistent, but the bytes filed under id X are
    a well-formed blob of other content: only hashing on arrival can tell."""
    honest = b"the real weights\n" * 10
    forged = b"the attacker's weights\n" * 10
    rpath = tmp_path / "remote"
    remote = Repository.init(rpath)
    ids_ = remote.algorithm
    real_id = ids_.digest(bytes([BLOB]) + honest)
    remote.odb.add_stored(real_id, BLOB, RAW, bytes([BLOB]) + forged, len(forged) + 1)
    remote.odb.flush()
    tree = remote.make_tree([TreeEntry("weights.bin", "file", real_id.hex(), len(honest))])
    remote.refs.set("main", remote.commit(tree, message="looks legit"))
    remote.close()

    local_path, mine = _local_with_history(tmp_path)
    before = store_listing(local_path)
    local = Repository.open(local_path)
    try:
        with pytest.raises(CorruptObject) as info:
            local.fetch(f"file://{rpath}")
        assert info.value.object_id == real_id.hex()
        assert local.refs.list() == {"mine": mine}
        # Reading it in place from the remote is refused as well, never returned as data.
        view = Repository.open(f"file://{rpath}")
        with pytest.raises(CorruptObject):
            view.read_file("main", "weights.bin")
        out = tmp_path / "out"
        with pytest.raises(CorruptObject):
            view.checkout("main", out)
        assert not (out / "weights.bin").exists()
        view.close()
    finally:
        local.close()
    assert store_listing(local_path) == before
