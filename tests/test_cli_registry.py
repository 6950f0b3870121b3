"""``trackio registry``: every command end to end through a real subprocess, --json and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def sh(*args: str, env: dict[str, str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "trackio"), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {**os.environ, "TRACKIO_DIR": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    e.pop("TRACKIO_REMOTE", None)
    for i in range(2):
        f = tmp_path / f"w{i}" / "model.pt"
        f.parent.mkdir()
        f.write_bytes(os.urandom(1000))
        sh("artifacts", "-q", "-p", "train", "log", str(f), "-n", "resnet", "--type", "model", env=e, cwd=tmp_path)
    return e


def j(proc: subprocess.CompletedProcess[str]) -> object:
    return json.loads(proc.stdout)


def test_registry_every_command(tmp_path: Path, env: dict[str, str]) -> None:
    def r(*args: str) -> subprocess.CompletedProcess[str]:
        return sh("registry", *args, env=env, cwd=tmp_path)

    assert j(r("create", "models", "-d", "what ships", "--json")) == {"name": "models", "description": "what ships", "project": "registry-models"}
    assert "models" in r("list").stdout
    listed = j(r("list", "--json"))
    assert isinstance(listed, list) and [(x["name"], x["collections"]) for x in listed] == [("models", 0)]
    first = j(r("link", "train/resnet:v0", "registry-models/clf", "--alias", "staging", "--json"))
    assert first == {**first, "qualified_name": "registry-models/clf:v0", "source_qualified_name": "train/resnet:v0", "aliases": ["latest", "staging"]}
    assert "train/resnet:v1 as registry-models/clf:v1" in r("link", "resnet", "registry-models/clf", "-p", "train").stdout
    promoted = j(r("promote", "registry-models/clf:v0", "production", "--json"))
    assert isinstance(promoted, dict) and promoted["aliases"] == ["production", "staging"]
    shown = j(r("show", "registry-models/clf", "--json"))
    assert isinstance(shown, dict) and [(lk["collection_version"], lk["aliases"]) for lk in shown["links"]] == [(1, ["latest"]), (0, ["production", "staging"])]
    assert "v0    train/resnet:v0  production, staging" in r("show", "registry-models/clf").stdout
    colls = j(r("collections", "models", "--json"))
    assert isinstance(colls, list) and [c["name"] for c in colls] == ["clf"]
    assert "clf  type=model  links=2  latest=v1" in r("collections", "models").stdout
    unlinked = j(r("unlink", "registry-models/clf:v1", "--json"))
    assert isinstance(unlinked, dict) and unlinked["removed_aliases"] == ["latest"] and unlinked["latest_version"] == 0
    events = j(r("events", "models", "--json"))
    assert isinstance(events, list)
    assert [e["kind"] for e in events] == ["create", "create", "link", "promote", "link", "promote", "unlink"]
    assert all(e["user"] and e["host"] for e in events)
    text = r("events", "models").stdout
    assert text.splitlines()[0].split() == ["ID", "TIME", "WHO", "KIND", "WHAT"]
    assert "clf:v0 production" in text and "clf:v1" in text.splitlines()[-1] and "unlink" in text.splitlines()[-1]
    assert j(sh("registry", "--json", "show", "registry-models/clf", env=env, cwd=tmp_path)) == j(r("show", "registry-models/clf", "--json"))  # flags anywhere


ERRORS = [
    (["create", "bad name"], "'bad name'"),
    (["collections", "ghost"], "'ghost'"),
    (["show", "models/clf"], "'models/clf'"),
    (["show", "registry-models/nope"], "'nope'"),
    (["link", "train/resnet:v7", "registry-models/clf"], "v7"),
    (["link", "train/resnet:v0", "registry-ghost/clf"], "'ghost'"),
    (["promote", "registry-models/clf:v9", "production"], "v9"),
    (["promote", "registry-models/clf:v0", "v2"], "'v2'"),
    (["unlink", "registry-models/clf:v5"], "v5"),
    (["events", "ghost"], "'ghost'"),
]


def test_registry_errors_are_one_line_and_name_the_token(tmp_path: Path, env: dict[str, str]) -> None:
    sh("registry", "create", "models", env=env, cwd=tmp_path)
    sh("registry", "link", "train/resnet:v0", "registry-models/clf", env=env, cwd=tmp_path)
    for args, needle in ERRORS:
        proc = sh("registry", *args, env=env, cwd=tmp_path, ok=False)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stdout == "", args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, proc.stderr)
