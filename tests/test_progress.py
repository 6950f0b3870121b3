"""Long operations report progress in bytes through ``progress=`` callbacks."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from objstore import Repository


def test_every_long_operation_reports_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(2_000_000)
    (src / "big.bin").write_bytes(payload)
    seen: dict[str, int] = {}

    def counter(name: str):  # type: ignore[no-untyped-def]
        seen[name] = 0

        def tick(n: int) -> None:
            seen[name] += n

        return tick

    repo = Repository.init(tmp_path / "store")
    tree = repo.snapshot(src, progress=counter("snapshot"))
    repo.refs.set("main", repo.commit(tree))
    repo.checkout("main", tmp_path / "out", progress=counter("checkout"))
    remote = "file://" + str(tmp_path / "remote")
    repo.push(remote, create=True, progress=counter("push"))
    clone = Repository.init(tmp_path / "clone")
    clone.fetch(remote, progress=counter("fetch"))
    repo.fsck(progress=counter("fsck"))
    repo.refs.delete("main")
    repo.refs.forget("main", {repo.refs.history("main")[0].new or ""})
    repo.gc(timedelta(0), progress=counter("gc"))
    for name in ("snapshot", "checkout", "push", "fetch", "fsck"):
        assert seen[name] >= len(payload), (name, seen)
    assert "gc" in seen
