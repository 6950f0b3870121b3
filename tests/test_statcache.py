"""The stat cache answers unchanged files and directories without reading them,
and never hides a change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SMALL, rand_bytes, write

from objstore import Repository


def _age(root: Path, seconds: int = 3600) -> None:
    """Make every file under ``root`` look old enough for the cache to trust it."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9), follow_symlinks=False)


def _tree(root: Path) -> Path:
    for d in ("a", "a/deep", "b"):
        for i in range(5):
            write(root / d / f"f{i}.txt", f"{d}/{i} ".encode() * 50)
    write(root / "big.bin", rand_bytes(1, 20_000))
    os.symlink("a/f0.txt", root / "link")
    _age(root)
    return root


class CountingReads:
    """Counts files opened for reading by the snapshot (os.open and open; directories
    opened to list them do not count; a name relative to a ``dir_fd`` is made absolute)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import builtins

        from objstore import snapshot

        self.paths: list[str] = []
        real_os_open, real_open = os.open, builtins.open

        def os_open(path, flags, *a, **k):
            if not flags & getattr(os, "O_DIRECTORY", 0):
                where = k.get("dir_fd")
                full = os.fsdecode(path)
                if where is not None:
                    full = os.path.join(os.readlink(f"/proc/self/fd/{where}"), full)
                self.paths.append(full)
            return real_os_open(path, flags, *a, **k)

        def py_open(path, *a, **k):
            self.paths.append(os.fsdecode(path))
            return real_open(path, *a, **k)

        monkeypatch.setattr(snapshot.os, "open", os_open)
        monkeypatch.setattr(snapshot, "open", py_open, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(tmp_path / "store", chunking=SMALL)


class ChildListings:
    """Forks the preloading child for any tree (see objstore.preload) and counts the
    directories whose listing it handed over."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from objstore import preload, snapshot

        monkeypatch.setattr(preload, "MIN_FILES", 1)
        monkeypatch.setattr(preload, "CHILD_SHARE", 1.0)  # every directory, the root too
        monkeypatch.setattr(preload, "MIN_PARENT_SHARE", 0.0)
        monkeypatch.setattr(snapshot, "usable_cpus", lambda: 2)
        self.taken: list[str] = []
        real_take = preload.Preload.take

        def take(this: preload.Preload, dirpath: str) -> preload.Listing | None:
            got = real_take(this, dirpath)
            if got is not None:
                self.taken.append(dirpath)
            return got

        monkeypatch.setattr(preload.Preload, "take", take)


@pytest.fixture(params=["one process", "with a child"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ChildListings | None:
    """Every walk below in one process, or with the child listing the directories."""
    return ChildListings(monkeypatch) if request.param == "with a child" else None


def test_unchanged_tree_is_answered_without_reading_a_file(repo, tmp_path, monkeypatch, walk):
    src = _tree(tmp_path / "src")
    first = repo.snapshot(src)
    reads = CountingReads(monkeypatch)
    progress: list[int] = []
    assert repo.snapshot(src, progress=progress.append) == first
    assert [p for p in reads.paths if p.startswith(str(src))] == []
    assert sum(progress) == sum(e.size for _, e in repo.walk(first) if e.kind == "file")
    assert repo.last_snapshot is not None and repo.last_snapshot.files == 16
    if walk is not None:
        assert sorted(walk.taken) == sorted(str(src / d) for d in ("", "a", "a/deep", "b"))


def test_the_cache_survives_reopening_and_is_one_small_file(repo, tmp_path, monkeypatch):
    src = _tree(tmp_path / "src")
    first = repo.snapshot(src)
    repo.close()
    again = Repository.open(tmp_path / "store")
    reads = CountingReads(monkeypatch)
    assert again.snapshot(src) == first
    assert [p for p in reads.paths if p.startswith(str(src))] == []
    assert os.listdir(tmp_path / "store" / "cache") == ["stat"]


@pytest.mark.parametrize(
    "change",
    ["rewrite-same-size", "append", "new-file", "remove-file", "rename", "chmod", "retarget-link", "new-subdir", "deep-rewrite"],
)
def test_every_kind_of_change_is_seen(repo, tmp_path, change, walk):
    src = _tree(tmp_path / "src")
    first = repo.snapshot(src)
    f = src / "a" / "deep" / "f3.txt"
    if change == "rewrite-same-size":
        st = os.stat(f)
        f.write_bytes(b"X" * st.st_size)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only ctime tells
    elif change == "append":
        with open(f, "ab") as fh:
            fh.write(b"more")
    elif change == "new-file":
        write(src / "b" / "new.txt", b"new")
    elif change == "remove-file":
        os.unlink(src / "b" / "f1.txt")
    elif change == "rename":
        os.rename(src / "b" / "f1.txt", src / "b" / "g1.txt")
    elif change == "chmod":
        os.chmod(f, 0o755)
    elif change == "retarget-link":
        os.unlink(src / "link")
        os.symlink("b/f0.txt", src / "link")
    elif change == "new-subdir":
        (src / "a" / "deep" / "deeper").mkdir()
    elif change == "deep-rewrite":
        f.write_bytes(b"changed deep inside")
    second = repo.snapshot(src)
    assert second != first
    fresh = Repository.init(tmp_path / "fresh", chunking=SMALL)  # no cache at all
    assert fresh.snapshot(src) == second
    if walk is not None:
        assert walk.taken  # the child's listings were offered, and a changed directory was not answered by them


def test_a_directory_written_just_now_is_not_trusted(repo, tmp_path):
    src = tmp_path / "src"
    write(src / "f.txt", b"v1")  # mtime is now: inside the racy window
    first = repo.snapshot(src)
    st = os.stat(src / "f.txt")
    (src / "f.txt").write_bytes(b"v2")
    os.utime(src / "f.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    second = repo.snapshot(src)
    assert second != first
    assert repo.read_file(second, "f.txt") == b"v2"


def test_a_damaged_or_old_cache_only_costs_a_re_read(repo, tmp_path):
    src = _tree(tmp_path / "src")
    first = repo.snapshot(src)
    repo.close()
    cache = tmp_path / "store" / "cache" / "stat"
    for junk in (b"\x93\x01\xa1x\x80", b"garbage", b""):
        cache.write_bytes(junk)
        again = Repository.open(tmp_path / "store")
        assert again.snapshot(src) == first
        again.close()


def test_a_gc_d_tree_is_not_answered_from_the_cache(tmp_path):
    src = _tree(tmp_path / "src")
    repo = Repository.init(tmp_path / "store", chunking=SMALL)
    first = repo.snapshot(src)
    # A cache that names a tree the store no longer has is ignored, not trusted.
    other = Repository.init(tmp_path / "other", chunking=SMALL)
    other.statcache = repo.statcache
    assert other.snapshot(src) == first
    assert other.read_file(first, "big.bin") == (src / "big.bin").read_bytes()


def test_a_child_that_fails_only_costs_the_walk_it_would_have_done(repo, tmp_path, monkeypatch):
    from objstore import preload

    walk = ChildListings(monkeypatch)
    src = _tree(tmp_path / "src")
    first = repo.snapshot(src)

    def broken(dirpath: str) -> preload.Listing | None:
        raise RuntimeError("the child breaks")

    monkeypatch.setattr(preload, "_list", broken)  # in the forked child too
    reads = CountingReads(monkeypatch)
    assert repo.snapshot(src) == first
    assert [p for p in reads.paths if p.startswith(str(src))] == []
    assert walk.taken == []


def test_files_under_with_a_child_follows_links_and_sees_changes(repo, tmp_path, walk):
    from objstore import FilesUnder

    src = _tree(tmp_path / "src")
    os.symlink("nowhere", src / "b" / "dangling")
    first = repo.build_tree({"": FilesUnder(src)})
    assert repo.build_tree({"": FilesUnder(src)}) == first
    assert repo.read_file(first, "link") == (src / "a" / "f0.txt").read_bytes()  # followed
    write(src / "b" / "f2.txt", b"changed")
    second = repo.build_tree({"": FilesUnder(src)})
    assert repo.read_file(second, "b/f2.txt") == b"changed"
    fresh = Repository.init(tmp_path / "fresh", chunking=SMALL)
    assert fresh.build_tree({"": FilesUnder(src)}) == second


def test_the_child_lists_and_stats_as_the_walk_would(tmp_path, monkeypatch):
    from objstore import preload
    from objstore.statcache import stat_columns

    monkeypatch.setattr(preload, "MIN_FILES", 1)
    monkeypatch.setattr(preload, "CHILD_SHARE", 0.9)  # of 17 files: all but the root's one
    monkeypatch.setattr(preload, "MIN_PARENT_SHARE", 0.0)
    src = _tree(tmp_path / "src")
    dirs = [(str(src / d), 5, 30) for d in ("a", "a/deep", "b")]
    got = preload.Preload.start([(str(src), 1, 10), *dirs, (str(src / "gone"), 1, 10)], cpus=2)
    if got is None:
        pytest.skip("no os.fork here, or not Linux")
    child = got._pid
    try:
        assert got.take(str(src)) is None  # the walk's first directory is left to it
        names = sorted(os.listdir(src / "a"))
        stats = [os.lstat(src / "a" / n) for n in names]
        assert got.take(str(src / "a")) == ("\0".join(names).encode(), len(names), stat_columns(stats))
        assert got.take(str(src / "a")) is None  # handed over once
        assert got.take(str(src / "gone")) is None
    finally:
        got.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # reaped


def test_no_child_where_it_would_do_nearly_everything(tmp_path, monkeypatch):
    from objstore import preload

    monkeypatch.setattr(preload, "MIN_FILES", 1)
    flat = [(str(tmp_path), 0, 0), (str(tmp_path / "all"), 10_000, 90_000)]
    assert preload.Preload.start(flat, cpus=2) is None  # the walk would only wait for it
    assert preload.Preload.start([(str(tmp_path / d), 100, 500) for d in "abcd"], cpus=1) is None


def test_objstore_no_fork_keeps_the_walk_in_this_process(tmp_path, monkeypatch):
    from objstore import preload

    monkeypatch.setattr(preload, "MIN_FILES", 1)
    dirs = [(str(tmp_path / d), 100, 500) for d in "abcd"]
    monkeypatch.setenv("OBJSTORE_NO_FORK", "1")
    assert preload.Preload.start(dirs, cpus=2) is None
    monkeypatch.setenv("OBJSTORE_NO_FORK", "0")
    got = preload.Preload.start(dirs, cpus=2)
    if got is None:
        pytest.skip("no os.fork here, or not Linux")
    got.close()
