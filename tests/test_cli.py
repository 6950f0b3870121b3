"""The objstore command line: commands, --json output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from objstore.cli import main


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(b"alpha\n")
    (d / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    return d


def run(repo: Path, *args: str, ok: bool = True) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-r", str(repo), "-q", *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result.exit_code, result.output


def test_init_snapshot_log_ls_cat_checkout(tmp_path: Path, data: Path) -> None:
    repo = tmp_path / "store"
    run(repo, "init")
    _, out = run(repo, "--json", "snapshot", str(data), "-m", "first", "--ref", "main")
    first = json.loads(out)["commit"]
    (data / "a.txt").write_bytes(b"alpha v2\n")
    run(repo, "snapshot", str(data), "-m", "second", "--ref", "main")
    _, out = run(repo, "--json", "log", "main")
    log = json.loads(out)
    assert [c["message"] for c in log] == ["second", "first"]
    assert log[0]["parents"] == [first]
    _, out = run(repo, "ls", "main", "-R")
    assert "sub/b.bin" in out and "a.txt" in out
    _, out = run(repo, "cat", "main", "a.txt")
    assert out == "alpha v2\n"
    _, out = run(repo, "--json", "diff", first, "main")
    assert json.loads(out) == [{"status": "modified", "path": "a.txt", "size_delta": 3}]
    dest = tmp_path / "out"
    run(repo, "checkout", first[:10], str(dest))
    assert (dest / "a.txt").read_bytes() == b"alpha\n"
    assert (dest / "sub" / "b.bin").read_bytes() == (data / "sub" / "b.bin").read_bytes()


def test_refs_commands_and_compare_and_set_failure(tmp_path: Path, data: Path) -> None:
    repo = tmp_path / "store"
    run(repo, "init")
    _, out = run(repo, "--json", "snapshot", str(data), "--ref", "main")
    c1 = json.loads(out)["commit"]
    run(repo, "refs", "set", "prod", c1[:8])
    code, out = run(repo, "refs", "set", "prod", c1, "--expect", "0" * 32, ok=False)
    assert code == 1
    _, out = run(repo, "--json", "refs", "list")
    assert json.loads(out) == {"main": c1, "prod": c1}
    run(repo, "refs", "delete", "prod")
    _, out = run(repo, "--json", "refs", "history", "prod")
    assert [e["new"] for e in json.loads(out)] == [c1, None]


def test_errors_exit_1_and_name_the_problem(tmp_path: Path) -> None:
    code, _ = run(tmp_path / "nowhere", "log", "main", ok=False)
    assert code == 1
    result = CliRunner().invoke(main, ["-r", str(tmp_path / "nowhere"), "log", "main"])
    assert "no objstore repository" in result.output


def test_push_fetch_clone_and_fsck_exit_codes(tmp_path: Path, data: Path) -> None:
    repo = tmp_path / "store"
    remote = "file://" + str(tmp_path / "remote")
    run(repo, "init")
    run(repo, "snapshot", str(data), "--ref", "main")
    code, out = run(repo, "push", remote, ok=False)
    assert code == 1 and "no objstore repository at" in out and "--create" in out
    assert not (tmp_path / "remote").exists()  # a mistyped URL creates nothing
    run(repo, "init", remote)
    _, out = run(repo, "--json", "push", remote)
    assert json.loads(out)["refs_updated"]
    _, out = run(repo, "--json", "push", remote)
    assert json.loads(out)["objects"] == 0
    run(tmp_path / "clone", "clone", remote, str(tmp_path / "clone"))
    _, out = run(tmp_path / "clone", "--json", "fsck")
    assert json.loads(out)["bad_objects"] == {}
    # Corrupt the clone: fsck exits 3 and names the object.
    pack = next((tmp_path / "clone" / "packs").glob("*.pack"))
    raw = bytearray(pack.read_bytes())
    raw[-10] ^= 0xFF
    pack.write_bytes(bytes(raw))
    code, out = run(tmp_path / "clone", "fsck", ok=False)
    assert code == 3
    assert "bad object" in out


def test_console_script_is_installed(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("objstore")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    assert "snapshot" in out and "fsck" in out


def test_fsck_of_a_remote_url(tmp_path: Path, data: Path) -> None:
    from objstore import Repository

    repo = Repository.init(tmp_path / "store")
    repo.refs.set("main", repo.commit(repo.snapshot(data)))
    remote = "file://" + str(tmp_path / "remote")
    repo.push(remote, create=True)
    assert repo.fsck(url=remote).ok
    pack = next((tmp_path / "remote" / "packs").glob("*.pack"))
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    pack.write_bytes(bytes(raw))
    report = repo.fsck(url=remote)
    assert not report.ok and report.bad_objects and "main" in report.damaged_refs
    assert repo.fsck().ok  # the local store is untouched
