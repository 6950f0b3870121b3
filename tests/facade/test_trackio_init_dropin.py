"""trackio.init / trackio.show take what trackio 0.43 users already pass."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from trackio_helpers import PROJECT_ROOT

import trackio

# trackio 0.43.0's ``init``: names, order and defaults (read off its signature).
TRACKIO_043_INIT = [
    ("project", inspect.Parameter.empty),
    ("name", None),
    ("group", None),
    ("space_id", None),
    ("server_url", None),
    ("dataset_id", None),
    ("bucket_id", None),
    ("config", None),
    ("resume", "never"),
    ("settings", None),
    ("private", None),
    ("embed", True),
    ("auto_log_gpu", None),
    ("gpu_log_interval", 10.0),
    ("auto_log_cpu", None),
    ("cpu_log_interval", 10.0),
    ("webhook_url", None),
    ("webhook_min_level", None),
]

TRACKIO_043_SHOW = [
    ("project", None),
    ("dashboard", None),
    ("theme", None),
    ("mcp_server", None),
    ("footer", True),
    ("color_palette", None),
    ("open_browser", True),
    ("block_thread", None),
    ("host", None),
    ("share", None),
    ("server_port", None),
    ("frontend_dir", None),
]


def test_init_has_trackio_043s_parameters_in_its_positions_with_its_defaults():
    params = list(inspect.signature(trackio.init).parameters.values())
    head = [(p.name, p.default) for p in params[: len(TRACKIO_043_INIT)]]
    assert head == TRACKIO_043_INIT
    for p in params[: len(TRACKIO_043_INIT)]:
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, p.name
    # ours come after, keyword-only, so no positional call of trackio's shifts
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[len(TRACKIO_043_INIT) :])


def test_show_has_trackio_043s_signature():
    params = list(inspect.signature(trackio.show).parameters.values())
    assert [(p.name, p.default) for p in params] == TRACKIO_043_SHOW
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])


def test_positional_call_as_trackio_documents_it():
    run = trackio.init("proj", "positional", "team-a")
    assert (run.project, run.name, run.group) == ("proj", "positional", "team-a")


def test_dashboard_and_monitoring_options_are_accepted_and_recorded_under_trackio():
    run = trackio.init(
        project="proj",
        name="monitored",
        config={"lr": 0.1},
        settings={"x": 1},
        private=True,
        embed=False,
        auto_log_gpu=True,
        gpu_log_interval=5.0,
        auto_log_cpu=False,
        cpu_log_interval=2.5,
        webhook_url="https://hooks.slack.com/services/T000/B000/secretpart",
        webhook_min_level=trackio.AlertLevel.WARN,
    )
    assert run.config["lr"] == 0.1
    recorded = run.config["trackio"]
    assert recorded == {
        "settings": {"x": 1},
        "private": True,
        "embed": False,
        "auto_log_gpu": True,
        "gpu_log_interval": 5.0,
        "auto_log_cpu": False,
        "cpu_log_interval": 2.5,
        "webhook_url": "https://hooks.slack.com/...",  # a webhook URL is a secret: only its host is kept
        "webhook_min_level": "warn",
    }
    trackio.finish()
    stored = trackio.Api().runs("proj")[0]
    assert stored.config["trackio"] == recorded
    assert "secretpart" not in repr(stored.config)


def test_defaults_record_nothing_and_trackio_config_follows_the_run():
    run = trackio.init(project="proj", config={"seed": 3})
    assert run.config == {"seed": 3}
    assert trackio.config == {"seed": 3}


def test_unknown_keyword_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="not_a_trackio_option"):
        trackio.init(project="proj", not_a_trackio_option=1)  # type: ignore[call-arg]


def test_resume_never_starts_a_new_run_even_if_the_name_exists():
    first = trackio.init(project="proj", name="same")
    trackio.finish()
    second = trackio.init(project="proj", name="same")  # resume="never" is the default
    assert second.id != first.id
    trackio.finish()
    assert sorted(r.id for r in trackio.Api().runs("proj")) == sorted([first.id, second.id])


def test_resume_allow_continues_the_named_run_and_keeps_its_lineage(work: Path):
    (work / "w.bin").write_bytes(b"weights")
    (work / "d.txt").write_text("data")
    first = trackio.init(project="proj", name="train", config={"lr": 0.1})
    trackio.log({"loss": 1.0})
    trackio.log({"loss": 0.5})
    trackio.log_artifact(str(work / "d.txt"), name="data", type="dataset")
    logged = trackio.log_artifact(str(work / "w.bin"), name="model", type="model")
    trackio.finish()

    again = trackio.init(project="proj", name="train", resume="allow", config={"epochs": 3})
    assert again.id == first.id and again.status == "running"
    assert again.config == {"lr": 0.1, "epochs": 3}
    used = trackio.use_artifact("data:latest")
    trackio.log({"loss": 0.25})
    trackio.finish()

    runs = trackio.Api().runs("proj")
    assert [r.id for r in runs] == [first.id]
    run = runs[0]
    assert [a.qualified_name for a in run.logged_artifacts()] == ["proj/data:v0", logged.qualified_name]
    assert [a.qualified_name for a in run.used_artifacts()] == [used.qualified_name]
    assert [(m["step"], m["metrics"]["loss"]) for m in run.metrics] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert run.status == "finished"


def test_resume_allow_with_a_new_name_starts_a_run():
    run = trackio.init(project="proj", name="brand-new", resume="allow")
    trackio.finish()
    assert [r.name for r in trackio.Api().runs("proj")] == ["brand-new"]
    assert run.status == "finished"


def test_resume_must_raises_naming_the_missing_run_and_continues_an_existing_one():
    with pytest.raises(ValueError, match=r"'ghost'.*'proj'"):
        trackio.init(project="proj", name="ghost", resume="must")
    with pytest.raises(ValueError, match="name"):
        trackio.init(project="proj", resume="must")
    first = trackio.init(project="proj", name="real")
    trackio.finish()
    again = trackio.init(project="proj", name="real", resume="must")
    assert again.id == first.id


def test_resume_allow_continues_the_active_run_of_that_name_with_its_metrics():
    first = trackio.init(project="proj", name="live")
    trackio.log({"x": 1})
    again = trackio.init(project="proj", name="live", resume="allow")  # finishes, then continues it
    trackio.log({"x": 2})
    trackio.finish()
    assert again.id == first.id
    assert [m["metrics"]["x"] for m in trackio.Api().runs("proj")[0].metrics] == [1, 2]


def test_bad_resume_value_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="'sometimes'"):
        trackio.init(project="proj", resume="sometimes")


def test_server_url_must_be_http_or_https():
    with pytest.raises(ValueError, match="ftp://box"):
        trackio.init(project="proj", server_url="ftp://box")


def test_alert_is_stored_with_the_run_and_printed(capsys: pytest.CaptureFixture[str]):
    trackio.init(project="proj", name="alerting")
    trackio.log({"loss": 9.0})
    trackio.alert("Loss spike", "loss jumped to 9.00", level=trackio.AlertLevel.ERROR)
    trackio.finish()
    assert "[trackio ERROR] Loss spike: loss jumped to 9.00" in capsys.readouterr().err
    [stored] = trackio.Api().runs("proj")[0].alerts
    assert (stored["title"], stored["level"], stored["step"]) == ("Loss spike", "error", 0)
    with pytest.raises(ValueError, match="'loud'"):
        trackio.init(project="proj")
        trackio.alert("x", level="loud")


def test_show_checks_its_arguments_as_trackio_does():
    with pytest.raises(ValueError, match="dashboard"):
        trackio.show(dashboard="metrics")
    with pytest.raises(ValueError, match="registry dashboard does not accept a project"):
        trackio.show("proj", dashboard="registry")


def test_show_serves_the_dashboard_in_the_background_and_returns_what_trackio_returns(capsys):
    pytest.importorskip("starlette", reason="the dashboard needs the 'ui' extra")
    with trackio.init(project="proj") as run:
        art = trackio.Artifact("my-model", type="model", metadata={"epochs": 3})
        (Path.cwd() / "w.bin").write_bytes(b"weights")
        art.add_file("w.bin")
        run.log_artifact(art, aliases=["prod"])
    result = trackio.show(project="proj", open_browser=False, block_thread=False, server_port=0)
    app, local_url, share_url, full_url = result
    try:
        assert repr(result) == ""  # like trackio: a notebook does not echo it
        assert local_url.startswith("http://127.0.0.1:") and local_url.endswith("/")
        assert share_url is None
        assert full_url == local_url + "p/proj"
        assert f"* Trackio UI launched at: {full_url}" in capsys.readouterr().out
        page = urllib.request.urlopen(full_url, timeout=30).read().decode()
        assert "my-model" in page and "prod" in page
    finally:
        app.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(full_url, timeout=5)
    registry = trackio.show(dashboard="registry", open_browser=False, block_thread=False, server_port=0)
    try:
        assert registry[3] == registry[1] + "registry"
        assert "Registry" in urllib.request.urlopen(registry[3], timeout=30).read().decode()
        assert "* Trackio registry UI launched at: " + registry[3] in capsys.readouterr().out
    finally:
        registry[0].close()


TRACKIO_043_SCRIPT = '''
import random
import time

import trackio

runs = 2
epochs = 4

for run in range(runs):
    trackio.init(
        project="my-project",
        config={"epochs": epochs, "learning_rate": 0.001, "batch_size": 64},
        auto_log_gpu=False,
        embed=False,
    )
    for epoch in range(epochs):
        train_loss = random.uniform(0.2, 1.0)
        trackio.log({"epoch": epoch, "train_loss": train_loss})
    with open("model.safetensors", "wb") as f:
        f.write(bytes(range(256)) * 64)
    trackio.log_artifact("model.safetensors", name="my-model", type="model")

trackio.finish()

trackio.init(project="my-project", name="evaluate", resume="allow")
artifact = trackio.use_artifact("my-model:latest", type="model")
path = artifact.download()
print("downloaded", artifact.version, path)
trackio.finish()
'''


@pytest.mark.slow
def test_an_unmodified_trackio_043_training_script_runs(home: Path, work: Path):
    script = work / "train.py"
    script.write_text(textwrap.dedent(TRACKIO_043_SCRIPT))
    env = {**os.environ, "TRACKIO_DIR": str(home), "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("TRACKIO_REMOTE", None)
    done = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "downloaded v0" in done.stdout  # identical content logged twice: one version
    assert (work / "artifacts" / "my-project" / "my-model_v0" / "model.safetensors").read_bytes() == bytes(range(256)) * 64
    runs = trackio.Api().runs("my-project")
    assert len(runs) == 3
    assert [len(r.metrics) for r in runs[:2]] == [4, 4]
    assert [a.qualified_name for a in runs[2].used_artifacts()] == ["my-project/my-model:v0"]
