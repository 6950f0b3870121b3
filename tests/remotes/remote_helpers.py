"""Helpers shared by the remote tests (imported as ``remote_helpers``)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
VENV_BIN = Path(sys.executable).parent

S3_KEY = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child Python processes: the project importable, no stray remote."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PROJECT_ROOT), env.get("PYTHONPATH", "")] if p)
    env.pop("TRACKIO_REMOTE", None)
    env.update(extra)
    return env


def spawn(code: str, cwd: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start ``python -c code`` (dedented) in ``cwd``; output captured."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=subprocess_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """Wait for a child; fail with its output unless it exited 0."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"child timed out after {timeout} s\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}"
        ) from None
    assert proc.returncode == 0, f"child exited {proc.returncode}\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}"
    return out.decode()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- remote locations --------------------------------------------------------------


@dataclass
class Target:
    """One remote location on a real backend."""

    kind: str  # file | memory | s3 | sftp | server
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    local_root: str | None = None  # server: the folder behind it

    def fs(self) -> tuple[Any, str]:
        """A raw fsspec filesystem and the repository root on it."""
        import fsspec

        if self.local_root is not None:
            return fsspec.filesystem("file"), self.local_root
        if self.kind == "file":
            return fsspec.filesystem("file"), self.url[len("file://") :]
        return fsspec.core.url_to_fs(self.url, **self.storage_options)  # type: ignore[no-any-return]

    def files(self, sub: str) -> list[str]:
        """Names of the files directly in ``<root>/<sub>`` ([] if missing)."""
        fs, root = self.fs()
        fs.invalidate_cache()
        try:
            entries = fs.ls(f"{root}/{sub}", detail=False)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def packs(self, suffix: str = ".pack") -> list[str]:
        return [n for n in self.files("packs") if n.endswith(suffix)]

    def read(self, path: str) -> bytes:
        fs, root = self.fs()
        return bytes(fs.cat_file(f"{root}/{path}"))

    def flip_byte(self, path: str, offset: int) -> None:
        """Invert one byte of a stored file (in place where the backend allows it)."""
        fs, root = self.fs()
        full = f"{root}/{path}"
        if self.kind in ("file", "sftp", "server"):
            with fs.open(full, "r+b") as f:
                f.seek(offset)
                b = f.read(1)
                f.seek(offset)
                f.write(bytes([b[0] ^ 0xFF]))
        else:  # object stores: rewrite the whole object
            data = bytearray(fs.cat_file(full))
            data[offset] ^= 0xFF
            fs.pipe_file(full, bytes(data))
        fs.invalidate_cache()

    def child_options(self) -> str:
        """``storage_options`` as Python source for a child process."""
        return repr(self.storage_options)


# -- trees on disk -------------------------------------------------------------------


def make_sample(root: Path, seed: int = 0) -> Path:
    """Nested dirs, an empty file, an executable, a ~3 MB multi-chunk file."""
    rng = random.Random(seed)
    files = {
        "README.md": b"# sample\n" * 20,
        "empty.txt": b"",
        "bin/run.sh": b"#!/bin/sh\necho hello\n",
        "data/nested/deeper/values.csv": "\n".join(f"{i},{rng.random()}" for i in range(500)).encode(),
        "data/nested/small.bin": rng.randbytes(4096),
        "data/big.bin": rng.randbytes(3 * 1024 * 1024 + 12345),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, 0o644)
    os.chmod(root / "bin/run.sh", 0o755)
    (root / "empty-dir-sibling").mkdir(exist_ok=True)
    (root / "empty-dir-sibling" / "x.txt").write_bytes(b"x")
    return root


def dir_state(root: Path | str) -> dict[str, tuple[Any, ...]]:
    """Files (sha256, size, exec bit) and directories under ``root``."""
    out: dict[str, tuple[Any, ...]] = {}
    root = str(root)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(top, name)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                data = Path(p).read_bytes()
                out[rel] = ("file", hashlib.sha256(data).hexdigest(), len(data), bool(st.st_mode & stat.S_IXUSR))
    return out


# -- trackio isolation -------------------------------------------------------------


def reset_trackio() -> None:
    """Forget every open store, view, active run and sync memory of this process."""
    import trackio.remote_sync
    import trackio.run
    import trackio.store

    run = trackio.run._current
    trackio.run._current = None
    if run is not None and run._active:
        try:
            run.finish()
        except Exception:
            pass
    worker = trackio.remote_sync._worker
    if worker is not None and worker.thread.is_alive():
        worker.jobs.join()  # let a queued push end before its store is closed
    trackio.remote_sync.forget_views()
    trackio.remote_sync._warned.clear()
    trackio.remote_sync._renumbered.clear()
    trackio.store.close_all()
