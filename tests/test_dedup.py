"""Deduplication: identical content is stored once, across paths and snapshots."""

from __future__ import annotations

import os
import shutil

from helpers import SMALL, listing, pack_files, rand_bytes, write

from objstore import Repository


def test_same_file_in_two_dirs_is_stored_once(tmp_path):
    repo = Repository.init(tmp_path / "repo", chunking=SMALL)
    big = rand_bytes(1, 100_000)
    small = rand_bytes(2, 500)
    d = tmp_path / "data"
    for sub in ("a", "b", "c/deeper"):
        write(d / sub / "big.bin", big)
        write(d / sub / "small.bin", small)
    t = repo.snapshot(d)
    s = repo.stats()
    # Three copies of ~100 KB on disk, about one copy (plus small trees/lists) stored.
    assert s.raw_bytes < len(big) * 1.1
    assert s.stored_bytes < len(big) * 1.15
    ids = {e.id for p, e in repo.walk(t) if p.endswith("big.bin")}
    assert len(ids) == 1
    # Identical subtrees share one tree id.
    assert repo.entry(t, "a").id == repo.entry(t, "b").id


def test_second_snapshot_of_unchanged_tree_writes_nothing(tmp_path):
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=SMALL)
    d = tmp_path / "data"
    write(d / "big.bin", rand_bytes(3, 60_000))
    write(d / "x" / "y.txt", b"y" * 100)
    (d / "empty-dir").mkdir()
    t1 = repo.snapshot(d)
    packs = pack_files(path)
    s1 = repo.stats()
    store1 = {k: v for k, v in listing(path).items() if not k.startswith("cache")}

    assert repo.snapshot(d) == t1
    assert pack_files(path) == packs
    assert {k: v for k, v in listing(path).items() if not k.startswith("cache")} == store1

    # A copy of the tree elsewhere (new paths, new inodes: no stat cache help) dedups too.
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    assert repo.snapshot(copy) == t1
    assert pack_files(path) == packs
    s2 = repo.stats()
    assert (s2.objects, s2.stored_bytes, s2.raw_bytes, s2.packs) == (
        s1.objects,
        s1.stored_bytes,
        s1.raw_bytes,
        s1.packs,
    )

    # A fresh process (new Repository object) sees the same.
    repo.close()
    again = Repository.open(path)
    assert again.snapshot(copy) == t1
    assert pack_files(path) == packs


def test_identical_commits_dedup(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    write(tmp_path / "d" / "f", b"x")
    t = repo.snapshot(tmp_path / "d")
    c1 = repo.commit(t, message="same", metadata={"a": 1}, timestamp=10.0)
    objects = repo.stats().objects
    assert repo.commit(t, message="same", metadata={"a": 1}, timestamp=10.0) == c1
    assert repo.stats().objects == objects


def test_modified_middle_of_large_file_stores_little(tmp_path):
    repo = Repository.init(tmp_path / "repo", chunking=SMALL)
    size = 1_000_000
    data = bytearray(rand_bytes(4, size))
    f = write(tmp_path / "d" / "model.bin", bytes(data))
    t1 = repo.snapshot(tmp_path / "d")
    s1 = repo.stats()
    assert s1.stored_bytes > size  # incompressible: about one copy stored

    data[size // 2 : size // 2 + 100] = rand_bytes(5, 100)
    write(f, bytes(data))
    t2 = repo.snapshot(tmp_path / "d")
    assert t2 != t1
    s2 = repo.stats()
    assert s2.stored_bytes - s1.stored_bytes < 0.05 * size
    assert s2.raw_bytes - s1.raw_bytes < 0.05 * size
    assert repo.read_file(t2, "model.bin") == bytes(data)
    assert repo.read_file(t1, "model.bin") != bytes(data)

    # Appending to the end also reuses everything before it.
    with open(f, "ab") as fh:
        fh.write(rand_bytes(6, 5000))
    repo.snapshot(tmp_path / "d")
    assert repo.stats().stored_bytes - s2.stored_bytes < 0.05 * size


def test_stat_cache_never_hides_a_same_size_rewrite(tmp_path):
    repo = Repository.init(tmp_path / "repo", chunking=SMALL)
    f = write(tmp_path / "d" / "f.bin", rand_bytes(8, 3000))
    old = os.stat(f)
    # Make the file look old enough for the stat cache to trust it.
    os.utime(f, ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))
    t1 = repo.snapshot(tmp_path / "d")
    st = os.stat(f)
    new = rand_bytes(9, 3000)
    write(f, new)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime differs
    t2 = repo.snapshot(tmp_path / "d")
    assert t2 != t1
    assert repo.read_file(t2, "f.bin") == new
