"""Building and logging artifacts: logical paths, manifest, size, digest, frozen state, default names."""

from __future__ import annotations

import os
import re

import pytest
from trackio_helpers import rand_bytes, store_listing, write

import trackio

HEX = re.compile(r"[0-9a-f]+")


def _by_path(manifest):
    return {e["path"]: e for e in manifest}


def test_log_file_path_defaults_name_and_type(run, work):
    write(work / "checkpoints" / "model.safetensors", b"weights")
    art = trackio.log_artifact("checkpoints/model.safetensors")
    assert art.name == f"run-{run.id}-model.safetensors"
    assert art.type == "unspecified"
    assert art.version == "v0"
    assert art.aliases == ("latest",)
    assert art.project == "proj"
    assert art.qualified_name == f"proj/run-{run.id}-model.safetensors:v0"
    assert art.manifest == [{"path": "model.safetensors", "digest": art.manifest[0]["digest"], "size": 7}]
    assert art.size == 7


def test_log_symlinked_path_defaults_name_to_the_given_basename(run, work):
    write(work / "checkpoints" / "model-0042.bin", b"weights")
    os.symlink("model-0042.bin", work / "checkpoints" / "model-latest.bin")
    art = trackio.log_artifact("checkpoints/model-latest.bin")
    assert [e["path"] for e in art.manifest] == ["model-latest.bin"]
    assert art.name == f"run-{run.id}-model-latest.bin"


def test_log_directory_path_defaults_name_to_its_basename(run, work):
    write(work / "checkpoints" / "model.bin", b"12345")
    write(work / "checkpoints" / "sub" / "config.json", b"{}")
    art = trackio.log_artifact("checkpoints/")
    assert art.name == f"run-{run.id}-checkpoints"
    assert art.type == "unspecified"
    assert [e["path"] for e in art.manifest] == ["model.bin", "sub/config.json"]
    assert art.size == 7


def test_log_path_with_explicit_name_and_type(run, work):
    write(work / "checkpoints" / "model.bin", b"abc")
    art = trackio.log_artifact("checkpoints/", name="my-model", type="model")
    assert (art.name, art.type, art.version, art.aliases) == ("my-model", "model", "v0", ("latest",))
    assert art.qualified_name == "proj/my-model:v0"


def test_log_path_with_aliases(run, work):
    write(work / "f.txt", b"f")
    art = trackio.log_artifact("f.txt", name="f", type="data", aliases=["prod", "best"])
    assert art.aliases[0] == "latest"
    assert sorted(art.aliases[1:]) == ["best", "prod"]
    assert trackio.use_artifact("f:best").version == "v0"


def test_explicit_artifact_keeps_description_metadata_and_logical_paths(run, work):
    write(work / "checkpoints" / "model.safetensors", b"W" * 10)
    write(work / "checkpoints" / "config.json", b"{}")
    write(work / "tokenizer" / "vocab.txt", b"a\nb\n")
    write(work / "tokenizer" / "merges" / "m.txt", b"m")
    art = trackio.Artifact(
        name="my-model",
        type="model",
        description="Fine-tuned on the v2 dataset",
        metadata={"base_model": "bert-base", "epochs": 3},
    )
    art.add_file("checkpoints/model.safetensors")
    art.add_file("checkpoints/config.json", name="sub/config.json")
    art.add_dir("tokenizer/", name="tok")
    assert art.version is None

    logged = trackio.log_artifact(art)
    assert logged.version == "v0"
    assert logged.aliases == ("latest",)
    assert logged.description == "Fine-tuned on the v2 dataset"
    assert logged.metadata == {"base_model": "bert-base", "epochs": 3}
    assert [e["path"] for e in logged.manifest] == [
        "model.safetensors",
        "sub/config.json",
        "tok/merges/m.txt",
        "tok/vocab.txt",
    ]
    assert logged.size == 10 + 2 + 4 + 1

    fetched = trackio.use_artifact("my-model")
    assert fetched.description == "Fine-tuned on the v2 dataset"
    assert fetched.metadata == {"base_model": "bert-base", "epochs": 3}
    assert fetched.manifest == logged.manifest


def test_manifest_is_sorted_list_of_plain_dicts(run, work):
    write(work / "b.txt", b"bb")
    write(work / "a.txt", b"a")
    write(work / "d" / "z.txt", b"zzz")
    art = trackio.Artifact("m", "data")
    art.add_file("b.txt")
    art.add_dir("d", name="c")
    art.add_file("a.txt")
    logged = trackio.log_artifact(art)
    manifest = logged.manifest
    assert isinstance(manifest, list)
    assert [e["path"] for e in manifest] == ["a.txt", "b.txt", "c/z.txt"]
    for e in manifest:
        assert type(e) is dict
        assert set(e) == {"path", "digest", "size"}
        assert isinstance(e["digest"], str) and HEX.fullmatch(e["digest"])
    assert [e["size"] for e in manifest] == [1, 2, 3]
    assert logged.size == sum(e["size"] for e in manifest) == 6
    # same bytes -> same digest; different bytes -> different digest
    assert len({e["digest"] for e in manifest}) == 3


def test_manifest_example_shape(run, work):
    write(work / "config.json", b"{}")
    art = trackio.Artifact("cfg", "config")
    art.add_file("config.json", name="sub/config.json")
    (entry,) = trackio.log_artifact(art).manifest
    assert entry == {"path": "sub/config.json", "digest": entry["digest"], "size": 2}


def test_manifest_is_a_copy(run, work):
    write(work / "a.txt", b"a")
    logged = trackio.log_artifact("a.txt", name="a")
    logged.manifest[0]["path"] = "hacked"
    logged.manifest.append({"path": "x"})
    assert [e["path"] for e in logged.manifest] == ["a.txt"]


def test_digest_identical_for_identical_content_in_different_artifacts(run, work):
    write(work / "x" / "f.bin", rand_bytes(1, 5000))
    a = trackio.log_artifact("x", name="one", type="data")
    b = trackio.log_artifact("x", name="two", type="data")
    write(work / "x" / "f.bin", rand_bytes(2, 5000))
    c = trackio.log_artifact("x", name="three", type="data")
    assert isinstance(a.digest, str) and a.digest
    assert a.digest == b.digest
    assert c.digest != a.digest


def test_add_file_duplicate_logical_path_rejected(work):
    write(work / "a" / "f.txt", b"1")
    write(work / "b" / "f.txt", b"2")
    art = trackio.Artifact("dup", "data")
    art.add_file("a/f.txt")
    with pytest.raises(ValueError, match=re.escape("f.txt")):
        art.add_file("b/f.txt")
    with pytest.raises(ValueError, match=re.escape("f.txt")):
        art.add_file("b/f.txt", name="f.txt")
    art.add_file("b/f.txt", name="other.txt")  # still usable


def test_add_dir_duplicate_with_file_rejected(work):
    write(work / "d" / "x.txt", b"1")
    write(work / "x.txt", b"2")
    art = trackio.Artifact("dup", "data")
    art.add_dir("d")
    with pytest.raises(ValueError, match=re.escape("x.txt")):
        art.add_file("x.txt")


@pytest.mark.parametrize("bad", ["../evil.txt", "a/../../evil.txt", "../", "/abs/path.txt", "a//b", "./x"])
def test_add_file_unsafe_logical_path_rejected(work, bad):
    write(work / "f.txt", b"1")
    art = trackio.Artifact("safe", "data")
    with pytest.raises(ValueError):
        art.add_file("f.txt", name=bad)


def test_add_dir_unsafe_prefix_rejected(work):
    write(work / "d" / "f.txt", b"1")
    art = trackio.Artifact("safe", "data")
    with pytest.raises(ValueError, match=r"\.\."):
        art.add_dir("d", name="../up")


def test_rejected_add_leaves_artifact_unchanged(run, work):
    write(work / "f.txt", b"1")
    art = trackio.Artifact("safe", "data")
    art.add_file("f.txt")
    with pytest.raises(ValueError):
        art.add_file("f.txt", name="../f.txt")
    with pytest.raises(ValueError):
        art.add_file("f.txt")
    assert [e["path"] for e in trackio.log_artifact(art).manifest] == ["f.txt"]


def test_add_file_missing_path_raises_naming_it(home, work):
    art = trackio.Artifact("m", "data")
    with pytest.raises(FileNotFoundError, match=re.escape("no-such-file.bin")) as exc:
        art.add_file("no-such-file.bin")
    assert isinstance(exc.value, ValueError)
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        art.add_dir("no-such-dir")
    assert store_listing(home) == {}


def test_add_file_on_a_directory_and_add_dir_on_a_file_raise(work):
    write(work / "d" / "f.txt", b"1")
    art = trackio.Artifact("m", "data")
    with pytest.raises(ValueError, match="d"):
        art.add_file("d")
    with pytest.raises(ValueError, match=re.escape("f.txt")):
        art.add_dir("d/f.txt")


def test_log_artifact_missing_path_raises_naming_it_and_stores_nothing(run, home, work):
    before = store_listing(home)
    with pytest.raises(FileNotFoundError, match=re.escape("missing/model.bin")):
        trackio.log_artifact("missing/model.bin", name="m", type="model")
    assert store_listing(home) == before
    with pytest.raises(trackio.ArtifactNotFoundError):
        trackio.use_artifact("m")


def test_logged_artifact_is_frozen(run, work):
    write(work / "a.txt", b"a")
    write(work / "b.txt", b"b")
    write(work / "d" / "c.txt", b"c")
    art = trackio.Artifact("frozen", "data")
    art.add_file("a.txt")
    logged = trackio.log_artifact(art)
    assert logged.version == "v0"
    with pytest.raises(RuntimeError, match="frozen"):
        logged.add_file("b.txt")
    with pytest.raises(RuntimeError):
        logged.add_dir("d")
    with pytest.raises(RuntimeError):
        logged.add_reference((work / "b.txt").as_uri())
    assert [e["path"] for e in logged.manifest] == ["a.txt"]
    assert [e["path"] for e in trackio.use_artifact("frozen").manifest] == ["a.txt"]


def test_fetched_artifact_is_frozen(run, work):
    write(work / "a.txt", b"a")
    write(work / "b.txt", b"b")
    trackio.log_artifact("a.txt", name="frozen", type="data")
    used = trackio.use_artifact("frozen")
    with pytest.raises(RuntimeError, match="frozen"):
        used.add_file("b.txt")
    api_art = trackio.Api().artifact("proj/frozen")
    with pytest.raises(RuntimeError, match="frozen"):
        api_art.add_file("b.txt")


def test_unlogged_artifact_has_no_version(work):
    art = trackio.Artifact("fresh", "data")
    assert art.name == "fresh"
    assert art.type == "data"
    assert art.version is None
    assert art.aliases == ()
    assert art.manifest is None
    assert art.size is None


def test_artifact_with_no_files_is_rejected(run, home):
    before = store_listing(home)
    with pytest.raises(ValueError, match="empty"):
        trackio.log_artifact(trackio.Artifact("empty", "data"))
    assert store_listing(home) == before


def test_logged_files_survive_deleting_the_originals(run, work):
    data = rand_bytes(7, 300_000)
    write(work / "big.bin", data)
    trackio.log_artifact("big.bin", name="big", type="data")
    os.remove(work / "big.bin")
    path = trackio.use_artifact("big").download()
    with open(os.path.join(path, "big.bin"), "rb") as f:
        assert f.read() == data
