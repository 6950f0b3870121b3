"""A first snapshot of many files is read by this process and a forked child side by side.

The child reads, hashes and compresses the small files of the directories at
the end of the walk and streams back their objects, then their results;
whatever it could not do, and everything after it died, is walked here, so the
tree, the stored objects and the stat cache are those of a one-process walk
whatever happens to the child.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import SMALL, age, dir_state, rand_bytes, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objstore import FilesUnder, Repository, frames, readchild
from objstore.errors import UnsafePath
from objstore.preload import NO_FORK_ENV
from objstore.snapshot import Snapshotter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reading child is Linux-only")


class Children:
    """Lets a reading child start for any tree; records the children started and the
    directories whose results this process took from them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, share: float, min_split: int = readchild.MIN_SPLIT) -> None:
        from objstore import snapshot

        monkeypatch.setattr(readchild, "MIN_FILES", 1)
        monkeypatch.setattr(readchild, "MIN_SPLIT", min_split)
        monkeypatch.setattr(readchild, "CHILD_SHARE", share)
        monkeypatch.setattr(readchild, "MIN_PARENT_SHARE", 0.0)
        monkeypatch.setattr(readchild, "may_fork", lambda cpus=None: True)
        monkeypatch.setattr(snapshot, "may_fork", lambda cpus=None: True)
        self.pids: list[int] = []
        self.taken: list[str] = []
        real_start = readchild.ReaderChild.start.__func__  # type: ignore[attr-defined]
        real_from_child = Snapshotter._dir_from_child

        def start(cls, *args, **kwargs):
            child = real_start(cls, *args, **kwargs)
            if child is not None:
                self.pids.append(child._pid)
            return child

        def from_child(this, dirpath, *args, **kwargs):
            self.taken.append(dirpath)
            return real_from_child(this, dirpath, *args, **kwargs)

        monkeypatch.setattr(readchild.ReaderChild, "start", classmethod(start))
        monkeypatch.setattr(Snapshotter, "_dir_from_child", from_child)

    def none_left(self) -> None:
        for pid in self.pids:
            with pytest.raises(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaped already


def _mixed(root: Path) -> Path:
    """Directories of small files (empty, executable, shared content), nested ones, a large
    file, a symlink, a file just over the small-file bound, an empty directory."""
    for d in ("a", "a/deep", "b", "c", "c/x", "c/y", "ü"):
        for i in range(9):
            write(root / d / f"f{i}.txt", f"{d} {i} ".encode() * (i * 5), executable=i == 3)
    write(root / "a" / "same.txt", b"the same in two directories")
    write(root / "c" / "y" / "same.txt", b"the same in two directories")
    write(root / "c" / "big.bin", rand_bytes(3, 20_000))
    write(root / "c" / "over.bin", rand_bytes(4, SMALL.small_file + 1))
    os.symlink("f1.txt", root / "c" / "link")
    (root / "b" / "empty").mkdir()
    write(root / "top.txt", b"at the top\n")
    age(root)
    return root


def _one_process(monkeypatch: pytest.MonkeyPatch, store: Path, work) -> tuple[str, dict]:
    with monkeypatch.context() as m:
        m.setenv(NO_FORK_ENV, "1")
        repo = Repository.init(store, chunking=SMALL)
        got = work(repo)
        return got, _cache_of(repo)


def _cache_of(repo: Repository) -> dict:
    """What the stat cache remembers, decoded: {dir: (files table, tree id)}."""
    cache = repo.statcache
    assert cache is not None
    dirs = cache._load()
    return {d: (dict(cache.files(d)), dirs[d][1]) for d in dirs}


@pytest.mark.parametrize("share", [0.5, 1.0])
@pytest.mark.parametrize("min_split", [1, readchild.MIN_SPLIT])
@pytest.mark.parametrize("kind", ["snapshot", "files under"])
def test_the_tree_objects_and_stat_cache_are_those_of_one_process(tmp_path, monkeypatch, share, min_split, kind):
    src = _mixed(tmp_path / "src")

    def work(repo: Repository) -> str:
        return repo.snapshot(src) if kind == "snapshot" else repo.build_tree({"": FilesUnder(src)})

    expected, expected_cache = _one_process(monkeypatch, tmp_path / "alone", work)
    children = Children(monkeypatch, share, min_split)
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    tree = work(repo)
    assert children.pids, "no child was started"
    assert children.taken, "no directory came from the child"
    if share == 1.0:
        assert str(src) in children.taken  # the root's own files too
    assert tree == expected
    repo.refs.set("main", repo.commit(tree, message="with a child"))
    assert repo.fsck().ok
    assert _cache_of(repo) == expected_cache
    assert sorted(p.name for p in (tmp_path / "store" / "packs").iterdir() if p.suffix == ".pack") != []
    out = tmp_path / "out"
    repo.checkout("main", out)
    assert dir_state(out / "a") == dir_state(src / "a")
    assert (out / "c" / "y" / "same.txt").read_bytes() == b"the same in two directories"
    children.none_left()
    # and the stat cache it left answers the next snapshot (in one process) without reading a file
    opened: list[str] = []
    real_open = os.open
    directory = getattr(os, "O_DIRECTORY", 0)

    def counting_open(path, flags, *args, **kwargs):
        if not flags & directory:
            opened.append(path)
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setenv(NO_FORK_ENV, "1")
        m.setattr(os, "open", counting_open)
        assert work(repo) == tree
    assert [p for p in opened if "big" not in str(p) and "over" not in str(p)] == []


names = st.text(alphabet="abcxyz_é.-", min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
trees = st.recursive(
    st.binary(max_size=300) | st.just(b"x" * 5000),
    lambda children: st.dictionaries(names, children, max_size=5),
    max_leaves=25,
).filter(lambda t: isinstance(t, dict))


def _build(root: Path, node: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, child in node.items():
        if isinstance(child, dict):
            _build(root / name, child)
        else:
            (root / name).write_bytes(child)
            if len(child) % 3 == 0:
                os.chmod(root / name, 0o755)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, share=st.sampled_from([0.3, 0.7, 1.0]), min_split=st.sampled_from([1, 2, 1024]))
def test_any_tree_gets_the_ids_of_a_one_process_walk(tmp_path_factory, monkeypatch, tree, share, min_split):
    base = tmp_path_factory.mktemp("any")
    src = base / "src"
    _build(src, tree)
    expected, _ = _one_process(monkeypatch, base / "alone", lambda r: r.snapshot(src))
    with monkeypatch.context() as m:
        children = Children(m, share, min_split)
        repo = Repository.init(base / "store", chunking=SMALL)
        assert repo.snapshot(src) == expected
        children.none_left()


def test_a_flat_directory_is_shared_by_names(tmp_path, monkeypatch):
    """One directory of 5,000 files: the child takes its last names, this process the first."""
    src = tmp_path / "src"
    for i in range(5000):
        write(src / f"f{i:05d}.txt", f"file {i}\n".encode() * (1 + i % 9), executable=i % 101 == 0)
    os.symlink("f00001.txt", src / "link")
    write(src / "zz-big.bin", rand_bytes(5, 20_000))
    (src / "sub").mkdir()
    write(src / "sub" / "inner.txt", b"in a subdirectory")
    age(src)
    expected, expected_cache = _one_process(monkeypatch, tmp_path / "alone", lambda r: r.snapshot(src))
    monkeypatch.setattr(readchild, "may_fork", lambda cpus=None: True)
    from objstore import snapshot

    monkeypatch.setattr(snapshot, "may_fork", lambda cpus=None: True)
    shared: list[int] = []
    real_joined = snapshot._joined
    monkeypatch.setattr(snapshot, "_joined", lambda a, b: shared.append(b[2]) or real_joined(a, b))
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    assert repo.snapshot(src) == expected
    assert len(shared) == 1 and 2000 <= shared[0] <= 3500  # the child's names: about CHILD_SHARE of them
    assert _cache_of(repo) == expected_cache
    assert repo.fsck().ok


def test_a_filesystem_that_miscounts_links_only_moves_work_here(tmp_path, monkeypatch):
    """A directory said to have 2 links is listed without types; if it does hold
    subdirectories (a filesystem that counts links its own way), the snapshot walks them."""
    src = _mixed(tmp_path / "src")
    expected, expected_cache = _one_process(monkeypatch, tmp_path / "alone", lambda r: r.snapshot(src))
    children = Children(monkeypatch, 0.7)
    monkeypatch.setattr(readchild, "_link_count", lambda path, follow=False: 2)
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    assert repo.snapshot(src) == expected
    assert _cache_of(repo) == expected_cache
    assert children.pids
    children.none_left()


def test_the_listing_walk_finds_every_directory_in_the_order_a_snapshot_finishes_them(tmp_path):
    src = _mixed(tmp_path / "src")
    walked = readchild.walk_names(str(src))
    expected = [dirpath for dirpath, _, _ in os.walk(src)]
    assert sorted(p for p, _, _ in walked) == sorted(expected)
    order = [p for p, _, _ in walked]
    assert order[-1] == str(src)
    for path, names, dirs in walked:
        assert names == sorted(os.listdir(path))
        assert dirs == sorted(n for n in names if os.path.isdir(os.path.join(path, n)) and not os.path.islink(os.path.join(path, n)))
        for d in dirs:  # a subdirectory is finished before its parent
            assert order.index(os.path.join(path, d)) < order.index(path)


def _dying_serve(frames_before_death: int, cut: bool):
    """A child's ``_serve`` that dies after sending some frames (the last one cut short if ``cut``)."""
    real_serve = readchild._serve

    def serve(out, *args):
        sent = [0]
        real_send = frames.send

        def send(fd: int, payload: bytes) -> None:
            if sent[0] == frames_before_death:
                if cut:
                    frames.write_all(fd, frames.FRAME.pack(len(payload)) + payload[: len(payload) // 2])
                os._exit(9)
            real_send(fd, payload)
            sent[0] += 1

        frames.send = send  # in the child only: it runs in its own copy of this process
        real_serve(out, *args)

    return serve


@pytest.mark.parametrize("after", [0, 1, 3])
@pytest.mark.parametrize("cut", [False, True])
def test_a_child_that_dies_leaves_its_directories_to_this_process(tmp_path, monkeypatch, after, cut):
    src = _mixed(tmp_path / "src")
    for d in range(12):  # enough directories for a few frames
        for i in range(30):
            write(src / "many" / f"d{d:02d}" / f"f{i:02d}.txt", f"{d}/{i} ".encode() * 40)
    age(src)
    expected, expected_cache = _one_process(monkeypatch, tmp_path / "alone", lambda r: r.snapshot(src))
    monkeypatch.setattr(readchild, "_serve", _dying_serve(after, cut))
    children = Children(monkeypatch, 1.0)
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    tree = repo.snapshot(src)
    assert children.pids
    assert tree == expected
    repo.refs.set("main", repo.commit(tree, message="child died"))
    report = repo.fsck()
    assert report.ok, report
    assert _cache_of(repo) == expected_cache
    children.none_left()


def test_a_name_the_tree_refuses_is_reported_as_without_a_child(tmp_path, monkeypatch):
    src = _mixed(tmp_path / "src")
    write(src / "b" / "back\\slash.txt", b"a name FilesUnder refuses here")
    with pytest.raises(UnsafePath) as alone, monkeypatch.context() as m:
        m.setenv(NO_FORK_ENV, "1")
        Repository.init(tmp_path / "alone", chunking=SMALL).build_tree({"": FilesUnder(src, forbidden="\\")})
    children = Children(monkeypatch, 1.0)
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    with pytest.raises(UnsafePath) as with_child:
        repo.build_tree({"": FilesUnder(src, forbidden="\\")})
    assert str(with_child.value) == str(alone.value)
    assert children.pids
    children.none_left()  # a failing snapshot reaps its child


def test_no_child_with_objstore_no_fork(tmp_path, monkeypatch):
    src = _mixed(tmp_path / "src")
    monkeypatch.setattr(readchild, "MIN_FILES", 1)
    monkeypatch.setattr(readchild, "MIN_PARENT_SHARE", 0.0)
    monkeypatch.setenv(NO_FORK_ENV, "1")
    forks: list[int] = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    Repository.init(tmp_path / "store", chunking=SMALL).snapshot(src)
    assert forks == []


def test_a_big_first_snapshot_forks_a_reading_child_on_its_own(tmp_path, monkeypatch):
    """No knob turned: 60 directories of 100 files start a child where two cores are usable."""
    from objstore import snapshot

    if snapshot.usable_cpus() < 2:
        pytest.skip("one usable core: no child")
    src = tmp_path / "src"
    for d in range(60):
        for i in range(100):
            write(src / f"d{d:02d}" / f"f{i:03d}.txt", f"{d} {i}\n".encode() * 20)
    taken: list[str] = []
    real = Snapshotter._dir_from_child
    monkeypatch.setattr(Snapshotter, "_dir_from_child", lambda this, d, *a: taken.append(d) or real(this, d, *a))
    repo = Repository.init(tmp_path / "store")
    tree = repo.snapshot(src)
    assert 20 <= len(taken) <= 40  # about CHILD_SHARE of the directories
    assert repo.read_file(tree, "d59/f099.txt") == b"59 99\n" * 20
    assert repo.read_file(tree, "d00/f000.txt") == b"0 0\n" * 20
