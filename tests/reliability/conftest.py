"""Fixtures for the reliability proofs: real processes, real files, real mounts.

The moto S3 server fixture is the one of ``tests/remotes`` (loaded from
there, so both folders start the server the same way); the helpers shared
by the test modules live in ``reliability_helpers``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
PROJECT_ROOT = TESTS.parent
REMOTES = TESTS / "remotes"

# ``tests/remotes`` is on the path for ``remote_helpers``.
if str(REMOTES) not in sys.path:
    sys.path.insert(0, str(REMOTES))


def _load_remote_fixtures():  # type: ignore[no-untyped-def]
    """``tests/remotes/conftest.py`` as a plain module (not a second conftest)."""
    name = "_reliability_remotes_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REMOTES / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_remotes = _load_remote_fixtures()
s3_server = _remotes.s3_server  # session-scoped moto server on 127.0.0.1


@pytest.fixture
def trackio_clean():  # type: ignore[no-untyped-def]
    """Nothing of trackio open in this process before or after the test."""
    from remote_helpers import reset_trackio

    reset_trackio()
    try:
        yield
    finally:
        reset_trackio()
