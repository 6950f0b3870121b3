"""trackio's artifact API, with every byte stored in objstore.

>>> import trackio                                              # doctest: +SKIP
>>> trackio.init(project="my_project")                          # doctest: +SKIP
>>> trackio.log_artifact("checkpoints/", name="my-model", type="model")  # doctest: +SKIP
>>> trackio.use_artifact("my-model:latest").download()          # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from objstore.remote import TransferResult

from . import errors
from . import remote_sync as _sync
from .api import Api
from .artifact import Artifact
from .errors import (
    ArtifactFrozenError,
    ArtifactNotFoundError,
    ArtifactPathError,
    ArtifactTypeError,
    InvalidNameError,
    ManifestPathError,
    NoActiveRunError,
    ReferenceChangedError,
    ReservedAliasError,
    SyncError,
    UnsupportedReferenceError,
)
from .references import ReferenceHandler, ResolvedReference, register_reference_handler, unregister_reference_handler
from .run import Run, current_run, require_run, start_run
from .store import store_path, trackio_dir

__version__ = "0.1.0"


def init(
    project: str,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    remote: str | None = None,
    *,
    group: str | None = None,
    storage_options: dict[str, Any] | None = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    bucket_id: str | None = None,
) -> Run:
    """Start a run in ``project`` (finishing any active one) and return it.

    ``remote`` (or ``TRACKIO_REMOTE``) is any fsspec URL to sync with, e.g.
    ``"s3://bucket/prefix"``; ``storage_options`` pass through to fsspec.
    ``space_id`` / ``dataset_id`` / ``bucket_id`` map to an ``hf://`` remote.
    Usable as a context manager: ``with trackio.init(project="p") as run:``.
    """
    return start_run(
        project,
        name,
        config,
        group=group,
        remote=remote,
        storage_options=storage_options,
        space_id=space_id,
        dataset_id=dataset_id,
        bucket_id=bucket_id,
    )


def log(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log a dict of metrics to the active run."""
    require_run("trackio.log()").log(metrics, step)


def finish() -> None:
    """Finish the active run (a no-op if there is none)."""
    run = current_run()
    if run is not None:
        run.finish()


def log_artifact(
    artifact_or_path: Artifact | str | os.PathLike[str],
    name: str | None = None,
    type: str | None = None,
    aliases: list[str] | None = None,
) -> Artifact:
    """Log an artifact (or a file or directory) as an output of the active run.

    A path gives name ``run-<run_id>-<basename>`` and type ``"unspecified"``
    unless ``name``/``type`` are passed. Returns the frozen artifact with its
    ``version``, ``aliases``, ``size``, ``manifest`` and ``digest``.
    """
    return require_run("trackio.log_artifact()").log_artifact(artifact_or_path, name=name, type=type, aliases=aliases)


def use_artifact(artifact_or_name: Artifact | str, type: str | None = None) -> Artifact:
    """Resolve an artifact (default ``:latest``) and record it as an input of the active run."""
    return require_run("trackio.use_artifact()").use_artifact(artifact_or_name, type=type)


def sync(remote: str | None = None, *, storage_options: dict[str, Any] | None = None) -> TransferResult:
    """Push everything logged here that the remote lacks (runs, versions, aliases).

    Defaults to the active run's remote, then ``TRACKIO_REMOTE``.
    """
    run = current_run()
    spec = _sync.remote_spec(remote, storage_options=storage_options)
    if spec is None and run is not None:
        spec = run.remote_spec
    if spec is None:
        raise SyncError("trackio.sync() needs a remote: pass remote=..., set TRACKIO_REMOTE, or init(remote=...)")
    return _sync.sync(spec)


def _finish_at_exit() -> None:
    run = current_run()
    if run is not None:
        try:
            run.finish()
        except Exception:  # never turn interpreter shutdown into a traceback
            pass


atexit.register(_finish_at_exit)

__all__ = [
    "Api",
    "Artifact",
    "ArtifactFrozenError",
    "ArtifactNotFoundError",
    "ArtifactPathError",
    "ArtifactTypeError",
    "InvalidNameError",
    "ManifestPathError",
    "NoActiveRunError",
    "ReservedAliasError",
    "SyncError",
    "UnsupportedReferenceError",
    "ReferenceChangedError",
    "ReferenceHandler",
    "ResolvedReference",
    "Run",
    "current_run",
    "errors",
    "finish",
    "init",
    "log",
    "log_artifact",
    "register_reference_handler",
    "unregister_reference_handler",
    "store_path",
    "sync",
    "trackio_dir",
    "use_artifact",
]
