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

from . import errors, names
from . import remote_sync as _sync
from .api import Api
from .artifact import Artifact
from .errors import (
    ArtifactFrozenError,
    ArtifactNotFoundError,
    ArtifactPathError,
    ArtifactTypeError,
    DashboardUnavailableError,
    InvalidNameError,
    ManifestPathError,
    NoActiveRunError,
    ReferenceChangedError,
    ReservedAliasError,
    SyncError,
    UnsupportedReferenceError,
)
from .references import ReferenceHandler, ResolvedReference, register_reference_handler, unregister_reference_handler
from .registry import Collection, Registry
from .run import AlertLevel, Run, current_run, require_run, start_run
from .store import store_path, trackio_dir

__version__ = "0.1.0"


_INIT_DASHBOARD_DEFAULTS: dict[str, Any] = {
    "settings": None,
    "private": None,
    "embed": True,
    "auto_log_gpu": None,
    "gpu_log_interval": 10.0,
    "auto_log_cpu": None,
    "cpu_log_interval": 10.0,
    "webhook_url": None,
    "webhook_min_level": None,
}
"""trackio 0.43 ``init`` parameters that only concern its metrics dashboard,
system monitoring or alerts: accepted, recorded under ``config["trackio"]``."""

config: dict[str, Any] = {}
"""The active run's config (``trackio.config``, as in trackio and wandb)."""


def init(
    project: str,
    name: str | None = None,
    group: str | None = None,
    space_id: str | None = None,
    server_url: str | None = None,
    dataset_id: str | None = None,
    bucket_id: str | None = None,
    config: dict[str, Any] | None = None,
    resume: str = "never",
    settings: Any = None,
    private: bool | None = None,
    embed: bool = True,
    auto_log_gpu: bool | None = None,
    gpu_log_interval: float = 10.0,
    auto_log_cpu: bool | None = None,
    cpu_log_interval: float = 10.0,
    webhook_url: str | None = None,
    webhook_min_level: Any = None,
    *,
    remote: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Run:
    """Start a run in ``project`` (finishing any active one) and return it.

    The parameters, their order and defaults are trackio 0.43's; ``remote``
    and ``storage_options`` are ours.

    - ``name``: the run's name (generated when omitted). ``resume`` decides
      what happens when a run of that name exists in the project:
      ``"never"`` (default) starts a new run anyway, ``"allow"`` continues
      the existing one (its logged and used artifacts and metrics stay its
      own), ``"must"`` continues it and raises ``ValueError`` naming the run
      if there is none.
    - Where to sync, first that is set: ``remote`` (any fsspec URL, e.g.
      ``"s3://bucket/prefix"``; ``storage_options`` pass through to fsspec),
      ``space_id`` / ``dataset_id`` / ``bucket_id`` (an ``hf://`` remote),
      ``server_url`` (an ``objstore serve`` team server, ``http(s)://``; a
      ``write_token`` query parameter or ``TRACKIO_WRITE_TOKEN`` is sent as
      its token), then the ``TRACKIO_REMOTE`` and ``TRACKIO_SERVER_URL``
      environment variables.
    - ``settings``, ``private``, ``embed``, ``auto_log_gpu``,
      ``gpu_log_interval``, ``auto_log_cpu``, ``cpu_log_interval``,
      ``webhook_url``, ``webhook_min_level`` concern trackio's metrics
      dashboard, system monitoring and alerts: accepted, and those not left
      at their default are recorded in the run's config under ``"trackio"``
      (see docs/api.md for why each changes nothing here).

    Usable as a context manager: ``with trackio.init(project="p") as run:``.
    """
    passed = {
        "settings": settings,
        "private": private,
        "embed": embed,
        "auto_log_gpu": auto_log_gpu,
        "gpu_log_interval": gpu_log_interval,
        "auto_log_cpu": auto_log_cpu,
        "cpu_log_interval": cpu_log_interval,
        "webhook_url": webhook_url,
        "webhook_min_level": webhook_min_level,
    }
    run = start_run(
        project,
        name,
        config,
        group=group,
        remote=remote,
        storage_options=storage_options,
        space_id=space_id,
        dataset_id=dataset_id,
        bucket_id=bucket_id,
        server_url=server_url,
        resume=resume,
        dashboard_options={k: v for k, v in passed.items() if v != _INIT_DASHBOARD_DEFAULTS[k]},
    )
    globals()["config"] = run.config
    return run


def show(
    project: str | None = None,
    *,
    dashboard: str | None = None,
    theme: Any = None,
    mcp_server: bool | None = None,
    footer: bool = True,
    color_palette: list[str] | None = None,
    open_browser: bool = True,
    block_thread: bool | None = None,
    host: str | None = None,
    share: bool | None = None,
    server_port: int | None = None,
    frontend_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Serve the dashboard and open it (trackio 0.43's signature and return value).

    The dashboard shows the machine's store on ``host`` (default
    127.0.0.1), port ``server_port`` (default: the first free one from
    ``$GRADIO_SERVER_PORT`` or 7860); ``project`` opens that project's
    page, ``dashboard="registry"`` the registry page. The URL is printed
    (``* Trackio UI launched at: URL``) and opened in a browser unless
    ``open_browser=False``. ``block_thread`` (default: True outside a
    notebook) waits until Ctrl-C; ``False`` returns while the server runs
    in a background thread.

    Returns ``(app, local_url, share_url, full_url)`` as trackio does:
    ``app.close()`` stops the server, ``share_url`` is None (nothing is
    tunnelled: the dashboard works offline), ``full_url`` is the page
    opened. ``theme``, ``mcp_server``, ``footer``, ``color_palette`` and
    ``frontend_dir`` concern trackio's metrics frontend and are ignored.
    """
    import sys
    import warnings
    import webbrowser

    if dashboard not in (None, "registry"):
        raise ValueError(f"dashboard must be None or 'registry', got {dashboard!r}")
    if dashboard == "registry" and project is not None:
        raise ValueError("The registry dashboard does not accept a project.")
    if project is not None:
        names.validate_project(project)
    if theme is not None and theme != "default":
        warnings.warn("The theme argument is ignored; Trackio no longer depends on Gradio themes.", UserWarning, stacklevel=2)
    if share:
        warnings.warn("share=True is not supported: the dashboard is served locally only (it works offline)", UserWarning, stacklevel=2)
    try:
        from .dashboard import launch
    except ImportError as exc:
        raise DashboardUnavailableError(f"trackio.show() needs the 'ui' extra (pip install 'objstore[ui]'): {exc}") from None
    server, url = launch(project, dashboard=dashboard, host=host, port=server_port)
    label = "Trackio registry UI" if dashboard == "registry" else "Trackio UI"
    print(f"* {label} launched at: {url}")
    if open_browser:
        webbrowser.open(url)
    if block_thread is None:
        block_thread = "ipykernel" not in sys.modules
    result = _TupleNoPrint((server, server.url, None, url))
    if block_thread:
        server.wait()
    return result


class _TupleNoPrint(tuple):  # type: ignore[type-arg]
    """What ``show`` returns: a tuple that a notebook does not echo (as trackio's)."""

    def __repr__(self) -> str:
        return ""


def log(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log a dict of metrics to the active run."""
    require_run("trackio.log()").log(metrics, step)


def alert(title: str, text: str | None = None, level: AlertLevel | str = AlertLevel.WARN, webhook_url: str | None = None) -> None:
    """Fire an alert on the active run: printed to stderr and stored with the run."""
    require_run("trackio.alert()").alert(title, text, level, webhook_url)


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
    "AlertLevel",
    "Api",
    "Artifact",
    "Collection",
    "Registry",
    "ArtifactFrozenError",
    "ArtifactNotFoundError",
    "ArtifactPathError",
    "ArtifactTypeError",
    "DashboardUnavailableError",
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
    "alert",
    "config",
    "current_run",
    "errors",
    "finish",
    "init",
    "log",
    "log_artifact",
    "register_reference_handler",
    "unregister_reference_handler",
    "store_path",
    "show",
    "sync",
    "trackio_dir",
    "use_artifact",
]
