"""Deleting a version, then gc, frees the bytes only it held and nothing shared."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

import trackio
from trackio.store import get_repo


def _log(path: Path, content: bytes, aliases: list[str] | None = None) -> trackio.Artifact:
    path.write_bytes(content)
    art = trackio.Artifact("model", type="model")
    art.add_file(path, name="weights.bin")
    art.add_file(path.parent / "shared.bin", name="shared.bin")
    return trackio.log_artifact(art, aliases=aliases)


def test_delete_version_then_gc_frees_only_its_unique_bytes(tmp_path: Path) -> None:
    (tmp_path / "shared.bin").write_bytes(os.urandom(2_000_000))
    run = trackio.init(project="p")
    v0 = _log(tmp_path / "w.bin", os.urandom(1_000_000))
    _log(tmp_path / "w.bin", os.urandom(3_000_000), aliases=["doomed"])
    v2 = _log(tmp_path / "w.bin", os.urandom(1_000_000), aliases=["prod"])
    consumer_input = trackio.use_artifact("model:v1")
    run.finish()
    repo = get_repo()
    before = repo.stats().stored_bytes

    trackio.Api("p").delete_version("model:v1")
    result = repo.gc(grace=timedelta(0))

    after = repo.stats().stored_bytes
    assert before - after >= 3_000_000  # v1's unique weights are gone
    assert before - after < 3_300_000  # and nothing shared went with them
    assert result.objects_removed > 0
    assert repo.fsck().ok
    api = trackio.Api("p")
    assert [a.version for a in api.artifact_versions("model")] == ["v0", "v2"]
    with pytest.raises(ValueError):
        api.artifact("model:v1")
    with pytest.raises(ValueError):
        api.artifact("model:doomed")
    assert api.artifact("model:prod").version == "v2"
    assert api.artifact("model").version == "v2"
    for art in (v0, v2):
        fresh = api.artifact(f"model:{art.version}")
        out = Path(fresh.download(tmp_path / f"dl-{art.version}"))
        assert (out / "shared.bin").read_bytes() == (tmp_path / "shared.bin").read_bytes()
        assert fresh.digest == art.digest
    runs = api.runs("p")
    assert all(consumer_input.id not in [a.id for a in r.used_artifacts()] for r in runs)
    assert [a.version for a in runs[0].logged_artifacts()] == ["v0", "v2"]


def test_delete_latest_moves_latest_back(tmp_path: Path) -> None:
    (tmp_path / "shared.bin").write_bytes(b"s")
    with trackio.init(project="p"):
        _log(tmp_path / "w.bin", b"zero")
        _log(tmp_path / "w.bin", b"one")
    trackio.Api("p").delete_version("model:latest")
    api = trackio.Api("p")
    assert api.artifact("model").version == "v0"
    with trackio.init(project="p"):
        assert _log(tmp_path / "w.bin", b"two").version == "v2"  # a deleted number is never reused


def test_fsck_names_the_damaged_artifact_versions(tmp_path: Path) -> None:
    (tmp_path / "shared.bin").write_bytes(b"s")
    with trackio.init(project="p"):
        _log(tmp_path / "w.bin", os.urandom(300_000), aliases=["prod"])
    assert trackio.Api("p").fsck()["ok"]
    repo = get_repo()
    tree = repo.get_commit(repo.refs.get("trackio/p/artifacts/model/versions/v0")).tree
    weights = next(e for e in repo.ls(tree) if e.name == "weights.bin")
    pack_name, entry = repo.odb.locate(bytes.fromhex(weights.id))
    pack = Path(repo.storage.full(f"packs/{pack_name}.pack"))
    raw = bytearray(pack.read_bytes())
    raw[entry.offset + entry.stored_length // 2] ^= 0x10
    pack.write_bytes(bytes(raw))
    checked = trackio.Api("p").fsck()
    assert not checked["ok"]
    assert weights.id in checked["report"].bad_objects
    assert "p/model:v0" in checked["damaged"]
    assert "p/model:prod (v0)" in checked["damaged"]
