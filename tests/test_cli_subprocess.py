"""Every CLI command end to end through a real subprocess, errors included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def sh(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(b"alpha\n")
    (d / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    return d


def test_objstore_every_command(tmp_path: Path, data: Path) -> None:
    r = ["objstore", "-q", "-r", str(tmp_path / "store")]
    sh(*r, "init")
    c1 = json.loads(sh(*r, "--json", "snapshot", str(data), "-m", "one", "--ref", "main").stdout)["commit"]
    (data / "a.txt").write_bytes(b"alpha 2\n")
    c2 = json.loads(sh(*r, "--json", "snapshot", str(data), "-m", "two", "--ref", "main").stdout)["commit"]
    assert [e["id"] for e in json.loads(sh(*r, "--json", "log", "main").stdout)] == [c2, c1]
    assert json.loads(sh(*r, "--json", "show", "main").stdout)["kind"] == "commit"
    assert "sub/b.bin" in sh(*r, "ls", "main", "-R").stdout
    assert sh(*r, "cat", "main", "a.txt").stdout == "alpha 2\n"
    assert json.loads(sh(*r, "--json", "diff", c1, c2).stdout)[0]["path"] == "a.txt"
    sh(*r, "checkout", c1, str(tmp_path / "out"))
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"alpha\n"
    sh(*r, "refs", "set", "prod", c1)
    assert json.loads(sh(*r, "--json", "refs", "list").stdout) == {"main": c2, "prod": c1}
    assert len(json.loads(sh(*r, "--json", "refs", "history", "main").stdout)) == 2
    sh(*r, "refs", "delete", "prod")
    remote = "file://" + str(tmp_path / "remote")
    assert json.loads(sh(*r, "--json", "push", "--create", remote).stdout)["objects"] > 0
    clone = ["objstore", "-q", "-r", str(tmp_path / "clone")]
    sh(*clone, "clone", remote, str(tmp_path / "clone"))
    assert json.loads(sh(*clone, "--json", "fetch", remote).stdout)["objects"] == 0
    assert json.loads(sh(*r, "--json", "fsck").stdout)["bad_objects"] == {}
    assert json.loads(sh(*r, "--json", "stats").stdout)["commits"] == 2
    sh(*r, "repack")
    sh(*r, "gc", "--grace", "0")
    raw = subprocess.run([str(BIN / "objstore"), *r[1:], "cat", "main", "sub/b.bin"], capture_output=True, check=True).stdout
    assert raw == (data / "sub" / "b.bin").read_bytes()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["log", "no-such-ref"], "no such ref"),
        (["snapshot", "/no/such/path"], "no such path"),
        (["cat", "main", "missing.txt"], "no such path"),
        (["refs", "set", "bad name!", "main"], "invalid ref name"),
    ],
)
def test_objstore_errors_are_one_line_and_nonzero(tmp_path: Path, data: Path, args: list[str], needle: str) -> None:
    r = ["objstore", "-q", "-r", str(tmp_path / "store")]
    sh(*r, "init")
    sh(*r, "snapshot", str(data), "--ref", "main")
    proc = sh(*r, *args, ok=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0].lower(), proc.stderr


def test_trackio_artifacts_every_command(tmp_path: Path, data: Path) -> None:
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "td"), "TRACKIO_PROJECT": "proj"}
    t = ["trackio", "artifacts", "-q"]
    one = json.loads(sh(*t, "--json", "log", str(data), "-n", "model", "--type", "model", "-a", "prod", env=env, cwd=tmp_path).stdout)
    assert one["version"] == "v0" and one["aliases"] == ["latest", "prod"]
    (data / "a.txt").write_bytes(b"changed\n")
    assert json.loads(sh(*t, "--json", "log", str(data), "-n", "model", "--type", "model", env=env, cwd=tmp_path).stdout)["version"] == "v1"
    assert [a["qualified_name"] for a in json.loads(sh(*t, "--json", "list", env=env).stdout)] == ["proj/model:v1"]
    assert [a["version"] for a in json.loads(sh(*t, "--json", "versions", "model", env=env).stdout)] == ["v0", "v1"]
    shown = json.loads(sh(*t, "--json", "show", "model:prod", env=env).stdout)
    assert {e["path"] for e in shown["manifest"]} == {"a.txt", "sub/b.bin"}
    assert shown["lineage"]["logged_by"]["name"] == "cli"
    changes = json.loads(sh(*t, "--json", "diff", "model:v0", "model:v1", env=env).stdout)
    assert changes == [{"status": "changed", "path": "a.txt", "bytes": 2}]
    sh(*t, "alias", "set", "model:v1", "best", env=env)
    assert [h["version"] for h in json.loads(sh(*t, "--json", "history", "model", "best", env=env).stdout)] == ["v1"]
    sh(*t, "alias", "remove", "model", "best", env=env)
    dot = sh(*t, "lineage", "model:v0", "--format", "dot", env=env).stdout
    assert dot.startswith("digraph") and "proj/model:v0" in dot
    assert "graph LR" in sh(*t, "lineage", "model:v0", "--format", "mermaid", env=env).stdout
    path = sh(*t, "download", "model:v0", env=env, cwd=tmp_path).stdout.strip()
    assert Path(path) == tmp_path / "artifacts" / "proj" / "model_v0"
    assert (Path(path) / "a.txt").read_bytes() == b"alpha\n"
    remote = "file://" + str(tmp_path / "remote")
    assert json.loads(sh(*t, "--json", "--remote", remote, "push", env=env).stdout)["objects"] > 0
    env2 = {**env, "TRACKIO_DIR": str(tmp_path / "td2")}
    sh(*t, "--remote", remote, "pull", env=env2)
    assert [a["version"] for a in json.loads(sh(*t, "--json", "versions", "model", env=env2).stdout)] == ["v0", "v1"]
    assert json.loads(sh(*t, "--json", "fsck", env=env).stdout)["ok"] is True
    sh(*t, "delete", "model:v1", env=env)
    assert [a["version"] for a in json.loads(sh(*t, "--json", "versions", "model", env=env).stdout)] == ["v0"]
    assert json.loads(sh(*t, "--json", "gc", "--grace", "0", env=env).stdout)["objects_removed"] > 0
    assert json.loads(sh(*t, "--json", "fsck", env=env).stdout)["ok"] is True


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["show", "nope"], "not found"),
        (["show", "model:v9"], "v9"),
        (["alias", "set", "model:v0", "v3"], "reserved"),
        (["log", "/no/such/file", "-n", "x"], "does not exist"),
        (["show", "model", "--bogus"], None),
    ],
)
def test_trackio_errors_are_one_line_and_nonzero(tmp_path: Path, data: Path, args: list[str], needle: str | None) -> None:
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "td"), "TRACKIO_PROJECT": "proj"}
    sh("trackio", "artifacts", "-q", "log", str(data), "-n", "model", env=env, cwd=tmp_path)
    proc = sh("trackio", "artifacts", "-q", *args, env=env, cwd=tmp_path, ok=False)
    assert proc.returncode != 0
    if needle is not None:
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_every_command_help_has_an_example() -> None:
    import click

    from objstore.cli import main as objstore_main
    from trackio.cli import main as trackio_main

    def walk(cmd: click.Command, path: list[str]) -> list[tuple[str, click.Command]]:
        out = [(" ".join(path), cmd)]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                out += walk(sub, [*path, name])
        return out

    commands = walk(objstore_main, ["objstore"]) + walk(trackio_main, ["trackio"])
    assert len(commands) > 30
    assert [name for name, cmd in commands if "Example" not in (cmd.help or "")] == []
