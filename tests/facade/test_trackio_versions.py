"""Versions and aliases: numbering, dedup, rotation, `latest`, reserved and invalid names, type checks."""

from __future__ import annotations

import pytest
from trackio_helpers import store_listing, write

import trackio
import trackio.store


def log_text(text: str, name: str = "model", type: str = "model", aliases=None, path: str = "weights.bin"):
    write(path, text.encode())
    art = trackio.Artifact(name, type)
    art.add_file(path)
    return trackio.log_artifact(art, aliases=aliases)


def versions(name: str, project: str = "proj") -> list[str]:
    return [a.version for a in trackio.Api().artifact_versions(name, project=project)]


def test_each_new_content_gets_the_next_version_and_latest(run):
    logged = [log_text(f"content {i}") for i in range(4)]
    assert [a.version for a in logged] == ["v0", "v1", "v2", "v3"]
    assert [a.qualified_name for a in logged] == [f"proj/model:v{i}" for i in range(4)]
    assert logged[-1].aliases == ("latest",)
    assert trackio.use_artifact("model").version == "v3"
    assert trackio.use_artifact("model:latest").version == "v3"
    assert trackio.use_artifact("model:v1").aliases == ()
    assert versions("model") == ["v0", "v1", "v2", "v3"]


def test_version_strings_of_each_artifact_are_independent(run):
    assert log_text("a", name="one").version == "v0"
    assert log_text("b", name="two").version == "v0"
    assert log_text("c", name="one").version == "v1"


def test_explicit_aliases_are_set_and_latest_comes_first(run):
    art = log_text("a", aliases=["prod", "best"])
    assert art.aliases[0] == "latest"
    assert set(art.aliases) == {"latest", "prod", "best"}
    assert len(art.aliases) == 3
    assert isinstance(art.aliases, tuple)
    assert trackio.use_artifact("model:prod").version == "v0"
    assert trackio.use_artifact("model:best").version == "v0"


def test_aliases_move_to_the_new_version(run):
    log_text("a", aliases=["prod", "best"])
    v1 = log_text("b", aliases=["prod"])
    assert v1.version == "v1"
    assert v1.aliases == ("latest", "prod")
    assert trackio.use_artifact("model:prod").version == "v1"
    assert trackio.use_artifact("model:best").version == "v0"
    assert trackio.use_artifact("model:v0").aliases == ("best",)


def test_identical_content_reuses_latest_version(run, home):
    first = log_text("same")
    again = log_text("same")
    assert again.version == "v0"
    assert again.aliases == ("latest",)
    assert again.digest == first.digest
    assert versions("model") == ["v0"]


def test_identical_older_content_reuses_older_version_latest_stays_aliases_rotate(run):
    log_text("A", aliases=["prod"])
    log_text("B", aliases=["prod"])
    assert trackio.use_artifact("model:prod").version == "v1"

    again = log_text("A", aliases=["prod", "stable"])
    assert again.version == "v0"
    assert "latest" not in again.aliases
    assert set(again.aliases) == {"prod", "stable"}
    assert versions("model") == ["v0", "v1"]  # no new version
    assert trackio.use_artifact("model").version == "v1"  # latest never moves backward
    assert trackio.use_artifact("model:latest").version == "v1"
    assert trackio.use_artifact("model:prod").version == "v0"
    assert trackio.use_artifact("model:stable").version == "v0"
    assert trackio.use_artifact("model:v1").aliases == ("latest",)

    nxt = log_text("C")
    assert nxt.version == "v2"  # numbering continues after the reused version


def test_identical_content_without_aliases_changes_nothing(run, home):
    log_text("A")
    log_text("B")
    before = [(a.version, a.aliases) for a in trackio.Api().artifact_versions("model", project="proj")]
    again = log_text("A")
    assert again.version == "v0"
    assert again.aliases == ()
    after = [(a.version, a.aliases) for a in trackio.Api().artifact_versions("model", project="proj")]
    assert after == before == [("v0", ()), ("v1", ("latest",))]


def test_identical_content_under_different_logical_path_is_a_new_version(run):
    log_text("same", path="a.bin")
    assert log_text("same", path="b.bin").version == "v1"


@pytest.mark.parametrize("reserved", ["v0", "v1", "v12", "v007"])
def test_version_specifiers_are_reserved_as_aliases(run, home, reserved):
    log_text("A")
    before = store_listing(home)
    with pytest.raises(trackio.ReservedAliasError, match=reserved) as exc:
        log_text("B", aliases=[reserved])
    assert isinstance(exc.value, ValueError)
    assert store_listing(home) == before
    assert versions("model") == ["v0"]


@pytest.mark.parametrize("ok", ["v1a", "prod", "best-2", "release_1.0", "V"])
def test_non_version_aliases_are_accepted(run, ok):
    art = log_text("A", aliases=[ok])
    assert art.aliases == ("latest", ok)
    assert trackio.use_artifact(f"model:{ok}").version == "v0"


@pytest.mark.parametrize("bad", ["my model", "a/b", "a:b", "", "naïve", "x*", "tab\t"])
def test_invalid_artifact_names_rejected(run, home, work, bad):
    write(work / "f.txt", b"1")
    before = store_listing(home)
    with pytest.raises(trackio.InvalidNameError) as exc:
        trackio.Artifact(bad, "model")
    assert repr(bad) in str(exc.value)
    assert isinstance(exc.value, ValueError)
    with pytest.raises(ValueError, match="name"):
        trackio.log_artifact("f.txt", name=bad)
    assert store_listing(home) == before


@pytest.mark.parametrize("bad", ["my alias", "a/b", "a:b", "", "ü", "x*"])
def test_invalid_aliases_rejected(run, home, bad):
    log_text("A")
    before = store_listing(home)
    with pytest.raises(trackio.InvalidNameError) as exc:
        log_text("B", aliases=[bad])
    assert repr(bad) in str(exc.value)
    assert store_listing(home) == before
    assert versions("model") == ["v0"]


@pytest.mark.parametrize("good", ["my-model", "my_model", "model.v2", "A1", "x-1.2_3"])
def test_valid_names_accepted(run, good):
    art = log_text("A", name=good)
    assert art.name == good
    assert art.qualified_name == f"proj/{good}:v0"
    assert trackio.use_artifact(f"{good}:v0").name == good


def test_relogging_with_a_different_type_raises_value_error(run, home, work):
    log_text("A", type="model")
    before = store_listing(home)
    with pytest.raises(ValueError) as exc:
        log_text("B", type="dataset")
    msg = str(exc.value)
    assert "model" in msg and "dataset" in msg
    assert isinstance(exc.value, trackio.ArtifactTypeError)
    assert store_listing(home) == before
    assert versions("model") == ["v0"]
    # the same for a path log
    write(work / "other.bin", b"other")
    with pytest.raises(ValueError, match="dataset"):
        trackio.log_artifact("other.bin", name="model", type="dataset")
    assert store_listing(home) == before


def test_relogging_identical_content_with_a_different_type_also_raises(run, home):
    log_text("A", type="model")
    before = store_listing(home)
    with pytest.raises(ValueError, match="dataset"):
        log_text("A", type="dataset", aliases=["prod"])
    assert store_listing(home) == before
    with pytest.raises(trackio.ArtifactNotFoundError):
        trackio.use_artifact("model:prod")


def test_versions_are_a_chain_of_objstore_commits(run):
    logged = [log_text(f"content {i}") for i in range(3)]
    repo = trackio.store.get_repo()
    assert list(repo.get_commit(logged[0].id).parents) == []
    assert list(repo.get_commit(logged[1].id).parents) == [logged[0].id]
    assert list(repo.get_commit(logged[2].id).parents) == [logged[1].id]
    # the commit's tree is the artifact's files
    assert repo.read_file(logged[2].id, "weights.bin") == b"content 2"


def test_alias_history_records_every_move(run):
    log_text("A", aliases=["prod"])
    log_text("B", aliases=["prod"])
    log_text("A", aliases=["prod"])  # back onto v0 (identical content)
    history = trackio.Api().alias_history("model", "prod", project="proj")
    assert [h["version"] for h in history] == ["v0", "v1", "v0"]
    assert [h["previous"] for h in history] == [None, "v0", "v1"]
    assert all(h["alias"] == "prod" for h in history)
    times = [h["time"] for h in history]
    assert times == sorted(times)


def test_alias_history_of_latest_only_moves_forward(run):
    log_text("A")
    log_text("B")
    log_text("A")
    log_text("C")
    history = trackio.Api().alias_history("model", "latest", project="proj")
    assert [h["version"] for h in history] == ["v0", "v1", "v2"]


def test_alias_history_of_unknown_alias_raises(run):
    log_text("A")
    with pytest.raises(trackio.ArtifactNotFoundError, match="nope"):
        trackio.Api().alias_history("model", "nope", project="proj")
