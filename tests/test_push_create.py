"""A push never creates a remote repository unless asked to (issue 20, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from objstore import Repository
from objstore.errors import NotARepository

BIN = Path(sys.executable).parent


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository.init(tmp_path / "store")
    (tmp_path / "f.txt").write_bytes(b"hello\n")
    r.refs.set("main", r.commit(r.snapshot(tmp_path / "f.txt")))
    return r


def test_push_to_a_location_without_repository_raises_and_creates_nothing(tmp_path: Path, repo: Repository) -> None:
    url = "file://" + str(tmp_path / "nonexistent" / "dir" / "remote")
    with pytest.raises(NotARepository, match="nonexistent/dir/remote") as err:
        repo.push(url)
    assert err.value.location == url and "create" in str(err.value)
    assert not (tmp_path / "nonexistent").exists()
    with pytest.raises(NotARepository):
        repo.push("memory://never/made")


def test_create_true_or_init_makes_the_remote(tmp_path: Path, repo: Repository) -> None:
    created = "file://" + str(tmp_path / "new")
    assert repo.push(created, create=True).refs_updated.keys() == {"main"}
    assert Repository.open(created).refs.list() == repo.refs.list()
    assert repo.push(created).objects == 0  # it exists now: no create needed
    Repository.init("memory://made/first")
    assert repo.push("memory://made/first").objects > 0


def test_cli_push_needs_init_or_create(tmp_path: Path, repo: Repository) -> None:
    url = "file://" + str(tmp_path / "nonexistent" / "dir" / "remote")
    cmd = [str(BIN / "objstore"), "-q", "-r", str(tmp_path / "store")]
    proc = subprocess.run([*cmd, "push", url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("objstore: no objstore repository at")
    assert url in proc.stderr and "objstore init" in proc.stderr and "--create" in proc.stderr
    assert not (tmp_path / "nonexistent").exists()

    proc = subprocess.run([*cmd, "push", "--create", url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sent" in proc.stdout and "main" in proc.stdout

    other = "file://" + str(tmp_path / "other")
    proc = subprocess.run([*cmd, "init", other], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "initialized" in proc.stdout, proc.stderr
    proc = subprocess.run([*cmd, "push", other], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Repository.open(other).refs.list() == repo.refs.list()


def test_trackio_sync_creates_the_remote_the_user_configured(tmp_path: Path) -> None:
    env_dir = tmp_path / "td"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"w" * 1000)
    remote = "file://" + str(tmp_path / "fresh-remote")
    env = {**os.environ, "TRACKIO_DIR": str(env_dir)}
    env.pop("TRACKIO_REMOTE", None)
    base = [str(BIN / "trackio"), "artifacts", "-q", "-p", "p"]
    proc = subprocess.run([*base, "log", str(tmp_path / "m"), "-n", "m"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([*base, "--remote", remote, "push"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Repository.open(remote).refs.list("trackio/p/artifacts/m/")
