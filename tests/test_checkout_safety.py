"""Checkout never writes outside its destination, whatever symlinks the tree or the destination hold."""

from __future__ import annotations

import os

import pytest
from helpers import listing, write

from objstore import TreeEntry
from objstore.errors import PathNotFound, UnsafePath


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "elsewhere"
    write(d / "victim.txt", b"precious")
    write(d / "sub" / "file.txt", b"also precious")
    return d


def _dir_tree(repo, files: dict[str, bytes]):
    ents = [TreeEntry(n, "file", repo.store_bytes(data), len(data)) for n, data in files.items()]
    sub = repo.make_tree(ents)
    return repo.make_tree([TreeEntry("a", "dir", sub, sum(map(len, files.values())))])


def test_tree_symlink_then_tree_directory_with_same_name(repo, tmp_path, outside):
    before = listing(outside)
    dest = tmp_path / "dest"
    link_tree = repo.make_tree([TreeEntry("a", "symlink", target=str(outside))])
    repo.checkout(link_tree, dest)
    assert os.readlink(dest / "a") == str(outside)  # stored verbatim, not followed

    # The next tree has a real directory "a" with files named like those outside.
    dir_tree = _dir_tree(repo, {"victim.txt": b"overwritten?", "new.txt": b"new"})
    repo.checkout(dir_tree, dest)
    assert listing(outside) == before
    assert not os.path.islink(dest / "a") and (dest / "a").is_dir()
    assert (dest / "a" / "victim.txt").read_bytes() == b"overwritten?"
    assert (dest / "a" / "new.txt").read_bytes() == b"new"

    # Same with path selection.
    dest2 = tmp_path / "dest2"
    repo.checkout(link_tree, dest2)
    repo.checkout(dir_tree, dest2, paths=["a/victim.txt"])
    assert listing(outside) == before
    assert not os.path.islink(dest2 / "a")
    assert (dest2 / "a" / "victim.txt").read_bytes() == b"overwritten?"


def test_preexisting_symlinked_directory_in_dest_is_replaced(repo, tmp_path, outside):
    before = listing(outside)
    src = tmp_path / "src"
    write(src / "sub" / "file.txt", b"from the tree")
    write(src / "sub" / "deeper" / "x.txt", b"x")
    tree = repo.snapshot(src)
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside / "sub", dest / "sub")
    repo.checkout(tree, dest)
    assert listing(outside) == before
    assert not os.path.islink(dest / "sub")
    assert (dest / "sub" / "file.txt").read_bytes() == b"from the tree"
    assert (dest / "sub" / "deeper" / "x.txt").read_bytes() == b"x"


def test_preexisting_symlink_where_tree_has_a_file_is_replaced_not_followed(repo, tmp_path, outside):
    before = listing(outside)
    src = tmp_path / "src"
    write(src / "victim.txt", b"precious")  # same bytes: a skip through the link would be wrong too
    write(src / "other.txt", b"other")
    tree = repo.snapshot(src)
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside / "victim.txt", dest / "victim.txt")
    os.symlink(outside / "victim.txt", dest / "other.txt")
    r = repo.checkout(tree, dest)
    assert listing(outside) == before
    assert not os.path.islink(dest / "victim.txt") and not os.path.islink(dest / "other.txt")
    assert (dest / "victim.txt").read_bytes() == b"precious"
    assert (dest / "other.txt").read_bytes() == b"other"
    assert r.skipped == 0


def test_tree_symlink_over_existing_symlink_pointing_outside(repo, tmp_path, outside):
    before = listing(outside)
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "lnk")
    tree = repo.make_tree([TreeEntry("lnk", "symlink", target="relative/target")])
    repo.checkout(tree, dest)
    assert os.readlink(dest / "lnk") == "relative/target"
    assert listing(outside) == before


def test_symlinked_parent_inside_dest_is_not_traversed(repo, tmp_path, outside):
    """dest/a -> dest/b where b is a real dir in the tree: a file under "a" must land in a real "a"."""
    before = listing(outside)
    dest = tmp_path / "dest"
    (dest / "b").mkdir(parents=True)
    os.symlink(outside, dest / "a")
    tree = _dir_tree(repo, {"victim.txt": b"nope"})
    repo.checkout(tree, dest, skip_existing=False)
    assert listing(outside) == before
    assert (dest / "a" / "victim.txt").read_bytes() == b"nope"


@pytest.mark.parametrize(
    ("bad", "error"),
    [("../escape", UnsafePath), ("a/../../escape", UnsafePath), ("/escape", PathNotFound)],
)
def test_paths_argument_cannot_escape(repo, tmp_path, bad, error):
    tree = repo.make_tree([TreeEntry("a", "symlink", target="x")])
    with pytest.raises(error):
        repo.checkout(tree, tmp_path / "dest", paths=[bad])
    assert not (tmp_path / "escape").exists()
    assert not os.path.lexists("/escape")
