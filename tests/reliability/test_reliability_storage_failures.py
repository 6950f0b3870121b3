"""A read-only store and a full disk: writes fail with a clear ``StorageError``, the store is unchanged.

We run as root, so ``chmod -R a-w`` would not stop anything: the read-only
store is a read-only bind mount of the repository, and the full disk is a
2 MiB tmpfs. Both need ``mount``; the tests skip (saying why) where it is not
permitted. Every mount is undone in a ``finally``.
"""

from __future__ import annotations

import errno
import os
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import fsck_problems, mounted, store_listing, tree_snapshot

from objstore import Repository, TreeEntry
from objstore.errors import ObjstoreError, StorageError

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting needs root")


def _write_files(root: Path, seed: int, sizes: list[int]) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(sizes):
        (root / f"file{i}.bin").write_bytes(rng.randbytes(n))
    return root


def _seeded_store(path: Path, src: Path) -> dict[str, Any]:
    repo = Repository.init(path)
    tree = repo.snapshot(src)
    c1 = repo.commit(tree, message="one")
    repo.refs.set("main", c1)
    c2 = repo.commit(tree, [c1], message="two")
    repo.refs.set("other", c2)
    repo.close()
    return {"tree": tree, "c1": c1, "c2": c2}


def _assert_clear(exc: BaseException, *words: str) -> None:
    assert isinstance(exc, ObjstoreError), f"{type(exc).__name__} is not an ObjstoreError: {exc!r}"
    text = str(exc).lower()
    assert any(w in text for w in words), f"unclear message: {exc}"


def _attempt(fn: Any, *words: str) -> BaseException:
    with pytest.raises(StorageError) as info:
        fn()
    _assert_clear(info.value, *words)
    return info.value


def test_read_only_store(tmp_path: Path) -> None:
    src = _write_files(tmp_path / "src", 1, [300, 5000, 900_000])
    real = tmp_path / "real-repo"
    ids = _seeded_store(real, src)
    new_data = _write_files(tmp_path / "new", 2, [1000, 700_000])
    before = store_listing(real, skip=())
    ro_words = ("read-only", "read only", "permission")

    with mounted("ro-bind", tmp_path / "ro-repo", source=real) as ro:
        repo = Repository.open(ro)
        try:
            # Reading works.
            assert repo.refs.get("main") == ids["c1"]
            out = tmp_path / "out"
            repo.checkout("main", out)
            assert tree_snapshot(out) == tree_snapshot(src)
            # Every kind of write fails clearly.
            _attempt(lambda: repo.snapshot(new_data), *ro_words)
            _attempt(lambda: repo.store_bytes(b"new bytes"), *ro_words)
            _attempt(lambda: repo.commit(ids["tree"], [ids["c1"]], message="three"), *ro_words)
            _attempt(lambda: repo.refs.set("main", ids["c2"]), *ro_words)
            _attempt(lambda: repo.refs.set("brand-new", ids["c1"]), *ro_words)
            _attempt(lambda: repo.refs.delete("other"), *ro_words)
            _attempt(lambda: repo.odb.put_encoded(b"\x01" + b"never stored"), *ro_words)
            _attempt(lambda: repo.make_tree([TreeEntry("x", "symlink", target="y")]), *ro_words)
            # Maintenance: gc with nothing to remove writes nothing; a repack (3 packs) must write.
            repo.gc(grace=timedelta(0))
            _attempt(lambda: repo.repack(), *ro_words)
            report = repo.fsck(full=True)
            assert report.ok, fsck_problems(report)
        finally:
            repo.close()
    assert store_listing(real, skip=()) == before
    repo = Repository.open(real)
    try:
        assert repo.fsck(full=True).ok
        assert repo.refs.get("main") == ids["c1"] and repo.refs.get("other") == ids["c2"]
        # And once writable again, the very same operations succeed.
        c3 = repo.commit(repo.snapshot(new_data), [ids["c1"]], message="three")
        repo.refs.set("main", c3)
        assert repo.fsck(full=True).ok
    finally:
        repo.close()


def _fill(fs_root: Path) -> Path:
    """Write a filler file until the filesystem is full (ENOSPC); return it."""
    filler = fs_root / "filler"
    block = b"\0" * 65536
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    # Byte by byte for the last partial block.
    with open(filler, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


NO_SPACE = ("no space", "disk full", "quota")


def _tiny_writes_on_a_full_disk(repo: Repository, ids: dict[str, Any]) -> None:
    _attempt(lambda: repo.store_bytes(b"a few bytes"), *NO_SPACE)
    _attempt(lambda: repo.commit(ids["tree"], [ids["c1"]], message="three"), *NO_SPACE)
    _attempt(lambda: repo.refs.set("main", ids["c2"]), *NO_SPACE)
    _attempt(lambda: repo.refs.set("brand-new", ids["c1"]), *NO_SPACE)


def test_disk_full(tmp_path: Path) -> None:
    src = _write_files(tmp_path / "src", 3, [200, 3000, 200_000])
    big = _write_files(tmp_path / "big", 4, [1_500_000, 1_500_000])  # does not fit in 2 MiB
    with mounted("tmpfs", tmp_path / "small-fs", size="2m") as fs:
        path = fs / "repo"
        ids = _seeded_store(path, src)
        before = store_listing(path)

        # A snapshot larger than the free space.
        repo = Repository.open(path)
        try:
            _attempt(lambda: repo.snapshot(big), *NO_SPACE)
        finally:
            repo.close()
        assert store_listing(path) == before
        repo = Repository.open(path)
        try:
            report = repo.fsck(full=True)
            assert report.ok and not report.stray_files, (fsck_problems(report), report.stray_files)
        finally:
            repo.close()

        # Nothing at all left: even tiny writes fail.
        filler = _fill(fs)
        repo = Repository.open(path)
        try:
            _tiny_writes_on_a_full_disk(repo, ids)
        finally:
            repo.close()
        filler.unlink()
        # Nothing published, no ref moved (empty temp files are the subject of the next test).
        assert store_listing(path, skip=("cache", "tmp")) == {
            k: v for k, v in before.items() if not k.startswith("tmp/")
        }
        repo = Repository.open(path)
        try:
            report = repo.fsck(full=True)
            assert report.ok and not report.stray_files, (fsck_problems(report), report.stray_files)
            assert repo.refs.get("main") == ids["c1"]
            assert len(repo.refs.history("main")) == 1
            assert not repo.refs.exists("brand-new")
            # Space again: the store works as before.
            c3 = repo.commit(ids["tree"], [ids["c1"]], message="three")
            repo.refs.set("main", c3)
            assert repo.get_commit("main").message == "three"
            assert repo.fsck(full=True).ok
        finally:
            repo.close()


def test_disk_full_leaves_no_temp_files(tmp_path: Path) -> None:
    """Failed writes on a full disk leave nothing behind, not even empty temp files
    (a pack writer whose header write fails, a ref entry whose temp write fails)."""
    src = _write_files(tmp_path / "src", 5, [200, 3000])
    with mounted("tmpfs", tmp_path / "small-fs", size="2m") as fs:
        path = fs / "repo"
        ids = _seeded_store(path, src)
        before = store_listing(path)
        filler = _fill(fs)
        repo = Repository.open(path)
        try:
            _tiny_writes_on_a_full_disk(repo, ids)
        finally:
            repo.close()
        filler.unlink()
        left = sorted(set(store_listing(path)) - set(before))
        assert left == [], f"left behind by the failed writes: {left}"


def _trackio_home_with_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from remote_helpers import reset_trackio

    import trackio

    home = tmp_path / "home"
    monkeypatch.setenv("TRACKIO_DIR", str(home))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.bin").write_bytes(random.Random(9).randbytes(300_000))
    trackio.init(project="p")
    trackio.log_artifact(tmp_path / "model.bin", name="model", type="model")
    trackio.finish()
    reset_trackio()
    return home


def test_trackio_logging_into_a_read_only_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trackio_clean: None
) -> None:
    """Starting a run in a read-only TRACKIO_DIR fails with a clear StorageError; nothing changes."""
    from remote_helpers import reset_trackio

    import trackio

    home = _trackio_home_with_a_model(tmp_path, monkeypatch)
    before = store_listing(home / "objstore", skip=())
    with mounted("ro-bind", tmp_path / "ro-home", source=home) as ro:
        monkeypatch.setenv("TRACKIO_DIR", str(ro))
        try:
            with pytest.raises(StorageError) as info:
                trackio.init(project="p")
            _assert_clear(info.value, "read-only")
        finally:
            reset_trackio()
    assert store_listing(home / "objstore", skip=()) == before


def test_trackio_reads_a_read_only_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trackio_clean: None) -> None:
    """A read-only TRACKIO_DIR (say, a shared read-only mount) can still be read and downloaded from."""
    from remote_helpers import reset_trackio

    import trackio

    home = _trackio_home_with_a_model(tmp_path, monkeypatch)
    with mounted("ro-bind", tmp_path / "ro-home", source=home) as ro:
        monkeypatch.setenv("TRACKIO_DIR", str(ro))
        try:
            art = trackio.Api(project="p").artifact("model:latest")
            with art.open("model.bin") as f:
                assert f.read() == (tmp_path / "model.bin").read_bytes()
            out = Path(art.download(tmp_path / "download"))
            assert (out / "model.bin").read_bytes() == (tmp_path / "model.bin").read_bytes()
        finally:
            reset_trackio()
