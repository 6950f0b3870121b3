"""add_dir stages a directory whole: the version, manifest and digest are the
ones file-by-file staging gives, and an unchanged re-log is answered from
objstore's stat cache without reading or listing the files one by one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from trackio_helpers import write

import trackio
from trackio.errors import InvalidNameError, ManifestPathError


def _tree(root: Path) -> Path:
    for d in ("a", "a/deep", "b"):
        for i in range(8):
            write(root / d / f"f{i}.txt", f"{d}/{i} ".encode() * (i + 1))
    write(root / "top.txt", b"top")
    os.symlink("a/f1.txt", root / "linked.txt")  # followed: logged as the file
    os.symlink("b", root / "linked-dir")  # not descended
    os.symlink("nowhere", root / "dangling")  # skipped
    (root / "empty" / "emptier").mkdir(parents=True)  # no files: no entry
    past = 1_000_000_000
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(top, name), (past, past), follow_symlinks=False)
    return root


def _one_by_one(art: trackio.Artifact, root: Path, prefix: str = "") -> None:
    """What add_dir stages, added with add_file (os.walk, symlinks to files followed)."""
    for top, _dirs, files in os.walk(root):
        for name in sorted(files):
            p = Path(top, name)
            if p.is_file():
                art.add_file(p, name=prefix + p.relative_to(root).as_posix())


def test_add_dir_logs_what_add_file_of_each_file_logs(run, work):
    src = _tree(work / "data")
    whole = trackio.Artifact("whole", "dataset")
    whole.add_dir(src)
    one = trackio.Artifact("one", "dataset")
    _one_by_one(one, src)
    a, b = trackio.log_artifact(whole), trackio.log_artifact(one)
    assert a.manifest == b.manifest
    assert a.digest == b.digest
    assert a.size == b.size
    assert [e["path"] for e in a.manifest][:3] == ["a/deep/f0.txt", "a/deep/f1.txt", "a/deep/f2.txt"]
    assert "linked.txt" in a.files() and "dangling" not in a.files()
    assert not any(p.startswith(("linked-dir/", "empty/")) for p in a.files())


def test_add_dir_under_a_prefix_with_other_files(run, work):
    src = _tree(work / "data")
    write(work / "README.md", b"readme")
    whole = trackio.Artifact("whole", "dataset")
    whole.add_file(work / "README.md")
    whole.add_dir(src, name="data/v1")
    whole.add_dir(src / "b", name="also-b")
    one = trackio.Artifact("one", "dataset")
    one.add_file(work / "README.md")
    _one_by_one(one, src, "data/v1/")
    _one_by_one(one, src / "b", "also-b/")
    assert trackio.log_artifact(whole).digest == trackio.log_artifact(one).digest


def test_an_unchanged_re_log_is_the_same_version(run, work):
    src = _tree(work / "data")
    first = trackio.log_artifact(src, name="ds", type="dataset")
    again = trackio.log_artifact(src, name="ds", type="dataset")
    assert again.version == first.version == "v0"
    assert again.is_new is False
    assert again.digest == first.digest
    assert again.manifest == first.manifest  # read when asked for
    (src / "a" / "deep" / "f3.txt").write_bytes(b"changed")
    third = trackio.log_artifact(src, name="ds", type="dataset")
    assert third.version == "v1" and third.is_new
    assert {e["path"]: e["size"] for e in third.manifest}["a/deep/f3.txt"] == 7


def test_a_file_added_where_a_staged_directory_has_one_is_a_duplicate(work):
    src = _tree(work / "data")
    write(work / "other.txt", b"other")
    art = trackio.Artifact("x", "dataset")
    art.add_dir(src)
    with pytest.raises(ManifestPathError, match=r"a/deep/f2\.txt"):
        art.add_file(work / "other.txt", name="a/deep/f2.txt")
    art.add_file(work / "other.txt", name="a/deep/new.txt")  # not a duplicate
    with pytest.raises(ManifestPathError, match=r"b/f0\.txt"):
        art.add_dir(src / "b", name="b")


def test_a_reference_where_a_staged_directory_has_a_file_clashes(work):
    src = _tree(work / "data")
    art = trackio.Artifact("x", "dataset")
    art.add_dir(src, name="d")
    with pytest.raises(ManifestPathError, match=r"d/top\.txt"):
        art.add_reference((src / "top.txt").as_uri(), name="d/top.txt")


def test_a_backslash_in_a_name_below_is_refused_when_logged(run, work):
    src = work / "data"
    write(src / "sub" / "bad\\name.txt", b"x")
    art = trackio.Artifact("x", "dataset")
    art.add_dir(src)
    with pytest.raises(ManifestPathError, match="backslash"):
        trackio.log_artifact(art)


def test_a_directory_without_files_is_nothing_to_log(run, work):
    (work / "data" / "a" / "b").mkdir(parents=True)
    art = trackio.Artifact("x", "dataset")
    art.add_dir(work / "data")
    with pytest.raises(InvalidNameError, match="no files"):
        trackio.log_artifact(art)


def test_download_of_a_staged_directory_is_its_files(run, work):
    src = _tree(work / "data")
    art = trackio.log_artifact(src, name="ds", type="dataset")
    out = Path(art.download(work / "out"))
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {e["path"]: (src / e["path"]).read_bytes() for e in art.manifest}


def test_the_logged_digest_and_size_are_those_of_the_manifest_read_back(run, work):
    """log_artifact sums up the new tree's files without building its manifest; the
    manifest read on use gives the same digest and size (references and nesting included)."""
    from trackio.store import get_repo
    from trackio.versions import manifest_digest

    src = _tree(work / "data")
    write(src / "a" / "large.bin", os.urandom(700_000))  # chunked: not one of a directory's small files
    write(work / "ref.bin", b"referenced bytes")
    art = trackio.Artifact("mixed", "dataset")
    art.add_dir(src, name="data")
    art.add_file(work / "ref.bin", name="data.txt")  # sorts between "data" and "data/..."
    art.add_reference((work / "ref.bin").as_uri(), name="data/a/zz-ref.bin")
    logged = trackio.log_artifact(art)
    manifest = logged.manifest
    assert manifest is not None and "data/a/zz-ref.bin" in [e["path"] for e in manifest]
    assert [e["path"] for e in manifest] == sorted(e["path"] for e in manifest)
    assert logged.digest == manifest_digest(get_repo(), manifest)
    on_disk = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())  # linked.txt followed, linked-dir not
    assert logged.size == sum(e["size"] for e in manifest) == on_disk + 2 * len(b"referenced bytes")


def test_add_dir_refuses_a_bad_name_at_the_top_only_where_a_file_lies_under_it(run, work):
    src = work / "data"
    write(src / "z" / "ok.txt", b"fine")
    (src / "empty\\dir" / "deeper").mkdir(parents=True)
    art = trackio.Artifact("x", "dataset")
    art.add_dir(src)  # nothing add_dir takes is under it: left out, its name unchecked, as when logged
    assert trackio.log_artifact(art).files() == ["z/ok.txt"]
    write(src / "full\\dir" / "deeper" / "f.txt", b"x")
    with pytest.raises(ManifestPathError, match="backslash"):
        trackio.Artifact("y", "dataset").add_dir(src)


def test_add_dir_refuses_a_drive_like_name_at_the_top_and_takes_other_colons(run, work):
    src = work / "data"
    write(src / "notes:1.txt", b"a colon inside a name is fine")
    art = trackio.Artifact("x", "dataset")
    art.add_dir(src)
    assert trackio.log_artifact(art).files() == ["notes:1.txt"]
    write(src / "C:evil.txt", b"looks like a drive")
    with pytest.raises(ManifestPathError, match="relative"):
        trackio.Artifact("y", "dataset").add_dir(src)
