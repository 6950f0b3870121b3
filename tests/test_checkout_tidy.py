"""A checkout into a folder holding an earlier checkout makes it match the version (issue 20, item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from objstore import Repository

BIN = Path(sys.executable).parent


def _files(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes()
    return out


@pytest.fixture
def versions(tmp_path: Path) -> tuple[Repository, str, str]:
    """v1 has notes3.txt, sub/deep/x.bin and a symlink; main dropped them and added notes2.txt."""
    repo = Repository.init(tmp_path / "store")
    d = tmp_path / "d"
    (d / "sub" / "deep").mkdir(parents=True)
    (d / "notes1.txt").write_bytes(b"one\n")
    (d / "notes3.txt").write_bytes(b"three\n")
    (d / "sub" / "deep" / "x.bin").write_bytes(os.urandom(700_000))
    (d / "sub" / "keep.txt").write_bytes(b"keep\n")
    os.symlink("notes1.txt", d / "link")
    v1 = repo.commit(repo.snapshot(d))
    (d / "notes3.txt").unlink()
    (d / "sub" / "deep" / "x.bin").unlink()
    (d / "sub" / "deep").rmdir()
    (d / "link").unlink()
    (d / "notes2.txt").write_bytes(b"two\n")
    main = repo.commit(repo.snapshot(d), parents=[v1])
    repo.refs.set("main", main)
    return repo, v1, main


def test_second_checkout_removes_what_the_first_wrote_and_the_version_lacks(tmp_path: Path, versions: tuple[Repository, str, str]) -> None:
    repo, v1, main = versions
    out = tmp_path / "out"
    repo.checkout(v1, out)
    (out / "mine.txt").write_bytes(b"the user's own file\n")
    (out / "sub" / "deep" / "mine.txt").write_bytes(b"also mine\n")

    result = repo.checkout(main, out)

    assert sorted(result.removed) == ["link", "notes3.txt", "sub/deep/x.bin"]
    assert result.left == []
    assert _files(out) == {
        "notes1.txt": b"one\n",
        "notes2.txt": b"two\n",
        "sub/keep.txt": b"keep\n",
        "mine.txt": b"the user's own file\n",  # never touched
        "sub/deep/mine.txt": b"also mine\n",  # and its folder stays for it
    }
    assert repo.checkout(v1, out).removed == ["notes2.txt"]
    assert (out / "notes3.txt").read_bytes() == b"three\n"


def test_a_file_edited_since_the_last_checkout_is_kept_and_reported(tmp_path: Path, versions: tuple[Repository, str, str]) -> None:
    repo, v1, main = versions
    out = tmp_path / "out"
    repo.checkout(v1, out)
    target = out / "notes3.txt"
    st = target.stat()
    target.write_bytes(b"THREE\n")  # same size, and the mtime put back: only the content tells
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

    result = repo.checkout(main, out)

    assert result.left == ["notes3.txt"]
    assert target.read_bytes() == b"THREE\n"
    assert "notes3.txt" not in result.removed
    assert repo.checkout(main, out).left == []  # reported once: it is the user's file now


def test_small_files_are_judged_by_their_content_not_their_mtime(tmp_path: Path, versions: tuple[Repository, str, str]) -> None:
    """The bulk writer records no mtime for the small files it creates (no stat per file):
    one only touched since is still what the checkout left and goes; one rewritten with other
    bytes, whatever its mtime, stays."""
    repo, v1, main = versions
    out = tmp_path / "out"
    repo.checkout(v1, out)
    touched, link = out / "notes3.txt", out / "link"
    os.utime(touched, ns=(1_000_000_000, 1_000_000_000))
    result = repo.checkout(main, out)
    assert "notes3.txt" in result.removed and not touched.exists() and not link.is_symlink()

    repo.checkout(v1, out)
    touched.write_bytes(b"three?")  # same size, other bytes, a fresh mtime
    assert repo.checkout(main, out).left == ["notes3.txt"]
    assert touched.read_bytes() == b"three?"


def test_a_folder_no_checkout_wrote_keeps_everything(tmp_path: Path, versions: tuple[Repository, str, str]) -> None:
    repo, _, main = versions
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes3.txt").write_bytes(b"three\n")  # same name and bytes as a v1 file, but the user's
    result = repo.checkout(main, out)
    assert result.removed == [] and (out / "notes3.txt").exists()


def test_partial_checkout_removes_nothing(tmp_path: Path, versions: tuple[Repository, str, str]) -> None:
    repo, v1, main = versions
    out = tmp_path / "out"
    repo.checkout(v1, out)
    result = repo.checkout(main, out, ["notes2.txt"])
    assert result.removed == [] and (out / "notes3.txt").exists() and (out / "notes2.txt").exists()
    assert sorted(repo.checkout(main, out).removed) == ["link", "notes3.txt", "sub/deep/x.bin"]


def test_cli_checkout_says_what_it_removed_and_left(tmp_path: Path, versions: tuple[Repository, str, str]) -> None:
    _, v1, _ = versions
    cmd = [str(BIN / "objstore"), "-q", "-r", str(tmp_path / "store")]
    out = str(tmp_path / "out")
    first = subprocess.run([*cmd, "checkout", v1, out], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    (tmp_path / "out" / "sub" / "deep" / "x.bin").write_bytes(b"edited")
    second = subprocess.run([*cmd, "checkout", "main", out], capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and second.stderr == ""
    assert "2 removed (written by the previous checkout, not in this version)" in second.stdout
    assert "left 1 changed since the previous checkout (not in this version): sub/deep/x.bin" in second.stdout
    assert not (tmp_path / "out" / "notes3.txt").exists()
    assert (tmp_path / "out" / "sub" / "deep" / "x.bin").read_bytes() == b"edited"
    again = subprocess.run([*cmd, "--json", "checkout", v1, out], capture_output=True, text=True, timeout=60)
    assert json.loads(again.stdout)["removed"] == ["notes2.txt"]
