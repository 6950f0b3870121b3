"""Concurrent loggers as real subprocesses: distinct consecutive versions, nothing lost."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from trackio_helpers import PROJECT_ROOT

import trackio
import trackio.store

WORKER = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    import trackio

    worker, rounds, go = int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3])
    run = trackio.init(project="race", name=f"worker-{worker}")
    # build everything first, then wait so that all workers log at the same moment
    arts = []
    for r in range(rounds):
        p = pathlib.Path(f"w{worker}-r{r}.txt")
        p.write_text(f"worker {worker} round {r}\\n" * (1 + worker))
        art = trackio.Artifact("shared", "dataset")
        art.add_file(p, name="payload.txt")
        arts.append((r, art))
    pathlib.Path(f"ready-{worker}").touch()
    deadline = time.time() + 60
    while not go.exists():
        if time.time() > deadline:
            sys.exit("never got the go signal")
        time.sleep(0.001)
    out = []
    for r, art in arts:
        logged = trackio.log_artifact(art)
        out.append([r, logged.version])
    trackio.finish()
    print(json.dumps({"worker": worker, "run": run.id, "logged": out}))
    """
)


def _race(outside: Path, workers: int, rounds: int) -> list[dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    go = outside / "go"
    procs = []
    for w in range(workers):
        d = outside / f"worker{w}"
        d.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(w), str(rounds), str(go)],
                cwd=d,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        deadline = time.time() + 120
        while not all((outside / f"worker{w}" / f"ready-{w}").exists() for w in range(workers)):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            assert time.time() < deadline, "workers never got ready"
            time.sleep(0.01)
        go.touch()
        results = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=180)
            assert p.returncode == 0, f"worker failed:\n{stdout}\n{stderr}"
            results.append(json.loads(stdout.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _expected_content(worker: int, rnd: int) -> bytes:
    return (f"worker {worker} round {rnd}\n" * (1 + worker)).encode()


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "rounds"), [(2, 1), (4, 1), (4, 3), (4, 15)])
def test_concurrent_loggers_get_distinct_consecutive_versions(outside, workers, rounds):
    results = _race(outside, workers, rounds)
    total = workers * rounds
    expected_versions = [f"v{i}" for i in range(total)]

    # every log call got its own version, and together they are v0..vN-1
    reported = sorted((v for res in results for _r, v in res["logged"]), key=lambda v: int(v[1:]))
    assert reported == expected_versions

    # each worker's own versions increase
    for res in results:
        nums = [int(v[1:]) for _r, v in res["logged"]]
        assert nums == sorted(nums)

    trackio.store.close_all()
    api = trackio.Api()
    versions = api.artifact_versions("shared", project="race")
    assert [a.version for a in versions] == expected_versions  # nothing lost, no duplicates

    by_version = {}
    for a in versions:
        with a.open("payload.txt") as f:
            by_version[a.version] = f.read()
    # what each worker says it logged as vN is what vN holds
    for res in results:
        for rnd, v in res["logged"]:
            assert by_version[v] == _expected_content(res["worker"], rnd)
    assert len(set(by_version.values())) == total

    # the chain: vN's parent is vN-1
    repo = trackio.store.get_repo()
    for prev, nxt in itertools.pairwise(versions):
        assert list(repo.get_commit(nxt.id).parents) == [prev.id]

    # latest is the last one, and every run's outputs are recorded
    assert api.artifact("race/shared").version == expected_versions[-1]
    runs = api.runs("race")
    assert sorted(r.id for r in runs) == sorted(res["run"] for res in results)
    for res in results:
        (r,) = [r for r in runs if r.id == res["run"]]
        assert [a.version for a in r.logged_artifacts()] == [v for _r, v in res["logged"]]
        assert r.status == "finished"
        assert api.artifact(f"race/shared:{res['logged'][0][1]}").logged_by().id == res["run"]


@pytest.mark.slow
def test_concurrent_loggers_of_identical_content_share_one_version(outside):
    """Every worker logs the same bytes: exactly one version results."""
    script = textwrap.dedent(
        """
        import json, pathlib, sys, time, trackio
        go = pathlib.Path(sys.argv[1])
        trackio.init(project="same")
        pathlib.Path("f.txt").write_text("identical")
        art = trackio.Artifact("shared", "dataset")
        art.add_file("f.txt")
        pathlib.Path("ready").touch()
        while not go.exists():
            time.sleep(0.001)
        print(json.dumps(trackio.log_artifact(art).version))
        trackio.finish()
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    go = outside / "go"
    procs = []
    for w in range(3):
        d = outside / f"w{w}"
        d.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, str(go)],
                cwd=d,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        deadline = time.time() + 120
        while not all((outside / f"w{w}" / "ready").exists() for w in range(3)):
            assert all(p.poll() is None for p in procs)
            assert time.time() < deadline
            time.sleep(0.01)
        go.touch()
        outs = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=120)
            assert p.returncode == 0, stderr
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    trackio.store.close_all()
    versions = [a.version for a in trackio.Api().artifact_versions("shared", project="same")]
    # Identical content is de-duplicated: racing loggers may not know of each other,
    # but the outcome must still be a single version.
    assert outs == ["v0", "v0", "v0"]
    assert versions == ["v0"]
