"""Concurrency: many real processes writing one store, or one S3 remote, at the same moment.

* 16 processes log the same artifact name into one ``TRACKIO_DIR``, each a few
  times with distinct content, and move their own aliases (and one shared
  alias): every version is present exactly once, numbered v0..vN-1, and no
  ref update is lost (each alias history has one entry per move made).
* 4 processes, each with its own ``TRACKIO_DIR``, log to one moto S3 remote:
  no version is lost on the remote.
* 4 processes push their own refs and advance one shared ref on S3 by
  compare-and-set (fetch, commit on top, push; retry when rejected): every
  commit ends up on the shared chain, nothing is overwritten.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import fsck_problems, start, write_script

from objstore import Repository
from objstore.refs import COMPACT_AT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LOCAL_WORKERS = 16
LOCAL_ROUNDS = 3
S3_WORKERS = 4
S3_ROUNDS = 3

TRACKIO_WORKER = r"""
import json, pathlib, sys, time
import trackio

w, rounds, go = int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3])
remote = sys.argv[4] if len(sys.argv) > 4 else None
options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
project = sys.argv[6] if len(sys.argv) > 6 else "crowd"
run = trackio.init(project=project, name=f"worker-{w}", remote=remote, storage_options=options)
arts = []
for r in range(rounds):
    p = pathlib.Path(f"w{w}-r{r}.txt")
    p.write_text(f"worker {w} round {r}\n" * (1 + w + 16 * r))
    art = trackio.Artifact("shared", "dataset")
    art.add_file(p, name="payload.txt")
    arts.append(art)
pathlib.Path("ready").touch()
deadline = time.time() + 90
while not go.exists():
    if time.time() > deadline:
        sys.exit("never got the go signal")
    time.sleep(0.002)
out = []
for r, art in enumerate(arts):
    aliases = [f"w{w}"] if remote else [f"w{w}", "hot"]
    logged = trackio.log_artifact(art, aliases=aliases)
    if remote:
        logged.wait(timeout=120)
    out.append([r, logged.version, logged.id])
if not remote:
    # Own alias moves through the Api too: back to each of this worker's versions in turn.
    api = trackio.Api()
    for _r, version, _id in out:
        api.set_alias(f"shared:{version}", f"pick-{w}")
trackio.finish()
print(json.dumps({"worker": w, "run": run.id, "logged": out}))
"""


def _expected(worker: int, rnd: int) -> bytes:
    return (f"worker {worker} round {rnd}\n" * (1 + worker + 16 * rnd)).encode()


def _race(script: Path, tmp_path: Path, workers: int, args: list[str], env_for: Any) -> list[dict[str, Any]]:
    """Start ``workers`` children, let them all get ready, fire them at once, collect their JSON."""
    go = tmp_path / "go"
    procs = []
    dirs = []
    for w in range(workers):
        d = tmp_path / f"worker{w}"
        d.mkdir()
        dirs.append(d)
        procs.append(start(script, str(w), *args[:1], str(go), *args[1:], cwd=d, **env_for(w)))
    try:
        deadline = time.monotonic() + 120
        while not all((d / "ready").exists() for d in dirs):
            for p in procs:
                if p.poll() is not None:
                    out, err = p.communicate()
                    pytest.fail(f"worker died before the start:\n{out}\n{err}")
            assert time.monotonic() < deadline, "workers never got ready"
            time.sleep(0.01)
        go.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=150)
            assert p.returncode == 0, f"worker failed ({p.returncode}):\n{out}\n{err}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _payload(art: Any) -> bytes:
    with art.open("payload.txt") as f:
        return f.read()  # type: ignore[no-any-return]


def test_sixteen_processes_log_to_one_trackio_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trackio_clean: None
) -> None:
    home = tmp_path / "trackio-home"
    script = write_script(tmp_path / "worker.py", TRACKIO_WORKER)
    started = time.monotonic()
    results = _race(script, tmp_path, LOCAL_WORKERS, [str(LOCAL_ROUNDS)], lambda w: {"TRACKIO_DIR": str(home)})
    elapsed = time.monotonic() - started
    total = LOCAL_WORKERS * LOCAL_ROUNDS
    expected_versions = [f"v{i}" for i in range(total)]

    monkeypatch.setenv("TRACKIO_DIR", str(home))
    import trackio
    import trackio.store

    api = trackio.Api()
    versions = api.artifact_versions("shared", project="crowd")
    lost = total - len({a.version for a in versions})
    print(
        f"\n{LOCAL_WORKERS} local processes x {LOCAL_ROUNDS} logs: {len(versions)} versions, {lost} lost, {elapsed:.1f} s"
    )

    # Every log call got its own number; together they are v0..vN-1, each stored exactly once.
    assert sorted((v for res in results for _r, v, _id in res["logged"]), key=lambda v: int(v[1:])) == expected_versions
    assert [a.version for a in versions] == expected_versions
    contents = {a.version: _payload(a) for a in versions}
    assert sorted(contents.values()) == sorted(
        _expected(w, r) for w in range(LOCAL_WORKERS) for r in range(LOCAL_ROUNDS)
    )
    for res in results:
        for rnd, version, commit_id in res["logged"]:
            assert contents[version] == _expected(res["worker"], rnd)
            assert next(a for a in versions if a.version == version).id == commit_id
        nums = [int(v[1:]) for _r, v, _id in res["logged"]]
        assert nums == sorted(nums)

    # One chain, vN on top of vN-1, and the vN index refs agree with it.
    repo = trackio.store.get_repo()
    for prev, nxt in itertools.pairwise(versions):
        assert list(repo.get_commit(nxt.id).parents) == [prev.id]
    for a in versions:
        assert api.artifact(f"crowd/shared:{a.version}").id == a.id

    # No ref update lost: one history entry per move, in each writer's own order.
    latest = api.alias_history("shared", "latest", project="crowd")
    assert [e["version"] for e in latest] == expected_versions
    hot = api.alias_history("shared", "hot", project="crowd")
    assert len(hot) == total
    assert sorted((e["version"] for e in hot), key=lambda v: int(v[1:])) == expected_versions
    for res in results:
        mine = [v for _r, v, _id in res["logged"]]
        own = api.alias_history("shared", f"w{res['worker']}", project="crowd")
        assert [e["version"] for e in own] == mine
        picks = api.alias_history("shared", f"pick-{res['worker']}", project="crowd")
        assert [e["version"] for e in picks] == mine
        assert api.artifact(f"crowd/shared:pick-{res['worker']}").version == mine[-1]

    runs = api.runs("crowd")
    assert sorted(r.id for r in runs) == sorted(res["run"] for res in results)
    for run in runs:
        res = next(r for r in results if r["run"] == run.id)
        assert [a.version for a in run.logged_artifacts()] == [v for _r, v, _id in res["logged"]]
        assert run.status == "finished"

    report = repo.fsck(full=True)
    assert report.ok, fsck_problems(report)
    assert lost == 0


@pytest.fixture(scope="module")
def s3_trackio_race(tmp_path_factory: pytest.TempPathFactory, s3_server: Any) -> dict[str, Any]:
    """4 processes, each with its own TRACKIO_DIR, log ``shared`` 3 times each to one S3 remote."""
    tmp_path = tmp_path_factory.mktemp("s3-trackio-race")
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/trackio"
    opts = s3_server.storage_options()
    script = write_script(tmp_path / "worker.py", TRACKIO_WORKER)
    started = time.monotonic()
    results = _race(
        script,
        tmp_path,
        S3_WORKERS,
        [str(S3_ROUNDS), url, json.dumps(opts), "s3crowd"],
        lambda w: {"TRACKIO_DIR": str(tmp_path / f"home{w}")},
    )
    return {"url": url, "opts": opts, "results": results, "elapsed": time.monotonic() - started, "tmp": tmp_path}


def _remote_versions(race: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[bytes]]:
    monkeypatch.setenv("TRACKIO_DIR", str(race["tmp"] / "reader-home"))
    import trackio

    versions = trackio.Api(remote=race["url"], storage_options=race["opts"]).artifact_versions(
        "shared", project="s3crowd"
    )
    return versions, [_payload(a) for a in versions]


def test_four_processes_log_to_one_s3_remote(
    s3_trackio_race: dict[str, Any], monkeypatch: pytest.MonkeyPatch, trackio_clean: None
) -> None:
    versions, contents = _remote_versions(s3_trackio_race, monkeypatch)
    total = S3_WORKERS * S3_ROUNDS
    expected = {_expected(w, r) for w in range(S3_WORKERS) for r in range(S3_ROUNDS)}
    lost = len(expected - set(contents))
    # What each worker was told after wait() (after however many re-bases) is what the remote holds.
    held = {a.version: (a.id, c) for a, c in zip(versions, contents)}
    stale = sum(
        held.get(version) != (commit_id, _expected(res["worker"], rnd))
        for res in s3_trackio_race["results"]
        for rnd, version, commit_id in res["logged"]
    )
    print(
        f"\n{S3_WORKERS} processes x {S3_ROUNDS} logs to one S3 remote: {len(versions)} versions on the remote, "
        f"{lost} lost, {stale} told a stale version/id after wait(), {s3_trackio_race['elapsed']:.1f} s"
    )
    assert lost == 0
    assert stale == 0
    assert sorted(contents) == sorted(expected)  # each exactly once
    assert [a.version for a in versions] == [f"v{i}" for i in range(total)]
    for prev, nxt in itertools.pairwise(versions):  # one chain on the remote
        assert [p for p in (nxt._store().get_commit(nxt.id).parents)] == [prev.id]

    remote = Repository.open(s3_trackio_race["url"], storage_options=s3_trackio_race["opts"])
    try:
        report = remote.fsck(full=True)
        assert report.ok, fsck_problems(report)
    finally:
        remote.close()


REBASE_PUSHER = r"""
import pathlib, sys, trackio
url, content = sys.argv[1], sys.argv[2]
trackio.init(project="p", remote=url)
pathlib.Path("f.txt").write_text(content)
art = trackio.Artifact("shared", "dataset")
art.add_file("f.txt", name="payload.txt")
trackio.log_artifact(art).wait(timeout=60)
trackio.finish()
"""


def test_artifact_told_its_final_number_after_a_double_rebase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trackio_clean: None
) -> None:
    """One push has to re-base twice (the remote moves again during the first re-base):
    after ``wait()`` the artifact names the number and commit the remote finally holds,
    not those of the first re-base (the re-numbering is followed through)."""
    import trackio
    import trackio.remote_sync as sync

    url = f"file://{tmp_path / 'remote'}"
    script = write_script(tmp_path / "pusher.py", REBASE_PUSHER)

    def other_machine(name: str, content: str) -> None:
        d = tmp_path / name
        d.mkdir()
        proc = start(script, url, content, cwd=d, TRACKIO_DIR=str(d / "home"))
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err

    other_machine("machine-b", "from B")  # the remote's v0

    original = sync._rebase
    calls = []

    def rebase_then_the_remote_moves_again(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            other_machine("machine-c", "from C")  # lands as v1 while our re-based v1 is being pushed

    monkeypatch.setattr(sync, "_rebase", rebase_then_the_remote_moves_again)
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "machine-a"))
    (tmp_path / "a.txt").write_text("from A")
    trackio.init(project="p", remote=url)
    art = trackio.Artifact("shared", "dataset")
    art.add_file(tmp_path / "a.txt", name="payload.txt")
    with pytest.warns(UserWarning, match="logged concurrently elsewhere"):
        logged = trackio.log_artifact(art).wait(timeout=60)
    trackio.finish()
    assert len(calls) == 2  # the scenario happened: two re-bases in one push

    versions = trackio.Api(remote=url).artifact_versions("shared", project="p")
    assert [_payload(a) for a in versions] == [b"from B", b"from C", b"from A"]
    assert (logged.version, logged.id) == ("v2", versions[2].id)


OBJSTORE_WORKER = r"""
import json, pathlib, sys, time
from objstore import Repository, TreeEntry
from objstore.errors import PushRejected, RefNotFound

w, rounds, go, url = int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4]
opts = json.loads(sys.argv[5])
repo = Repository.init(pathlib.Path("local"))
pathlib.Path("ready").touch()
while not go.exists():
    time.sleep(0.002)
rejected = 0
own_parent = []
for i in range(rounds):
    data = f"worker {w} round {i}\n".encode() * (i + 1)
    tree = repo.make_tree([TreeEntry("data.txt", "file", repo.store_bytes(data), len(data))])
    mine = repo.commit(tree, own_parent, message=f"own w{w}-{i}")
    own_parent = [mine]
    repo.refs.set(f"mine/w{w}", mine)
    repo.push(url, create=True, refs=[f"mine/w{w}"], storage_options=opts)
    while True:  # advance the shared ref: compare-and-set through push's ancestry check
        if repo.refs.exists("shared"):
            repo.refs.delete("shared")
        try:
            repo.fetch(url, refs=["shared"], storage_options=opts)
        except RefNotFound:
            pass
        parents = [repo.refs.get("shared")] if repo.refs.exists("shared") else []
        c = repo.commit(tree, parents, message=f"w{w}-{i}")
        repo.refs.set("shared", c)
        try:
            repo.push(url, create=True, refs=["shared"], storage_options=opts)
            break
        except PushRejected:
            rejected += 1
print(json.dumps({"worker": w, "rejected": rejected}))
"""


def test_four_processes_push_own_and_shared_refs_to_s3(tmp_path: Path, s3_server: Any) -> None:
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/store"
    opts = s3_server.storage_options()
    script = write_script(tmp_path / "pusher.py", OBJSTORE_WORKER)
    results = _race(script, tmp_path, S3_WORKERS, [str(S3_ROUNDS), url, json.dumps(opts)], lambda w: {})
    rejected = sum(r["rejected"] for r in results)

    remote = Repository.open(url, storage_options=opts)
    try:
        report = remote.fsck(full=True)
        assert report.ok, fsck_problems(report)
        for w in range(S3_WORKERS):
            own = [c.message for _id, c in remote.log(f"mine/w{w}")]
            assert own == [f"own w{w}-{i}" for i in reversed(range(S3_ROUNDS))]
            assert len(remote.refs.history(f"mine/w{w}")) == S3_ROUNDS
        chain = [c.message for _id, c in remote.log("shared")]
        expected = {f"w{w}-{i}" for w in range(S3_WORKERS) for i in range(S3_ROUNDS)}
        lost = len(expected - set(chain))
        print(
            f"\n{S3_WORKERS} objstore pushers on S3: shared chain {len(chain)} commits, {lost} lost, {rejected} pushes rejected and retried"
        )
        assert lost == 0
        assert len(chain) == len(expected)  # one linear chain, no duplicates
        for w in range(S3_WORKERS):  # each writer's commits in its own order
            assert [m for m in reversed(chain) if m.startswith(f"w{w}-")] == [f"w{w}-{i}" for i in range(S3_ROUNDS)]
        # Every move of the shared ref is a fast-forward of the previous one.
        history = remote.refs.history("shared")
        assert len(history) == len(expected)
        for prev, nxt in itertools.pairwise(history):
            assert list(remote.get_commit(nxt.new).parents) == [prev.new]
        # The pushers compacted the bucket's ref logs as they went (format version 3).
        assert remote.refs._generations(), "no packed refs generation on the bucket"
        loose = [f for f in remote.storage.listdir("refs") if not f.startswith("!packed@")]
        assert len(loose) < 2 * COMPACT_AT, loose
    finally:
        remote.close()
