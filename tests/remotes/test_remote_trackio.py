"""trackio with a real S3 remote (moto): background pushes, offline first, two machines."""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import S3_REGION, Target, finish, free_port, spawn

import trackio
import trackio.store
from objstore import Repository
from trackio import names

pytestmark = pytest.mark.timeout(90)


def _content(art: trackio.Artifact, path: str = "data.txt") -> bytes:
    with art.open(path) as f:
        return f.read()  # type: ignore[no-any-return]


def test_two_machines_share_artifacts_and_lineage(
    s3_target: Target, trackio_home: Callable[[str], Path], tmp_path: Path
) -> None:
    url, opts = s3_target.url, s3_target.storage_options
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (src / "sub" / "config.json").write_text('{"layers": 3}')
    (src / "empty").write_bytes(b"")

    trackio_home("machine-a")
    run_a = trackio.init(project="shared", name="producer", remote=url, storage_options=opts)
    logged = trackio.log_artifact(src, name="model", type="model")
    assert logged.wait(timeout=60) is logged
    assert logged.version == "v0"
    trackio.finish()

    trackio_home("machine-b")
    run_b = trackio.init(project="shared", name="consumer", remote=url, storage_options=opts)
    used = trackio.use_artifact("model:latest")
    assert used.version == "v0" and used.digest == logged.digest
    assert used.id is not None and not trackio.store.get_repo().odb.has(used.id)  # read in place, not fetched
    out = Path(used.download(tmp_path / "downloaded"))
    for rel in ("weights.bin", "sub/config.json", "empty"):
        assert (out / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert sorted(used.files()) == ["empty", "sub/config.json", "weights.bin"]

    producer = used.logged_by()
    assert producer is not None
    assert producer.id == run_a.id and producer.name == "producer"
    assert [a.id for a in producer.logged_artifacts()] == [logged.id]
    trackio.finish()
    trackio.sync(remote=url, storage_options=opts)

    # A third look, from neither machine's active run: the remote alone tells the story.
    trackio_home("machine-c")
    api = trackio.Api(project="shared", remote=url, storage_options=opts)
    art = api.artifact("model:v0")
    assert art.logged_by() is not None and art.logged_by().id == run_a.id  # type: ignore[union-attr]
    assert [r.id for r in art.used_by()] == [run_b.id]
    assert {r.name for r in api.runs()} == {"producer", "consumer"}


def test_offline_first_then_sync(s3_target: Target, trackio_home: Callable[[str], Path], tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    bucket_url = s3_target.url
    unreachable = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": dead, "region_name": S3_REGION},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
    }
    f = tmp_path / "data.txt"
    f.write_bytes(b"logged while offline")

    trackio.init(project="offline", remote=bucket_url, storage_options=unreachable)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        art = trackio.log_artifact(f, name="notes", type="dataset")
        assert art.version == "v0"  # stored locally at once
        with pytest.raises(trackio.SyncError):
            art.wait(timeout=60)  # the background push failed: wait() says so
        # Reads fall back to the local store, with a warning.
        assert trackio.use_artifact("notes:v0").digest == art.digest
    messages = [str(w.message) for w in caught]
    assert any("could not push" in m and bucket_url in m for m in messages), messages
    assert any("unreachable" in m and bucket_url in m for m in messages), messages

    result = trackio.sync(remote=bucket_url, storage_options=s3_target.storage_options)
    assert result.objects > 0
    assert any("notes" in r for r in result.refs_updated)

    api = trackio.Api(project="offline", remote=bucket_url, storage_options=s3_target.storage_options)
    versions = api.artifact_versions("notes")
    assert [v.version for v in versions] == ["v0"]
    assert versions[0].digest == art.digest
    assert _content(versions[0]) == b"logged while offline"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run's own remote is still the dead endpoint
        trackio.finish()


def test_concurrent_loggers_get_consecutive_versions(
    s3_target: Target, s3_server: Any, trackio_home: Callable[[str], Path], tmp_path: Path
) -> None:
    """Two processes, two TRACKIO_DIRs, one artifact name, one S3 remote: nothing lost, nothing doubled."""
    per_writer = 4
    go = tmp_path / "go"
    code = f"""
        import os, time, warnings
        import trackio
        warnings.simplefilter("ignore")
        tag = os.environ["WRITER"]
        trackio.init(project="race", remote={s3_target.url!r}, storage_options={s3_target.child_options()})
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        for i in range({per_writer}):
            path = f"{{tag}}-{{i}}.txt"
            with open(path, "w") as fh:
                fh.write(f"content from {{tag}} #{{i}}")
            art = trackio.Artifact("shared", "dataset")
            art.add_file(path, name="data.txt")
            trackio.log_artifact(art).wait(timeout=60)
        trackio.finish()
        print("done", flush=True)
    """
    procs = []
    for tag in ("w1", "w2"):
        cwd = tmp_path / tag
        cwd.mkdir()
        procs.append(spawn(code, cwd, WRITER=tag, TRACKIO_DIR=str(tmp_path / f"home-{tag}"), **s3_server.env()))
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == b"ready", (line, p.stderr.read().decode() if p.stderr else "")
        go.touch()
        for p in procs:
            finish(p, timeout=80)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    api = trackio.Api(project="race", remote=s3_target.url, storage_options=s3_target.storage_options)
    versions = api.artifact_versions("shared")
    expected = {f"content from {w} #{i}".encode() for w in ("w1", "w2") for i in range(per_writer)}
    contents = collections.Counter(_content(v) for v in versions)
    assert set(contents) == expected
    assert all(n == 1 for n in contents.values()), contents
    assert [v.version for v in versions] == [f"v{i}" for i in range(2 * per_writer)]
    latest = api.artifact("shared:latest")
    assert latest.version == f"v{2 * per_writer - 1}"


@pytest.mark.parametrize("target", ["file", "s3", "server"], indirect=True)
def test_second_machine_rebases_onto_several_remote_versions(
    target: Target, trackio_home: Callable[[str], Path], tmp_path: Path
) -> None:
    """Machine A pushes v0 and v1; machine B (which never saw them) logs one version:
    its first push is re-based to v2 and succeeds, so wait() returns."""
    url, opts = target.url, target.storage_options

    def log(contents: str) -> trackio.Artifact:
        f = tmp_path / "data.txt"
        f.write_text(contents)
        art = trackio.Artifact("shared", "dataset")
        art.add_file(f, name="data.txt")
        return trackio.log_artifact(art)

    trackio_home("machine-a")
    trackio.init(project="seq", remote=url, storage_options=opts)
    assert log("a0").wait(timeout=60).version == "v0"
    assert log("a1").wait(timeout=60).version == "v1"
    trackio.finish()

    trackio_home("machine-b")
    trackio.init(project="seq", remote=url, storage_options=opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "logged concurrently elsewhere; it is v2 on the remote"
        mine = log("b0")
        assert mine.version == "v0"  # the local number, before the push
        mine.wait(timeout=60)
    assert mine.version == "v2"
    trackio.finish()

    versions = trackio.Api(project="seq", remote=url, storage_options=opts).artifact_versions("shared")
    assert [(v.version, _content(v)) for v in versions] == [("v0", b"a0"), ("v1", b"a1"), ("v2", b"b0")]


@pytest.mark.parametrize("target", ["file", "s3", "server"], indirect=True)
def test_split_race_between_latest_and_version_ref_heals(
    target: Target, trackio_home: Callable[[str], Path], tmp_path: Path
) -> None:
    """Two machines push their v0 at once; each ref is conditional on its own, so A can win
    ``versions/v0`` while B wins ``aliases/latest`` (seen in the concurrent-loggers test).
    The next syncs must still succeed and leave v0, v1 with one content each."""
    url, opts = target.url, target.storage_options
    homes = {}
    for machine, contents in (("a", "from a"), ("b", "from b")):
        homes[machine] = trackio_home(f"machine-{machine}")
        trackio.init(project="split")  # offline: nothing pushed yet
        f = tmp_path / "data.txt"
        f.write_text(contents)
        art = trackio.Artifact("shared", "dataset")
        art.add_file(f, name="data.txt")
        trackio.log_artifact(art)
        trackio.finish()

    # The interleaving of two concurrent pushes, made deterministic.
    for machine, ref in (
        ("a", names.version_ref("split", "shared", 0)),
        ("b", names.alias_ref("split", "shared", "latest")),
    ):
        repo = Repository.open(homes[machine] / "objstore")
        try:
            repo.push(url, create=True, refs=[ref], storage_options=opts)
        finally:
            repo.close()

    for machine in ("a", "b"):
        trackio_home(f"machine-{machine}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "logged concurrently elsewhere"
            trackio.sync(remote=url, storage_options=opts)

    trackio_home("reader")
    api = trackio.Api(project="split", remote=url, storage_options=opts)
    versions = api.artifact_versions("shared")
    assert [v.version for v in versions] == ["v0", "v1"]
    assert sorted(_content(v) for v in versions) == [b"from a", b"from b"]
    for v in versions:  # the version refs agree with the chain
        assert _content(api.artifact(f"shared:{v.version}")) == _content(v)


def test_resume_must_continues_a_run_logged_on_another_machine(
    s3_target: Target, trackio_home: Callable[[str], Path], tmp_path: Path
) -> None:
    url, opts = s3_target.url, s3_target.storage_options
    (tmp_path / "w.bin").write_bytes(b"weights" * 100)

    trackio_home("machine-a")
    first = trackio.init(project="shared", name="long-job", remote=url, storage_options=opts, config={"lr": 0.1})
    trackio.log({"loss": 1.0})
    logged = trackio.log_artifact(tmp_path / "w.bin", name="ckpt", type="model")
    assert logged.wait(timeout=60) is logged
    trackio.finish()
    trackio.sync(remote=url, storage_options=opts)

    trackio_home("machine-b")  # a fresh store: the run exists only on the remote
    again = trackio.init(project="shared", name="long-job", resume="must", remote=url, storage_options=opts)
    assert again.id == first.id and again.config == {"lr": 0.1}
    trackio.log({"loss": 0.5})
    trackio.finish()
    [run] = trackio.Api(remote=url, storage_options=opts).runs("shared")
    assert run.id == first.id
    assert [m["metrics"]["loss"] for m in run.metrics] == [1.0, 0.5]
    assert [a.id for a in run.logged_artifacts()] == [logged.id]
