"""Packs staged for an upload: a private folder, locked while in use, swept after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from objstore import staging
from objstore.errors import StorageError
from objstore.packs import PackWriter
from objstore.storage import open_storage

HOUR_AGO = time.time() - 3600

# A writer staging a pack for a remote (fsspec memory://), stopped before it publishes.
_STAGING_WRITER = """
    from objstore.packs import PackWriter
    from objstore.storage import open_storage
    w = PackWriter(open_storage("memory://staging-test"), 16)
    data = b"staged bytes" * 1000
    w.add(b"\\x01" * 16, 1, 0, data, len(data))
    print(w.temp_path, flush=True)
    import sys; sys.stdin.read()
"""


@pytest.fixture
def system_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A system temp dir of this test's own, for this process and its children."""
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setenv("TMPDIR", str(d))
    return d


def _start_writer() -> tuple[subprocess.Popen[bytes], Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_STAGING_WRITER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    line = child.stdout.readline().decode().strip()
    if not line:
        child.kill()
        raise AssertionError(child.communicate()[1].decode())
    return child, Path(line)


def _age(path: Path) -> None:
    os.utime(path, (HOUR_AGO, HOUR_AGO))


def test_staged_pack_lives_in_a_private_folder_and_leaves_none_after_publishing(system_temp: Path) -> None:
    w = PackWriter(open_storage("memory://staging-publish"), 16)
    folder = Path(w.temp_path).parent
    assert folder == system_temp / f"objstore-staging-{os.getuid()}"
    assert (folder.stat().st_mode & 0o777) == 0o700
    w.add(b"\x01" * 16, 1, 0, b"payload", 7)
    assert w.finish() is not None
    assert list(folder.iterdir()) == []


def test_sweep_spares_a_live_writer_and_removes_a_killed_ones_file(system_temp: Path) -> None:
    live, live_file = _start_writer()
    dead, dead_file = _start_writer()
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=10)
        assert live_file.exists() and dead_file.exists()
        folder = live_file.parent
        # young files are never taken, locked or not: a writer may be between create and lock
        assert staging.sweep(str(folder)) == 0
        _age(live_file)
        _age(dead_file)
        assert staging.sweep(str(folder)) == 1
        assert live_file.exists(), "the sweep removed the pack of a writer that is still running"
        assert not dead_file.exists(), "the killed writer's staged pack was left behind"
    finally:
        live.kill()
        live.wait(timeout=10)
    # once its writer is gone (however it died) the file goes too
    assert staging.sweep(str(live_file.parent)) == 1
    assert not live_file.exists()


def test_the_first_staging_of_a_process_sweeps_what_crashed_writers_left(system_temp: Path) -> None:
    child, left = _start_writer()
    child.kill()
    child.wait(timeout=10)
    _age(left)
    other = left.parent / "notes.txt"  # not ours: never touched
    other.write_text("keep")
    _age(other)
    w = PackWriter(open_storage("memory://staging-next"), 16)
    try:
        assert not left.exists()
        assert other.read_text() == "keep"
        assert Path(w.temp_path).exists()
    finally:
        w.abort()
    assert not Path(w.temp_path).exists()


def test_a_planted_symlink_is_refused(system_temp: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (system_temp / f"objstore-staging-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(StorageError, match="not a directory owned by this user"):
        PackWriter(open_storage("memory://staging-symlink"), 16)
    assert list(elsewhere.iterdir()) == []
