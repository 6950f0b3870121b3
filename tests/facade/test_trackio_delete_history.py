"""Deleting a version appends to alias histories and never loses them, gc included."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import trackio
from trackio.store import get_repo

BIN = Path(sys.executable).parent


def tr(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "trackio"), "artifacts", "-q", "-p", "p", *args], capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def _history(alias: str) -> list[str]:
    out = tr("history", "m", alias).stdout.splitlines()
    return [line.split(": ", 1)[1] for line in out]  # drop the time and who


def test_cli_delete_keeps_alias_history_through_gc(work: Path) -> None:
    (work / "model").mkdir()
    (work / "model" / "w.bin").write_bytes(b"zero" * 1000)
    tr("log", "model/", "-n", "m")
    (work / "model" / "w.bin").write_bytes(b"one!" * 1000)
    tr("log", "model/", "-n", "m")
    tr("alias", "set", "m:v0", "prod")
    tr("alias", "set", "m:v1", "staging")

    deleted = tr("delete", "m:v0")
    assert deleted.stdout.startswith("deleted p/m:v0; aliases removed with it: prod")
    assert deleted.stderr == ""
    assert json.loads(tr("--json", "history", "m", "prod").stdout)[0]["who"]  # who is recorded

    for _ in range(2):  # before gc, and after gc freed v0's commit
        assert _history("prod") == ["- -> v0 (deleted)", "v0 deleted; prod removed"]
        # latest: the real moves stay, and the re-commit of v1 is no fake "v1 -> v1"
        assert _history("latest") == ["- -> v0 (deleted)", "v0 (deleted) -> v1", "v0 deleted"]
        assert _history("staging") == ["- -> v1", "v0 deleted"]
        gc = tr("gc", "--grace", "0")
        assert "removed" in gc.stdout
    assert tr("download", "m:staging", "--root", "dl").returncode == 0
    assert (work / "dl" / "w.bin").read_bytes() == b"one!" * 1000
    gone = tr("show", "m:v0", ok=False)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "v0" in gone.stderr

    deleted = tr("delete", "m:v1")
    assert "aliases removed with it: staging" in deleted.stdout
    tr("gc", "--grace", "0")
    assert _history("latest") == ["- -> v0 (deleted)", "v0 (deleted) -> v1 (deleted)", "v0 deleted", "v1 deleted; latest removed"]


def test_api_delete_names_aliases_and_history_rows_say_deleted(tmp_path: Path) -> None:
    with trackio.init(project="p"):
        for i, aliases in enumerate((["prod", "best"], [], ["canary"])):
            (tmp_path / "w.bin").write_bytes(bytes([i]) * 100_000)
            trackio.log_artifact(str(tmp_path / "w.bin"), name="m", type="model", aliases=aliases)
    api = trackio.Api("p")
    api.set_alias("m:v2", "prod")  # prod moved on: only best goes with v0
    repo = get_repo()
    before = {n: len(repo.refs.history(n)) for n in repo.refs.names("trackio/p/artifacts/m/")}

    done = api.delete_version("m:v0")

    assert done.qualified_name == "p/m:v0" and done.aliases_removed == ("best",)
    after = {n: repo.refs.history(n) for n in repo.refs.names("trackio/p/artifacts/m/")}
    for name, count in before.items():  # append-only: every earlier entry is still there
        assert len(after[name]) == count + 1, name
    repo.gc(grace=timedelta(0))
    rows = api.alias_history("m", "prod")
    assert [(r["previous"], r["version"], r["event"]) for r in rows] == [
        (None, "v0", "move"),
        ("v0", "v2", "move"),
        ("v2", "v2", "delete"),
    ]
    assert rows[0]["version_deleted"] and rows[1]["previous_deleted"] and not rows[1]["version_deleted"]
    assert rows[2]["deleted"] == "v0" and rows[2]["who"]
    assert api.artifact("m:prod").version == "v2"
    assert api.artifact("m:canary").version == "v2"
    with pytest.raises(ValueError, match="best"):
        api.artifact("m:best")


def test_history_names_commits_freed_before_history_was_append_only(tmp_path: Path) -> None:
    """A store written by an older objstore may hold entries naming commits gc has freed."""
    from objstore.refs import RefLogEntry

    with trackio.init(project="p"):
        (tmp_path / "w.bin").write_bytes(b"w")
        trackio.log_artifact(str(tmp_path / "w.bin"), name="m", type="model", aliases=["prod"])
    repo = get_repo()
    ref = "trackio/p/artifacts/m/aliases/prod"
    head = repo.refs.head(ref)
    assert head is not None
    freed = "0123456789abcdef" * 2  # a commit no longer stored, as the old forget + gc left it
    old_style = RefLogEntry(ref, head.seq + 1, head.new, freed, head.time + 1, "old@host", "alias prod -> v9")
    repo.storage.put_if_absent(repo.refs._path(ref, head.seq + 1), old_style.encode())
    rows = trackio.Api("p").alias_history("m", "prod")
    assert rows[-1]["previous"] == "v0" and rows[-1]["version"] == freed[:12] and rows[-1]["version_deleted"]
