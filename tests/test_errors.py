"""Bad input gets a typed error naming the culprit, and leaves the store untouched."""

from __future__ import annotations

import os

import pytest
from helpers import SMALL, listing, write

from objstore import Repository
from objstore.config import FORMAT_VERSION
from objstore.errors import (
    NotARepository,
    ObjectNotFound,
    ObjstoreError,
    PathNotFound,
    RefNotFound,
    RepositoryExists,
    UnsupportedFormat,
    WrongObjectType,
)


@pytest.fixture
def populated(tmp_path):
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=SMALL)
    write(tmp_path / "src" / "f.txt", b"file")
    tree = repo.snapshot(tmp_path / "src")
    commit = repo.commit(tree, message="c")
    repo.refs.set("main", commit)
    blob = repo.entry(tree, "f.txt").id
    yield repo, path, tree, commit, blob
    repo.close()


class Unchanged:
    """Asserts that the files of a store are byte-for-byte the same after a block."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.before = listing(self.path)

    def __exit__(self, *exc):
        assert listing(self.path) == self.before
        return False


def test_snapshot_of_missing_path(populated, tmp_path):
    repo, path, *_ = populated
    missing = tmp_path / "does" / "not" / "exist"
    with Unchanged(path), pytest.raises(PathNotFound) as info:
        repo.snapshot(missing)
    assert info.value.path == str(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)  # generic handlers keep working


def test_snapshot_of_path_below_a_file(populated, tmp_path):
    repo, path, *_ = populated
    f = write(tmp_path / "plain-file", b"x")
    with Unchanged(path), pytest.raises(PathNotFound) as info:
        repo.snapshot(f / "child")
    assert str(f / "child") in str(info.value)


def test_checkout_onto_an_existing_file(populated, tmp_path):
    """errors.py promises every error a caller meets derives from ObjstoreError."""
    repo, _, tree, *_ = populated
    f = write(tmp_path / "plain-file", b"keep me")
    with pytest.raises(ObjstoreError):
        repo.checkout(tree, f)
    with pytest.raises(ObjstoreError):
        repo.checkout(tree, f / "below")
    assert f.read_bytes() == b"keep me"


def test_snapshot_of_dangling_symlink_root_is_a_link_not_an_error(populated, tmp_path):
    repo, *_ = populated
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    (entry,) = repo.ls(repo.snapshot(tmp_path / "dangling"))
    assert entry.kind == "symlink"


def test_unknown_ref(populated, tmp_path):
    repo, path, *_ = populated
    with Unchanged(path):
        for call in (
            lambda: repo.refs.get("nope"),
            lambda: repo.resolve("nope"),
            lambda: repo.get_commit("nope"),
            lambda: repo.refs.history("nope"),
            lambda: repo.refs.delete("nope"),
            lambda: repo.checkout("nope", tmp_path / "out"),
            lambda: list(repo.log("nope")),
        ):
            with pytest.raises(RefNotFound) as info:
                call()
            assert "nope" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_open_non_repository(tmp_path):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "plain" / "some-file", b"x")
    write(tmp_path / "afile", b"x")
    for where in ["empty", "plain", "missing", "afile"]:
        before = listing(tmp_path)
        with pytest.raises(NotARepository) as info:
            Repository.open(tmp_path / where)
        assert str(tmp_path / where) in str(info.value)
        assert listing(tmp_path) == before
    assert not (tmp_path / "missing").exists()


def test_init_twice(populated):
    _, path, *_ = populated
    config = (path / "config").read_bytes()
    with Unchanged(path), pytest.raises(RepositoryExists) as info:
        Repository.init(path)
    assert str(path) in str(info.value)
    with Unchanged(path), pytest.raises(RepositoryExists):
        Repository.init(path, hash="blake2b-256")
    assert (path / "config").read_bytes() == config
    assert Repository.open(path).config.hash == "xxh3-128"


def test_init_on_a_file(tmp_path):
    f = write(tmp_path / "afile", b"data")
    with pytest.raises(NotARepository):
        Repository.init(f)
    assert f.read_bytes() == b"data"


def test_unknown_hash_algorithm(tmp_path):
    with pytest.raises(ValueError) as info:
        Repository.init(tmp_path / "r", hash="md5")
    assert "md5" in str(info.value) and "blake2b-256" in str(info.value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kwargs", [dict(compression_level=99), dict(pack_size=1000)])
def test_invalid_init_options(tmp_path, kwargs):
    with pytest.raises(ValueError):
        Repository.init(tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()


def test_newer_format_version_is_refused(populated):
    _, path, *_ = populated
    cfg = (path / "config").read_text().replace(f'"version": {FORMAT_VERSION}', f'"version": {FORMAT_VERSION + 1}')
    (path / "config").write_text(cfg)
    with pytest.raises(UnsupportedFormat):
        Repository.open(path)


def test_commit_with_non_tree(populated):
    repo, path, tree, commit, blob = populated
    with Unchanged(path):
        for not_a_tree in (blob, commit):
            with pytest.raises(WrongObjectType) as info:
                repo.commit(not_a_tree, message="x")
            assert info.value.object_id == not_a_tree
            assert isinstance(info.value, TypeError)
        with pytest.raises(WrongObjectType):
            repo.commit(tree, parents=[blob])
        with pytest.raises(ObjectNotFound):
            repo.commit("ab" * 16)
        with pytest.raises(ObjectNotFound):
            repo.commit(tree, parents=["ab" * 16])


@pytest.mark.parametrize(
    "metadata",
    [
        {"s": {1, 2}},
        {"o": object()},
        {"nested": {"deeper": [1, {"bad": object()}]}},
        {"nan": float("nan")},
        {"inf": [float("-inf")]},
        {"big": 2**64},
        {1: "non-string key"},
        {"nested": {2: "non-string key"}},
        {"fn": len},
    ],
)
def test_commit_metadata_not_storable(populated, metadata):
    repo, path, tree, *_ = populated
    with Unchanged(path), pytest.raises(TypeError):
        repo.commit(tree, metadata=metadata)


def test_errors_are_objstore_errors(populated, tmp_path):
    repo, _, tree, _, blob = populated
    for call in (
        lambda: repo.snapshot(tmp_path / "missing"),
        lambda: repo.read_file(tree, "missing"),
        lambda: repo.refs.get("missing"),
        lambda: repo.get("ab" * 16),
        lambda: Repository.open(tmp_path / "missing"),
        lambda: repo.commit(blob),
    ):
        with pytest.raises(ObjstoreError):
            call()


def test_failed_snapshot_leaves_store_unchanged(populated, tmp_path):
    repo, path, *_ = populated
    src = tmp_path / "bad-src"
    write(src / "a-good-file.bin", os.urandom(5000))
    with open(os.path.join(os.fsencode(src), b"z-bad-\xff"), "wb") as f:
        f.write(b"x")
    before = {k: v for k, v in listing(path).items() if not k.startswith("cache")}
    with pytest.raises(ObjstoreError):
        repo.snapshot(src)
    assert {k: v for k, v in listing(path).items() if not k.startswith("cache")} == before
    assert not os.listdir(path / "tmp")


def test_failed_snapshot_in_another_thread_does_not_lose_data(tmp_path):
    """One Repository shared by two threads: one snapshot keeps failing, the other must still be complete."""
    import random
    import threading

    src = tmp_path / "data"
    rng = random.Random(5)
    for i in range(200):
        write(src / f"f{i:03}.bin", rng.randbytes(20_000))
    repo = Repository.init(tmp_path / "repo")
    stop = threading.Event()

    def keep_failing() -> None:
        while not stop.is_set():
            with pytest.raises(PathNotFound):
                repo.snapshot(tmp_path / "missing")

    t = threading.Thread(target=keep_failing)
    t.start()
    try:
        tree = repo.snapshot(src)
    finally:
        stop.set()
        t.join()
    fresh = Repository.open(tmp_path / "repo")
    for i in range(200):
        assert fresh.read_file(tree, f"f{i:03}.bin") == (src / f"f{i:03}.bin").read_bytes()
