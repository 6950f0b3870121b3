"""Crash safety: a writer killed with SIGKILL at any instant leaves a readable, consistent store."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import PROJECT_ROOT, write

from objstore import ChunkedBlob, Commit, Repository

pytestmark = pytest.mark.slow

# The child snapshots the data dir, commits on top of "main", moves "main" and
# its own ref, prints each commit id once its ref-set returned, and loops,
# adding a fresh random file each round so every round writes new packs.
_CHILD = r"""
import os, random, sys
from objstore import Repository
from objstore.errors import RefNotFound
repo_path, data_dir, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
repo = Repository.open(repo_path)
gen = os.path.join(data_dir, "gen")
os.makedirs(gen, exist_ok=True)
i = 0
while True:
    name = os.path.join(gen, f"{seed}-{i}.bin")
    with open(name, "wb") as f:
        f.write(rng.randbytes(rng.randint(200_000, 2_000_000)))
    for old in sorted(os.listdir(gen))[:-2]:  # keep the data dir bounded
        os.unlink(os.path.join(gen, old))
    tree = repo.snapshot(data_dir)
    try:
        parents = [repo.refs.get("main")]
    except RefNotFound:
        parents = []
    c = repo.commit(tree, parents, message=f"{seed}-{i}", metadata={"seed": seed, "i": i})
    repo.refs.set("main", c)
    repo.refs.set(f"runs/{seed}", c)
    print(c, flush=True)
    i += 1
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """~60 MB in ~450 files, created once."""
    d = tmp_path_factory.mktemp("crash-data") / "data"
    rng = random.Random(2024)
    for i in range(40):
        write(d / "big" / f"part-{i:02}.bin", rng.randbytes(1_500_000))
    for i in range(400):
        write(d / "small" / f"{i // 50}" / f"s{i}.txt", (f"line {i} " * rng.randint(1, 400)).encode())
    write(d / "bin" / "tool.sh", b"#!/bin/sh\n", executable=True)
    (d / "empty").mkdir()
    os.symlink("bin/tool.sh", d / "link")
    return d


def _run_and_kill(repo_path, data_dir, seed: int, delay: float, min_acks: int = 0) -> list[str]:
    """Start a writer, kill it ``delay`` s after start (or after its ``min_acks``-th ack); return its acks."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(repo_path), str(data_dir), str(seed)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acks: list[str] = []
    reader = threading.Thread(target=lambda: acks.extend(line.decode().strip() for line in child.stdout))
    reader.start()
    deadline = time.monotonic() + 60
    while len(acks) < min_acks and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if child.poll() is not None:
        reader.join()
        pytest.fail(f"writer exited on its own ({child.returncode}): {child.stderr.read().decode()}")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    reader.join(timeout=60)
    err = child.stderr.read().decode()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL, err
    assert len(acks) >= min_acks
    return [a for a in acks if a]


def _verify_graph(repo: Repository, start: str, seen_commits: set, seen_trees: set, seen_files: set) -> list[str]:
    """Read back and verify every commit, tree, chunk list and chunk reachable from ``start``."""
    order = []
    for cid, commit in repo.log(start):
        assert isinstance(commit, Commit)
        order.append(cid)
        if cid in seen_commits:
            continue
        seen_commits.add(cid)
        stack = [commit.tree]
        while stack:
            tid = stack.pop()
            if tid in seen_trees:
                continue
            seen_trees.add(tid)
            for entry in repo.get_tree(tid).entries:
                if entry.kind == "dir":
                    stack.append(entry.id)
                elif entry.kind == "file" and entry.id not in seen_files:
                    seen_files.add(entry.id)
                    obj = repo.get(entry.id)
                    if isinstance(obj, ChunkedBlob):
                        assert obj.size == entry.size
                        n = sum(len(repo.odb.get_encoded(c)) - 1 for c, _ in obj.chunks)
                    else:
                        n = obj.size
                    assert n == entry.size
    return order


def test_sigkill_at_random_instants_leaves_a_consistent_store(tmp_path, data_dir):
    rng = random.Random(77)
    shared = tmp_path / "shared-repo"
    Repository.init(shared, pack_size=1 << 20).close()
    printed: dict[str, list[str]] = {}

    # Phase 1: one store, killed again and again (each run builds on the debris of the last).
    for k in range(8):
        # Odd runs are killed a moment after they acknowledged some commits (so acks surely get checked).
        min_acks = rng.randint(1, 3) if k % 2 else 0
        delay = rng.uniform(0.0, 0.3) if min_acks else rng.uniform(0.25, 1.5)
        printed[f"shared-{k}"] = _run_and_kill(shared, data_dir, seed=k, delay=delay, min_acks=min_acks)
        _check_store(shared, printed, prefix="shared-")

    # Phase 2: fresh stores killed during their first large ingest.
    for k in range(4):
        fresh = tmp_path / f"fresh-{k}"
        Repository.init(fresh, pack_size=1 << 20).close()
        printed_fresh = {"x": _run_and_kill(fresh, data_dir, seed=100 + k, delay=rng.uniform(0.2, 0.7))}
        _check_store(fresh, printed_fresh, prefix="x")

    # The surviving store is fully usable afterwards.
    repo = Repository.open(shared)
    tree = repo.snapshot(data_dir)
    c = repo.commit(tree, [repo.refs.get("main")], message="after the crashes")
    repo.refs.set("main", c)
    out = tmp_path / "out"
    repo.checkout("main", out)
    for rel in ["big/part-00.bin", "big/part-39.bin", "small/7/s399.txt", "bin/tool.sh"]:
        assert (out / rel).read_bytes() == (data_dir / rel).read_bytes()
    assert os.readlink(out / "link") == "bin/tool.sh"


def _check_store(path, printed: dict[str, list[str]], prefix: str) -> None:
    repo = Repository.open(path)
    try:
        refs = repo.refs.list()
        seen_c: set = set()
        seen_t: set = set()
        seen_f: set = set()
        for target in refs.values():
            _verify_graph(repo, target, seen_c, seen_t, seen_f)
        # Every value any ref ever held is a complete commit too.
        for name in repo.refs.names():
            for entry in repo.refs.history(name):
                if entry.new:
                    _verify_graph(repo, entry.new, seen_c, seen_t, seen_f)
        # Commits whose ref-set returned before the kill are in main's history.
        main_values = [e.new for e in repo.refs.history("main")] if "main" in refs else []
        main_log = set(_verify_graph(repo, "main", seen_c, seen_t, seen_f)) if "main" in refs else set()
        for key, ids in printed.items():
            if not key.startswith(prefix):
                continue
            for cid in ids:
                assert cid in main_values, f"{cid} was acknowledged but is not in main's history"
                assert cid in main_log, f"{cid} was acknowledged but is not reachable from main"
                assert repo.get_commit(cid).metadata["i"] >= 0
        repo.stats()  # accounting over every published pack works too
    finally:
        repo.close()
