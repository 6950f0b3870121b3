"""Push, fetch and clone against real backends: file://, memory://, S3 (moto), sftp (sshd)."""

from __future__ import annotations

import contextlib
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import Target, dir_state, make_sample

from objstore import Repository
from objstore.codec import GROUPED
from objstore.errors import CorruptObject, PushRejected
from objstore.remote import Remote
from objstore.storage import Storage

# A deadlocked transfer must fail its test quickly, not stall the suite.
pytestmark = pytest.mark.timeout(60)
SFTP = pytest.param("sftp", marks=pytest.mark.timeout(20))
KINDS = ["file", "memory", "s3", SFTP, "server"]


def _commit_sample(repo: Repository, src: Path, message: str, parents: list[str] | None = None) -> str:
    tree = repo.snapshot(src)
    return repo.commit(tree, parents=parents or [], message=message)


@pytest.mark.parametrize("target", KINDS, indirect=True)
def test_push_clone_roundtrip(target: Target, tmp_path: Path) -> None:
    src = make_sample(tmp_path / "src")
    a = Repository.init(tmp_path / "a")
    c1 = _commit_sample(a, src, "first")
    a.refs.set("main", c1)
    a.refs.set("releases/v1", c1)
    (src / "data/nested/small.bin").write_bytes(b"changed")
    c2 = _commit_sample(a, src, "second", [c1])
    a.refs.set("main", c2)

    pushed = a.push(target.url, create=True, storage_options=target.storage_options)
    assert pushed.objects > 20  # the big file alone is many chunks
    assert pushed.packs >= 1
    assert set(pushed.refs_updated) == {"main", "releases/v1"}
    assert target.packs(".idx") and target.packs(".pack")

    b = Repository.clone(target.url, tmp_path / "b", storage_options=target.storage_options)
    assert b.refs.list() == a.refs.list()
    out = tmp_path / "out"
    b.checkout("main", out)
    assert dir_state(out) == dir_state(src)
    assert dir_state(out)["bin/run.sh"][3] is True  # the exec bit survived
    assert dir_state(out)["empty.txt"][2] == 0
    assert [c for c, _ in b.log("main")] == [c2, c1]
    old = tmp_path / "old"
    b.checkout("releases/v1", old)
    assert (old / "data/nested/small.bin").read_bytes() != b"changed"

    remote = Repository.open(target.url, storage_options=target.storage_options)
    try:
        assert remote.refs.list() == a.refs.list()
    finally:
        remote.close()
    a.close()
    b.close()


@pytest.mark.parametrize("target", KINDS, indirect=True)
def test_noop_push_and_fetch_are_cheap(target: Target, tmp_path: Path) -> None:
    src = make_sample(tmp_path / "src")
    a = Repository.init(tmp_path / "a")
    a.refs.set("main", _commit_sample(a, src, "first"))
    a.push(target.url, create=True, storage_options=target.storage_options)
    packs_before = target.packs()

    again = a.push(target.url, create=True, storage_options=target.storage_options)
    assert again.objects == 0 and again.bytes == 0 and again.packs == 0
    assert again.refs_updated == {} and again.refs_unchanged == ["main"]
    assert again.nothing_to_do
    assert again.requests <= 5, again.requests
    assert target.packs() == packs_before

    b = Repository.clone(target.url, tmp_path / "b", storage_options=target.storage_options)
    fetched = b.fetch(target.url, storage_options=target.storage_options)
    assert fetched.objects == 0 and fetched.refs_updated == {}
    assert fetched.requests <= 5, fetched.requests
    a.close()
    b.close()


@pytest.mark.parametrize("target", ["file", "s3", SFTP, "server"], indirect=True)
def test_fetch_brings_only_new_objects(target: Target, tmp_path: Path) -> None:
    src = make_sample(tmp_path / "src")
    a = Repository.init(tmp_path / "a")
    c1 = _commit_sample(a, src, "first")
    a.refs.set("main", c1)
    a.push(target.url, create=True, storage_options=target.storage_options)
    b = Repository.clone(target.url, tmp_path / "b", storage_options=target.storage_options)

    (src / "README.md").write_bytes(b"# changed\n")
    c2 = _commit_sample(a, src, "second", [c1])
    a.refs.set("main", c2)
    pushed = a.push(target.url, create=True, storage_options=target.storage_options)
    assert 0 < pushed.objects <= 4  # one blob, the root tree, the commit

    fetched = b.fetch(target.url, storage_options=target.storage_options)
    assert 0 < fetched.objects <= 4, fetched.objects
    assert fetched.refs_updated == {"main": (c1, c2)}
    assert b.read_file("main", "README.md") == b"# changed\n"
    assert b.read_file("main", "data/big.bin") == (src / "data/big.bin").read_bytes()
    a.close()
    b.close()


def _pushed_and_cloned(target: Target, tmp_path: Path, ref: str) -> tuple[Path, Repository, str, Repository]:
    """A sample committed in ``a`` under ``ref``, pushed to the target, and ``b`` cloned from it."""
    src = make_sample(tmp_path / "src")
    a = Repository.init(tmp_path / "a")
    c1 = _commit_sample(a, src, "first")
    a.refs.set(ref, c1)
    a.push(target.url, create=True, storage_options=target.storage_options)
    return src, a, c1, Repository.clone(target.url, tmp_path / "b", storage_options=target.storage_options)


@pytest.mark.parametrize("target", ["file", "s3", SFTP], indirect=True)
def test_fetch_finds_objects_pushed_after_the_remote_was_opened(target: Target, tmp_path: Path) -> None:
    # Another writer pushes a new pack and moves the ref between our listing
    # of the remote's packs and our read of its refs (the four-pushers race).
    src, a, c1, b = _pushed_and_cloned(target, tmp_path, "shared")
    remote = Remote(b, target.url, target.storage_options)  # lists the packs now
    try:
        (src / "late.txt").write_text("pushed while the fetcher had the remote open\n")
        c2 = _commit_sample(a, src, "second", [c1])
        a.refs.set("shared", c2)
        assert a.push(target.url, storage_options=target.storage_options).packs == 1
        fetched = remote.fetch(["shared"])
    finally:
        remote.close()
    assert fetched.refs_updated == {"shared": (c1, c2)}
    assert b.read_file("shared", "late.txt") == b"pushed while the fetcher had the remote open\n"
    a.close()
    b.close()


@pytest.mark.parametrize("target", ["file", "s3", SFTP], indirect=True)
def test_fetch_reads_objects_whose_pack_a_concurrent_repack_replaced(target: Target, tmp_path: Path) -> None:
    src, a, c1, b = _pushed_and_cloned(target, tmp_path, "main")
    (src / "late.txt").write_text("in the second pack\n")
    c2 = _commit_sample(a, src, "second", [c1])
    a.refs.set("main", c2)
    a.push(target.url, storage_options=target.storage_options)
    packs_before = target.packs(".pack")

    remote = Remote(b, target.url, target.storage_options)  # lists both packs now
    try:
        with Repository.open(target.url, storage_options=target.storage_options) as maintainer:
            assert maintainer.repack().packs_merged == 2
        assert not set(target.packs(".pack")) & set(packs_before)
        fetched = remote.fetch(["main"])
    finally:
        remote.close()
    assert fetched.refs_updated == {"main": (c1, c2)}
    assert b.read_file("main", "late.txt") == b"in the second pack\n"
    assert b.read_file("main", "data/big.bin") == (src / "data/big.bin").read_bytes()
    a.close()
    b.close()


@pytest.mark.parametrize("target", ["file", "s3", SFTP, "server"], indirect=True)
def test_shallow_fetch_then_deepen(target: Target, tmp_path: Path) -> None:
    a = Repository.init(tmp_path / "a")
    src = tmp_path / "src"
    src.mkdir()
    commits: list[str] = []
    for i in range(3):
        (src / "step.txt").write_text(f"step {i}\n")
        (src / f"file{i}.bin").write_bytes(random.Random(i).randbytes(2048))
        commits.append(_commit_sample(a, src, f"c{i}", commits[-1:]))
    a.refs.set("main", commits[-1])
    a.push(target.url, create=True, storage_options=target.storage_options)

    c = Repository.init(tmp_path / "c")
    shallow = c.fetch(target.url, depth=1, storage_options=target.storage_options)
    assert shallow.refs_updated == {"main": (None, commits[-1])}
    assert [cid for cid, _ in c.log("main")] == [commits[-1]]  # history stops
    assert c.is_shallow(commits[-1])
    assert not c.odb.has(commits[0])
    out = tmp_path / "out"
    c.checkout("main", out)
    assert dir_state(out) == dir_state(src)

    full = c.fetch(target.url, storage_options=target.storage_options)
    assert full.objects > 0
    assert [cid for cid, _ in c.log("main")] == list(reversed(commits))
    assert not c.is_shallow(commits[-1])
    assert c.shallow_commits() == []
    old = tmp_path / "old"
    c.checkout(commits[0], old)
    assert (old / "step.txt").read_text() == "step 0\n"
    a.close()
    c.close()


@pytest.mark.parametrize("target", KINDS, indirect=True)
def test_lost_race_is_rejected_and_force_overwrites(target: Target, tmp_path: Path) -> None:
    a = Repository.init(tmp_path / "a")
    base = a.commit(_tree(a, b"base"), message="base")
    a.refs.set("main", base)
    a.push(target.url, create=True, storage_options=target.storage_options)
    b = Repository.clone(target.url, tmp_path / "b", storage_options=target.storage_options)

    ours = a.commit(_tree(a, b"from a"), parents=[base], message="a")
    a.refs.set("main", ours)
    assert a.push(target.url, create=True, storage_options=target.storage_options).refs_updated == {"main": (base, ours)}

    theirs = b.commit(_tree(b, b"from b"), parents=[base], message="b")
    b.refs.set("main", theirs)
    with pytest.raises(PushRejected) as info:
        b.push(target.url, create=True, storage_options=target.storage_options)
    assert "main" in info.value.refs
    assert "'main'" in str(info.value)
    assert info.value.refs["main"] == (ours, theirs)

    def remote_main() -> str:
        r = Repository.open(target.url, storage_options=target.storage_options)
        try:
            return r.refs.get("main")
        finally:
            r.close()

    assert remote_main() == ours

    forced = b.push(target.url, create=True, force=True, storage_options=target.storage_options)
    assert forced.refs_updated == {"main": (ours, theirs)}
    assert remote_main() == theirs

    r = Repository.open(target.url, storage_options=target.storage_options)
    try:
        history = r.refs.history("main")
    finally:
        r.close()
    assert [e.new for e in history] == [base, ours, theirs]
    assert [e.seq for e in history] == [1, 2, 3]
    a.close()
    b.close()


def _tree(repo: Repository, data: bytes) -> str:
    from objstore import TreeEntry

    blob = repo.store_bytes(data)
    return repo.make_tree([TreeEntry("f.txt", "file", blob, len(data))])


@pytest.mark.parametrize("target", KINDS, indirect=True)
def test_tampered_remote_object_is_refused(target: Target, tmp_path: Path) -> None:
    src = make_sample(tmp_path / "src")
    a = Repository.init(tmp_path / "a")
    c1 = _commit_sample(a, src, "first")
    a.refs.set("main", c1)
    a.push(target.url, create=True, storage_options=target.storage_options)
    victim = a.entry("main", "data/nested/small.bin").id
    assert victim is not None

    remote = Repository.open(target.url, storage_options=target.storage_options)
    try:
        loc = remote.odb.locate(bytes.fromhex(victim))
    finally:
        remote.close()
    assert loc is not None
    pack, entry = loc
    target.flip_byte(f"packs/{pack}.pack", entry.offset + entry.stored_length // 2)
    damaged = {victim}
    if entry.codec == GROUPED:  # the flip fails the victim's whole group: the first member read is named
        with Repository.open(target.url, storage_options=target.storage_options) as remote:
            idx = remote.odb.index(pack)
            damaged = {o.hex() for o, e in idx.items() if (e.offset, e.codec) == (entry.offset, GROUPED)}

    fresh = Repository.init(tmp_path / "fresh")
    with pytest.raises(CorruptObject) as info:
        fresh.fetch(target.url, storage_options=target.storage_options)
    assert info.value.object_id in damaged
    assert info.value.object_id in str(info.value)
    assert fresh.refs.list() == {}
    packs_dir = tmp_path / "fresh" / "packs"
    assert not packs_dir.exists() or not [p for p in packs_dir.iterdir() if p.suffix in (".pack", ".idx")]
    assert not fresh.odb.has(c1)

    with pytest.raises(CorruptObject):
        Repository.clone(target.url, tmp_path / "clone", storage_options=target.storage_options)
    a.close()
    fresh.close()


def test_many_small_files_to_s3_take_few_requests_and_packs(s3_target: Target, tmp_path: Path) -> None:
    """2,000 files of 1-4 KiB: the request count follows packs and refs, not files."""
    rng = random.Random(7)
    src = tmp_path / "many"
    for i in range(2000):
        p = src / f"d{i % 20:02d}" / f"f{i:04d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.randint(1024, 4096)))
    a = Repository.init(tmp_path / "a")
    c = _commit_sample(a, src, "many")
    a.refs.set("main", c)

    pushed = a.push(s3_target.url, create=True, storage_options=s3_target.storage_options)
    assert pushed.objects >= 2000 + 20 + 1 + 1
    assert pushed.requests <= 12, pushed.requests
    assert 1 <= len(s3_target.packs()) <= 4, s3_target.packs()
    assert len(s3_target.packs(".idx")) == len(s3_target.packs())

    again = a.push(s3_target.url, create=True, storage_options=s3_target.storage_options)
    assert again.objects == 0 and again.requests <= 5

    b = Repository.clone(s3_target.url, tmp_path / "b", storage_options=s3_target.storage_options)
    assert b.refs.get("main") == c
    assert b.read_file("main", "d07/f1987.bin") == (src / "d07" / "f1987.bin").read_bytes()
    a.close()
    b.close()


def _children_present(repo: Repository) -> None:
    """Every object the repository holds has all its children there too."""
    from objstore.graph import children as _children

    odb = repo.odb
    for oid_hex in odb.iter_ids():
        oid = odb.raw_id(oid_hex)
        for child in _children(odb, oid):
            assert odb.has_raw(child), f"{oid_hex} is on the remote without its child {child.hex()}"


@pytest.mark.parametrize("target", ["file", "memory", "s3"], indirect=True)
def test_push_of_many_packs_uploads_them_all_in_order(target: Target, tmp_path: Path) -> None:
    """Packs are built while the previous one uploads; all land, leaves first."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    for i in range(3):
        (src / f"part{i}.bin").write_bytes(rng.randbytes(2 * 1024 * 1024 + i))
    a = Repository.init(tmp_path / "a", pack_size=1 << 20)
    c1 = _commit_sample(a, src, "many packs")
    a.refs.set("main", c1)
    pushed = a.push(target.url, create=True, storage_options=target.storage_options)
    assert pushed.packs >= 5
    assert len(target.packs(".pack")) == len(target.packs(".idx")) == pushed.packs
    remote = Repository.open(target.url, storage_options=target.storage_options)
    try:
        assert remote.fsck(full=True).ok
        _children_present(remote)
    finally:
        remote.close()
    b = Repository.clone(target.url, tmp_path / "b", storage_options=target.storage_options)
    b.checkout("main", tmp_path / "out")
    assert dir_state(tmp_path / "out") == dir_state(src)
    assert a.push(target.url, create=True, storage_options=target.storage_options).objects == 0
    a.close()
    b.close()


def test_push_that_fails_mid_upload_leaves_a_consistent_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload error stops the push: no ref moves, what landed is complete below, nothing is left in temp."""
    from objstore.storage import FsspecStorage

    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(random.Random(6).randbytes(6 * 1024 * 1024))
    a = Repository.init(tmp_path / "a", pack_size=1 << 20)
    a.refs.set("main", _commit_sample(a, src, "big"))
    url = f"memory://push-fail-{random.Random().getrandbits(32):08x}"

    real_publish = FsspecStorage.publish_file
    calls = {"n": 0}

    def flaky_publish(self: FsspecStorage, local_path: str, path: str) -> None:
        if path.endswith(".pack"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device")
        real_publish(self, local_path, path)

    stage = tmp_path / "stage"  # where packs for the remote are staged before upload
    stage.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(stage))
    monkeypatch.setattr(FsspecStorage, "publish_file", flaky_publish)
    with pytest.raises(Exception, match="No space left"):
        a.push(url, create=True)
    monkeypatch.setattr(FsspecStorage, "publish_file", real_publish)
    remote = Repository.open(url)
    try:
        assert remote.refs.list() == {}  # refs move only after every pack landed
        assert remote.fsck(full=True).ok
        _children_present(remote)
    finally:
        remote.close()
    assert calls["n"] == 3  # two packs landed before the failure
    assert [p.name for p in stage.iterdir() if ".pack" in p.name] == []
    done = a.push(url, create=True)  # a retry sends the rest
    assert set(done.refs_updated) == {"main"}
    b = Repository.clone(url, tmp_path / "b")
    b.checkout("main", tmp_path / "out")
    assert (tmp_path / "out" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    a.close()
    b.close()


@contextlib.contextmanager
def _stale_listing_comes_back(s3_server: Any) -> Iterator[Storage]:
    """An S3 storage whose folder ``packs`` held ``a.idx`` when s3fs cached its listing;
    another writer has added ``b.idx`` (2 bytes) since, and every invalidation of the
    cache is followed at once by that stale listing landing again (a listing another
    thread sent before the write, answered after)."""
    import s3fs

    from objstore.storage import open_storage

    bucket = s3_server.new_bucket()
    storage = open_storage(f"s3://{bucket}/store", s3_server.storage_options())
    storage.write_atomic("packs/a.idx", b"a")
    assert storage.listdir("packs") == ["a.idx"]  # the cache now holds this listing
    fs = storage.fs  # type: ignore[attr-defined]
    assert isinstance(fs, s3fs.S3FileSystem)
    stale = fs.dircache[f"{bucket}/store/packs"]
    s3_server.client().put_object(Bucket=bucket, Key="store/packs/b.idx", Body=b"bb")
    real = fs.invalidate_cache

    def invalidate_then_refilled(path: str | None = None) -> None:
        real(path)
        fs.dircache[f"{bucket}/store/packs"] = stale  # the racing listing lands just now

    fs.invalidate_cache = invalidate_then_refilled
    fs.dircache[f"{bucket}/store/packs"] = stale
    try:
        yield storage
    finally:
        fs.invalidate_cache = real


def test_s3_listing_sees_a_new_file_even_if_another_thread_refilled_the_cache(s3_server: Any) -> None:
    """A listing sent by another thread before a pack was written, answered after, refills
    s3fs's listings cache between our invalidation and our listing; a server that then trusts
    the cache misses the pack it was just sent ("object ... is not stored")."""
    with _stale_listing_comes_back(s3_server) as storage:
        assert sorted(storage.listdir("packs")) == ["a.idx", "b.idx"]


def test_s3_exists_and_size_see_a_new_file_even_if_another_thread_refilled_the_cache(s3_server: Any) -> None:
    """As for listings: ``exists`` and ``size`` of a file another writer just added are
    answered by the store, not by a stale listing of its folder that s3fs cached again."""
    with _stale_listing_comes_back(s3_server) as storage:
        assert storage.exists("packs/b.idx")
        assert storage.size("packs/b.idx") == 2
        assert not storage.exists("packs/c.idx")
