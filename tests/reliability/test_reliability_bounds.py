"""Hostile sizes: every length a pack, an index, a ref log or a remote claims is bounded
before anything of that size is allocated.

Each hostile read runs in a child process (``hostile_sizes.py``) under an
address-space limit; the child reports the error it met and its peak RSS,
which must stay under 300 MB whatever the claim (6 GiB, 64 GiB, 2^40
index entries, 2^31 tree entries, a 1 GiB ref log entry). The error is the
library's own, names the object and its pack, and nothing is stored or
moved on the reading side.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hostile_sizes import (
    bomb_remote,
    forge,
    honest_repo,
    huge_packed_refs,
    huge_ref_entry,
    set_index_count,
    wide_tree_remote,
    zstd_bomb,
)
from reliability_helpers import PYTHON, child_env, store_listing

from objstore import Repository
from objstore.limits import MAX_COMMIT_SIZE

HERE = Path(__file__).resolve().parent
GiB = 1 << 30
PEAK_RSS = 300 * 1000 * 1000

pytestmark = pytest.mark.timeout(300)


def run_child(scenario: str, cwd: Path, **args: Any) -> dict[str, Any]:
    """Run one hostile read in a fresh interpreter; its JSON report (error met, peak RSS)."""
    args.setdefault("work", str(cwd))
    env = child_env(MALLOC_ARENA_MAX="2", TRACKIO_DIR=str(cwd / "trackio-home"))
    proc = subprocess.run(
        [PYTHON, str(HERE / "hostile_sizes.py"), scenario, json.dumps(args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["error"] != "MemoryError", report
    assert report["maxrss"] < PEAK_RSS, f"peak RSS {report['maxrss'] / 1e6:.0f} MB: {report}"
    return report


def assert_refused(report: dict[str, Any], victim: str, error: str = "CorruptObject") -> None:
    """A typed error naming the object and the pack it came from."""
    assert report["error"] is not None, report
    assert report["typed"], report
    assert error in report["chain"], report
    if error == "CorruptObject":
        assert victim in report["message"], report
        assert "packs/" in report["message"], report


# -- the decompression bomb --------------------------------------------------------------


def test_bomb_is_a_small_well_formed_frame() -> None:
    import zstandard

    bomb = zstd_bomb(6 * GiB)
    assert 190_000 < len(bomb) < 200_000
    assert zstandard.get_frame_parameters(bomb).content_size == 6 * GiB
    small = zstd_bomb(3 * 128 * 1024 + 5)
    assert zstandard.ZstdDecompressor().decompress(small) == bytes(3 * 128 * 1024 + 5)


@pytest.fixture(scope="module", params=[6 * GiB, 64 * GiB], ids=["6GiB", "64GiB"])
def bombed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A remote, valid except that the commit ``main`` points at is a 196 KB (or 2 MB)
    zstd frame whose index entry claims 6 GiB (or 64 GiB)."""
    base = tmp_path_factory.mktemp("bombed")
    honest_repo(base / "honest")
    victim = bomb_remote(base / "honest", base / "remote", request.param)
    return base / "remote", victim


@pytest.mark.parametrize("transport", ["path", "fsspec"])
def test_bomb_refused_by_fetch(bombed: tuple[Path, str], tmp_path: Path, transport: str) -> None:
    remote, victim = bombed
    url = str(remote) if transport == "path" else f"local://{remote}"
    report = run_child("fetch", tmp_path, remote=url)
    assert_refused(report, victim)
    with Repository.open(tmp_path / "local") as local:
        assert local.refs.list() == {}
        assert not local.odb.has(victim)
        assert local.odb.pack_names == []  # nothing of the fetch was published


def test_bomb_refused_by_clone(bombed: tuple[Path, str], tmp_path: Path) -> None:
    remote, victim = bombed
    before = store_listing(remote)
    report = run_child("clone", tmp_path, remote=f"file://{remote}")
    assert_refused(report, victim)
    with Repository.open(tmp_path / "clone") as clone:
        assert clone.refs.list() == {} and clone.odb.pack_names == []
    assert store_listing(remote) == before


@pytest.mark.parametrize("scenario", ["fsck", "fsck-url"])
def test_bomb_reported_by_fsck(bombed: tuple[Path, str], tmp_path: Path, scenario: str) -> None:
    remote, victim = bombed
    before = store_listing(remote)
    report = run_child(scenario, tmp_path, remote=str(remote))
    assert report["error"] is None, report
    fsck = report["result"]
    assert not fsck["ok"]
    assert "claims a commit of" in fsck["bad_objects"][victim], fsck
    assert fsck["damaged_refs"] == {"main": [victim]}
    assert store_listing(remote) == before


def test_bomb_refused_by_the_objstore_view(bombed: tuple[Path, str], tmp_path: Path) -> None:
    remote, victim = bombed
    report = run_child("view", tmp_path, remote=str(remote))
    assert_refused(report, victim)


@pytest.mark.parametrize(
    ("frame_claim", "index_claim"), [(MAX_COMMIT_SIZE, 4096), (6 * GiB, MAX_COMMIT_SIZE), (4096, MAX_COMMIT_SIZE)]
)
def test_frame_header_must_match_the_index(tmp_path: Path, frame_claim: int, index_claim: int) -> None:
    """Index entries within the bound for a commit, but a frame header that declares another
    size: refused from the header, before anything is decompressed."""
    commit, _ = honest_repo(tmp_path / "honest")
    forge(tmp_path / "honest", tmp_path / "remote", commit, zstd_bomb(frame_claim), index_claim)
    report = run_child("read-tree", tmp_path, remote=str(tmp_path / "remote"))
    assert_refused(report, commit)
    assert f"zstd frame declares {frame_claim} bytes, index says {index_claim}" in report["message"]


def test_oversized_stored_length_is_refused_before_reading(tmp_path: Path) -> None:
    """A 196 KB frame filed as a 4 KiB commit: more stored bytes than the raw ones could ever need."""
    commit, _ = honest_repo(tmp_path / "honest")
    forge(tmp_path / "honest", tmp_path / "remote", commit, zstd_bomb(6 * GiB), 4096)
    report = run_child("fetch", tmp_path, remote=str(tmp_path / "remote"))
    assert_refused(report, commit)
    assert "stored bytes for 4096 raw ones" in report["message"]


# -- trackio over a bombed remote ----------------------------------------------------------


@pytest.fixture(scope="module")
def bombed_trackio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A trackio remote whose ``model`` v0 commit is a 6 GiB bomb."""
    base = tmp_path_factory.mktemp("trackio")
    env = child_env(TRACKIO_DIR=str(base / "home"))
    data = base / "weights.bin"
    data.write_bytes(b"honest weights\n" * 1000)
    honest = base / "honest"
    code = (
        "import sys, trackio\n"
        "trackio.init(project='proj', name='first', remote=sys.argv[1])\n"
        "trackio.log_artifact(sys.argv[2], name='model', type='model').wait(timeout=60)\n"
        "trackio.finish()\n"
    )
    subprocess.run([PYTHON, "-c", code, str(honest), str(data)], env=env, cwd=base, check=True, timeout=120)
    with Repository.open(honest) as repo:
        (victim,) = [t for n, t in repo.refs.list().items() if n.endswith("/artifacts/model/versions/v0")]
    forge(honest, base / "remote", victim, zstd_bomb(6 * GiB), 6 * GiB)
    return base / "remote", victim


def test_bomb_refused_by_trackio_download(bombed_trackio: tuple[Path, str], tmp_path: Path) -> None:
    remote, victim = bombed_trackio
    report = run_child("trackio-download", tmp_path, remote=str(remote), project="proj", artifact="model")
    assert_refused(report, victim)
    assert not (tmp_path / "downloaded").exists() or not any((tmp_path / "downloaded").iterdir())


def test_bomb_refused_by_trackio_sync(bombed_trackio: tuple[Path, str], tmp_path: Path) -> None:
    remote, victim = bombed_trackio
    before = store_listing(remote)
    report = run_child("trackio-sync", tmp_path, remote=str(remote), project="proj", artifact="model")
    assert_refused(report, victim)
    refs_before = {k for k in before if k.startswith("refs/")}
    assert {k for k in store_listing(remote) if k.startswith("refs/")} == refs_before  # no ref moved


# -- an index that claims 2^40 entries -------------------------------------------------------


@pytest.mark.parametrize("scenario", ["open", "fetch", "clone", "fsck-url"])
def test_index_count_must_fit_its_file(tmp_path: Path, scenario: str) -> None:
    honest_repo(tmp_path / "remote")
    pack = set_index_count(tmp_path / "remote", 1 << 40)
    report = run_child(scenario, tmp_path, remote=f"local://{tmp_path / 'remote'}")
    assert_refused(report, pack, "FormatError")
    assert pack in report["message"] and "1099511627776" in report["message"]


# -- a tree that declares 2^31 entries --------------------------------------------------------


@pytest.mark.parametrize("scenario", ["read-tree", "checkout", "fetch", "fsck"])
def test_tree_declaring_2_to_the_31_entries(tmp_path: Path, scenario: str) -> None:
    honest_repo(tmp_path / "honest")
    _, tree = wide_tree_remote(tmp_path / "honest", tmp_path / "remote", 1 << 31)
    report = run_child(scenario, tmp_path, remote=str(tmp_path / "remote"))
    if scenario == "fsck":
        assert report["error"] is None, report
        assert "exceeds max_array_len" in report["result"]["bad_objects"][tree]
        return
    assert_refused(report, tree)
    assert "exceeds max_array_len" in report["message"]
    if scenario == "checkout":
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# -- a ref log entry of 1 GiB ------------------------------------------------------------------


@pytest.mark.parametrize(("scenario", "transport"), [("open", "path"), ("open", "fsspec"), ("fetch", "fsspec"), ("fsck", "path")])
def test_ref_log_entry_of_one_gib(tmp_path: Path, scenario: str, transport: str) -> None:
    honest_repo(tmp_path / "remote")
    entry = huge_ref_entry(tmp_path / "remote", "main", GiB)
    assert entry.stat().st_size == GiB
    url = str(tmp_path / "remote") if transport == "path" else f"local://{tmp_path / 'remote'}"
    report = run_child(scenario, tmp_path, remote=url)
    if scenario == "fsck":
        assert report["error"] is None, report
        assert "1073741824 bytes" in report["result"]["bad_refs"]["main"]
        return
    assert_refused(report, "", "TooLarge")
    assert entry.name in report["message"] and "1073741824" in report["message"]
    if scenario == "fetch":
        with Repository.open(tmp_path / "local") as local:
            assert local.refs.list() == {} and local.odb.pack_names == []


@pytest.mark.parametrize(("scenario", "transport"), [("open", "path"), ("open", "fsspec"), ("fetch", "fsspec"), ("fsck", "path")])
def test_packed_refs_file_of_one_gib(tmp_path: Path, scenario: str, transport: str) -> None:
    """A packed-refs file is read with one ranged request of its bound + 1 bytes, never in full."""
    honest_repo(tmp_path / "remote")
    packed = huge_packed_refs(tmp_path / "remote", GiB)
    url = str(tmp_path / "remote") if transport == "path" else f"local://{tmp_path / 'remote'}"
    report = run_child(scenario, tmp_path, remote=url)
    if scenario == "fsck":
        assert report["error"] is None, report
        assert any("1073741824 bytes" in why for why in report["result"]["bad_refs"].values()), report
        return
    assert_refused(report, "", "TooLarge")
    assert packed.name in report["message"] and "1073741824" in report["message"]
    if scenario == "fetch":
        with Repository.open(tmp_path / "local") as local:
            assert local.refs.list() == {} and local.odb.pack_names == []


# -- every length field of a real pack and index, rewritten at random ------------------------


@pytest.mark.parametrize("examples", [pytest.param(120, id="quick"), pytest.param(1500, id="long", marks=pytest.mark.slow)])
def test_random_length_fields_are_verified_or_refused(tmp_path: Path, examples: int) -> None:
    """``mutate_lengths.py`` runs a hypothesis search in a child whose address space is capped
    at its honest use plus 300 MiB: after rewriting one length field (index count, entry
    offset/stored/raw length, record header lengths, zstd content size) every read returns
    verified bytes or raises an objstore error; never MemoryError, never another exception."""
    proc = subprocess.run(
        [PYTHON, str(HERE / "mutate_lengths.py"), str(tmp_path), str(examples)],
        cwd=tmp_path,
        env=child_env(MALLOC_ARENA_MAX="2"),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failure"] is None, report["failure"]
    assert report["examples"] >= examples * 0.9  # hypothesis may stop early only on duplicates
    assert 0 < report["refused"] < report["examples"]  # both outcomes were met
    assert report["maxrss"] < PEAK_RSS
