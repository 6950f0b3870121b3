"""Helpers shared by the test modules (imported as ``helpers``)."""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path

from objstore.chunking import ChunkParams

# Small chunking so multi-chunk files are a few KiB, not megabytes.
SMALL = ChunkParams(min_size=256, avg_size=1024, max_size=4096, small_file=1024)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def rand_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def write(path: Path | str, data: bytes, executable: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o755 if executable else 0o644)
    return path


def age(root: Path | str, seconds: int = 3600) -> None:
    """Set every file and directory under ``root`` ``seconds`` back (old enough for a stat cache to trust)."""
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9), follow_symlinks=False)


def linear_commits(repo, workdir: Path, count: int) -> list[str]:
    """``count`` commits of one small tree, each the parent of the next (timestamps 0, 1, ...)."""
    write(Path(workdir) / "d" / "f", b"content")
    tree = repo.snapshot(Path(workdir) / "d")
    out: list[str] = []
    for i in range(count):
        out.append(repo.commit(tree, out[-1:], message=f"c{i}", timestamp=float(i)))
    return out


def listing(root: Path | str) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: relative path -> (size, sha256). Symlinks are not followed."""
    out: dict[str, tuple[int, str]] = {}
    root = str(root)
    for top, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            p = os.path.join(top, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = (-1, "link:" + os.readlink(p))
            else:
                data = Path(p).read_bytes()
                out[rel] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def dir_state(root: Path | str) -> dict[str, tuple]:
    """What a user sees under ``root``: files (bytes, exec bit), symlinks (target), dirs."""
    out: dict[str, tuple] = {}
    root = str(root)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(top, name)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", Path(p).read_bytes(), bool(st.st_mode & stat.S_IXUSR))
    return out


def pack_files(repo_path: Path | str) -> set[str]:
    d = Path(repo_path) / "packs"
    return {p.name for p in d.iterdir()} if d.exists() else set()


def flip_byte(path: Path | str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def object_location(repo, object_id: str) -> tuple[Path, int, int]:
    """(pack path, payload offset, payload length) of a stored object."""
    loc = repo.odb.locate(bytes.fromhex(object_id))
    assert loc is not None, f"{object_id} is not in any published pack"
    name, entry = loc
    return Path(repo.storage.root) / "packs" / f"{name}.pack", entry.offset, entry.stored_length


def damage(repo, object_id: str, where: float = 0.5):
    """Flip one byte of a stored object's payload (at ``where`` of its length, the last
    byte at most) with ``repo`` closed; return the repository opened again."""
    from objstore import Repository

    pack, offset, length = object_location(repo, object_id)
    root = repo.storage.root
    repo.close()
    flip_byte(pack, offset + min(int(length * where), length - 1))
    return Repository.open(root)
