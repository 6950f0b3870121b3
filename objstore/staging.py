"""The local staging area for packs bound for a repository that is not local.

A push to S3, SFTP or a server first writes each pack to a local file and
uploads it whole. Those files live in one private folder of the user's under
the system temp dir, never loose in it, and each is held by an advisory lock
(``flock``) for as long as its writer lives. The kernel drops the lock when the
process dies, however it dies, so a file found unlocked belongs to nobody: a
writer killed mid-push (SIGKILL, power loss of a container, OOM) leaves a file
that the next writer of any process removes. A local repository stages its
packs in its own ``tmp/`` instead, which ``gc`` tidies.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import threading
import time

from .errors import StorageError

STAGED_SUFFIX = ".pack.tmp"
STALE_AFTER_S = 600.0
"""An unlocked staged file is removed only once it is this old: the moment
between creating a file and locking it must never look like a dead writer's."""

_swept: set[str] = set()
_swept_lock = threading.Lock()


def staging_dir() -> str:
    """This user's staging folder under the system temp dir (made private on first use).

    Raises ``StorageError`` if the name is taken by something that is not a
    directory of this user's (a symlink planted in a shared ``/tmp`` included).
    """
    path = os.path.join(tempfile.gettempdir(), f"objstore-staging-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot create the staging folder {path}: {exc.strerror or exc}") from exc
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise StorageError(f"{path} is not a directory owned by this user: refusing to stage packs there")
    with _swept_lock:
        first = path not in _swept
        _swept.add(path)
    if first:
        sweep(path)
    return path


def hold(fd: int) -> None:
    """Mark the staged file open at ``fd`` as in use until ``fd`` is closed."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def sweep(path: str, *, older_than: float = STALE_AFTER_S) -> int:
    """Remove staged files in ``path`` left by writers that are gone; return how many.

    A file is left alone while any process holds it (``hold``) or while it is
    younger than ``older_than`` seconds.
    """
    removed = 0
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    now = time.time()
    for name in names:
        if not name.endswith(STAGED_SUFFIX):
            continue
        full = os.path.join(path, name)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if now - os.fstat(fd).st_mtime < older_than:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its writer is alive
            try:
                os.unlink(full)
                removed += 1
            except FileNotFoundError:
                pass  # its writer finished (or a sweeper of another process won)
        finally:
            os.close(fd)
    return removed
