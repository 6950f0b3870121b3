"""Listing and ``lstat``-ing directories in a forked child while a re-snapshot works on others.

A re-snapshot of an unchanged tree costs one ``lstat`` per entry, and
``os.lstat`` holds the GIL for most of its cost (building the stat
result), so threads doing them side by side take longer than one thread
alone (measured: 100,000 files, 2 threads 0.64 s wall vs 0.32 s). git's
``core.preloadIndex`` spreads its lstats over threads; here a forked child
does it for the directories the last snapshot had near the end of the walk
while this process walks the others, and hands back each directory's
sorted names and :func:`~objstore.statcache.stat_columns` through shared
memory. Only a directory answered by its signature uses them; any other is
listed again by the snapshot itself (see :class:`~objstore.snapshot.Snapshotter`).

The child only lists, stats, packs and exits with ``os._exit``: it touches
no lock, file or object of the parent's. It is started only on Linux with
two usable cores and a process small enough to fork cheaply; whatever goes
wrong in it only means the snapshot does those directories itself.
"""

from __future__ import annotations

import functools
import mmap
import os
import signal
import struct
import sys
import warnings
from collections.abc import Callable, Iterable

import msgpack

from .statcache import stat_columns

NO_FORK_ENV = "OBJSTORE_NO_FORK"
"""Set (to anything but "0") to never fork: for hosts where a fork is unwelcome (the walk does it all)."""
MIN_FILES = 4096
"""Files (known from the stat cache) under a tree from which a child is forked."""
MAX_PARENT_RSS = 1 << 30
"""A process bigger than this is not forked (copying its page tables would cost more than it saves)."""
CHILD_SHARE = 0.55
"""The child's share of the files: this process also matches every signature."""
MIN_PARENT_SHARE = 0.25
"""Below this share of the files left to this process, no child: there would be little to overlap."""
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_DIRECTORY", 0)
_HEAD = struct.Struct("<Q")

Listing = tuple[bytes, int, bytes | None]
"""A directory's names joined by NUL (UTF-8, surrogateescape), how many, and their stat columns."""


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return MAX_PARENT_RSS + 1


def usable_cpus() -> int:
    """The cores this process may run on (a pinned process gets fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def may_fork(cpus: int | None = None) -> bool:
    """Whether a helper child may be forked here: Linux, two usable cores, no
    :data:`NO_FORK_ENV`, and a process small enough to fork cheaply."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    if (cpus if cpus is not None else usable_cpus()) < 2:
        return False
    if os.environ.get(NO_FORK_ENV, "") not in ("", "0"):
        return False
    return _rss() <= MAX_PARENT_RSS


def fork() -> int:
    """``os.fork()`` for a helper child that runs no code of the parent's other threads
    (Python 3.12+ warns about forking a threaded process; such a child is safe)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def spawn(work: Callable[[], None]) -> int:
    """Fork a helper child that runs ``work`` and leaves with ``os._exit`` (status 0 if it
    returned, 1 if it raised: never back into this process's code); return its pid."""
    pid = fork()
    if pid == 0:
        status = 1
        try:
            work()
            status = 0
        finally:
            os._exit(status)
    return pid


def _list(dirpath: str) -> Listing | None:
    try:
        fd = os.open(dirpath, _DIR_FLAGS)
    except OSError:
        return None
    try:
        names = sorted(os.listdir(fd))
        stats = list(map(functools.partial(os.lstat, dir_fd=fd), names))
    except OSError:
        return None
    finally:
        os.close(fd)
    return "\0".join(names).encode("utf-8", "surrogateescape"), len(names), stat_columns(stats)


def knows_enough(dirs: Iterable[tuple[str, int, int]]) -> bool:
    """Whether a stat cache that knows ``dirs`` under a tree ((path, files, bytes of names),
    as :meth:`~objstore.statcache.StatCache.dirs_under` gives them) knows enough files for a
    preloading child to pay (else a first snapshot's reading child may: :mod:`objstore.readchild`)."""
    return sum(files for _, files, _ in dirs) >= MIN_FILES


class Preload:
    """Directories listed and stat-ed by a forked child; :meth:`take` one, :meth:`close` at the end."""

    def __init__(self, pid: int, shared: mmap.mmap, dirs: set[str]) -> None:
        self._pid = pid
        self._shared = shared
        self._dirs = dirs
        self._got: dict[str, Listing] | None = None

    @classmethod
    def start(cls, dirs: Iterable[tuple[str, int, int]], cpus: int) -> Preload | None:
        """Fork a child for the last directories of ``dirs`` ((path, files, bytes of names)
        in the order of the walk), about :data:`CHILD_SHARE` of the files; None if not worth it."""
        todo = list(dirs)
        total = sum(files for _, files, _ in todo)
        if total < MIN_FILES or not may_fork(cpus):
            return None
        share = 0
        at = len(todo)
        while at > 0 and share <= total * CHILD_SHARE:
            at -= 1
            share += todo[at][1]
        if total - share < total * MIN_PARENT_SHARE:
            return None  # one directory holds most files: this process would only wait for the child
        mine = todo[at:]
        # names, 40 bytes of stats per entry, and room for subdirectories and msgpack headers
        room = 1 << 20
        for _, files, names in mine:
            room += 2 * names + 48 * files + 4096
        shared = mmap.mmap(-1, room)

        def child() -> None:
            out = msgpack.packb([[d, *got] for d in (p for p, _, _ in mine) if (got := _list(d)) is not None])
            if _HEAD.size + len(out) > room:
                raise ValueError("the listings do not fit the shared memory")
            shared[_HEAD.size : _HEAD.size + len(out)] = out
            shared[: _HEAD.size] = _HEAD.pack(len(out))

        return cls(spawn(child), shared, {p for p, _, _ in mine})

    def take(self, dirpath: str) -> Listing | None:
        """The child's listing of ``dirpath`` (waiting for the child the first time), or None."""
        if dirpath not in self._dirs:
            return None
        got = self._got
        if got is None:
            got = self._got = self._collect()
        return got.pop(dirpath, None)

    def _collect(self) -> dict[str, Listing]:
        pid, self._pid = self._pid, 0
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return {}
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            return {}
        try:
            (n,) = _HEAD.unpack_from(self._shared)
            rows = msgpack.unpackb(self._shared[_HEAD.size : _HEAD.size + n])
            return {d: (names, count, columns) for d, names, count, columns in rows}
        except (ValueError, TypeError, struct.error, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            return {}

    def close(self) -> None:
        """Stop and reap the child if it still runs; free the shared memory."""
        if self._pid:
            pid, self._pid = self._pid, 0
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self._got = {}
        self._shared.close()
