"""The few primitive operations a repository needs from a filesystem.

A repository is a folder on any fsspec filesystem. ``LocalStorage`` talks to
the OS directly (fsync, rename, ``link`` for put-if-absent, mmap for reads)
because that is where speed and crash safety are won; ``FsspecStorage``
maps the same operations onto any fsspec filesystem (``memory://``,
``s3://``, ``sftp://``...). Paths are relative to the repository root and
always use ``/``.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    import fsspec

from .errors import StorageError, TooLarge

# Filesystems whose single-object writes are atomic (an object appears whole
# or not at all), so a direct put needs no temp-and-rename dance.
_memory_lock = threading.Lock()
_MAX_OPEN_PACKS = 128
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "adl", "memory", "hf", "oss"}


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn OS-level write failures into a ``StorageError`` naming the target."""
    try:
        yield
    except FileExistsError:
        raise
    except FileNotFoundError:
        raise
    except OSError as exc:
        reason = {
            errno.ENOSPC: "no space left on device",
            errno.EROFS: "read-only filesystem",
            errno.EACCES: "permission denied",
            errno.EDQUOT: "disk quota exceeded",
        }.get(exc.errno or 0, str(exc))
        raise StorageError(f"cannot write {what}: {reason}") from exc


def temp_name(suffix: str = "") -> str:
    return f"{uuid.uuid4().hex}{suffix}"


class Storage(ABC):
    """Primitive, repository-relative file operations."""

    url: str
    is_local: bool = False
    smart: bool = False
    """Served by an objstore server: push and fetch speak its protocol."""

    @abstractmethod
    def read(self, path: str) -> bytes: ...

    def read_bounded(self, path: str, limit: int) -> bytes:
        """The whole of a small file; ``TooLarge`` (before reading it) if it is over ``limit`` bytes."""
        size = self.size(path)
        if size > limit:
            raise TooLarge(path, size, limit)
        return self.read(path)

    @abstractmethod
    def read_range(self, path: str, start: int, length: int) -> bytes | memoryview: ...

    @abstractmethod
    def write_atomic(self, path: str, data: bytes) -> None:
        """Create or replace ``path`` so readers see the old or the new bytes."""

    @abstractmethod
    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists; False if it did."""

    @abstractmethod
    def publish_file(self, local_path: str, path: str) -> None:
        """Move (or upload) a finished local temp file to ``path``."""

    @abstractmethod
    def listdir(self, dirpath: str) -> list[str]:
        """Names of the entries directly in ``dirpath`` ([] if it is missing)."""

    @abstractmethod
    def walk_files(self, dirpath: str) -> list[str]:
        """Every file under ``dirpath`` as a path relative to the root."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def size(self, path: str) -> int: ...

    @abstractmethod
    def delete(self, path: str) -> None: ...

    def local_temp_dir(self) -> str:
        """A local directory for files that will be published here.

        For a storage that is not local this is the user's private staging
        folder (``objstore.staging``), where files left by killed writers are
        swept away.
        """
        from .staging import staging_dir

        return staging_dir()

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release cached handles."""


class LocalStorage(Storage):
    """A repository in a local directory."""

    is_local = True

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root
        self._maps: dict[str, tuple[Any, mmap.mmap | None]] = {}
        self._fds: dict[str, tuple[int, int]] = {}  # path -> (fd, size) of an immutable pack
        self._maps_lock = threading.Lock()

    def full(self, path: str) -> str:
        return os.path.join(self.root, *path.split("/")) if path else self.root

    def read(self, path: str) -> bytes:
        with open(self.full(path), "rb") as f:
            return f.read()

    def read_bounded(self, path: str, limit: int) -> bytes:
        with open(self.full(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise TooLarge(path, size, limit)
            return f.read(limit + 1)

    def mmap(self, path: str) -> memoryview:
        """A read-only view of an immutable file, cached for reuse."""
        with self._maps_lock:
            hit = self._maps.get(path)
            if hit is None:
                with open(self.full(path), "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    m = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else None
                hit = self._maps[path] = (memoryview(m) if m is not None else memoryview(b""), m)
            return hit[0]  # type: ignore[no-any-return]

    def _fd(self, path: str) -> tuple[int, int]:
        with self._maps_lock:
            hit = self._fds.get(path)
            if hit is None:
                if len(self._fds) >= _MAX_OPEN_PACKS:  # stay far from the fd limit
                    os.close(self._fds.pop(next(iter(self._fds)))[0])
                fd = os.open(self.full(path), os.O_RDONLY)
                hit = self._fds[path] = (fd, os.fstat(fd).st_size)
            return hit

    def read_range(self, path: str, start: int, length: int) -> bytes:
        # pread, not mmap: pages of a mapped 10 GB pack would count as this
        # process's memory; a read copies one chunk and lets it go.
        fd, size = self._fd(path)
        if start < 0 or length < 0 or start + length > size:
            # Before any buffer exists: an index entry may claim any length.
            raise EOFError(f"{path} is truncated: wanted bytes {start}..{start + length}, it has {size}")
        data = os.pread(fd, length, start)
        if len(data) != length:
            raise EOFError(f"{path} is truncated: wanted bytes {start}..{start + length}, got {len(data)}")
        return data

    def _tmp(self, suffix: str = "") -> str:
        d = os.path.join(self.root, "tmp")
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, temp_name(suffix))

    def _fsync_dir(self, d: str) -> None:
        try:
            fd = os.open(d, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_tmp(self, data: bytes) -> str:
        tmp = self._tmp()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    def write_atomic(self, path: str, data: bytes) -> None:
        final = self.full(path)
        with storage_errors(path):
            tmp = self._write_tmp(data)
            try:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(tmp, final)
            except BaseException:
                _unlink_quietly(tmp)
                raise
            self._fsync_dir(os.path.dirname(final))

    def put_if_absent(self, path: str, data: bytes) -> bool:
        # link() publishes a fully written, fsynced file under the final name
        # and fails if the name exists: put-if-absent with no torn entries.
        final = self.full(path)
        if os.path.lexists(final):
            return False  # cheap answer, and a read-only store still says "exists"
        with storage_errors(path):
            tmp = self._write_tmp(data)
            try:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.link(tmp, final)
            except FileExistsError:
                return False
            finally:
                _unlink_quietly(tmp)
            self._fsync_dir(os.path.dirname(final))
            return True

    def publish_file(self, local_path: str, path: str) -> None:
        final = self.full(path)
        with storage_errors(path):
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(local_path, final)
            self._fsync_dir(os.path.dirname(final))

    def local_temp_dir(self) -> str:
        d = os.path.join(self.root, "tmp")
        with storage_errors("tmp/"):
            os.makedirs(d, exist_ok=True)
        return d

    def listdir(self, dirpath: str) -> list[str]:
        try:
            return os.listdir(self.full(dirpath))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk_files(self, dirpath: str) -> list[str]:
        base = self.full(dirpath)
        out: list[str] = []
        for top, _dirs, files in os.walk(base):
            rel = os.path.relpath(top, self.root).replace(os.sep, "/")
            out.extend(f"{rel}/{f}" for f in files)
        return out

    def exists(self, path: str) -> bool:
        return os.path.exists(self.full(path))

    def size(self, path: str) -> int:
        return os.path.getsize(self.full(path))

    def delete(self, path: str) -> None:
        with self._maps_lock:
            self._maps.pop(path, None)
            hit = self._fds.pop(path, None)
        if hit is not None:
            os.close(hit[0])
        _unlink_quietly(self.full(path))

    def close(self) -> None:
        with self._maps_lock:
            maps, self._maps = self._maps, {}
            fds, self._fds = self._fds, {}
        for fd, _ in fds.values():
            os.close(fd)
        for view, m in maps.values():
            try:
                view.release()
                if m is not None:
                    m.close()
            except (BufferError, ValueError):
                pass  # a caller still holds a slice; the GC will unmap it


class FsspecStorage(Storage):
    """A repository in a folder of any fsspec filesystem."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, url: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        self.atomic_put = any(p in _OBJECT_STORES for p in protocols)
        self.is_memory = "memory" in protocols
        self.is_sftp = any(p in ("sftp", "ssh") for p in protocols)
        # Web servers' directory listings give names URL-quoted ("@" as "%40").
        self.is_http = any(p in ("http", "https") for p in protocols)
        # One paramiko SFTP channel cannot carry requests from several
        # threads at once (they deadlock): serialize them.
        self._serial: threading.Lock | None = threading.Lock() if self.is_sftp else None
        self._ls_fresh = _takes_refresh(fs.ls)
        self._info_fresh = _takes_refresh(fs.info, by_name=True)

    def _one_at_a_time(self) -> AbstractContextManager[object]:
        return self._serial if self._serial is not None else nullcontext()

    def full(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    def read(self, path: str) -> bytes:
        # A cached listing of the parent (s3fs keeps them) must not hide a
        # file written since, such as a ref entry another writer just added.
        self.fs.invalidate_cache(self.full(path))
        with self._one_at_a_time():
            return self.fs.cat_file(self.full(path))  # type: ignore[no-any-return]

    def read_bounded(self, path: str, limit: int) -> bytes:
        # One ranged read of limit + 1 bytes: whatever the file's size, no
        # more than that arrives, and one byte too many tells it is too large.
        self.fs.invalidate_cache(self.full(path))
        try:
            with self._one_at_a_time():
                data: bytes = self.fs.cat_file(self.full(path), start=0, end=limit + 1)
        except PermissionError:
            # Ask the way read() does, so a refusal is worded the same (S3
            # answers a HEAD with "Forbidden", a ranged GET with "Access Denied").
            data = self.read(path)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            data = self.read(path)  # S3 refuses any range of an empty object
        if len(data) > limit:
            raise TooLarge(path, self.size(path), limit)
        return data

    def read_range(self, path: str, start: int, length: int) -> bytes:
        try:
            with self._one_at_a_time():
                data: bytes = self.fs.cat_file(self.full(path), start=start, end=start + length)
        except (ValueError, OverflowError) as exc:  # an offset the OS cannot even seek to
            raise EOFError(f"{path} has no bytes {start}..{start + length} ({exc})") from None
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # a range past the end (S3's InvalidRange, a seek beyond the OS limit)
                raise
            raise EOFError(f"{path} has no bytes {start}..{start + length} ({exc})") from None
        if self.is_http and len(data) > length:
            data = data[start : start + length]  # a web server that ignores Range sends the whole file
        if len(data) != length:
            raise EOFError(f"{path} is truncated: wanted bytes {start}..{start + length}")
        return data

    def write_atomic(self, path: str, data: bytes) -> None:
        with storage_errors(path):
            if self.atomic_put:
                self.fs.pipe_file(self.full(path), data)
                return
            tmp = self.full(f"tmp/{temp_name()}")
            self._makedirs(f"tmp/{temp_name()}")
            with self._one_at_a_time():
                self.fs.pipe_file(tmp, data)
            self._makedirs(path)
            try:
                with self._one_at_a_time():
                    self.fs.mv(tmp, self.full(path))
            except OSError:
                # SFTP renames refuse to replace; the files written this
                # way (pack indexes) are named by content, so an existing
                # one already holds these bytes.
                if not self.exists(path):
                    raise
                self.delete(f"tmp/{tmp.rsplit('/', 1)[-1]}")

    def _makedirs(self, path: str) -> None:
        """Parent directories of ``path`` (another writer creating them too is fine)."""
        parent = self.fs._parent(self.full(path))
        try:
            with self._one_at_a_time():
                self.fs.makedirs(parent, exist_ok=True)
        except OSError:
            if not self.fs.isdir(parent):
                raise

    def put_if_absent(self, path: str, data: bytes) -> bool:
        if self.is_memory:
            # fsspec's memory filesystem checks and creates in two steps; it
            # lives in this process, so a lock makes the pair atomic.
            with _memory_lock:
                if self.fs.exists(self.full(path)):
                    return False
                self.fs.pipe_file(self.full(path), data)
                return True
        with storage_errors(path):
            if not self.atomic_put:
                self._makedirs(path)
            if self.is_sftp:
                return self._sftp_put_if_absent(path, data)
            try:
                with self.fs.open(self.full(path), "xb") as f:
                    f.write(data)
            except FileExistsError:
                return False
            return True

    def _sftp_put_if_absent(self, path: str, data: bytes) -> bool:
        # Write a temp file, then SSH_FXP_RENAME it into place: OpenSSH's
        # sftp-server renames by link()+unlink(), which fails if the name
        # exists, so readers never see a partly written entry and exactly
        # one writer wins. (It answers a bare "Failure"; a look tells why.)
        tmp = self.full(f"tmp/{temp_name()}")
        self._makedirs(f"tmp/{temp_name()}")
        with self._one_at_a_time():
            with self.fs.ftp.open(tmp, "wb") as f:
                f.write(data)
            try:
                self.fs.ftp.rename(tmp, self.full(path))
                return True
            except OSError:
                try:
                    self.fs.ftp.remove(tmp)
                except OSError:
                    pass
        if self.exists(path):
            return False
        raise StorageError(f"cannot create {path} on {self.url}")

    def publish_file(self, local_path: str, path: str) -> None:
        with storage_errors(path):
            if not self.atomic_put:
                self._makedirs(path)
            self.fs.put_file(local_path, self.full(path))
        os.unlink(local_path)

    def listdir(self, dirpath: str) -> list[str]:
        # Listings decide ref sequence numbers and which packs exist: a
        # cached listing (s3fs keeps one) would make a writer retry forever,
        # or a server miss the pack it was just sent. Invalidating first is
        # not enough: another thread's listing, sent before that pack was
        # written and answered after, can refill the cache in between; so
        # the backend is asked to go to the store where it can be told to.
        self.fs.invalidate_cache(self.full(dirpath))
        try:
            with self._one_at_a_time():
                if self._ls_fresh:
                    entries = self.fs.ls(self.full(dirpath), detail=False, refresh=True)
                else:
                    entries = self.fs.ls(self.full(dirpath), detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = [e.rstrip("/").rsplit("/", 1)[-1] for e in entries]
        return [unquote(n) for n in names] if self.is_http else names

    def walk_files(self, dirpath: str) -> list[str]:
        self.fs.invalidate_cache(self.full(dirpath))
        try:
            with self._one_at_a_time():
                found = self.fs.find(self.full(dirpath))
        except FileNotFoundError:
            return []
        root = self.root.lstrip("/")
        out = []
        for p in found:
            p2 = p.lstrip("/")
            rel = p2[len(root) + 1 :] if root else p2
            out.append(unquote(rel) if self.is_http else rel)
        return out

    def exists(self, path: str) -> bool:
        # As for listdir: another thread's listing can refill the cache after
        # the invalidation; an info that can bypass it is asked instead.
        if self._info_fresh:
            try:
                self._fresh_info(path)
            except FileNotFoundError:
                return False
            return True
        self.fs.invalidate_cache(self.full(path))
        with self._one_at_a_time():
            return bool(self.fs.exists(self.full(path)))

    def size(self, path: str) -> int:
        if self._info_fresh:
            return int(self._fresh_info(path)["size"])
        self.fs.invalidate_cache(self.full(path))
        with self._one_at_a_time():
            return int(self.fs.size(self.full(path)))

    def _fresh_info(self, path: str) -> dict[str, Any]:
        with self._one_at_a_time():
            return dict(self.fs.info(self.full(path), refresh=True))

    def delete(self, path: str) -> None:
        try:
            self.fs.rm_file(self.full(path))
        except FileNotFoundError:
            pass


def _takes_refresh(method: Any, *, by_name: bool = False) -> bool:
    """Whether a filesystem method accepts ``refresh=``: a listing (``ls``: s3fs, HF and
    most others; fsspec's SFTP does not) or an ``info`` (s3fs, HF) that bypasses the
    listings cache. With ``by_name``, only a parameter so named counts: an ``info`` that
    takes ``**kwargs`` may hand them on to a call that refuses them."""
    import inspect

    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "refresh" or (not by_name and p.kind is inspect.Parameter.VAR_KEYWORD) for p in params)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def open_storage(location: str, storage_options: dict[str, Any] | None = None) -> Storage:
    """Storage for a local path, a ``file://`` URL, an objstore server or any fsspec URL."""
    if "://" not in location or location.startswith("file://"):
        path = location[len("file://") :] if location.startswith("file://") else location
        return LocalStorage(os.path.expanduser(path))
    if location.startswith(("http://", "https://")):
        # An objstore server answers its info endpoint; any other web server
        # is read as a static folder through fsspec, as before.
        from .http import dumb_options, probe

        served = probe(location, storage_options)
        if served is not None:
            return served
        storage_options = dumb_options(storage_options)
    import fsspec  # only for remote URLs: importing it (and asyncio) costs a third of startup

    fs, root = fsspec.core.url_to_fs(location, **(storage_options or {}))
    return FsspecStorage(fs, root, location)
