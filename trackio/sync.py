"""Hooks where the façade meets remotes.

With no remote configured everything is local and synchronous: a logged
version is complete when ``log_artifact`` returns, and every version is
resolved from the local store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import names
from .registry import ArtifactRegistry, VersionInfo
from .store import get_repo

if TYPE_CHECKING:
    from .artifact import Artifact
    from .run import Run


def resolve(project: str, name: str, selector: str) -> VersionInfo:
    """Find a version by number or alias."""
    return ArtifactRegistry(get_repo()).resolve(project, name, selector)


def ensure_local(info: VersionInfo) -> None:
    """Make sure a version's objects are in the local store."""
    get_repo().tree_of(info.commit_id)


def on_logged(run: Run, artifact: Artifact) -> None:
    """Called after a version is logged locally."""


def on_run_finished(run: Run) -> None:
    """Called after a run's final record is stored."""


def wait_for(artifact: Artifact, timeout: float | None = None) -> None:
    """Block until a logged version is wherever it must be (locally: already)."""


__all__ = ["names", "resolve", "ensure_local", "on_logged", "on_run_finished", "wait_for"]
