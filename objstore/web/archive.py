"""A whole version as a streamed .zip or .tar: constant memory, whatever its size.

Files are read one block at a time from the store (verified chunks) and
handed to the response as they are produced, so a 1 GiB version never sits
in memory. External references and symlinks hold no stored bytes and are
listed in ``REFERENCES.txt`` at the archive's root instead.
"""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from collections.abc import Iterator

from ..objects import TreeEntry
from ..repo import Repository

BLOCK = 1 << 20


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream whose bytes are taken out as they arrive."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._parts.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def _members(repo: Repository, tree: str, path: str) -> tuple[list[tuple[str, TreeEntry]], list[str]]:
    files, notes = [], []
    prefix = path.strip("/")
    for p, e in repo.walk(tree, prefix):
        rel = p[len(prefix) + 1 :] if prefix and p.startswith(prefix + "/") else p
        if e.kind == "file":
            files.append((rel, e))
        elif e.kind == "reference":
            notes.append(f"{rel}\t{e.target}\t{e.digest or ''}\t{e.size}")
        elif e.kind == "symlink":
            notes.append(f"{rel}\t-> {e.target}")
    return files, notes


def _blocks(repo: Repository, tree: str, path: str) -> Iterator[bytes]:
    with repo.open_file(tree, path) as f:
        while block := f.read(BLOCK):
            yield block


def stream_zip(repo: Repository, tree: str, path: str = "", mtime: float | None = None) -> Iterator[bytes]:
    files, notes = _members(repo, tree, path)
    sink = _Sink()
    stamp = time.gmtime(mtime or time.time())[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for rel, e in files:
            info = zipfile.ZipInfo(rel, date_time=stamp)
            info.external_attr = (e.mode & 0o777) << 16
            with zf.open(info, "w", force_zip64=e.size >= 1 << 31) as w:
                for block in _blocks(repo, tree, f"{path}/{rel}" if path else rel):
                    w.write(block)
                    yield sink.take()
            yield sink.take()
        if notes:
            zf.writestr(zipfile.ZipInfo("REFERENCES.txt", date_time=stamp), "\n".join(notes) + "\n")
    yield sink.take()


def stream_tar(repo: Repository, tree: str, path: str = "", mtime: float | None = None) -> Iterator[bytes]:
    files, notes = _members(repo, tree, path)
    stamp = int(mtime or time.time())
    written = 0

    def header(name: str, size: int, mode: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, stamp
        return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")

    def pad(n: int) -> bytes:
        return b"\0" * (-n % tarfile.BLOCKSIZE)

    for rel, e in files:
        h = header(rel, e.size, e.mode & 0o777)
        yield h
        n = 0
        for block in _blocks(repo, tree, f"{path}/{rel}" if path else rel):
            n += len(block)
            yield block
        yield pad(n)
        written += len(h) + n + len(pad(n))
    if notes:
        body = ("\n".join(notes) + "\n").encode()
        h = header("REFERENCES.txt", len(body), 0o644)
        yield h + body + pad(len(body))
        written += len(h) + len(body) + len(pad(len(body)))
    end = b"\0" * (2 * tarfile.BLOCKSIZE)
    written += len(end)
    yield end + b"\0" * (-written % tarfile.RECORDSIZE)


def file_blocks(repo: Repository, tree: str, path: str) -> Iterator[bytes]:
    """One stored file, block by block (for a streamed download)."""
    yield from _blocks(repo, tree, path)
