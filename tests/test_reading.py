"""Reading a repository: streams, listings, history, diffs, stats and id prefixes."""

from __future__ import annotations

import io
import os

import pytest
import xxhash
from helpers import SMALL, rand_bytes, write
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import Blob, ChunkedBlob, Repository, TreeEntry
from objstore.errors import AmbiguousId, ObjectNotFound, PathNotFound, RefNotFound, WrongObjectType

BIG = rand_bytes(21, 50_000)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A read-only repository shared by the read tests (hypothesis needs non-function fixtures)."""
    base = tmp_path_factory.mktemp("reading")
    src = base / "src"
    write(src / "big.bin", BIG)
    write(src / "small.txt", b"small file\n")
    write(src / "empty", b"")
    write(src / "dir" / "inner.txt", b"inner")
    write(src / "dir" / "sub" / "leaf.txt", b"leaf")
    os.symlink("dir/inner.txt", src / "link")
    repo = Repository.init(base / "repo", chunking=SMALL)
    tree = repo.snapshot(src)
    commit = repo.commit(tree, message="one", timestamp=100.0)
    repo.refs.set("main", commit)
    yield repo, tree, commit
    repo.close()


# -- open_file ----------------------------------------------------------------------


def test_big_file_really_is_multi_chunk(shared):
    repo, tree, _ = shared
    obj = repo.get(repo.entry(tree, "big.bin").id)
    assert isinstance(obj, ChunkedBlob) and len(obj.chunks) > 20


@given(
    st.lists(
        st.tuples(st.sampled_from(["set", "cur", "end"]), st.integers(-60_000, 60_000), st.integers(0, 20_000)),
        min_size=1,
        max_size=8,
    )
)
@settings(max_examples=200)
def test_open_file_seek_and_read_match_the_original(shared, ops):
    repo, tree, _ = shared
    ref = io.BytesIO(BIG)
    with repo.open_file(tree, "big.bin") as f:
        assert f.seekable() and f.readable()
        for whence_name, offset, n in ops:
            whence = {"set": io.SEEK_SET, "cur": io.SEEK_CUR, "end": io.SEEK_END}[whence_name]
            base = {"set": 0, "cur": ref.tell(), "end": len(BIG)}[whence_name]
            if base + offset < 0:
                with pytest.raises((ValueError, OSError)):
                    f.seek(offset, whence)
                continue
            assert f.seek(offset, whence) == ref.seek(offset, whence)
            assert f.read(n) == ref.read(n)
            assert f.tell() == ref.tell()


def test_open_file_read_all_and_small_files(shared):
    repo, tree, commit = shared
    with repo.open_file(commit, "big.bin") as f:
        assert f.read() == BIG
        assert f.read() == b""
    with repo.open_file("main", "dir/sub/leaf.txt") as f:
        assert f.read(2) == b"le"
        f.seek(0)
        assert f.read() == b"leaf"
    assert repo.read_file(tree, "empty") == b""
    assert repo.read_file(tree, "/dir/inner.txt") == b"inner"


def test_open_file_on_non_files(shared):
    repo, tree, _ = shared
    for path in ["dir", "link", "nope", "dir/nope", "small.txt/below"]:
        with pytest.raises(PathNotFound):
            repo.open_file(tree, path)


# -- ls / walk / entry -----------------------------------------------------------------------


def test_ls_and_walk(shared):
    repo, tree, commit = shared
    assert [e.name for e in repo.ls(tree)] == ["big.bin", "dir", "empty", "link", "small.txt"]
    assert [e.name for e in repo.ls(commit, "dir")] == ["inner.txt", "sub"]
    assert [e.name for e in repo.ls("main", "dir/inner.txt")] == ["inner.txt"]
    walked = [(p, e.kind) for p, e in repo.walk(tree)]
    assert walked == [
        ("big.bin", "file"),
        ("dir", "dir"),
        ("dir/inner.txt", "file"),
        ("dir/sub", "dir"),
        ("dir/sub/leaf.txt", "file"),
        ("empty", "file"),
        ("link", "symlink"),
        ("small.txt", "file"),
    ]
    assert [p for p, _ in repo.walk(tree, "dir/sub")] == ["dir/sub/leaf.txt"]
    assert repo.entry(tree, "link").target == "dir/inner.txt"
    assert repo.entry(tree, "dir").size == len(b"inner") + len(b"leaf")
    with pytest.raises(PathNotFound):
        repo.ls(tree, "missing")


def test_kind_get_and_wrong_types(shared):
    repo, tree, commit = shared
    assert repo.kind(commit) == "commit" and repo.kind(tree) == "tree"
    small = repo.entry(tree, "small.txt").id
    assert repo.kind(small) == "blob" and repo.get(small) == Blob(b"small file\n")
    assert repo.kind(repo.entry(tree, "big.bin").id) == "chunked"
    assert repo.tree_of(commit) == tree == repo.tree_of(tree)
    with pytest.raises(WrongObjectType):
        repo.get_commit(tree)
    with pytest.raises(WrongObjectType):
        repo.get_tree(commit)
    with pytest.raises(WrongObjectType):
        repo.tree_of(small)


# -- id prefixes -----------------------------------------------------------------------------


@given(st.data())
@settings(max_examples=100)
def test_any_unique_prefix_of_8_or_more_resolves(shared, data):
    repo, tree, commit = shared
    all_ids = sorted(repo.odb.iter_ids())
    oid = data.draw(st.sampled_from(all_ids))
    n = data.draw(st.integers(8, len(oid)))
    prefix = oid[:n]
    if data.draw(st.booleans()):
        prefix = prefix.upper()
    assert [i for i in all_ids if i.startswith(prefix.lower())] == [oid]  # unique in this store
    assert repo.resolve(prefix) == oid
    if oid == commit:
        assert repo.get_commit(prefix).tree == tree


def test_commit_and_tree_by_prefix(shared, tmp_path):
    repo, tree, commit = shared
    assert repo.get_commit(commit[:8]).message == "one"
    assert repo.get_tree(tree[:9]) == repo.get_tree(tree)
    repo.checkout(commit[:8], tmp_path / "out")
    assert (tmp_path / "out" / "big.bin").read_bytes() == BIG


@pytest.mark.parametrize("n", [1, 4, 7])
def test_short_prefix_is_not_resolved(shared, n):
    repo, _, commit = shared
    with pytest.raises(ObjectNotFound):
        repo.resolve(commit[:n])
    with pytest.raises(ObjectNotFound):
        repo.get_commit(commit[:n])


def test_unknown_ids_and_prefixes(shared):
    repo, _, _ = shared
    all_ids = set(repo.odb.iter_ids())
    unknown = next(p for p in (f"{i:08x}" for i in range(10_000)) if not any(o.startswith(p) for o in all_ids))
    with pytest.raises(ObjectNotFound):
        repo.resolve(unknown)
    with pytest.raises(ObjectNotFound):
        repo.resolve(unknown + "0" * 24)  # full length
    with pytest.raises(ObjectNotFound):
        repo.get_commit(unknown + "abc")
    with pytest.raises(RefNotFound):
        repo.resolve("no-such-ref")
    with pytest.raises((ObjectNotFound, RefNotFound)):
        repo.resolve("")


def test_ambiguous_prefix(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    # Find two small blobs whose ids share their first 8 hex digits (a birthday search).
    seen: dict[bytes, bytes] = {}
    i = 0
    while True:
        data = b"%d" % i
        head = xxhash.xxh3_128(b"\x01" + data).digest()[:4]
        if head in seen and seen[head] != data:
            a, b = seen[head], data
            break
        seen[head] = data
        i += 1
    ida, idb = repo.store_bytes(a), repo.store_bytes(b)
    assert ida != idb and ida[:8] == idb[:8]
    with pytest.raises(AmbiguousId) as info:
        repo.resolve(ida[:8])
    assert sorted(info.value.matches) == sorted([ida, idb])
    # One more digit (where they differ) disambiguates.
    k = next(j for j in range(8, 32) if ida[j] != idb[j])
    assert repo.resolve(ida[: k + 1]) == ida
    assert repo.resolve(idb[: k + 1]) == idb


# -- log ---------------------------------------------------------------------------------


def test_log_newest_first_with_parents_and_merges(repo, tmp_path):
    write(tmp_path / "d" / "f", b"1")
    t = repo.snapshot(tmp_path / "d")
    root = repo.commit(t, message="root", timestamp=1.0)
    left = repo.commit(t, [root], message="left", timestamp=2.0)
    right = repo.commit(t, [root], message="right", timestamp=3.0)
    merge = repo.commit(t, [left, right], message="merge", timestamp=4.0, metadata={"k": [1, 2]})
    tip = repo.commit(t, [merge], message="tip", timestamp=5.0, author="me")
    repo.refs.set("main", tip)

    log = list(repo.log("main"))
    assert [c.message for _, c in log] == ["tip", "merge", "right", "left", "root"]
    assert [i for i, _ in log] == [tip, merge, right, left, root]
    by_id = dict(log)
    assert by_id[merge].parents == (left, right)
    assert by_id[merge].metadata == {"k": [1, 2]}
    assert by_id[tip].author == "me" and by_id[tip].time == 5.0
    assert by_id[root].parents == ()
    assert [c.message for _, c in repo.log(left)] == ["left", "root"]
    assert len(list(repo.log(tip, limit=2))) == 2
    with pytest.raises(WrongObjectType):
        list(repo.log(t))


def test_commit_with_parent_that_is_not_a_commit(repo, tmp_path):
    write(tmp_path / "d" / "f", b"1")
    t = repo.snapshot(tmp_path / "d")
    with pytest.raises(WrongObjectType):
        repo.commit(t, [t])


# -- diff ---------------------------------------------------------------------------------


def test_diff_added_removed_modified(repo, tmp_path):
    d = tmp_path / "d"
    write(d / "same.txt", b"same")
    write(d / "change.txt", b"before")
    write(d / "gone.txt", b"gone")
    write(d / "dir" / "a.txt", b"a")
    write(d / "turns-into-dir", b"file")
    write(d / "mode.sh", b"#!/bin/sh\n")
    os.symlink("same.txt", d / "zlink")
    (d / "emptydir").mkdir()
    t1 = repo.snapshot(d)

    write(d / "change.txt", b"after!")
    (d / "gone.txt").unlink()
    write(d / "new.txt", b"new")
    write(d / "dir" / "b.txt", b"b")
    (d / "turns-into-dir").unlink()
    write(d / "turns-into-dir" / "x", b"x")
    os.chmod(d / "mode.sh", 0o755)
    (d / "emptydir").rmdir()
    (d / "zlink").unlink()
    os.symlink("change.txt", d / "zlink")
    t2 = repo.snapshot(d)
    c2 = repo.commit(t2)

    changes = [(c.status, c.path) for c in repo.diff(t1, c2)]
    assert changes == [
        ("modified", "change.txt"),
        ("added", "dir/b.txt"),
        ("removed", "emptydir"),
        ("removed", "gone.txt"),
        ("modified", "mode.sh"),
        ("added", "new.txt"),
        ("removed", "turns-into-dir"),
        ("added", "turns-into-dir/x"),
        ("modified", "zlink"),
    ]
    mod = next(c for c in repo.diff(t1, t2) if c.path == "change.txt")
    assert mod.old.size == 6 and mod.new.size == 6 and mod.size_delta == 0
    assert repo.diff(t1, t1) == []
    everything = repo.diff(None, t1)
    assert {c.status for c in everything} == {"added"}
    leaves = [p for p, e in repo.walk(t1) if e.kind != "dir" or not repo.ls(t1, p)]
    assert sorted(c.path for c in everything) == sorted(leaves)
    assert "emptydir" in leaves
    assert {c.status for c in repo.diff(t1, None)} == {"removed"}


# -- stats ------------------------------------------------------------------------------


def test_stats_fields(repo, tmp_path):
    empty = repo.stats()
    assert (empty.objects, empty.packs, empty.refs, empty.commits, empty.logical_bytes) == (0, 0, 0, 0, 0)

    d = tmp_path / "d"
    write(d / "a.bin", rand_bytes(1, 20_000))
    write(d / "b.txt", b"hello")
    write(d / "sub" / "a-copy.bin", rand_bytes(1, 20_000))
    t = repo.snapshot(d)
    c1 = repo.commit(t, message="1")
    c2 = repo.commit(t, [c1], message="2")
    repo.refs.set("main", c2)
    repo.refs.set("other", c1)
    repo.refs.set("tree-ref", t)  # a ref may point at a tree too

    s = repo.stats()
    assert s.commits == 2
    assert s.refs == 3
    assert s.logical_bytes == 2 * (40_000 + 5)
    assert s.objects == len(set(repo.odb.iter_ids()))
    assert 20_000 < s.raw_bytes < 25_000  # the duplicate file counts once
    pack_dir = os.path.join(repo.storage.root, "packs")
    on_disk = sum(os.path.getsize(os.path.join(pack_dir, n)) for n in os.listdir(pack_dir))
    assert s.stored_bytes == on_disk
    assert s.packs == len([n for n in os.listdir(pack_dir) if n.endswith(".pack")])
    files = [
        os.path.relpath(os.path.join(top, f), repo.storage.root)
        for top, _, fs in os.walk(repo.storage.root)
        for f in fs
    ]
    assert s.files_on_disk == len([f for f in files if not f.startswith("cache")])
    assert s.dedup_ratio == pytest.approx(s.logical_bytes / s.stored_bytes)


def test_make_tree_requires_stored_objects(repo):
    with pytest.raises(ObjectNotFound):
        repo.make_tree([TreeEntry("x", "file", "ab" * 16, 1)])
    blob = repo.store_bytes(b"x")
    t = repo.make_tree([TreeEntry("x", "file", blob, 1)])
    assert repo.read_file(t, "x") == b"x"
