"""Shared fixtures and test settings for the objstore suite."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator

import pytest
from helpers import SMALL
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

# A shell without job control starts background jobs (`.ci/run &`, nohup) with
# SIGINT ignored, and that disposition is inherited across exec: the CLIs the
# Ctrl-C tests start would then never see the signal. A handler (unlike an
# ignore) is reset to the default on exec, so children get Python's usual
# KeyboardInterrupt again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Hypothesis keeps caches (constants, unicode tables) in ./.hypothesis by default:
# keep them in a private temp dir instead, removed at exit.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="objstore-tests-hypothesis-")
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, True)
set_hypothesis_home_dir(_HYPOTHESIS_HOME)

# Deterministic, no example database written into the working tree.
settings.register_profile(
    "objstore",
    database=None,
    derandomize=True,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("objstore")


@pytest.fixture(scope="session", autouse=True)
def _private_cache_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Non-local repositories keep their stat cache under XDG_CACHE_HOME: keep it in a tmp dir."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def repo(tmp_path):
    """A fresh local repository with small chunk sizes (so test data stays small)."""
    from objstore import Repository

    r = Repository.init(tmp_path / "repo", chunking=SMALL)
    yield r
    r.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """Name the failed tests once more, one short line each, right above the final count.

    On CI pytest prints a failure's whole message in the short summary (a diff of two
    byte strings can run to hundreds of lines), so a log's tail may not show which
    test failed; this does (after pytest's own summary, which its wrapper prints last)."""
    yield
    failed = terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
    if failed:
        terminalreporter.write_sep("-", "failed, by name")
        for report in failed:
            terminalreporter.write_line(f"{report.when} {report.nodeid}")
