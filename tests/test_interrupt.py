"""Ctrl-C during a snapshot / trackio log: exit 130 and one line saying what was kept (issue 20, item 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from objstore import Repository
from objstore.interrupt import EXIT_INTERRUPTED, Kept, describe, interruptible, packs_since

BIN = Path(sys.executable).parent
MiB = 1 << 20


# Large enough that, once two 1 MiB packs are out, the rest of the log takes far
# longer than the parent needs to notice and signal even on a loaded machine
# (with 48 MiB a fast snapshot sometimes finished first: exit 0, not 130).
BIG_MIB = 128


def _big_file(path: Path, mib: int = BIG_MIB) -> Path:
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))  # random: every chunk is new, so packs fill steadily
    return path


def _indexes(store: Path) -> int:
    packs = store / "packs"
    return sum(1 for n in os.listdir(packs) if n.endswith(".idx")) if packs.is_dir() else 0


def _interrupt_after_packs(cmd: list[str], store: Path, env: dict[str, str] | None = None, packs: int = 2) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, send it SIGINT once ``packs`` packs are published, return how it ended."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while _indexes(store) < packs:
        assert proc.poll() is None, f"finished before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "no pack was published within 60 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _no_object_twice(store: Path) -> tuple[int, int]:
    repo = Repository.open(store)
    entries = sum(len(repo.odb.index(n)) for n in repo.odb.pack_names)
    distinct = len({oid for n in repo.odb.pack_names for oid, _ in repo.odb.index(n).items()})
    return entries, distinct


def test_sigint_mid_snapshot_exits_130_and_says_what_was_kept(tmp_path: Path) -> None:
    store = tmp_path / "store"
    Repository.init(store, pack_size=MiB)  # small packs: some are published early in the snapshot
    big = _big_file(tmp_path / "big.bin")
    cmd = [str(BIN / "objstore"), "-q", "-r", str(store), "snapshot", str(big), "--ref", "main"]

    done = _interrupt_after_packs(cmd, store)

    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback, no "Aborted!"
    assert done.stderr.startswith("objstore: interrupted; kept ")
    assert "MiB) already written: running the same snapshot again reuses them" in done.stderr
    assert "objstore gc" in done.stderr
    kept = _indexes(store)
    assert kept >= 2
    repo = Repository.open(store)
    assert "main" not in repo.refs.list()  # nothing was committed
    assert repo.fsck().ok

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    entries, distinct = _no_object_twice(store)
    assert entries == distinct  # the re-run reused every chunk the interrupted one had stored
    assert Repository.open(store).read_file("main", "big.bin") == big.read_bytes()


def test_sigint_mid_trackio_log_exits_130_and_gc_frees_what_was_kept(tmp_path: Path) -> None:
    home = tmp_path / "trackio-home"
    Repository.init(home / "objstore", pack_size=MiB)
    big = _big_file(tmp_path / "weights.bin")
    env = {**os.environ, "TRACKIO_DIR": str(home)}
    env.pop("TRACKIO_REMOTE", None)
    cmd = [str(BIN / "trackio"), "artifacts", "-q", "-p", "p", "log", str(big), "-n", "m"]

    done = _interrupt_after_packs(cmd, home / "objstore", env)

    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("trackio: interrupted; kept ")
    assert "running the same log again reuses them" in done.stderr and "trackio artifacts gc" in done.stderr
    repo = Repository.open(home / "objstore")
    assert not repo.refs.list("trackio/p/artifacts/")  # no version was logged
    assert repo.gc(grace=timedelta(0)).objects_removed > 0  # and gc frees what was kept
    assert _indexes(home / "objstore") == len(Repository.open(home / "objstore").odb.pack_names)


def test_interruptible_reports_packs_written_inside_the_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = Repository.init(tmp_path / "store", pack_size=MiB)
    before = set(repo.odb.pack_names)
    with pytest.raises(SystemExit) as stop, interruptible(repo, "tool", "running it", "tool gc"):
        repo.store_bytes(os.urandom(100_000))
        raise KeyboardInterrupt
    assert stop.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith("tool: interrupted; kept 1 pack (") and "`tool gc` frees them" in err
    assert packs_since(repo, before).packs == 1
    assert describe(Kept(0, 0), "tool", "running it", "tool gc") == "tool: interrupted; nothing was stored"
    with interruptible(repo, "tool", "running it", "tool gc"):
        pass  # no interruption: nothing said, no exit
    assert capsys.readouterr().err == ""
