"""Fixtures for the trackio façade tests.

Every test runs with ``TRACKIO_DIR`` pointing at a fresh temporary directory
and with a fresh temporary working directory, so default download paths
(``./artifacts/...``) and stores never leak between tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]

# This folder is called ``trackio`` and pytest puts ``tests/`` on sys.path, so
# ``import trackio`` could pick up this folder as a namespace package. Make the
# real package win, whatever the import order.
for _p in (str(HERE), str(PROJECT_ROOT)):
    if _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)
_stale = sys.modules.get("trackio")
if _stale is not None and getattr(_stale, "__file__", None) is None:
    for _name in [m for m in sys.modules if m == "trackio" or m.startswith("trackio.")]:
        del sys.modules[_name]

import trackio  # noqa: E402
import trackio.run  # noqa: E402
import trackio.store  # noqa: E402

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
