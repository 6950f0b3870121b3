"""A forked child that reads, hashes and compresses some directories' small files during a snapshot.

A first snapshot of many small files costs a few syscalls, a hash and a
row per file on the snapshotting thread (100,000 files: ~1.9 s of its CPU),
and threads cannot share that work: the GIL changes hands at every return
from a syscall. Two processes can. When a tree holds many files and the
stat cache knows too few of them for :mod:`objstore.preload` to be of use
(a first snapshot), the tree's directories are listed first (``scandir``,
no ``lstat``), and a forked child takes the last of them in walk order,
about :data:`CHILD_SHARE` of the files, while this process walks the
others. For each, the child does what the snapshot's bulk path does:
``lstat`` every entry, read and hash the small regular files, build their
tree rows and stat-cache records; it compresses their contents into group
records as the snapshot's pool thread would. It streams back frames over a
pipe (:mod:`objstore.frames`), objects before the directories that use
them, so a directory's result never arrives without its objects.

This process stores the child's objects in its own pack as they arrive
(one pack per snapshot still), and takes a directory's result when its
walk reaches it: subdirectories, large files, symlinks and anything the
child left out are done here, and the tree is encoded here. A directory
the child could not do, or any after the child died, is simply walked here.
The child touches no lock, file or object of this process's beyond reading
the repository's pack indexes and stat cache as they were at the fork, and
leaves with ``os._exit``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import msgpack

from . import frames
from .preload import may_fork, spawn

MIN_FILES = 4096
"""Files (the entries that are not directories) under a tree from which a child is forked."""
CHILD_SHARE = 0.55
"""The child's share of the files: this process also walks subdirectories, encodes every
tree and stores every object (100,000 files in tmpfs, medians of 5: 0.45 -> 1.60 s,
0.55 -> 1.46 s, 0.6 -> 1.56 s; one process 1.76-1.86 s)."""
MIN_PARENT_SHARE = 0.25
"""Below this share of the files left to this process, no child: there would be little to overlap."""
MIN_SPLIT = 1024
"""Files of its share from which the child takes the last names of a directory whose first
ones this process does (so a flat directory of 100,000 files is shared too)."""

Walked = list[tuple[str, list[str], list[str]]]
"""Directories in the order a snapshot finishes them (subdirectories first, by name):
(path, sorted names of its entries, sorted names of its subdirectories)."""

Scan = Callable[[str, list[str]], "tuple[list[Any], dict[bytes, bytes]] | None"]
"""The child's work on one directory: (its result for this process, the typed encodings
(by raw id) its files need stored), or None to leave the directory to this process."""

_OBJECTS, _RESULTS = 0, 1


def walk_names(root: str) -> Walked:
    """Every directory under ``root`` (itself included) with its sorted entry names, in the
    order a snapshot finishes them; symlinks are not followed; an unreadable directory is left
    out with what is under it (the snapshot itself reports it).

    A directory whose link count is 2 has no subdirectory on the filesystems that count them
    (ext4, xfs, tmpfs; btrfs says 1: not counted): its names are listed without a type each,
    as ``find`` does (2x faster than ``scandir``). Were a filesystem to say 2 wrongly, only
    the child's share would be off: a subdirectory this walk did not see is walked by the
    snapshot itself."""
    out: Walked = []

    def walk(path: str, links: int) -> None:
        try:
            if links == 2:
                names = sorted(os.listdir(path))
                dirs: list[str] = []
            else:
                with os.scandir(path) as it:
                    entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
                entries.sort()
                names = [name for name, _ in entries]
                dirs = [name for name, is_dir in entries if is_dir]
        except OSError:
            return
        for name in dirs:
            sub = os.path.join(path, name)
            try:
                walk(sub, _link_count(sub))
            except OSError:
                continue
        out.append((path, names, dirs))

    try:
        walk(root, _link_count(root, follow=True))
    except OSError:
        pass
    return out


def _link_count(path: str, follow: bool = False) -> int:
    return (os.stat(path) if follow else os.lstat(path)).st_nlink


class ReaderChild:
    """The child's directories, taken one by one with :meth:`take`; :meth:`finish` when the
    walk is done (stores its last objects), :meth:`close` in any case."""

    def __init__(self, pid: int, fd: int, mine: list[str], store: Callable[[Any], None], split: dict[str, list[str]]) -> None:
        self._pid = pid
        self._split = split
        self._reader = frames.FrameReader(fd)
        self._number = {path: i for i, path in enumerate(mine)}
        self._store = store
        self._results: dict[int, Any] = {}

    @classmethod
    def start(
        cls,
        walked: Walked,
        scan: Scan,
        compress: Callable[[list[tuple[bytes, bytes]]], Any],
        missing: Callable[[list[bytes]], list[bytes]],
        store: Callable[[Any], None],
        batch_bytes: int,
        cpus: int,
    ) -> ReaderChild | None:
        """Fork a child for the last directories of ``walked``, about :data:`CHILD_SHARE` of the
        files (the last names of the directory before them too, if it holds many); None if the
        tree is small or forking is not allowed here.

        In the child, ``scan`` does each directory, ``missing`` tells which objects are not
        stored yet and ``compress`` turns about ``batch_bytes`` of their encodings at a time
        into what ``store`` (called here, with whatever ``compress`` returned) stores."""
        files = [len(names) - len(dirs) for _, names, dirs in walked]
        total = sum(files)
        if total < MIN_FILES or not may_fork(cpus):
            return None
        target = total * CHILD_SHARE
        share = 0
        at = len(walked)
        while at > 0 and share + files[at - 1] <= target:
            at -= 1
            share += files[at]
        mine = walked[at:]
        split: dict[str, list[str]] = {}
        if at > 0:
            path, names, _ = walked[at - 1]
            wanted = int(target - share)
            if wanted >= MIN_SPLIT and files[at - 1] - wanted >= MIN_SPLIT:
                cut = len(names) - wanted  # about: a subdirectory among them is skipped by the child
                mine = [(path, names[cut:], []), *mine]
                split[path] = names[:cut]
                share += wanted
            elif wanted > files[at - 1] / 2:
                mine = walked[at - 1 :]
                share += files[at - 1]
        if not mine or total - share < total * MIN_PARENT_SHARE:
            return None  # this process would only wait for the child
        r, w = frames.pipe()

        def child() -> None:
            os.close(r)
            _serve(w, mine, scan, compress, missing, batch_bytes)

        pid = spawn(child)
        os.close(w)
        return cls(pid, r, [path for path, _, _ in mine], store, split)

    def poll(self) -> None:
        """Store the objects that have arrived (the child goes on writing meanwhile)."""
        if not self._reader.done:
            self._handle(self._reader.poll())

    def owns(self, dirpath: str) -> bool:
        """Whether ``dirpath`` is one of the child's directories."""
        return dirpath in self._number

    def names_left(self, dirpath: str) -> list[str] | None:
        """The names of a directory shared with the child that this process does itself
        (the child has the others); None if the child has all of ``dirpath``."""
        return self._split.get(dirpath)

    def take(self, dirpath: str) -> list[Any] | None:
        """The child's result for ``dirpath`` (waiting for it), or None: not the child's,
        left to this process, or the child died before sending it."""
        number = self._number.get(dirpath)
        if number is None:
            return None
        while number not in self._results and not self._reader.done:
            self._handle(self._reader.wait())
        result: list[Any] | None = self._results.pop(number, None)
        return result

    def finish(self) -> None:
        """Wait for the child's end, storing the objects it still sends."""
        while not self._reader.done:
            self._handle(self._reader.wait())
        self.close()

    def _handle(self, got: list[bytes]) -> None:
        for frame in got:
            try:
                kind, payload = msgpack.unpackb(frame)
            except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                self._reader.closed = True  # nonsense: take nothing more from it
                return
            if kind == _OBJECTS:
                self._store(payload)
            elif kind == _RESULTS:
                self._results.update((int(i), result) for i, result in payload)

    def close(self) -> None:
        """Stop and reap the child if it still runs; close the pipe."""
        if self._pid:
            pid, self._pid = self._pid, 0
            if not self._reader.ended:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        if self._reader.fd >= 0:
            os.close(self._reader.fd)
            self._reader.fd = -1
            self._reader.closed = True
        self._results.clear()


def _serve(
    out: int,
    mine: Walked,
    scan: Scan,
    compress: Callable[[list[tuple[bytes, bytes]]], Any],
    missing: Callable[[list[bytes]], list[bytes]],
    batch_bytes: int,
) -> None:
    """The child: each directory of ``mine`` in turn; a result is sent only after every
    object it names (a directory may need objects an earlier one queued)."""
    seen: set[bytes] = set()
    batch: list[tuple[bytes, bytes]] = []
    size = 0
    ready: list[list[Any]] = []
    for number, (path, names, _) in enumerate(mine):
        try:
            got = scan(path, names)
        except Exception:  # anything unexpected: this process does the directory
            got = None
        if got is None:
            ready.append([number, None])
        else:
            result, encodings = got
            new = [o for o in encodings if o not in seen]
            seen.update(new)
            fresh = missing(new)
            batch += zip(fresh, map(encodings.__getitem__, fresh))
            size += sum(map(len, map(encodings.__getitem__, fresh)))
            ready.append([number, result])
        if size >= batch_bytes:
            frames.send(out, msgpack.packb([_OBJECTS, compress(batch)], use_bin_type=True))
            batch, size = [], 0
        if not batch and ready:
            _send_results(out, ready)
            ready = []
    if batch:
        frames.send(out, msgpack.packb([_OBJECTS, compress(batch)], use_bin_type=True))
    if ready:
        _send_results(out, ready)
    frames.write_all(out, frames.END)


def _send_results(out: int, ready: list[list[Any]]) -> None:
    try:
        payload = msgpack.packb([_RESULTS, ready], use_bin_type=True)
    except (TypeError, ValueError):  # a name msgpack cannot hold: those directories go back
        kept = []
        for number, result in ready:
            try:
                msgpack.packb(result, use_bin_type=True)
            except (TypeError, ValueError):
                result = None
            kept.append([number, result])
        payload = msgpack.packb([_RESULTS, kept], use_bin_type=True)
    frames.send(out, payload)
