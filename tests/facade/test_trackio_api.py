"""trackio.Api: artifact, artifact_versions, artifacts, runs — with or without an active run."""

from __future__ import annotations

import os

import pytest
from trackio_helpers import store_listing, write

import trackio
import trackio.store


@pytest.fixture
def populated(work):
    trackio.init(project="proj", name="writer")
    for i, text in enumerate(["a", "b", "c"]):
        write(work / "m.bin", text.encode())
        trackio.log_artifact("m.bin", name="model", type="model", aliases=["prod"] if i == 1 else None)
    write(work / "d.csv", b"1,2")
    trackio.log_artifact("d.csv", name="data", type="dataset")
    trackio.finish()
    trackio.init(project="other", name="elsewhere")
    write(work / "o.txt", b"o")
    trackio.log_artifact("o.txt", name="model", type="model")
    trackio.finish()
    trackio.store.close_all()


@pytest.mark.parametrize(
    ("spec", "project", "expected"),
    [
        ("proj/model", None, "proj/model:v2"),
        ("proj/model:prod", None, "proj/model:v1"),
        ("proj/model:v0", None, "proj/model:v0"),
        ("model", "proj", "proj/model:v2"),
        ("model:prod", "proj", "proj/model:v1"),
        ("model:latest", "other", "other/model:v0"),
        ("other/model", "proj", "other/model:v0"),  # an explicit project in the spec wins
    ],
)
def test_api_artifact_resolves(populated, spec, project, expected):
    art = trackio.Api().artifact(spec, project=project)
    assert art.qualified_name == expected
    assert art.type == "model"


def test_api_artifact_defaults_to_the_active_run_project(populated):
    trackio.init(project="proj")
    assert trackio.Api().artifact("model").qualified_name == "proj/model:v2"


def test_api_artifact_without_project_or_run_raises_clearly(populated):
    with pytest.raises(ValueError, match="project"):
        trackio.Api().artifact("model")


def test_api_does_not_record_lineage(populated):
    trackio.Api().artifact("proj/model")
    assert trackio.Api().artifact("proj/model").used_by() == []


@pytest.mark.parametrize(
    ("spec", "named"),
    [("proj/nope", "nope"), ("proj/model:v9", "v9"), ("proj/model:gold", "gold"), ("ghost/model", "ghost")],
)
def test_api_artifact_unknown_raises_naming_it(populated, home, spec, named):
    before = store_listing(home)
    with pytest.raises(trackio.ArtifactNotFoundError, match=named):
        trackio.Api().artifact(spec)
    assert store_listing(home) == before


def test_api_artifact_versions_oldest_first_with_aliases(populated):
    versions = trackio.Api().artifact_versions("model", project="proj")
    assert [v.version for v in versions] == ["v0", "v1", "v2"]
    assert [v.aliases for v in versions] == [(), ("prod",), ("latest",)]
    assert [v.qualified_name for v in versions] == ["proj/model:v0", "proj/model:v1", "proj/model:v2"]
    contents = []
    for v in versions:
        with v.open("m.bin") as f:
            contents.append(f.read())
    assert contents == [b"a", b"b", b"c"]
    assert [v.version for v in trackio.Api().artifact_versions("model", project="other")] == ["v0"]


def test_api_artifact_versions_unknown_raises(populated):
    with pytest.raises(trackio.ArtifactNotFoundError, match="nope"):
        trackio.Api().artifact_versions("nope", project="proj")


def test_api_artifacts_lists_latest_of_each(populated):
    arts = trackio.Api().artifacts("proj")
    assert sorted(a.qualified_name for a in arts) == ["proj/data:v0", "proj/model:v2"]
    assert {a.name: a.type for a in arts} == {"data": "dataset", "model": "model"}
    assert [a.qualified_name for a in trackio.Api().artifacts("other")] == ["other/model:v0"]
    assert trackio.Api().artifacts("empty-project") == []


def test_api_runs(populated):
    runs = trackio.Api().runs("proj")
    assert [r.name for r in runs] == ["writer"]
    assert [a.qualified_name for a in runs[0].logged_artifacts()] == [
        "proj/model:v0",
        "proj/model:v1",
        "proj/model:v2",
        "proj/data:v0",
    ]
    assert [r.name for r in trackio.Api().runs("other")] == ["elsewhere"]
    assert trackio.Api().runs("empty-project") == []


def test_api_artifacts_fetched_are_complete(populated, outside, monkeypatch):
    art = trackio.Api().artifact("proj/data")
    assert art.version == "v0"
    assert art.aliases == ("latest",)
    assert art.size == 3
    assert [e["path"] for e in art.manifest] == ["d.csv"]
    assert isinstance(art.digest, str) and art.digest
    assert art.project == "proj"
    assert art.logged_by().name == "writer"
    monkeypatch.chdir(outside)
    path = art.download()
    with open(f"{path}/d.csv", "rb") as f:
        assert f.read() == b"1,2"


def test_project_names_with_spaces_and_symbols_work_end_to_end(work):
    project = "My Project (2024) ~x"
    run = trackio.init(project=project, name="r")
    write(work / "f.txt", b"f")
    logged = trackio.log_artifact("f.txt", name="f", type="data", aliases=["prod"])
    assert logged.project == project
    assert logged.qualified_name == f"{project}/f:v0"
    assert trackio.use_artifact("f:prod").version == "v0"
    trackio.finish()
    api = trackio.Api()
    assert [a.qualified_name for a in api.artifacts(project)] == [f"{project}/f:v0"]
    assert [r.id for r in api.runs(project)] == [run.id]
    assert api.artifact("f", project=project).logged_by().id == run.id
    assert [a.version for a in api.artifact_versions("f", project=project)] == ["v0"]
    path = api.artifact("f:prod", project=project).download()
    assert os.path.samefile(path, work / "artifacts" / project / "f_v0")
