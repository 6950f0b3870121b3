"""Lineage, W&B-style: logged_by/used_by, Run.logged_artifacts/used_artifacts, and Api across processes."""

from __future__ import annotations

import pytest
from trackio_helpers import run_python, write

import trackio
import trackio.store


def test_logged_by_and_used_by_in_one_process(work):
    write(work / "ds.csv", b"a,b\n1,2\n")
    write(work / "model.bin", b"weights")
    producer = trackio.init(project="p", name="producer")
    ds = trackio.log_artifact("ds.csv", name="ds", type="dataset")
    trackio.finish()

    trainer = trackio.init(project="p", name="trainer")
    used = trackio.use_artifact("ds:latest", type="dataset")
    model = trackio.log_artifact("model.bin", name="model", type="model")
    trackio.finish()

    evaluator = trackio.init(project="p", name="evaluator")
    trackio.use_artifact("ds")
    trackio.use_artifact("model")
    trackio.finish()

    assert ds.logged_by().id == producer.id
    assert ds.logged_by().name == "producer"
    assert used.logged_by().id == producer.id
    assert model.logged_by().id == trainer.id
    assert sorted(r.name for r in ds.used_by()) == ["evaluator", "trainer"]
    assert [r.name for r in model.used_by()] == ["evaluator"]

    assert [a.qualified_name for a in producer.logged_artifacts()] == ["p/ds:v0"]
    assert producer.used_artifacts() == []
    assert [a.qualified_name for a in trainer.used_artifacts()] == ["p/ds:v0"]
    assert [a.qualified_name for a in trainer.logged_artifacts()] == ["p/model:v0"]
    assert [a.qualified_name for a in evaluator.used_artifacts()] == ["p/ds:v0", "p/model:v0"]
    assert evaluator.logged_artifacts() == []


def test_used_by_is_per_version(work):
    write(work / "d.txt", b"one")
    trackio.init(project="p", name="maker")
    trackio.log_artifact("d.txt", name="d", type="data")
    write(work / "d.txt", b"two")
    trackio.log_artifact("d.txt", name="d", type="data")
    trackio.finish()
    trackio.init(project="p", name="old-user")
    trackio.use_artifact("d:v0")
    trackio.finish()
    trackio.init(project="p", name="new-user")
    trackio.use_artifact("d")
    trackio.finish()
    api = trackio.Api()
    assert [r.name for r in api.artifact("p/d:v0").used_by()] == ["old-user"]
    assert [r.name for r in api.artifact("p/d:v1").used_by()] == ["new-user"]
    assert api.artifact("p/d:v0").logged_by().name == "maker"
    assert [a.version for a in api.run(api.runs("p")[0].id, project="p").logged_artifacts()] == ["v0", "v1"]


def test_used_by_spans_projects(work):
    write(work / "d.txt", b"shared")
    trackio.init(project="data-team", name="maker")
    trackio.log_artifact("d.txt", name="d", type="data")
    trackio.finish()
    trackio.init(project="ml-team", name="consumer")
    trackio.use_artifact("data-team/d:latest")
    trackio.finish()
    art = trackio.Api().artifact("data-team/d")
    assert [(r.project, r.name) for r in art.used_by()] == [("ml-team", "consumer")]
    (consumer,) = trackio.Api().runs("ml-team")
    assert [a.qualified_name for a in consumer.used_artifacts()] == ["data-team/d:v0"]


def test_relogged_identical_content_is_an_output_of_both_runs(work):
    write(work / "d.txt", b"same")
    first = trackio.init(project="p", name="first")
    trackio.log_artifact("d.txt", name="d", type="data")
    trackio.finish()
    trackio.init(project="p", name="second")
    again = trackio.log_artifact("d.txt", name="d", type="data")
    trackio.finish()
    assert again.version == "v0"
    assert again.logged_by().id == first.id  # the version was created by the first run
    runs = {r.name: r for r in trackio.Api().runs("p")}
    assert [a.qualified_name for a in runs["first"].logged_artifacts()] == ["p/d:v0"]
    assert [a.qualified_name for a in runs["second"].logged_artifacts()] == ["p/d:v0"]


def test_lineage_of_active_run_is_visible_before_finish(work):
    write(work / "d.txt", b"x")
    run = trackio.init(project="p", name="live")
    trackio.log_artifact("d.txt", name="d", type="data")
    trackio.use_artifact("d")
    (stored,) = trackio.Api().runs("p")
    assert stored.id == run.id
    assert [a.qualified_name for a in stored.logged_artifacts()] == ["p/d:v0"]
    assert [a.qualified_name for a in stored.used_artifacts()] == ["p/d:v0"]


@pytest.mark.slow
def test_lineage_across_separate_processes(work, outside):
    """Process A logs, process B uses and logs, process C walks the graph with Api."""
    (outside / "a").mkdir()
    (outside / "b").mkdir()
    a = run_python(
        """
        import json, pathlib, trackio
        pathlib.Path("data").mkdir()
        pathlib.Path("data/train.csv").write_text("x,y\\n1,2\\n")
        run = trackio.init(project="lineage", name="producer", config={"seed": 1})
        trackio.log({"rows": 1})
        art = trackio.log_artifact("data/", name="ds", type="dataset", aliases=["prod"])
        trackio.finish()
        print(json.dumps({"run": run.id, "version": art.version, "aliases": list(art.aliases)}))
        """,
        cwd=outside / "a",
    )
    assert a["version"] == "v0"
    assert a["aliases"] == ["latest", "prod"]

    b = run_python(
        """
        import json, os, pathlib, trackio
        run = trackio.init(project="lineage", name="consumer")
        ds = trackio.use_artifact("ds:prod", type="dataset")
        path = ds.download()
        assert pathlib.Path(path, "train.csv").read_text() == "x,y\\n1,2\\n"
        pathlib.Path("model.bin").write_bytes(b"trained")
        model = trackio.log_artifact("model.bin", name="model", type="model")
        trackio.log({"loss": 0.1})
        trackio.finish()
        print(json.dumps({"run": run.id, "path": os.path.relpath(path), "by": ds.logged_by().id}))
        """,
        cwd=outside / "b",
    )
    assert b["path"] == "artifacts/lineage/ds_v0"
    assert b["by"] == a["run"]

    c = run_python(
        """
        import json, trackio
        api = trackio.Api()
        ds = api.artifact("lineage/ds:v0")
        model = api.artifact("model", project="lineage")
        runs = api.runs("lineage")
        print(json.dumps({
            "ds_logged_by": ds.logged_by().id,
            "ds_used_by": [r.id for r in ds.used_by()],
            "model_logged_by": model.logged_by().name,
            "model_used_by": [r.id for r in model.used_by()],
            "runs": [[r.id, r.name, r.status, r.config] for r in runs],
            "metrics": [[row["metrics"] for row in r.metrics] for r in runs],
            "outputs": [[x.qualified_name for x in r.logged_artifacts()] for r in runs],
            "inputs": [[x.qualified_name for x in r.used_artifacts()] for r in runs],
            "artifacts": sorted(x.qualified_name for x in api.artifacts("lineage")),
            "versions": [x.version for x in api.artifact_versions("ds", project="lineage")],
        }))
        """,
        cwd=outside,
    )
    assert c["ds_logged_by"] == a["run"]
    assert c["ds_used_by"] == [b["run"]]
    assert c["model_logged_by"] == "consumer"
    assert c["model_used_by"] == []
    assert c["runs"] == [[a["run"], "producer", "finished", {"seed": 1}], [b["run"], "consumer", "finished", {}]]
    assert c["metrics"] == [[{"rows": 1}], [{"loss": 0.1}]]
    assert c["outputs"] == [["lineage/ds:v0"], ["lineage/model:v0"]]
    assert c["inputs"] == [[], ["lineage/ds:v0"]]
    assert c["artifacts"] == ["lineage/ds:v0", "lineage/model:v0"]
    assert c["versions"] == ["v0"]

    # and this process sees the same graph
    trackio.store.close_all()
    ds = trackio.Api().artifact("lineage/ds:prod")
    assert ds.logged_by().id == a["run"]
    assert [r.id for r in ds.used_by()] == [b["run"]]


@pytest.mark.slow
def test_run_finished_at_interpreter_exit_keeps_its_metrics_and_lineage(outside):
    """A script that never calls finish() still leaves a complete record."""
    (outside / "s").mkdir()
    out = run_python(
        """
        import json, pathlib, trackio
        pathlib.Path("f.txt").write_text("f")
        run = trackio.init(project="atexit", name="forgetful")
        trackio.log({"step_metric": 3})
        trackio.log_artifact("f.txt", name="f", type="data")
        print(json.dumps({"run": run.id}))
        """,
        cwd=outside / "s",
    )
    (run,) = trackio.Api().runs("atexit")
    assert run.id == out["run"]
    assert run.status == "finished"
    assert [row["metrics"] for row in run.metrics] == [{"step_metric": 3}]
    assert [a.qualified_name for a in run.logged_artifacts()] == ["atexit/f:v0"]
