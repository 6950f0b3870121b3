"""Real processes against real remotes: racing ref writers, a push killed half-way."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest
from remote_helpers import Target, dir_state, finish, spawn, wait_until

from objstore import Repository, TreeEntry

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("target", ["s3", "sftp", "file"], indirect=True)
def test_concurrent_ref_updates_lose_nothing(target: Target, tmp_path: Path) -> None:
    """Two processes move one ref 20 times each through the backend's put-if-absent
    (S3: a conditional put; sftp: an exclusive create; file: link())."""
    local = Repository.init(tmp_path / "local")
    blob = local.store_bytes(b"payload")
    commit = local.commit(local.make_tree([TreeEntry("p", "file", blob, 7)]), message="c")
    local.refs.set("main", commit)
    local.push(target.url, create=True, storage_options=target.storage_options)

    go = tmp_path / "go"
    code = f"""
        import os, time
        from objstore import Repository
        repo = Repository.open({target.url!r}, storage_options={target.child_options()})
        tag = os.environ["WRITER"]
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        for i in range(20):
            repo.refs.set("race", {commit!r}, message=f"{{tag}}-{{i}}", who=tag)
        print("done", flush=True)
    """
    procs = [spawn(code, tmp_path, WRITER=tag) for tag in ("w1", "w2")]
    try:
        for p in procs:  # both connected before either writes
            assert p.stdout is not None
            assert p.stdout.readline().strip() == b"ready", p.stderr.read().decode() if p.stderr else ""
        go.touch()
        for p in procs:
            finish(p)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    remote = Repository.open(target.url, storage_options=target.storage_options)
    try:
        history = remote.refs.history("race")
    finally:
        remote.close()
    assert len(history) == 40
    assert [e.seq for e in history] == list(range(1, 41))
    messages = [e.message for e in history]
    assert sorted(messages) == sorted(f"{w}-{i}" for w in ("w1", "w2") for i in range(20))
    for w in ("w1", "w2"):  # each writer's updates land in its own order
        mine = [m for m in messages if m.startswith(w + "-")]
        assert mine == [f"{w}-{i}" for i in range(20)]
    assert all(e.new == commit for e in history)


@pytest.mark.parametrize("target", ["file", "s3"], indirect=True)
def test_interrupted_push_resumes(target: Target, tmp_path: Path) -> None:
    """SIGKILL a pushing process once a pack is on the remote; the next push sends the rest."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(42)
    for i in range(20):
        (src / f"part{i:02d}.bin").write_bytes(rng.randbytes(1024 * 1024))
    local = Repository.init(tmp_path / "local", pack_size=1 << 20)
    commit = local.commit(local.snapshot(src), message="20 MiB")
    local.refs.set("main", commit)
    total = sum(1 for _ in local.odb.iter_ids())
    local.close()

    code = f"""
        from objstore import Repository
        repo = Repository.open({str(tmp_path / "local")!r})
        print("pushing", flush=True)
        repo.push({target.url!r}, create=True, storage_options={target.child_options()})
        print("finished", flush=True)
    """
    if target.kind == "file":
        packs_dir = Path(target.url[len("file://") :]) / "packs"

        def has_index() -> bool:
            try:
                return any(n.endswith(".idx") for n in os.listdir(packs_dir))
            except FileNotFoundError:
                return False
    else:

        def has_index() -> bool:
            return bool(target.packs(".idx"))

    child = spawn(code, tmp_path)
    try:
        assert wait_until(lambda: has_index() or child.poll() is not None, timeout=60)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out = child.stdout.read().decode() if child.stdout else ""
    assert child.returncode == -signal.SIGKILL, f"the push ended by itself: {out}"
    assert "finished" not in out
    sent_before = len(target.packs(".idx"))
    assert sent_before >= 1
    assert target.files("refs") == []  # no ref moved: the push was cut short

    local = Repository.open(tmp_path / "local")
    resumed = local.push(target.url, create=True, storage_options=target.storage_options)
    assert resumed.refs_updated == {"main": (None, commit)}
    assert 0 < resumed.objects < total, (resumed.objects, total)
    local.close()

    clone = Repository.clone(target.url, tmp_path / "clone", storage_options=target.storage_options)
    try:
        assert clone.refs.get("main") == commit
        out_dir = tmp_path / "out"
        clone.checkout("main", out_dir)
        assert dir_state(out_dir) == dir_state(src)
    finally:
        clone.close()
