"""Repository.batch(): writes publish together; refs never point at unpublished objects."""

from __future__ import annotations

import pytest
from helpers import SMALL, pack_files, rand_bytes, write

from objstore import Repository


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    write(d / "a.bin", rand_bytes(1, 10_000))
    write(d / "b.txt", b"b")
    return d


def test_batch_publishes_one_pack_at_the_end(tmp_path, src):
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=SMALL)
    with repo.batch():
        t = repo.snapshot(src)
        c = repo.commit(t, message="in batch")
        assert pack_files(path) == set()  # nothing published yet
    assert len(pack_files(path)) == 2  # one pack + its index
    fresh = Repository.open(path)
    assert fresh.get_commit(c).tree == t
    assert fresh.read_file(c, "a.bin") == rand_bytes(1, 10_000)


def test_ref_set_inside_batch_makes_its_target_durable(tmp_path, src):
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=SMALL)
    with repo.batch():
        c = repo.commit(repo.snapshot(src))
        repo.refs.set("main", c)
        # Another process sees a ref whose whole graph is readable, mid-batch.
        other = Repository.open(path)
        assert other.read_file("main", "b.txt") == b"b"


def test_failed_batch_publishes_nothing(tmp_path, src):
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=SMALL)
    with pytest.raises(RuntimeError), repo.batch():
        t = repo.snapshot(src)
        repo.commit(t)
        raise RuntimeError("boom")
    assert pack_files(path) == set()
    assert not Repository.open(path).odb.has(t)
    # The repository still works, and the same snapshot now stores everything.
    assert repo.snapshot(src) == t
    assert Repository.open(path).read_file(t, "a.bin") == rand_bytes(1, 10_000)
