"""Helpers shared by the reliability proofs (imported as ``reliability_helpers``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from objstore import ChunkedBlob, Commit, Repository
from objstore.maintenance import FsckReport

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable  # the venv's interpreter


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a child interpreter: the project importable, no stray remote."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PROJECT_ROOT), env.get("PYTHONPATH", "")] if p)
    env.pop("TRACKIO_REMOTE", None)
    env.update(extra)
    return env


def write_script(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


def start(script: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.Popen[str]:
    """``python script args...`` with stdout/stderr captured as text."""
    return subprocess.Popen(
        [PYTHON, str(script), *args],
        cwd=str(cwd or script.parent),
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def store_listing(root: Path | str, *, skip: tuple[str, ...] = ("cache",)) -> dict[str, tuple[int, str]]:
    """Every file under a store: relative path -> (size, sha256); local caches left out."""
    out: dict[str, tuple[int, str]] = {}
    root = str(root)
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root).replace(os.sep, "/")
        if rel_top == ".":
            dirs[:] = [d for d in dirs if d not in skip]
        for f in files:
            p = os.path.join(top, f)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            data = Path(p).read_bytes()
            out[rel] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def tree_snapshot(root: Path | str) -> dict[str, Any]:
    """Everything under ``root`` (files by content, symlinks by target, dirs), symlinks not followed."""
    out: dict[str, Any] = {}
    root = str(root)
    if not os.path.lexists(root):
        return out
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(top, name)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", hashlib.sha256(Path(p).read_bytes()).hexdigest())
    return out


def fsck_problems(report: FsckReport) -> dict[str, Any]:
    return {
        "bad_packs": report.bad_packs,
        "bad_objects": report.bad_objects,
        "missing_objects": report.missing_objects,
        "damaged_refs": report.damaged_refs,
        "bad_refs": report.bad_refs,
    }


class GraphReader:
    """Walks commits, trees and files from a start point and reads every byte back."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.commits: set[str] = set()
        self.trees: set[str] = set()
        self.files: set[str] = set()
        self.bytes_read = 0

    def commit_chain(self, start: str) -> list[str]:
        """Every commit reachable from ``start`` (newest first), each one's tree fully read."""
        order = []
        for cid, commit in self.repo.log(start):
            assert isinstance(commit, Commit)
            order.append(str(cid))
            if cid not in self.commits:
                self.commits.add(cid)
                self.tree(commit.tree)
        return order

    def tree(self, tree_id: str) -> None:
        stack = [tree_id]
        while stack:
            tid = stack.pop()
            if tid in self.trees:
                continue
            self.trees.add(tid)
            for entry in self.repo.get_tree(tid).entries:
                if entry.kind == "dir":
                    stack.append(entry.id)
                elif entry.kind == "file" and entry.id not in self.files:
                    self.files.add(entry.id)
                    obj = self.repo.get(entry.id)
                    if isinstance(obj, ChunkedBlob):
                        assert obj.size == entry.size, entry
                    # open_blob verifies every chunk against its id as it reads.
                    with self.repo.open_file(tid, entry.name) as f:
                        n = 0
                        while block := f.read(1 << 20):
                            n += len(block)
                    assert n == entry.size, (entry, n)
                    self.bytes_read += n


@contextlib.contextmanager
def mounted(kind: str, target: Path, source: Path | None = None, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` (``kind="tmpfs"``) or a read-only bind mount of ``source``
    (``kind="ro-bind"``) at ``target``; always unmounted. Skips the test when mounting
    is not permitted here."""
    import pytest

    target.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        steps = [["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)]]
    elif kind == "ro-bind":
        assert source is not None
        steps = [["mount", "--bind", str(source), str(target)], ["mount", "-o", "remount,bind,ro", str(target)]]
    else:
        raise ValueError(kind)
    done = 0
    try:
        for cmd in steps:
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.skip(f"cannot run {' '.join(cmd)!r}: {exc}")
            if proc.returncode != 0:
                pytest.skip(f"mount not permitted here ({' '.join(cmd)!r}: {proc.stderr.strip() or proc.returncode})")
            done += 1
        if kind == "ro-bind":
            probe = target / ".rw-probe"
            try:
                probe.write_bytes(b"x")
            except OSError:
                pass
            else:
                probe.unlink()
                pytest.skip("the read-only remount did not take effect")
        yield target
    finally:
        if done:
            proc = subprocess.run(["umount", str(target)], capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                subprocess.run(["umount", "-l", str(target)], capture_output=True, text=True, timeout=30)
