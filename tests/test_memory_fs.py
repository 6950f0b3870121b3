"""A repository on fsspec's memory:// filesystem behaves like a local one."""

from __future__ import annotations

import os
import uuid

import fsspec
import pytest
from helpers import SMALL, dir_state, rand_bytes, write

from objstore import ABSENT, Repository
from objstore.errors import NotARepository, RefConflict, RepositoryExists


@pytest.fixture
def mem_url():
    url = f"memory://objstore-test-{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    root = url[len("memory://") :]
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    write(d / "big.bin", rand_bytes(41, 30_000))
    write(d / "small.txt", b"small")
    write(d / "run.sh", b"#!/bin/sh\n", executable=True)
    write(d / "naïve-日本.txt", b"unicode")
    (d / "empty").mkdir()
    os.symlink("small.txt", d / "link")
    return d


def test_memory_repository_round_trip(mem_url, src, tmp_path):
    repo = Repository.init(mem_url, chunking=SMALL)
    assert repo.location == mem_url
    tree = repo.snapshot(src)
    c1 = repo.commit(tree, message="first", metadata={"epoch": 1})
    repo.refs.set("main", c1, expect=ABSENT)
    with pytest.raises(RefConflict):
        repo.refs.set("main", c1, expect=ABSENT)

    # A second snapshot of unchanged data writes no new pack.
    fs = fsspec.filesystem("memory")
    root = mem_url[len("memory://") :]
    packs = sorted(fs.ls(f"{root}/packs", detail=False))
    assert repo.snapshot(src) == tree
    assert sorted(fs.ls(f"{root}/packs", detail=False)) == packs

    write(src / "small.txt", b"changed")
    t2 = repo.snapshot(src)
    c2 = repo.commit(t2, [c1], message="second")
    repo.refs.set("main", c2, expect=c1)
    repo.close()

    again = Repository.open(mem_url)
    assert again.config.chunking == SMALL
    assert again.refs.get("main") == c2
    assert [c.message for _, c in again.log("main")] == ["second", "first"]
    assert [(ch.status, ch.path) for ch in again.diff(c1, c2)] == [("modified", "small.txt")]
    assert again.read_file("main", "big.bin") == rand_bytes(41, 30_000)
    with again.open_file(c1[:10], "big.bin") as f:
        f.seek(12_345)
        assert f.read(1000) == rand_bytes(41, 30_000)[12_345:13_345]
    assert again.read_file(c1, "small.txt") == b"small"
    assert [e.new for e in again.refs.history("main")] == [c1, c2]

    out = tmp_path / "out"
    again.checkout("main", out)
    assert dir_state(out) == dir_state(src)
    s = again.stats()
    assert s.commits == 2 and s.refs == 1 and s.objects > 0 and s.stored_bytes > 30_000
    assert s.files_on_disk == len(fs.find(root))


def test_memory_repository_errors(mem_url):
    with pytest.raises(NotARepository):
        Repository.open(mem_url)
    Repository.init(mem_url)
    with pytest.raises(RepositoryExists):
        Repository.init(mem_url)


def test_memory_repository_writes_no_local_files_outside_tmp(mem_url, src, tmp_path):
    """Its stat cache goes under XDG_CACHE_HOME (pointed at a tmp dir by conftest)."""
    cache_home = os.environ["XDG_CACHE_HOME"]
    assert cache_home.startswith(str(tmp_path.parent))
    repo = Repository.init(mem_url, chunking=SMALL)
    repo.snapshot(src)
    assert repo.cache_dir.startswith(cache_home)


def test_threads_racing_for_a_ref_on_memory(mem_url):
    """Create-only compare-and-set from 8 threads: one winner, the rest RefConflict, nothing else."""
    import threading

    from objstore.errors import RefConflict

    repo = Repository.init(mem_url)
    targets = [repo.store_bytes(b"%d" % i) for i in range(8)]
    for trial in range(10):
        name = f"race-{trial}"
        barrier = threading.Barrier(8)
        outcomes: list[object] = []

        def worker(i: int, name: str = name, barrier: threading.Barrier = barrier, outcomes: list = outcomes) -> None:
            barrier.wait()
            try:
                repo.refs.set(name, targets[i], expect=ABSENT)
                outcomes.append("won")
            except RefConflict:
                outcomes.append("conflict")
            except Exception as exc:
                outcomes.append(repr(exc))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict"] * 7 + ["won"], outcomes
        assert len(repo.refs.history(name)) == 1
