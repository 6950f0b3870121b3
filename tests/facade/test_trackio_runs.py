"""Runs: init/log/finish, the context manager, and calls that need an active run."""

from __future__ import annotations

import re

import pytest
from trackio_helpers import store_listing, write

import trackio


def test_init_returns_run_with_fresh_hex_id_name_project_config():
    run = trackio.init(project="proj", name="first", config={"lr": 0.1, "layers": [1, 2]})
    assert isinstance(run, trackio.Run)
    assert re.fullmatch(r"[0-9a-f]+", run.id) and len(run.id) >= 8
    assert run.name == "first"
    assert run.project == "proj"
    assert run.config == {"lr": 0.1, "layers": [1, 2]}
    trackio.finish()

    other = trackio.init(project="proj")
    assert re.fullmatch(r"[0-9a-f]+", other.id)
    assert other.id != run.id
    assert isinstance(other.name, str) and other.name  # a generated name
    assert other.config == {}


def test_init_stores_the_run_so_api_sees_it_with_its_config():
    run = trackio.init(project="proj", name="stored", config={"batch": 32})
    trackio.finish()
    runs = trackio.Api().runs("proj")
    assert [(r.id, r.name, r.project) for r in runs] == [(run.id, "stored", "proj")]
    assert runs[0].config == {"batch": 32}


def test_metrics_logged_with_trackio_log_are_kept_with_the_run():
    a = trackio.init(project="proj", name="a")
    trackio.log({"loss": 1.0, "acc": 0.5})
    trackio.log({"loss": 0.25})
    trackio.finish()
    b = trackio.init(project="proj", name="b")
    trackio.log({"loss": 9.0})
    trackio.finish()

    runs = {r.id: r for r in trackio.Api().runs("proj")}
    assert set(runs) == {a.id, b.id}
    rows_a = runs[a.id].metrics
    assert [row["metrics"] for row in rows_a] == [{"loss": 1.0, "acc": 0.5}, {"loss": 0.25}]
    assert [row["step"] for row in rows_a] == [0, 1]
    assert [row["metrics"] for row in runs[b.id].metrics] == [{"loss": 9.0}]


def test_runs_are_listed_in_start_order_with_finished_status():
    ids = []
    for i in range(3):
        ids.append(trackio.init(project="proj", name=f"r{i}").id)
        trackio.finish()
    runs = trackio.Api().runs("proj")
    assert [r.id for r in runs] == ids
    assert [r.name for r in runs] == ["r0", "r1", "r2"]
    assert all(r.status == "finished" for r in runs)


def test_runs_are_per_project():
    a = trackio.init(project="alpha")
    trackio.finish()
    b = trackio.init(project="beta")
    trackio.finish()
    assert [r.id for r in trackio.Api().runs("alpha")] == [a.id]
    assert [r.id for r in trackio.Api().runs("beta")] == [b.id]


def test_with_init_finishes_the_run_on_exit():
    with trackio.init(project="proj", name="ctx") as run:
        assert isinstance(run, trackio.Run)
        assert trackio.current_run() is run
        trackio.log({"x": 1})
    assert trackio.current_run() is None
    with pytest.raises(trackio.NoActiveRunError):
        trackio.log({"x": 2})
    (stored,) = trackio.Api().runs("proj")
    assert stored.id == run.id
    assert stored.status == "finished"
    assert [row["metrics"] for row in stored.metrics] == [{"x": 1}]


def test_with_init_finishes_the_run_when_the_block_raises():
    with pytest.raises(KeyError), trackio.init(project="proj", name="boom") as run:
        trackio.log({"x": 1})
        raise KeyError("boom")
    assert trackio.current_run() is None
    (stored,) = trackio.Api().runs("proj")
    assert stored.id == run.id
    assert stored.status != "running"
    assert [row["metrics"] for row in stored.metrics] == [{"x": 1}]


def test_finish_without_active_run_is_harmless():
    trackio.finish()
    trackio.init(project="proj")
    trackio.finish()
    trackio.finish()
    assert trackio.current_run() is None


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: trackio.log({"loss": 1.0}), "trackio.log"),
        (lambda: trackio.log_artifact("data.txt"), "trackio.log_artifact"),
        (lambda: trackio.use_artifact("data"), "trackio.use_artifact"),
    ],
    ids=["log", "log_artifact", "use_artifact"],
)
def test_calls_needing_a_run_raise_a_clear_error_without_one(call, what, home, work):
    write(work / "data.txt", b"payload")
    before = store_listing(home)
    with pytest.raises(trackio.NoActiveRunError) as exc:
        call()
    msg = str(exc.value)
    assert what in msg
    assert "trackio.init" in msg
    assert isinstance(exc.value, RuntimeError)
    assert store_listing(home) == before


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: trackio.log({"loss": 1.0}), "trackio.log"),
        (lambda: trackio.log_artifact("data.txt"), "trackio.log_artifact"),
        (lambda: trackio.use_artifact("data"), "trackio.use_artifact"),
    ],
    ids=["log", "log_artifact", "use_artifact"],
)
def test_calls_needing_a_run_raise_after_finish(call, what, home, work):
    write(work / "data.txt", b"payload")
    trackio.init(project="proj")
    trackio.log_artifact("data.txt", name="data")
    trackio.finish()
    before = store_listing(home)
    with pytest.raises(trackio.NoActiveRunError, match=re.escape("trackio.init")) as exc:
        call()
    assert what in str(exc.value)
    assert store_listing(home) == before
