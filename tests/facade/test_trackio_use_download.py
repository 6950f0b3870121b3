"""use_artifact resolution and Artifact.download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from trackio_helpers import rand_bytes, store_listing, tree_listing, write

import trackio
import trackio.store
from objstore.errors import CorruptObject


def log_files(files: dict[str, bytes], name: str = "my-model", type: str = "model", aliases=None):
    art = trackio.Artifact(name, type)
    for logical, data in files.items():
        src = Path("src") / logical
        write(src, data)
        art.add_file(src, name=logical)
    return trackio.log_artifact(art, aliases=aliases)


@pytest.fixture
def three_versions(run):
    log_files({"w.bin": b"v0"}, aliases=["prod"])
    log_files({"w.bin": b"v1"})
    log_files({"w.bin": b"v2"}, aliases=["best"])
    return run


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        ("my-model", "v2"),
        ("my-model:latest", "v2"),
        ("my-model:v0", "v0"),
        ("my-model:v1", "v1"),
        ("my-model:prod", "v0"),
        ("my-model:best", "v2"),
        ("proj/my-model", "v2"),
        ("proj/my-model:prod", "v0"),
        ("proj/my-model:v1", "v1"),
    ],
)
def test_use_artifact_resolves_specs(three_versions, spec, version):
    art = trackio.use_artifact(spec)
    assert art.version == version
    assert art.name == "my-model"
    assert art.project == "proj"
    assert art.qualified_name == f"proj/my-model:{version}"
    with art.open("w.bin") as f:
        assert f.read() == version.encode()


def test_use_artifact_reports_aliases_of_the_version(three_versions):
    assert trackio.use_artifact("my-model:v2").aliases == ("latest", "best")
    assert trackio.use_artifact("my-model:v0").aliases == ("prod",)
    assert trackio.use_artifact("my-model:v1").aliases == ()


def test_use_artifact_from_another_project(work):
    trackio.init(project="producer")
    log_files({"w.bin": b"from producer"}, aliases=["prod"])
    trackio.finish()
    trackio.init(project="consumer")
    art = trackio.use_artifact("producer/my-model:prod")
    assert art.project == "producer"
    assert art.qualified_name == "producer/my-model:v0"
    # downloads are keyed by the artifact's project, not the consuming run's
    assert Path(art.download()).resolve() == (work / "artifacts" / "producer" / "my-model_v0").resolve()
    # without the project prefix the current project is searched
    with pytest.raises(trackio.ArtifactNotFoundError, match="my-model"):
        trackio.use_artifact("my-model")


def test_use_artifact_type_check(three_versions, home):
    ok = trackio.use_artifact("my-model", type="model")
    assert ok.version == "v2"
    before = store_listing(home)
    with pytest.raises(ValueError) as exc:
        trackio.use_artifact("my-model:prod", type="dataset")
    msg = str(exc.value)
    assert "my-model" in msg and "model" in msg and "dataset" in msg
    assert isinstance(exc.value, trackio.ArtifactTypeError)
    assert store_listing(home) == before
    assert [a.qualified_name for a in three_versions.used_artifacts()] == ["proj/my-model:v2"]


def test_use_artifact_records_input_of_current_run(three_versions):
    a = trackio.use_artifact("my-model:prod")
    b = trackio.use_artifact("my-model")
    trackio.use_artifact("my-model:v0")  # the same version again: recorded once
    used = three_versions.used_artifacts()
    assert [u.qualified_name for u in used] == ["proj/my-model:v0", "proj/my-model:v2"]
    assert used == [a, b]


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("nope", "nope"),
        ("proj/nope:latest", "nope"),
        ("my-model:v7", "v7"),
        ("my-model:staging", "staging"),
        ("other/my-model", "my-model"),
    ],
)
def test_use_artifact_unknown_raises_naming_it(three_versions, home, spec, named):
    before = store_listing(home)
    with pytest.raises(trackio.ArtifactNotFoundError, match=named) as exc:
        trackio.use_artifact(spec)
    assert isinstance(exc.value, LookupError)
    assert store_listing(home) == before
    assert len(three_versions.used_artifacts()) == 0


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("bad name", "bad name"),
        ("my-model:", "my-model:"),
        ("my model:latest", "my model"),
        ("my-model:bad alias", "bad alias"),
    ],
)
def test_use_artifact_bad_spec_raises_naming_it(three_versions, home, spec, named):
    before = store_listing(home)
    with pytest.raises(ValueError) as exc:
        trackio.use_artifact(spec)
    assert named in str(exc.value)
    assert store_listing(home) == before
    assert three_versions.used_artifacts() == []


# -- download ---------------------------------------------------------------


def test_download_default_dir_is_artifacts_project_name_version_under_cwd(three_versions, work):
    art = trackio.use_artifact("my-model:v1")
    path = art.download()
    expected = work / "artifacts" / "proj" / "my-model_v1"
    assert Path(path).resolve() == expected.resolve()
    assert tree_listing(expected) == {"w.bin": b"v1"}


def test_download_default_dir_follows_the_cwd_at_download_time(three_versions, work, outside, monkeypatch):
    art = trackio.use_artifact("my-model")
    monkeypatch.chdir(outside)
    path = art.download()
    assert Path(path).resolve() == (outside / "artifacts" / "proj" / "my-model_v2").resolve()
    assert not (work / "artifacts").exists()


def test_download_right_after_log(run, work):
    files = {"model.safetensors": rand_bytes(1, 200_000), "sub/config.json": b"{}", "empty.txt": b""}
    logged = log_files(files)
    path = logged.download()
    assert Path(path).resolve() == (work / "artifacts" / "proj" / "my-model_v0").resolve()
    assert tree_listing(path) == files


def test_download_same_name_in_two_projects_never_collides(work):
    trackio.init(project="p1")
    a = log_files({"f.txt": b"one"})
    trackio.finish()
    trackio.init(project="p2")
    b = log_files({"f.txt": b"two"})
    pa, pb = a.download(), b.download()
    assert Path(pa).resolve() == (work / "artifacts" / "p1" / "my-model_v0").resolve()
    assert Path(pb).resolve() == (work / "artifacts" / "p2" / "my-model_v0").resolve()
    assert tree_listing(pa) == {"f.txt": b"one"}
    assert tree_listing(pb) == {"f.txt": b"two"}


def test_download_to_root(three_versions, outside):
    dest = outside / "custom"
    path = trackio.use_artifact("my-model:prod").download(root=dest)
    assert Path(path).resolve() == dest.resolve()
    assert tree_listing(dest) == {"w.bin": b"v0"}
    assert not Path("artifacts").exists()


def test_download_is_idempotent_and_skips_files_already_right(run, work):
    files = {"a.bin": rand_bytes(2, 100_000), "b/c.txt": b"hello"}
    logged = log_files(files)
    path = Path(logged.download())
    # make the original mtimes distinguishable from any rewrite
    for rel in files:
        os.utime(path / rel, ns=(1_000_000_000, 1_000_000_000))
    stats = {rel: os.stat(path / rel) for rel in files}
    assert Path(logged.download()) == path
    for rel in files:
        st = os.stat(path / rel)
        assert (st.st_ino, st.st_mtime_ns) == (stats[rel].st_ino, stats[rel].st_mtime_ns), f"{rel} was rewritten"
    assert tree_listing(path) == files


def test_download_restores_corrupted_and_missing_files(run, work):
    files = {"a.bin": rand_bytes(3, 100_000), "b/c.txt": b"hello", "d.txt": b"keep"}
    logged = log_files(files)
    path = Path(logged.download())
    # same size, different bytes
    corrupted = bytearray(files["a.bin"])
    corrupted[50_000] ^= 0xFF
    (path / "a.bin").write_bytes(bytes(corrupted))
    (path / "b" / "c.txt").write_bytes(b"HELLO, WORLD")
    os.remove(path / "d.txt")
    assert Path(logged.download()) == path
    assert tree_listing(path) == files


def test_download_restores_same_size_corruption_with_preserved_mtime(run, work):
    files = {"a.txt": b"abcdef"}
    logged = log_files(files)
    path = Path(logged.download())
    st = os.stat(path / "a.txt")
    (path / "a.txt").write_bytes(b"abcxef")
    os.utime(path / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    logged.download()
    assert (path / "a.txt").read_bytes() == b"abcdef"


def test_download_verifies_stored_bytes(run, work, home, outside):
    """A store whose bytes were damaged must not produce a silently wrong file."""
    data = rand_bytes(4, 2_000_000)
    log_files({"big.bin": data})
    trackio.store.close_all()
    packs = [p for p in home.rglob("*.pack")]
    assert packs
    biggest = max(packs, key=lambda p: p.stat().st_size)
    raw = bytearray(biggest.read_bytes())
    for offset in range(len(raw) // 4, len(raw) * 3 // 4, 4096):
        raw[offset] ^= 0x5A
    biggest.write_bytes(bytes(raw))
    dest = outside / "dl"
    with pytest.raises(CorruptObject, match="corrupt"):
        trackio.Api().artifact("proj/my-model:v0").download(root=dest)
    written = dest / "big.bin"
    assert not written.exists() or written.read_bytes() == data


def test_download_of_fetched_artifact_in_fresh_working_dir(three_versions, outside, monkeypatch):
    monkeypatch.chdir(outside)
    path = trackio.Api().artifact("proj/my-model:best").download()
    assert Path(path).resolve() == (outside / "artifacts" / "proj" / "my-model_v2").resolve()
    assert tree_listing(path) == {"w.bin": b"v2"}
