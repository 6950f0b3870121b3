"""Snapshot then checkout reproduces a directory exactly: bytes, exec bits, symlinks, empty dirs."""

from __future__ import annotations

import os
import stat

import pytest
from helpers import SMALL, dir_state, rand_bytes, write
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import Repository
from objstore.errors import PathNotFound, UnsafePath

UNICODE = "naïve-日本.txt"


@pytest.fixture
def source(tmp_path):
    d = tmp_path / "src"
    write(d / "top.txt", b"top level\n")
    write(d / UNICODE, "unicode content ✓\n".encode())
    write(d / "empty.txt", b"")
    write(d / "bin" / "run.sh", b"#!/bin/sh\necho run\n", executable=True)
    write(d / "bin" / "big-exec", rand_bytes(11, 9000), executable=True)  # chunked + exec
    write(d / "a" / "b" / "c" / "deep.bin", rand_bytes(12, 30_000))
    write(d / "a" / "b" / "sibling.txt", b"sib")
    (d / "empty-dir").mkdir()
    (d / "a" / "nested-empty" / "inner-empty").mkdir(parents=True)
    os.symlink("../top.txt", d / "a" / "rel-link")
    os.symlink("/nonexistent/absolute/target", d / "abs-link")
    os.symlink("bin", d / "dir-link")  # a link to a directory is stored as a link
    os.symlink("does-not-exist", d / "dangling")
    return d


def test_checkout_reproduces_the_tree(repo, source, tmp_path):
    tree = repo.snapshot(source)
    out = tmp_path / "out"
    result = repo.checkout(tree, out)
    assert dir_state(out) == dir_state(source)
    assert result.files == 7 and result.symlinks == 4
    assert result.bytes == sum(e.size for _, e in repo.walk(tree) if e.kind == "file")

    # Specific user-visible properties, spelled out.
    assert (out / UNICODE).read_bytes() == "unicode content ✓\n".encode()
    assert (out / "empty.txt").read_bytes() == b""
    assert os.access(out / "bin" / "run.sh", os.X_OK)
    assert os.access(out / "bin" / "big-exec", os.X_OK)
    assert not os.stat(out / "top.txt").st_mode & 0o111
    assert os.readlink(out / "a" / "rel-link") == "../top.txt"
    assert os.readlink(out / "abs-link") == "/nonexistent/absolute/target"
    assert os.path.islink(out / "dir-link") and os.readlink(out / "dir-link") == "bin"
    assert os.path.islink(out / "dangling")
    assert (out / "empty-dir").is_dir() and not any((out / "empty-dir").iterdir())
    assert (out / "a" / "nested-empty" / "inner-empty").is_dir()
    # No temp files left behind.
    assert not [p for p in out.rglob("*") if "objstore-tmp" in p.name]


def test_snapshot_records_kinds_modes_and_links(repo, source):
    tree = repo.snapshot(source)
    entries = dict(repo.walk(tree))
    assert entries["bin/run.sh"].mode == 0o755
    assert entries["top.txt"].mode == 0o644
    assert entries["abs-link"].kind == "symlink" and entries["abs-link"].target == "/nonexistent/absolute/target"
    assert entries["dir-link"].kind == "symlink"
    assert entries["empty-dir"].kind == "dir" and repo.ls(tree, "empty-dir") == []
    assert entries[UNICODE].size == len("unicode content ✓\n".encode())
    assert entries["a"].size == 30_000 + 3


def test_snapshot_of_single_file(repo, tmp_path):
    f = write(tmp_path / "solo.bin", rand_bytes(3, 5000), executable=True)
    tree = repo.snapshot(f)
    (entry,) = repo.ls(tree)
    assert entry.name == "solo.bin" and entry.kind == "file" and entry.size == 5000 and entry.mode == 0o755
    out = tmp_path / "out"
    repo.checkout(tree, out)
    assert dir_state(out) == {"solo.bin": ("file", rand_bytes(3, 5000), True)}


def test_snapshot_of_single_symlink(repo, tmp_path):
    os.symlink("/some/where", tmp_path / "lnk")
    (entry,) = repo.ls(repo.snapshot(tmp_path / "lnk"))
    assert entry.name == "lnk" and entry.kind == "symlink" and entry.target == "/some/where"


def test_checkout_selected_paths_only(repo, source, tmp_path):
    tree = repo.snapshot(source)
    out = tmp_path / "out"
    repo.checkout(tree, out, paths=["a/b/c/deep.bin", "bin"])
    state = dir_state(out)
    assert state == {
        "a": ("dir",),
        "a/b": ("dir",),
        "a/b/c": ("dir",),
        "a/b/c/deep.bin": ("file", rand_bytes(12, 30_000), False),
        "bin": ("dir",),
        "bin/run.sh": ("file", b"#!/bin/sh\necho run\n", True),
        "bin/big-exec": ("file", rand_bytes(11, 9000), True),
    }
    with pytest.raises(PathNotFound):
        repo.checkout(tree, tmp_path / "out2", paths=["no/such/file"])
    with pytest.raises(PathNotFound):
        repo.checkout(tree, tmp_path / "out2", paths=["top.txt/below"])


def test_checkout_unicode_path_selection(repo, source, tmp_path):
    tree = repo.snapshot(source)
    repo.checkout(tree, tmp_path / "out", paths=[UNICODE])
    assert os.listdir(tmp_path / "out") == [UNICODE]


def test_recheckout_skips_correct_files_and_restores_modified(repo, source, tmp_path):
    tree = repo.snapshot(source)
    out = tmp_path / "out"
    first = repo.checkout(tree, out)
    assert first.skipped == 0

    again = repo.checkout(tree, out)
    assert again.skipped == first.files and again.files == 0 and again.bytes == 0
    assert dir_state(out) == dir_state(source)

    # Same-size local edit, a deleted file, a lost exec bit, and an extra file.
    deep = out / "a" / "b" / "c" / "deep.bin"
    deep.write_bytes(rand_bytes(99, 30_000))
    (out / "top.txt").unlink()
    os.chmod(out / "bin" / "run.sh", 0o644)
    third = repo.checkout(tree, out)
    assert third.files == 2
    assert third.skipped == first.files - 2
    assert deep.read_bytes() == rand_bytes(12, 30_000)
    assert (out / "top.txt").read_bytes() == b"top level\n"
    assert os.access(out / "bin" / "run.sh", os.X_OK)
    assert dir_state(out) == dir_state(source)


def test_checkout_replaces_wrong_kinds(repo, source, tmp_path):
    tree = repo.snapshot(source)
    out = tmp_path / "out"
    write(out / "empty-dir", b"a file where a dir belongs")
    write(out / "top.txt" / "inner", b"a dir where a file belongs")
    write(out / "abs-link", b"a file where a link belongs")
    repo.checkout(tree, out)
    assert dir_state(out) == dir_state(source)


def test_checkout_without_skipping_rewrites(repo, source, tmp_path):
    tree = repo.snapshot(source)
    out = tmp_path / "out"
    repo.checkout(tree, out)
    r = repo.checkout(tree, out, skip_existing=False)
    assert r.skipped == 0 and r.files == 7
    assert dir_state(out) == dir_state(source)


def test_checkout_of_commit_and_ref(repo, source, tmp_path):
    tree = repo.snapshot(source)
    c = repo.commit(tree, message="m")
    repo.refs.set("main", c)
    repo.checkout("main", tmp_path / "o1")
    repo.checkout(c[:12], tmp_path / "o2")
    assert dir_state(tmp_path / "o1") == dir_state(tmp_path / "o2") == dir_state(source)


def test_checkout_reports_references(repo, tmp_path):
    from objstore import TreeEntry

    t = repo.make_tree([TreeEntry("ext", "reference", size=-1, target="s3://b/k", digest=None)])
    r = repo.checkout(t, tmp_path / "out")
    assert [(os.path.basename(p), e.target) for p, e in r.references] == [("ext", "s3://b/k")]
    assert not (tmp_path / "out" / "ext").exists()


def test_snapshot_refuses_unrepresentable_names(repo, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    bad = os.path.join(os.fsencode(d), b"bad-\xff-name")
    with open(bad, "wb") as f:
        f.write(b"x")
    with pytest.raises(UnsafePath):
        repo.snapshot(d)


def test_modes_follow_umask_for_new_files(repo, source, tmp_path):
    tree = repo.snapshot(source)
    out = tmp_path / "out"
    repo.checkout(tree, out)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(out / "bin" / "run.sh").st_mode) == 0o777 & ~mask
    assert stat.S_IMODE(os.stat(out / "top.txt").st_mode) == 0o666 & ~mask


def test_special_files_are_skipped_with_a_warning(repo, tmp_path):
    d = tmp_path / "d"
    write(d / "real.txt", b"real")
    os.mkfifo(d / "pipe")
    with pytest.warns(UserWarning, match="pipe"):
        tree = repo.snapshot(d)
    assert [e.name for e in repo.ls(tree)] == ["real.txt"]


def test_progress_reports_every_byte(repo, source, tmp_path):
    total = sum(e.size for _, e in repo.walk(repo.snapshot(source)) if e.kind == "file")
    seen: list[int] = []
    fresh = Repository.init(tmp_path / "fresh", chunking=SMALL)
    tree = fresh.snapshot(source, progress=seen.append)
    assert sum(seen) == total
    seen.clear()
    fresh.snapshot(source, progress=seen.append)  # unchanged files count too
    assert sum(seen) == total
    seen.clear()
    fresh.checkout(tree, tmp_path / "out", progress=seen.append)
    assert sum(seen) == total
    seen.clear()
    fresh.checkout(tree, tmp_path / "out", progress=seen.append)  # skipped files count too
    assert sum(seen) == total


def test_file_url_location(tmp_path, source):
    repo = Repository.init(f"file://{tmp_path}/r", chunking=SMALL)
    tree = repo.snapshot(source)
    again = Repository.open(tmp_path / "r")
    assert again.get_tree(tree) == repo.get_tree(tree)


# -- property: any directory survives snapshot + checkout --------------------------------------

_fs_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
    min_size=1,
    max_size=12,
).filter(lambda n: n not in (".", ".."))

_leaf = st.one_of(
    st.tuples(st.just("file"), st.integers(0, 12_000), st.integers(0, 2**16), st.booleans()),
    st.tuples(st.just("symlink"), _fs_names),
)
_trees = st.recursive(
    _leaf,
    lambda children: st.dictionaries(_fs_names, children, max_size=4),
    max_leaves=12,
)


def _materialize(root, node) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, child in node.items():
        p = root / name
        if isinstance(child, dict):
            _materialize(p, child)
        elif child[0] == "file":
            _, size, seed, executable = child
            write(p, rand_bytes(seed, size), executable)
        else:
            os.symlink(child[1], p)


@given(st.dictionaries(_fs_names, _trees, max_size=5))
@settings(max_examples=30)
def test_random_directories_round_trip(tmp_path_factory, layout):
    base = tmp_path_factory.mktemp("prop")
    src = base / "src"
    _materialize(src, layout)
    repo = Repository.init(base / "repo", chunking=SMALL)
    tree = repo.snapshot(src)
    repo.checkout(tree, base / "out")
    assert dir_state(base / "out") == dir_state(src)
    # Snapshotting the checkout gives the very same tree id.
    assert repo.snapshot(base / "out") == tree
    repo.close()


def test_checkout_replaces_file_where_tree_has_a_populated_directory(repo, source, tmp_path):
    tree = repo.snapshot(source)
    out = tmp_path / "out"
    write(out / "a", b"a file where a directory with files belongs")
    write(out / "bin", b"same again")
    repo.checkout(tree, out)
    assert dir_state(out) == dir_state(source)
