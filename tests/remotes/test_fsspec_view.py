"""objstore as an fsspec filesystem: pandas reads stored versions in place."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from objstore import ChunkParams, Repository
from objstore.fs import ObjstoreFileSystem, ReadOnlyError

CSV = "a,b\n1,2\n3,4\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "tables").mkdir(parents=True)
    (d / "tables" / "train.csv").write_text(CSV)
    (d / "tables" / "test.csv").write_text("a,b\n5,6\n")
    (d / "big.bin").write_bytes(os.urandom(4_000_000))
    (d / "empty").mkdir()
    return d


def test_pandas_reads_a_csv_from_a_local_version(tmp_path: Path, data: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    repo.refs.set("model/latest", repo.commit(repo.snapshot(data)))
    assert isinstance(fsspec.filesystem("objstore", repo=str(tmp_path / "store")), ObjstoreFileSystem)
    df = pd.read_csv("objstore://model/latest/tables/train.csv", storage_options={"repo": str(tmp_path / "store")})
    assert df.to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    commit = repo.refs.get("model/latest")
    with fsspec.open(f"objstore://{commit[:10]}/tables/test.csv", "rt", repo=str(tmp_path / "store")) as f:
        assert f.read() == "a,b\n5,6\n"


def test_pandas_reads_from_a_store_on_s3_without_a_local_copy(tmp_path: Path, data: Path, s3_target) -> None:  # type: ignore[no-untyped-def]
    local = Repository.init(tmp_path / "store")
    local.refs.set("main", local.commit(local.snapshot(data)))
    local.push(s3_target.url, create=True, storage_options=s3_target.storage_options)
    df = pd.read_csv(
        "objstore://main/tables/train.csv",
        storage_options={"repo": s3_target.url, "storage_options": s3_target.storage_options},
    )
    assert df.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_ranged_read_fetches_only_the_chunks_it_covers(tmp_path: Path, data: Path) -> None:
    params = ChunkParams(min_size=16 * 1024, avg_size=32 * 1024, max_size=128 * 1024, small_file=64 * 1024)
    repo = Repository.init(tmp_path / "store", chunking=params)
    repo.refs.set("main", repo.commit(repo.snapshot(data)))
    fs = ObjstoreFileSystem(repo, skip_instance_cache=True)
    fetched: list[int] = []
    original = repo.odb.get_encoded

    def counting(oid):  # type: ignore[no-untyped-def]
        out = original(oid)
        fetched.append(len(out))
        return out

    repo.odb.get_encoded = counting  # type: ignore[method-assign]
    blob = (data / "big.bin").read_bytes()
    assert fs.cat_file("main/big.bin", 2_000_000, 2_000_100) == blob[2_000_000:2_000_100]
    chunk_bytes = sum(fetched)
    assert chunk_bytes < 3 * 128 * 1024  # the chunk list plus one or two chunks, not 4 MB
    with fs.open("main/big.bin") as f:
        f.seek(-10, 2)
        assert f.read() == blob[-10:]


def test_listing_agrees_with_the_tree(tmp_path: Path, data: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    repo.refs.set("main", repo.commit(repo.snapshot(data)))
    fs = ObjstoreFileSystem(repo, skip_instance_cache=True)
    assert sorted(fs.ls("main", detail=False)) == ["main/big.bin", "main/empty", "main/tables"]
    assert fs.info("main/empty")["type"] == "directory"
    assert fs.info("main/big.bin")["size"] == 4_000_000
    assert sorted(fs.find("main")) == ["main/big.bin", "main/tables/test.csv", "main/tables/train.csv"]
    assert sorted(fs.glob("main/tables/*.csv")) == ["main/tables/test.csv", "main/tables/train.csv"]
    walked = [(root, sorted(files)) for root, _dirs, files in fs.walk("main")]
    assert ("main/tables", ["test.csv", "train.csv"]) in walked
    assert fs.du("main") == 4_000_000 + len(CSV) + len("a,b\n5,6\n")
    assert [p for p, e in repo.walk("main") if e.kind == "file"] == [p[len("main/") :] for p in sorted(fs.find("main"))]


def test_unknown_ref_or_path_and_writes_are_refused(tmp_path: Path, data: Path) -> None:
    repo = Repository.init(tmp_path / "store")
    repo.refs.set("main", repo.commit(repo.snapshot(data)))
    fs = ObjstoreFileSystem(repo, skip_instance_cache=True)
    with pytest.raises(FileNotFoundError, match="nope"):
        fs.info("nope/tables/train.csv")
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        fs.cat("main/tables/missing.csv")
    with pytest.raises(ReadOnlyError, match="read-only"):
        fs.open("main/new.txt", "wb")
    with pytest.raises(ReadOnlyError):
        fs.rm("main/tables/train.csv")
    assert repo.read_file("main", "tables/train.csv") == CSV.encode()


def test_trackio_artifact_fs_reads_a_logged_dataset(tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.chdir(tmp_path)
    import trackio
    from trackio.store import close_all

    close_all()
    try:
        with trackio.init(project="p"):
            logged = trackio.log_artifact(str(data / "tables"), name="ds", type="dataset")
        art = trackio.Api("p").artifact("ds:latest")
        with art.fs().open("train.csv") as f:
            assert pd.read_csv(f).to_dict("list") == {"a": [1, 3], "b": [2, 4]}
        assert sorted(art.fs().ls("", detail=False)) == ["test.csv", "train.csv"]
        assert logged.version == "v0"
    finally:
        close_all()
