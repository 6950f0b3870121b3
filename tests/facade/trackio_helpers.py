"""Helpers shared by the trackio test modules (imported as ``trackio_helpers``)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def rand_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def write(path: Path | str, data: bytes | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_listing(home: Path | str) -> dict[str, tuple[int, str]]:
    """Every stored file under TRACKIO_DIR: relative path -> (size, sha256).

    objstore's local stat cache (``cache/``) is a speed-up, not stored data
    (``Repository.stats`` leaves it out of ``files_on_disk`` too), so it is
    left out here as well.
    """
    out: dict[str, tuple[int, str]] = {}
    root = str(home)
    if not os.path.exists(root):
        return out
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root).replace(os.sep, "/")
        if rel_top.split("/")[-1] == "cache" or "/cache/" in f"/{rel_top}/":
            dirs[:] = []
            continue
        for f in files:
            p = os.path.join(top, f)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            data = Path(p).read_bytes()
            out[rel] = (len(data), sha256(data))
    return out


def tree_listing(root: Path | str) -> dict[str, bytes]:
    """Every file under ``root``: '/'-separated relative path -> bytes."""
    out: dict[str, bytes] = {}
    for top, _dirs, files in os.walk(str(root)):
        for f in files:
            p = os.path.join(top, f)
            out[os.path.relpath(p, str(root)).replace(os.sep, "/")] = Path(p).read_bytes()
    return out


def run_python(code: str, cwd: Path | str, env_extra: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """Run ``code`` in a fresh interpreter (same venv); return the JSON it prints on its last line.

    TRACKIO_DIR is inherited from the test's environment.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"subprocess failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None
