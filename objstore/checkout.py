"""Materializing a stored tree into a local directory, every byte verified.

Each file is written to a temp name beside its target and renamed into
place, so a reader (or a crash) never sees a half-written file under the
real name. Names come from decoded trees, which reject ``/``, ``..`` and
NUL; every directory on the way down is checked to be a real directory
(never a symlink), so nothing is written outside ``dest``. Files already
present with the right content are left alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from . import frames
from .chunkcopy import holds_chunks, write_chunks
from .chunking import ChunkParams, iter_chunks
from .errors import CorruptObject, FormatError, NotADirectory, PathNotFound, UnsafePath
from .frames import write_all
from .ids import HashAlgorithm, ObjectId, to_hex
from .lastcheckout import FILE as PLACED_FILE
from .lastcheckout import UNSTATTED, Placed, placed_from
from .nogc import no_cyclic_gc
from .objects import BLOB, DIR, FILE, MODE_EXEC, SYMLINK, Blob, ChunkedBlob, Tree, TreeEntry, tree_rows, validate_name
from .odb import ObjectDatabase
from .preload import may_fork, spawn
from .progress import announce_total, wants_total
from .storage import storage_errors

Progress = Callable[[int], None]


@dataclass
class CheckoutResult:
    """What a checkout did."""

    files: int = 0
    bytes: int = 0
    skipped: int = 0
    symlinks: int = 0
    dirs: int = 0
    references: list[tuple[str, TreeEntry]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Paths the previous checkout into this folder wrote that this version does not have: removed."""
    left: list[str] = field(default_factory=list)
    """Such paths left in place because they changed since that checkout (someone edited them)."""


def content_id(path: str, params: ChunkParams, algorithm: HashAlgorithm) -> ObjectId:
    """The id a file's content would get if snapshotted (nothing is stored)."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size <= params.small_file:
            data = f.read(params.small_file + 1)
            if len(data) <= params.small_file:
                return to_hex(algorithm.digest(bytes((BLOB,)), data))
            f.seek(0)
        tag = bytes((BLOB,))
        chunks = [(to_hex(algorithm.digest(tag, view)), len(view)) for view in iter_chunks(f, params)]
    if not chunks:
        return to_hex(algorithm.digest(tag))
    if len(chunks) == 1:
        return chunks[0][0]
    return to_hex(algorithm.digest(ChunkedBlob(tuple(chunks)).encode()))


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC


def _entry_of(row: list[Any]) -> TreeEntry:
    """The TreeEntry of a row :func:`~objstore.objects.tree_rows` checked."""
    name, kind = row[0], row[1]
    if kind == FILE:
        return TreeEntry(name, "file", to_hex(row[2]), row[3], row[4])
    if kind == DIR:
        return TreeEntry(name, "dir", to_hex(row[2]), row[3])
    if kind == SYMLINK:
        return TreeEntry(name, "symlink", target=row[2])
    return TreeEntry(name, "reference", size=row[3], target=row[2], digest=row[4])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FLUSH_FILES = 4096
"""Small files collected before they are written: few rows held at once, and a group whose files
are written in two goes is still among the decoded ones the second time."""


class _DirFds:
    """Open directories by number (``Materializer._dirs``), at most ``budget`` at once (the
    first opened is closed first: files come in directory order, mostly).

    A directory is opened relative to its parent's descriptor with
    ``O_NOFOLLOW``, down from the destination's, so a directory swapped for
    a symlink since it was created fails the open instead of being followed.
    """

    def __init__(self, root_fd: int, dirs: list[tuple[int, str, str]], budget: int) -> None:
        self.root_fd = root_fd
        self.dirs = dirs
        self.budget = budget
        self.fds: dict[int, int] = {}

    def get(self, number: int) -> int:
        if number == 0:
            return self.root_fd
        fd = self.fds.get(number)
        if fd is not None:
            return fd
        parent, name, _ = self.dirs[number]
        fd = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=self.get(parent))
        self.fds[number] = fd
        if len(self.fds) > self.budget:
            os.close(self.fds.pop(next(iter(self.fds))))
        return fd

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.popitem()[1])


def _fd_budget() -> int:
    """Directories a checkout keeps open at once: at most 256, an eighth of the process's limit."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 32
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(4, min(256, soft // 8))


_CHILD_MIN_FILES = _FLUSH_FILES
"""Small files in one bulk write from which a forked child creates part of them (from then on)."""
_CHILD_SHARE = 4
"""Of every this many directories, all but one go to the child: this process also reads,
decompresses and verifies every object, the child only creates files."""


class _ChildWriter:
    """A forked child that creates the small files of some directories of a big checkout.

    Creating a file is a few syscalls that one process cannot overlap (threads
    were slower: the GIL changes hands at every return from one); two
    processes create files side by side (100,000 files: 1.2 s alone, 0.77 s
    with a child, tmpfs). This process sends the child each batch's files of
    its directories (already verified) and the directories made since the
    last batch, through a pipe; the child creates them as :class:`_SmallFiles`
    does (``O_EXCL``, ``O_NOFOLLOW``, relative to directories opened from the
    destination down) and at the end reports what it wrote and which files it
    could not create. Those, and everything it was sent if it died, go to the
    general path like any file the bulk path leaves. The child touches no
    lock, file or object of this process's other than the two pipe ends and
    the destination's descriptor, and leaves with ``os._exit``.
    """

    def __init__(self, pid: int, to_child: int, from_child: int) -> None:
        self.pid = pid
        self.to_child = to_child
        self.from_child = from_child
        self.dirs_sent = 0
        self.rows: dict[int, list[list[Any]]] = {}  # what was sent, by directory number
        self.broken = False

    @classmethod
    def start(cls, root_fd: int, budget: int) -> _ChildWriter | None:
        if not may_fork():
            return None
        work_r, work_w = frames.pipe()
        done_r, done_w = os.pipe()

        def child() -> None:
            os.close(work_w)
            os.close(done_r)
            _serve(work_r, done_w, root_fd, budget)

        pid = spawn(child)
        os.close(work_r)
        os.close(done_w)
        return cls(pid, work_w, done_r)

    def send(self, dirs: list[tuple[int, str, str]], items: list[tuple[int, str, int, bytes | memoryview]]) -> bool:
        """Hand the child ``items`` ((directory number, name, mode, content)); False if it is gone."""
        if self.broken:
            return False
        new_dirs, self.dirs_sent = dirs[self.dirs_sent :], len(dirs)
        frame = msgpack.packb([new_dirs, items], use_bin_type=True)
        try:
            frames.send(self.to_child, frame)
        except OSError:
            self.broken = True
            return False
        return True

    def finish(self) -> tuple[int, int, list[tuple[int, str]]] | None:
        """Wait for the child: (files, bytes it wrote, (directory number, name) it could not
        create); None if it died or answered nonsense (then nothing it was sent counts)."""
        # Ends are marked in the frames, not by closing the pipes: a child another thread
        # forks meanwhile holds copies of these pipes' ends until it exits.
        data = None
        try:
            if not self.broken:
                write_all(self.to_child, frames.END)
                head = frames.read_exact(self.from_child, frames.FRAME.size)
                if head is not None:
                    data = frames.read_exact(self.from_child, frames.FRAME.unpack(head)[0])
        except OSError:
            data = None
        finally:
            for fd in (self.to_child, self.from_child):
                os.close(fd)
            self.to_child = self.from_child = -1
            ok = self._reap()
        if not ok or data is None:
            return None
        try:
            files, written, failed = msgpack.unpackb(data, use_list=True)
            return int(files), int(written), [(int(n), str(name)) for n, name in failed]
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            return None

    def _reap(self) -> bool:
        pid, self.pid = self.pid, 0
        if not pid:
            return False
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return False
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    def kill(self) -> None:
        """Stop and reap the child if it still runs (a checkout that failed)."""
        for fd in (self.to_child, self.from_child):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.to_child = self.from_child = -1
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()


def _serve(work: int, done: int, root_fd: int, budget: int) -> None:
    """The child's loop: create the files of each frame until the pipe closes; report."""
    dirs: list[tuple[int, str, str]] = []
    fds = _DirFds(root_fd, dirs, budget)
    files = written = 0
    failed: list[tuple[int, str]] = []
    os_open, os_close = os.open, os.close
    while True:
        head = frames.read_exact(work, frames.FRAME.size)
        if head is None or head == frames.END:
            break  # this process died, or the end
        frame = frames.read_exact(work, frames.FRAME.unpack(head)[0])
        if frame is None:
            break
        new_dirs, items = msgpack.unpackb(frame, use_list=False)
        dirs.extend(new_dirs)
        for number, name, mode, data in items:
            try:
                fd = os_open(name, _CREATE_FLAGS, mode, dir_fd=fds.get(number))
            except OSError:
                failed.append((number, name))
                continue
            try:
                write_all(fd, data)
            except OSError:
                os_close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fds.get(number))
                failed.append((number, name))
                continue
            os_close(fd)
            files += 1
            written += len(data)
    fds.close()
    report = msgpack.packb([files, written, failed], use_bin_type=True)
    frames.send(done, report)


class _SmallFiles:
    """Creates small files in directories this checkout created, from verified
    encodings, and counts what it wrote."""

    def __init__(self, owner: Materializer, root_fd: int) -> None:
        self.owner = owner
        self.fds = _DirFds(root_fd, owner._dirs, _fd_budget())
        self.files = 0
        self.bytes = 0
        self.done: list[str] = []
        self.child: _ChildWriter | None = None
        self._lost: list[_ChildWriter] = []  # a child whose pipe broke: reaped by finish_child

    def create(
        self,
        batch: list[tuple[bytes, bytes | memoryview]],
        by_id: dict[bytes, tuple[int, list[Any]]],
        twins: dict[bytes, list[tuple[int, list[Any]]]],
    ) -> None:
        """Create the files of a batch of verified encodings (``by_id``: where the tree has each
        id; ``twins``: further places of an id), each under its own name (``O_EXCL``, the mode
        given to ``open``: no chmod) relative to its directory. One that is not the small blob
        the tree says, or that the walk did not expect there, is left to the general path."""
        owner = self.owner
        placed, dirs, odd, fds = owner.placed, owner._dirs, owner._odd, self.fds
        open_fds = fds.fds
        os_open, os_write, os_close = os.open, os.write, os.close
        done = self.done
        files = written = sent = 0
        current, dfd, prefix = -1, -1, ""
        child = self.child
        to_child: list[tuple[int, str, int, bytes | memoryview]] = []
        child_rows = child.rows if child is not None else {}
        try:
            for oid, encoded in batch:
                first = by_id[oid]
                places = (first, *twins[oid]) if twins and oid in twins else (first,)
                size = len(encoded) - 1
                if encoded[0] != BLOB:
                    odd.extend(places)
                    continue
                view = encoded[1:]
                for number, row in places:
                    if row[3] != size:
                        odd.append((number, row))
                        continue
                    if child is not None and number % _CHILD_SHARE:
                        to_child.append((number, row[0], 0o777 if row[4] == MODE_EXEC else 0o666, view))
                        child_rows.setdefault(number, []).append(row)
                        if placed is not None:  # taken back in finish_child if the child could not
                            rel = dirs[number][2] + row[0]
                            placed[rel] = (PLACED_FILE, size, UNSTATTED, oid.hex())
                            done.append(rel)
                        sent += size
                        continue
                    if number != current:
                        dfd = open_fds.get(number) or fds.get(number)
                        prefix, current = dirs[number][2], number
                    name = row[0]
                    try:
                        fd = os_open(name, _CREATE_FLAGS, 0o777 if row[4] == MODE_EXEC else 0o666, dir_fd=dfd)
                    except FileExistsError:  # someone else is writing here too
                        odd.append((number, row))
                        continue
                    try:
                        n = os_write(fd, view)
                        while n < size:
                            n += os_write(fd, view[n:])
                    except BaseException:
                        os_close(fd)
                        os.unlink(name, dir_fd=dfd)
                        raise
                    os_close(fd)
                    if placed is not None:
                        # No fstat for the mtime: the next checkout's tidy-up re-hashes the file anyway.
                        rel = prefix + name
                        placed[rel] = (PLACED_FILE, size, UNSTATTED, oid.hex())
                        done.append(rel)
                    files += 1
                    written += size
            if to_child and child is not None and not child.send(owner._dirs, to_child):
                self.child = None  # gone: finish_child hands what it had to the general path
                self._lost.append(child)
        finally:
            self.files += files
            self.bytes += written
            if owner.progress is not None and written + sent:
                owner.progress(written + sent)

    def _take_children(self) -> list[_ChildWriter]:
        children = self._lost + ([self.child] if self.child is not None else [])
        self.child, self._lost = None, []
        return children

    def finish_child(self, dest: str) -> None:
        """Wait for the child writer (if any); count what it wrote; hand the files it could
        not create, or all it was sent if it died, to the general path."""
        owner = self.owner
        for child in self._take_children():
            got = child.finish()
            if got is None:
                # It died: some files may be there, whole or cut short. Its directories are
                # no longer "fresh", so the general path checks what is there and replaces it.
                failed = [(n, row) for n, rows in child.rows.items() for row in rows]
                for n in child.rows:
                    owner._fresh.discard(owner._dir_path(dest, n))
            else:
                files, written, bad = got
                self.files += files
                self.bytes += written
                unwritten = set(bad)
                failed = [(n, row) for n in {n for n, _ in unwritten} for row in child.rows.get(n, ()) if (n, row[0]) in unwritten]
            if not failed:
                continue
            owner._odd.extend(failed)
            if owner.placed is not None:
                gone = {owner._dirs[n][2] + row[0] for n, row in failed}
                for rel in gone:
                    owner.placed.pop(rel, None)
                self.done = [rel for rel in self.done if rel not in gone]

    def kill_child(self) -> None:
        """Stop the child writer at once (the checkout failed)."""
        for child in self._take_children():
            child.kill()


class Materializer:
    """Writes trees from an object database into a destination directory."""

    def __init__(self, odb: ObjectDatabase, params: ChunkParams, progress: Progress | None = None) -> None:
        self.odb = odb
        self.params = params
        self.progress = progress
        self.result = CheckoutResult()
        self._umask = _umask()
        self._fresh: set[str] = set()  # directories this checkout created: nothing to check inside
        self._counter = 0
        self._tag = ""
        self.placed: dict[str, Placed] | None = None  # set to a dict to learn what was placed where
        self.selected: set[str] = set()
        self._dirs: list[tuple[int, str, str]] = []  # (parent's number, name, path from dest + "/"); 0 is dest
        self._bulk: list[tuple[int, list[list[Any]]]] = []  # small files for _write_bulk, by directory number
        self._bulk_files = 0
        self._root_fd = -1  # the destination's, while a whole tree is written
        self._small: _SmallFiles | None = None
        self._odd: list[tuple[int, list[Any]]] = []  # small files the bulk writes left to the general path

    def _tree(self, tree_id: ObjectId) -> Tree:
        return self.odb.get_as(tree_id, Tree)

    def _walk(self, tree_id: ObjectId, prefix: str) -> Iterator[tuple[str, TreeEntry]]:
        for e in self._tree(tree_id).entries:
            rel = f"{prefix}{e.name}"
            yield rel, e
            if e.kind == "dir":
                assert e.id is not None
                yield from self._walk(e.id, rel + "/")

    def _select(self, root: ObjectId, paths: list[str] | None) -> Iterator[tuple[str, TreeEntry]]:
        if paths is None:
            yield from self._walk(root, "")
            return
        for raw in paths:
            parts = [p for p in raw.strip("/").split("/") if p]
            for p in parts:
                validate_name(p)
            tree_id: ObjectId = root
            entry: TreeEntry | None = None
            for i, part in enumerate(parts):
                entry = self._tree(tree_id).get(part)
                if entry is None or (i < len(parts) - 1 and entry.kind != "dir"):
                    raise PathNotFound(raw, f"tree {root}")
                if entry.kind == "dir":
                    assert entry.id is not None
                    tree_id = entry.id
            rel = "/".join(parts)
            if entry is None:  # "" or "/": everything
                yield from self._walk(root, "")
                continue
            # Parent directories of a selected path are created on the way.
            for i in range(1, len(parts)):
                yield "/".join(parts[:i]), TreeEntry(parts[i - 1], "dir", ObjectId("0"), 0)
            yield rel, entry
            if entry.kind == "dir":
                assert entry.id is not None
                yield from self._walk(entry.id, rel + "/")

    def _ensure_dir(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            os.mkdir(path)
            self._fresh.add(path)
            self.result.dirs += 1
            return
        if stat.S_ISDIR(st.st_mode):
            return
        os.unlink(path)  # a file or a symlink where the tree has a directory
        os.mkdir(path)
        self._fresh.add(path)
        self.result.dirs += 1

    def _clear_for_file(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)

    def _is_current(self, path: str, entry: TreeEntry) -> os.stat_result | None:
        """The file's stat if it already holds the entry's content (else None)."""
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return None
        if not self._holds(path, entry):
            return None
        mode = (0o777 if entry.mode == MODE_EXEC else 0o666) & ~self._umask
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
        return st

    def _holds(self, path: str, entry: TreeEntry) -> bool:
        """Does the file at ``path`` hold the entry's content?"""
        assert entry.id is not None
        if entry.size > self.params.small_file:
            obj = self.odb.get(entry.id)
            if isinstance(obj, ChunkedBlob):
                # Hashed against the stored chunk list on every core, nothing cut.
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
                try:
                    return holds_chunks(self.odb, fd, obj.chunks)
                finally:
                    os.close(fd)
        return content_id(path, self.params, self.odb.algorithm) == entry.id

    def _write_file(self, path: str, entry: TreeEntry, fresh_dir: bool) -> os.stat_result:
        assert entry.id is not None
        if not fresh_dir:
            self._clear_for_file(path)
        # In a directory this checkout created, the file is written under its
        # own name (O_EXCL: nothing else can be there): a crash leaves a short
        # file that the next checkout's content check rewrites. Elsewhere it
        # goes to a temp name and is renamed over the old file, so a reader
        # sees the old or the new content, never a mix.
        if fresh_dir:
            tmp = path
        else:
            self._counter += 1
            tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{self._tag}-{self._counter}.objstore-tmp")
        # The mode goes to open(): the kernel applies the umask, no chmod needed.
        mode = 0o777 if entry.mode == MODE_EXEC else 0o666
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
        written = 0
        try:
            try:
                written = self._fill(fd, entry)
                st = os.fstat(fd)  # size and mtime as left: the rename keeps both
            finally:
                os.close(fd)
            if written != entry.size:
                raise CorruptObject(entry.id, f"content is {written} bytes, tree says {entry.size}")
            if tmp != path:
                os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self.result.files += 1
        self.result.bytes += written
        return st

    def _fill(self, fd: int, entry: TreeEntry) -> int:
        """Write the entry's verified content into ``fd``; return the bytes written."""
        assert entry.id is not None
        if entry.size <= self.params.small_file:
            encoded = self.odb.get_encoded(entry.id)
            if encoded[0] == BLOB:
                return self._write_all(fd, memoryview(encoded)[1:])
        obj = self.odb.get(entry.id)
        if isinstance(obj, Blob):
            return self._write_all(fd, obj.data)
        if not isinstance(obj, ChunkedBlob):
            raise CorruptObject(entry.id, f"file entry points at a {type(obj).__name__}")
        # Raw chunks in local packs: the kernel copies them from the pack
        # after they are hashed in the page cache; on every core.
        return write_chunks(self.odb, fd, obj.chunks, self.progress)

    def _write_all(self, fd: int, data: bytes | memoryview) -> int:
        write_all(fd, data)
        if self.progress is not None and len(data):
            self.progress(len(data))
        return len(data)

    def run(self, tree_id: ObjectId, dest: str, paths: list[str] | None = None, skip_existing: bool = True) -> CheckoutResult:
        return self._run(tree_id, dest, paths, skip_existing)

    def _run(self, tree_id: ObjectId, dest: str, paths: list[str] | None, skip_existing: bool) -> CheckoutResult:
        dest = os.path.realpath(dest)
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise NotADirectory(dest, "the checkout destination exists and is not a directory")
        self._fresh = set()
        self._counter = 0
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with storage_errors(dest):
            if not os.path.isdir(dest):
                os.makedirs(dest)
                self._fresh.add(dest)
            elif not os.listdir(dest):
                self._fresh.add(dest)  # empty: nothing to check inside either
            if paths is None:
                if wants_total(self.progress):
                    announce_total(self.progress, self._file_bytes(self.odb.raw_id(tree_id)))
                dfd = os.open(dest, _DIR_FLAGS)
                try:
                    with no_cyclic_gc():
                        self._dirs, self._root_fd = [(-1, "", "")], dfd
                        self._bulk, self._bulk_files, self._small, self._odd = [], 0, None, []
                        try:
                            self._fill_tree(self.odb.raw_id(tree_id), dfd, dest, "", dest in self._fresh, skip_existing, 0)
                            self._write_bulk()
                            if self._small is not None:
                                self._small.finish_child(dest)
                        finally:
                            if self._small is not None:
                                self._small.kill_child()
                                self._small.fds.close()
                        self._finish_bulk(dest)
                finally:
                    self._bulk, self._small = [], None
                    os.close(dfd)
                return self.result
            # One pass, in tree order: every directory is made (or checked to
            # be a real directory) before anything is written into it, so no
            # path can lead through a symlink out of ``dest``. Small files are
            # cheaper inline than on a pool (per-file work is mostly syscalls).
            placed = self.placed
            selected: Iterable[tuple[str, TreeEntry]] = self._select(tree_id, paths)
            if wants_total(self.progress):
                selected = list(selected)
                announce_total(self.progress, sum(e.size for _, e in selected if e.kind == "file"))
            for rel, entry in selected:
                path = os.path.join(dest, *self._parts(rel))
                st = self._apply(path, entry, skip_existing)
                if placed is not None:
                    self.selected.add(rel)
                    if st is not None:
                        placed[rel] = placed_from(st, entry)
        return self.result

    # -- a whole tree, directory by directory -------------------------------

    def _rows(self, tree_id: bytes) -> list[list[Any]]:
        encoded, where = self.odb.get_encoded_from(tree_id)
        try:
            return tree_rows(encoded, self.odb.digest_size)
        except FormatError as exc:
            raise CorruptObject(tree_id.hex(), str(exc), where) from None

    def _file_bytes(self, tree_id: bytes) -> int:
        """Bytes of the files under a tree (what a progress total counts)."""
        total = 0
        for row in self._rows(tree_id):
            if row[1] == FILE:
                total += row[3]
            elif row[1] == DIR:
                total += self._file_bytes(row[2])
        return total

    def _fill_tree(self, tree_id: bytes, dfd: int, dirpath: str, rel: str, fresh: bool, skip_existing: bool, number: int) -> None:
        """Place one tree's entries into the open directory ``dfd`` (``dirpath``, directory
        ``number`` of ``self._dirs``), then its subtrees.

        In a directory this checkout created, small files are only collected
        (``self._bulk``): :meth:`_write_bulk` writes them a few thousand at a time.
        Everything else goes through :meth:`_apply`. A subdirectory is
        opened with ``O_NOFOLLOW``, so nothing is written through a symlink.
        """
        placed = self.placed
        small = self.params.small_file
        bulk: list[list[Any]] = []
        subdirs: list[list[Any]] = []
        for row in self._rows(tree_id):
            kind = row[1]
            if kind == DIR:
                subdirs.append(row)
            elif kind == FILE and fresh and row[3] <= small:
                bulk.append(row)
            else:
                self._place(dirpath, rel, _entry_of(row), skip_existing)
        if bulk:
            self._bulk.append((number, bulk))
            self._bulk_files += len(bulk)
            if self._bulk_files >= _FLUSH_FILES:
                self._write_bulk()
        dirs = self._dirs
        for row in subdirs:
            name = row[0]
            dirs.append((number, name, f"{rel}{name}/"))
            sub_number = len(dirs) - 1
            path = os.path.join(dirpath, name)
            sub_fresh = False
            if fresh:
                try:
                    os.mkdir(name, dir_fd=dfd)
                    sub_fresh = True
                    self.result.dirs += 1
                except FileExistsError:  # someone else is writing here too: check what is there
                    self._ensure_dir(path)
            else:
                self._ensure_dir(path)
                sub_fresh = path in self._fresh
            if placed is not None:
                self.selected.add(rel + name)
            sub = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=dfd)
            try:
                if sub_fresh:
                    self._fresh.add(path)
                self._fill_tree(row[2], sub, path, f"{rel}{name}/", sub_fresh, skip_existing, sub_number)
            finally:
                os.close(sub)

    def _place(self, dirpath: str, rel: str, entry: TreeEntry, skip_existing: bool) -> None:
        st = self._apply(os.path.join(dirpath, entry.name), entry, skip_existing)
        if self.placed is not None:
            self.selected.add(rel + entry.name)
            if st is not None:
                self.placed[rel + entry.name] = placed_from(st, entry)

    def _write_bulk(self) -> None:
        """Write the small files :meth:`_fill_tree` collected (all in directories this checkout created).

        Their objects are read a group at a time (:meth:`ObjectDatabase.iter_by_group`:
        each group record decoded once, every member verified against its id
        before its file is created), each file created relative to its
        directory (opened with ``O_NOFOLLOW`` from the destination down) with
        ``os.open``, one ``os.write`` and ``os.close``. A file that is not
        what the tree says is left to :meth:`_finish_bulk`, whose general
        path reports it.

        All on this thread: writer threads were tried, and with the GIL taken
        back by the decoding thread at every return from a syscall they made
        the checkout slower, not faster (docs/format.md, "Groups").
        """
        by_id: dict[bytes, tuple[int, list[Any]]] = {}
        twins: dict[bytes, list[tuple[int, list[Any]]]] = {}  # the same content at more places
        for number, rows in self._bulk:
            for row in rows:
                oid = row[2]
                if oid in by_id:
                    twins.setdefault(oid, []).append((number, row))
                else:
                    by_id[oid] = (number, row)
        files = self._bulk_files
        self._bulk, self._bulk_files = [], 0
        if not files:
            return
        small = self._small
        if small is None:
            small = self._small = _SmallFiles(self, self._root_fd)
            if files >= _CHILD_MIN_FILES:
                small.child = _ChildWriter.start(self._root_fd, small.fds.budget)
        for batch in self.odb.iter_by_group(by_id):
            small.create(batch, by_id, twins)

    def _finish_bulk(self, dest: str) -> None:
        """Count what the bulk writes wrote, then place what they could not."""
        small = self._small
        if small is not None:
            self.result.files += small.files
            self.result.bytes += small.bytes
            if self.placed is not None:
                self.selected.update(small.done)
        for number, row in self._odd:
            self._place(self._dir_path(dest, number), self._dirs[number][2], _entry_of(row), True)
        self._odd = []

    def _dir_path(self, dest: str, number: int) -> str:
        """Where directory ``number`` of ``self._dirs`` is under ``dest``."""
        rel = self._dirs[number][2]
        return os.path.join(dest, *self._parts(rel[:-1])) if rel else dest

    @staticmethod
    def _parts(rel: str) -> list[str]:
        parts = rel.split("/")
        for p in parts:
            if p in ("", ".", ".."):
                raise UnsafePath(rel, "path component escapes the destination")
        return parts

    def _apply(self, path: str, entry: TreeEntry, skip_existing: bool) -> os.stat_result | None:
        """Place one entry; return the stat of the file or symlink placed (None for others)."""
        fresh_dir = os.path.dirname(path) in self._fresh
        if entry.kind == "dir":
            self._ensure_dir(path)
        elif entry.kind == "file":
            if skip_existing and not fresh_dir:
                st = self._is_current(path, entry)
                if st is not None:
                    self.result.skipped += 1
                    if self.progress is not None:
                        self.progress(entry.size)
                    return st
            return self._write_file(path, entry, fresh_dir)
        elif entry.kind == "symlink":
            assert entry.target is not None
            if not fresh_dir:
                self._clear_for_file(path)
            self._counter += 1
            tmp = f"{path}.{self._tag}-{self._counter}.objstore-tmp"
            os.symlink(entry.target, tmp)
            os.replace(tmp, path)
            self.result.symlinks += 1
            return os.lstat(path)
        else:
            self.result.references.append((path, entry))
        return None
