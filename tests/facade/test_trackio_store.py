"""The store: one objstore repository per machine under TRACKIO_DIR, shared by projects, deduplicated."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from trackio_helpers import rand_bytes, store_listing, write

import trackio
import trackio.store
from objstore import Repository


def _repositories_under(root: Path) -> list[Path]:
    """Directories under ``root`` that objstore can open as repositories."""
    found = []
    for top, _dirs, files in os.walk(root):
        if "config" in files:
            try:
                Repository.open(top).close()
            except Exception:
                continue
            found.append(Path(top))
    return found


def test_store_is_one_objstore_repository_under_trackio_dir(home, work, outside, monkeypatch):
    fake_home = outside / "fake-home"
    fake_home.mkdir()
    for var in ("HOME", "XDG_CACHE_HOME", "HF_HOME"):
        monkeypatch.setenv(var, str(fake_home))
    assert not home.exists() or store_listing(home) == {}
    write(work / "f.txt", b"data")
    trackio.init(project="alpha")
    trackio.log_artifact("f.txt", name="f", type="data")
    trackio.finish()
    trackio.init(project="beta")
    trackio.log_artifact("f.txt", name="f", type="data")
    trackio.finish()
    assert Path(trackio.store_path()).resolve().is_relative_to(home.resolve())
    assert Path(trackio.trackio_dir()).resolve() == home.resolve()
    repos = _repositories_under(home)
    assert [p.resolve() for p in repos] == [Path(trackio.store_path()).resolve()]
    assert store_listing(home)  # something was written there
    assert os.listdir(work) == ["f.txt"], "nothing is stored in the working directory"
    assert os.listdir(fake_home) == [], "nothing is stored outside TRACKIO_DIR"


def test_trackio_dir_switch_gives_a_separate_store(work, outside, monkeypatch):
    write(work / "f.txt", b"data")
    trackio.init(project="p")
    trackio.log_artifact("f.txt", name="f", type="data")
    trackio.finish()
    trackio.store.close_all()
    monkeypatch.setenv("TRACKIO_DIR", str(outside / "other-home"))
    trackio.init(project="p")
    with pytest.raises(trackio.ArtifactNotFoundError):
        trackio.use_artifact("f")
    assert trackio.log_artifact("f.txt", name="f", type="data").version == "v0"


def test_same_file_in_two_projects_is_stored_once(work):
    data = rand_bytes(31, 4_000_000)
    write(work / "model.bin", data)
    write(work / "tiny.txt", b"t")
    trackio.init(project="alpha")
    trackio.log_artifact("tiny.txt", name="warmup", type="x")
    before = trackio.store.get_repo().stats()
    a = trackio.log_artifact("model.bin", name="model", type="model")
    mid = trackio.store.get_repo().stats()
    trackio.finish()
    trackio.init(project="beta")
    b = trackio.log_artifact("model.bin", name="weights", type="model")
    after = trackio.store.get_repo().stats()

    assert (a.project, a.version) == ("alpha", "v0")
    assert (b.project, b.version) == ("beta", "v0")
    assert a.manifest[0]["digest"] == b.manifest[0]["digest"]
    first_cost = mid.stored_bytes - before.stored_bytes
    second_cost = after.stored_bytes - mid.stored_bytes
    assert first_cost >= len(data) * 0.9  # random bytes do not compress
    assert second_cost < 64 * 1024, f"the second project stored {second_cost} more bytes for the same file"
    assert after.raw_bytes - mid.raw_bytes < 64 * 1024
    assert after.logical_bytes - mid.logical_bytes >= len(data)  # both projects see the whole file


def test_same_file_in_two_artifacts_of_one_project_is_stored_once(run, work):
    data = rand_bytes(32, 2_000_000)
    write(work / "model.bin", data)
    trackio.log_artifact("model.bin", name="a", type="model")
    mid = trackio.store.get_repo().stats()
    trackio.log_artifact("model.bin", name="b", type="model")
    after = trackio.store.get_repo().stats()
    assert after.stored_bytes - mid.stored_bytes < 64 * 1024


@pytest.mark.slow
def test_relogging_a_large_file_after_a_one_percent_change_costs_about_one_percent(run, work):
    size = 64 * 1024 * 1024
    data = bytearray(rand_bytes(33, size))
    write(work / "big.bin", bytes(data))
    v0 = trackio.log_artifact("big.bin", name="big", type="model")
    mid = trackio.store.get_repo().stats()

    start = size // 2
    patch = rand_bytes(34, size // 100)
    data[start : start + len(patch)] = patch
    write(work / "big.bin", bytes(data))
    v1 = trackio.log_artifact("big.bin", name="big", type="model")
    after = trackio.store.get_repo().stats()

    assert (v0.version, v1.version) == ("v0", "v1")
    growth = after.stored_bytes - mid.stored_bytes
    assert growth < 0.03 * size, f"a 1% edit cost {growth / size:.1%} of the file"
    assert growth >= len(patch) * 0.9  # the changed bytes are really stored
    with trackio.use_artifact("big:v1").open("big.bin") as f:
        assert f.read() == bytes(data)


def test_lineage_travels_with_the_store(work, outside, monkeypatch):
    """Copying TRACKIO_DIR elsewhere carries the runs and their lineage along."""
    write(work / "ds.csv", b"a,b\n")
    producer = trackio.init(project="p", name="producer")
    trackio.log({"loss": 0.5})
    trackio.log_artifact("ds.csv", name="ds", type="dataset")
    trackio.finish()
    consumer = trackio.init(project="p", name="consumer")
    trackio.use_artifact("ds")
    trackio.finish()
    trackio.store.close_all()

    moved = outside / "moved-home"
    shutil.copytree(trackio.trackio_dir(), moved)
    shutil.rmtree(trackio.trackio_dir())
    monkeypatch.setenv("TRACKIO_DIR", str(moved))

    art = trackio.Api().artifact("p/ds:v0")
    assert art.logged_by().id == producer.id
    assert [r.id for r in art.used_by()] == [consumer.id]
    runs = trackio.Api().runs("p")
    assert [r.name for r in runs] == ["producer", "consumer"]
    assert [row["metrics"] for row in runs[0].metrics] == [{"loss": 0.5}]


def test_one_log_artifact_adds_one_pack_and_its_index(home, work):
    """The version and the run record naming it are written together: one pack, one index."""
    import os

    def packs() -> set[str]:
        return {f for f in os.listdir(home / "objstore" / "packs")}

    (work / "a.bin").write_bytes(os.urandom(5000))
    run = trackio.init(project="p", name="packer")
    trackio.log({"loss": 1.0})
    before = packs()
    logged = trackio.log_artifact(work / "a.bin", name="m", type="model")
    added = packs() - before
    assert sorted(p.rsplit(".", 1)[1] for p in added) == ["idx", "pack"]
    assert [a.id for a in run.logged_artifacts()] == [logged.id]
    trackio.finish()
    [stored] = trackio.Api().runs("p")
    assert [a.id for a in stored.logged_artifacts()] == [logged.id]
    assert [m["metrics"]["loss"] for m in stored.metrics] == [1.0]
