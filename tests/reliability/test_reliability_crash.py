"""Crash safety: a writer SIGKILLed at 50 random instants never leaves a damaged store.

The child loops over snapshot -> commit (with parent) -> refs.set, pushes to a
``file://`` remote every few rounds and runs ``gc(grace=0)`` and ``repack()``
now and then; it prints each commit id once ``refs.set`` returned. After every
kill the store (and the remote) must open, fsck clean, have every ref (and
every value a ref ever held) resolve to a complete graph whose every byte
reads back, and hold every commit the child acknowledged.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest
from reliability_helpers import GraphReader, fsck_problems, start, tree_snapshot, write_script

from objstore import ChunkParams, Repository

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ITERATIONS = 50
CHUNKING = ChunkParams(min_size=4096, avg_size=16384, max_size=65536, small_file=16384)
KILLS_PER_STORE = 10  # every 10 kills a fresh store (and remote): first ingests get killed too

CHILD = r"""
import os, random, sys
from datetime import timedelta
from objstore import Repository
from objstore.errors import RefNotFound

repo_path, data_dir, remote, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rng = random.Random(seed)
repo = Repository.open(repo_path)
names = sorted(os.listdir(data_dir))

def say(*parts):
    # One write per line (PYTHONUNBUFFERED would make print() write each part separately).
    sys.stdout.write(" ".join(parts) + "\n")
    sys.stdout.flush()

i = 0
while True:
    # Change the data: one file rewritten, one edited in the middle (dedup), one appended to.
    fresh, edited, grown = rng.sample(names, 3)
    with open(os.path.join(data_dir, fresh), "wb") as f:
        f.write(rng.randbytes(rng.randint(20_000, 250_000)))
    with open(os.path.join(data_dir, edited), "r+b") as f:
        size = f.seek(0, 2)
        f.seek(rng.randrange(max(size, 1)))
        f.write(rng.randbytes(rng.randint(1, 5_000)))
    with open(os.path.join(data_dir, grown), "ab") as f:
        f.write((f"round {seed}-{i}\n" * rng.randint(1, 2_000)).encode())

    tree = repo.snapshot(data_dir)
    try:
        parents = [repo.refs.get("main")]
    except RefNotFound:
        parents = []
    c = repo.commit(tree, parents, message=f"{seed}-{i}", metadata={"seed": seed, "i": i})
    repo.refs.set("main", c)
    say("C", c)
    repo.refs.set(f"runs/r{seed % 4}", c)
    op = rng.random()
    if op < 0.25:
        repo.push(remote, create=True, refs=["main"])
        say("P", c)
    elif op < 0.45:
        repo.gc(grace=timedelta(0))
        say("G")
    elif op < 0.65:
        repo.repack()
        say("R")
    i += 1
"""


def _make_data(root: Path, seed: int) -> Path:
    """~3 MB in 12 files."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    for n in range(12):
        (root / f"f{n:02}.bin").write_bytes(rng.randbytes(rng.randint(100_000, 400_000)))
    (root / "notes.txt").write_bytes(b"notes\n" * 1000)
    return root


def _run_and_kill(
    script: Path, repo: Path, data: Path, remote: str, seed: int, rng: random.Random
) -> list[tuple[str, ...]]:
    child = start(script, str(repo), str(data), remote, str(seed))
    lines: list[tuple[str, ...]] = []
    assert child.stdout is not None and child.stderr is not None
    # Only whole lines count: a line the kill cut short was never acknowledged.
    reader = threading.Thread(
        target=lambda: lines.extend(tuple(ln.split()) for ln in child.stdout if ln.endswith("\n")), daemon=True
    )
    reader.start()
    if seed % 2:
        # Half the runs are killed a moment after their first acknowledged commit
        # (so acknowledgements surely get checked), half at a blind instant.
        deadline = time.monotonic() + 60
        while (
            not any(ln and ln[0] == "C" for ln in list(lines)) and child.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6))
    else:
        time.sleep(rng.uniform(0.05, 1.4))
    if child.poll() is not None:
        reader.join(10)
        pytest.fail(f"child {seed} exited on its own ({child.returncode}):\n{child.stderr.read()}")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    reader.join(timeout=30)
    err = child.stderr.read()
    child.stdout.close()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL, err
    return [ln for ln in lines if ln]


def _check_local(path: Path, acked: list[str]) -> int:
    repo = Repository.open(path)
    try:
        report = repo.fsck(full=True)
        assert report.ok, fsck_problems(report)
        reader = GraphReader(repo)
        # Every ref, and every value any ref ever held, is a complete, readable graph.
        for name in repo.refs.names():
            for entry in repo.refs.history(name):
                if entry.new:
                    reader.commit_chain(entry.new)
        if acked:
            main_values = {e.new for e in repo.refs.history("main")}
            main_chain = set(reader.commit_chain("main"))
            for cid in acked:
                assert cid in main_values, f"acknowledged commit {cid} is not in main's history"
                assert cid in main_chain, f"acknowledged commit {cid} is not reachable from main"
                assert repo.get_commit(cid).metadata["i"] >= 0
        return len(report.stray_files)
    finally:
        repo.close()


def _check_remote(remote_dir: Path, pushed: list[str]) -> None:
    if not (remote_dir / "config").exists():
        assert not pushed
        return
    remote = Repository.open(f"file://{remote_dir}")
    try:
        report = remote.fsck(full=True)
        assert report.ok, fsck_problems(report)
        reader = GraphReader(remote)
        for target in remote.refs.list().values():
            reader.commit_chain(target)
        if pushed:
            chain = set(reader.commit_chain("main"))
            for cid in pushed:
                assert cid in chain, f"commit {cid} was pushed but is not on the remote's main"
    finally:
        remote.close()


def test_sigkill_at_random_instants(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    script = write_script(tmp_path / "crash_child.py", CHILD)
    survived = 0
    acked_total = 0
    stray_max = 0
    ops_seen: set[str] = set()
    acked: list[str] = []
    pushed: list[str] = []
    repo_path = remote_dir = data = None
    started = time.monotonic()
    for k in range(ITERATIONS):
        if k % KILLS_PER_STORE == 0:
            store = k // KILLS_PER_STORE
            repo_path = tmp_path / f"store{store}" / "repo"
            remote_dir = tmp_path / f"store{store}" / "remote"
            data = _make_data(tmp_path / f"store{store}" / "data", seed=store)
            # Small packs and chunks: many of both, so files span chunks and packs.
            Repository.init(repo_path, pack_size=1 << 20, chunking=CHUNKING).close()
            acked, pushed = [], []
        assert repo_path is not None and remote_dir is not None and data is not None
        lines = _run_and_kill(script, repo_path, data, f"file://{remote_dir}", seed=k, rng=rng)
        assert all(len(ln) == 2 for ln in lines if ln[0] in ("C", "P")), lines
        acked += [ln[1] for ln in lines if ln[0] == "C"]
        pushed += [ln[1] for ln in lines if ln[0] == "P"]
        ops_seen.update(ln[0] for ln in lines)
        stray_max = max(stray_max, _check_local(repo_path, acked))
        _check_remote(remote_dir, pushed)
        survived += 1
        acked_total += sum(1 for ln in lines if ln[0] == "C")
    elapsed = time.monotonic() - started

    # The last store is fully usable after its ten crashes: commit on top, check out, compare.
    repo = Repository.open(repo_path)
    try:
        c = repo.commit(repo.snapshot(data), [repo.refs.get("main")], message="after the crashes")
        repo.refs.set("main", c)
        out = tmp_path / "out"
        repo.checkout("main", out)
        assert tree_snapshot(out) == tree_snapshot(data)
        assert repo.fsck(full=True).ok
    finally:
        repo.close()
    print(
        f"\ncrash iterations survived: {survived}/{ITERATIONS}; acknowledged commits checked: {acked_total}; "
        f"operations reached: {sorted(ops_seen)}; max stray temp files: {stray_max}; {elapsed:.1f} s"
    )
    assert survived == ITERATIONS
    assert acked_total >= ITERATIONS // 2  # the kills did not all land before the first commit
    assert {"C", "P", "G", "R"} <= ops_seen  # pushes, gcs and repacks all ran (and got killed around)
