"""A big checkout's small files are created by this process and a forked child side by side.

The child only creates files it is sent (already verified); whatever it could
not create, and everything it was sent if it died, is placed by the general
path, so the result is the same tree whatever happens to the child.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import dir_state, write

import objstore.checkout as checkout_mod
from objstore import Repository, frames
from objstore.preload import NO_FORK_ENV

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the child writer is Linux-only")

DIRS = 60
PER_DIR = 100  # 6,000 small files: more than one bulk write, so the child starts


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repository, str, Path]:
    root = tmp_path_factory.mktemp("many")
    src = root / "src"
    for d in range(DIRS):
        for f in range(PER_DIR):
            write(src / f"d{d:02d}" / f"f{f:03d}.txt", f"dir {d} file {f}\n".encode() * (1 + f % 7), executable=f % 17 == 0)
    write(src / "top.txt", b"at the top\n")
    repo = Repository.init(root / "store")
    commit = repo.commit(repo.snapshot(src), parents=[], message="many")
    repo.refs.set("main", commit)
    return repo, commit, src


@pytest.fixture
def may_fork(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Let the child writer start on this machine whatever its cores; record the children started."""
    started: list[int] = []
    real = checkout_mod._ChildWriter.start
    monkeypatch.setattr(checkout_mod, "may_fork", lambda cpus=None: True)

    def start(root_fd: int, budget: int) -> checkout_mod._ChildWriter | None:
        child = real(root_fd, budget)
        if child is not None:
            started.append(child.pid)
        return child

    monkeypatch.setattr(checkout_mod._ChildWriter, "start", staticmethod(start))
    return started


def _no_child_left(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already


def test_a_big_checkout_writes_the_same_tree_with_a_child(tmp_path: Path, many: tuple[Repository, str, Path], may_fork: list[int]) -> None:
    repo, commit, src = many
    out = tmp_path / "out"
    result = repo.checkout(commit, out)
    assert may_fork, "no child was started"
    assert dir_state(out) == dir_state(src)  # bytes and exec bits
    assert result.files == DIRS * PER_DIR + 1
    assert result.bytes == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    _no_child_left(may_fork)
    # the files the child wrote are remembered like the others: the next checkout tidies them up
    gone = src / "d03" / "f004.txt"
    kept = gone.read_bytes()
    gone.unlink()
    try:
        second = repo.commit(repo.snapshot(src), parents=[commit], message="one fewer")
        again = repo.checkout(second, out)
        assert again.removed == ["d03/f004.txt"]
        assert dir_state(out) == dir_state(src)
    finally:
        write(gone, kept)


def test_no_child_with_objstore_no_fork(tmp_path: Path, many: tuple[Repository, str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    repo, commit, src = many
    monkeypatch.setenv(NO_FORK_ENV, "1")
    forks: list[int] = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    repo.checkout(commit, tmp_path / "out")
    assert forks == []
    assert dir_state(tmp_path / "out") == dir_state(src)


def _dying_child(after: int, cut: bool):
    """A child that creates ``after`` files (the last one cut short if ``cut``) and dies."""

    def serve(work: int, done: int, root_fd: int, budget: int) -> None:
        dirs: list[tuple[int, str, str]] = []
        fds = checkout_mod._DirFds(root_fd, dirs, budget)
        head = frames.read_exact(work, frames.FRAME.size)
        assert head is not None
        frame = frames.read_exact(work, frames.FRAME.unpack(head)[0])
        assert frame is not None
        new_dirs, items = checkout_mod.msgpack.unpackb(frame, use_list=False)
        dirs.extend(new_dirs)
        for i, (number, name, mode, data) in enumerate(items[:after]):
            fd = os.open(name, checkout_mod._CREATE_FLAGS, mode, dir_fd=fds.get(number))
            os.write(fd, data[: len(data) // 2] if cut and i == after - 1 else data)
            os.close(fd)
        os._exit(9)

    return serve


@pytest.mark.parametrize("cut", [False, True])
def test_a_child_that_dies_leaves_its_files_to_this_process(
    tmp_path: Path, many: tuple[Repository, str, Path], may_fork: list[int], monkeypatch: pytest.MonkeyPatch, cut: bool
) -> None:
    repo, commit, src = many
    monkeypatch.setattr(checkout_mod, "_serve", _dying_child(after=40, cut=cut))
    out = tmp_path / "out"
    result = repo.checkout(commit, out)
    assert may_fork
    assert dir_state(out) == dir_state(src)  # the cut file was rewritten, the rest placed
    assert result.files + result.skipped == DIRS * PER_DIR + 1
    _no_child_left(may_fork)
    assert not list(out.rglob("*.objstore-tmp"))


def test_files_the_child_could_not_create_are_placed_by_this_process(
    tmp_path: Path, many: tuple[Repository, str, Path], may_fork: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child reports files it could not create (another writer got there first, a full
    disk...); they go to the general path, which writes or checks them."""
    repo, commit, src = many
    real_serve = checkout_mod._serve

    def refuse_some(work: int, done: int, root_fd: int, budget: int) -> None:
        real_open = os.open

        def picky_open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
            if isinstance(path, str) and path.endswith("7.txt") and flags & os.O_EXCL:
                raise OSError(28, "No space left on device (as the test says)")
            return real_open(path, flags, mode, dir_fd=dir_fd)

        os.open = picky_open  # the child's own copy of the module: the parent is untouched
        real_serve(work, done, root_fd, budget)

    monkeypatch.setattr(checkout_mod, "_serve", refuse_some)
    out = tmp_path / "out"
    result = repo.checkout(commit, out)
    assert may_fork
    assert dir_state(out) == dir_state(src)
    assert result.files == DIRS * PER_DIR + 1
    _no_child_left(may_fork)


def test_a_checkout_that_fails_stops_and_reaps_its_child(
    tmp_path: Path, many: tuple[Repository, str, Path], may_fork: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, commit, _ = many
    real_create = checkout_mod._SmallFiles.create

    def create_then_fail(self, batch, by_id, twins):  # type: ignore[no-untyped-def]
        real_create(self, batch, by_id, twins)  # the child has files to write now
        raise OSError(5, "I/O error (as the test says)")

    monkeypatch.setattr(checkout_mod._SmallFiles, "create", create_then_fail)
    with pytest.raises(OSError, match="as the test says"):
        repo.checkout(commit, tmp_path / "out")
    assert may_fork
    _no_child_left(may_fork)
