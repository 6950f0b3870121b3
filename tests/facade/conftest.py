"""Fixtures for the trackio façade tests.

Every test runs with ``TRACKIO_DIR`` pointing at a fresh temporary directory
and with a fresh temporary working directory, so default download paths
(``./artifacts/...``) and stores never leak between tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import trackio
import trackio.run
import trackio.store

PROJECT_ROOT = Path(__file__).resolve().parents[2]
assert Path(trackio.__file__).resolve().parent == PROJECT_ROOT / "trackio", trackio.__file__


@pytest.fixture(autouse=True)
def trackio_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    home = tmp_path / "trackio-home"
    work = tmp_path / "work"
    work.mkdir()
    trackio.store.close_all()
    monkeypatch.setenv("TRACKIO_DIR", str(home))
    monkeypatch.delenv("TRACKIO_REMOTE", raising=False)
    monkeypatch.chdir(work)
    try:
        yield {"home": home, "work": work, "tmp": tmp_path}
    finally:
        try:
            trackio.finish()
        finally:
            # A run that could not finish must not leak into the next test.
            trackio.run._current = None
            trackio.store.close_all()


@pytest.fixture
def home(trackio_env: dict[str, Path]) -> Path:
    """The TRACKIO_DIR of this test."""
    return trackio_env["home"]


@pytest.fixture
def work(trackio_env: dict[str, Path]) -> Path:
    """The working directory of this test (the cwd)."""
    return trackio_env["work"]


@pytest.fixture
def outside(trackio_env: dict[str, Path]) -> Path:
    """A scratch directory outside both TRACKIO_DIR and the cwd."""
    p = trackio_env["tmp"] / "outside"
    p.mkdir(exist_ok=True)
    return p


@pytest.fixture
def run() -> trackio.Run:
    """An active run in project ``proj``."""
    return trackio.init(project="proj")
