"""Runs: who produced and who consumed which artifact versions.

A run's record is a chain of objstore commits under
``trackio/<project>/runs/<run id>``; its metadata holds the run's name,
config, status and the commit ids of the artifact versions it logged
(outputs) and used (inputs), and its tree holds the logged metrics. Because
records live in the store, lineage travels with the data.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from objstore import Repository, TreeEntry
from objstore.errors import RefConflict, RefNotFound
from objstore.ids import ObjectId
from objstore.nogc import no_cyclic_gc
from objstore.objects import canonical

from . import names
from .artifact import Artifact
from .errors import ArtifactFrozenError, ArtifactTypeError, InvalidNameError, NoActiveRunError
from .store import get_repo
from .versions import ArtifactRegistry, manifest_summary

if TYPE_CHECKING:
    from .remote_sync import RemoteSpec

KIND_RUN = "run"


class AlertLevel(StrEnum):
    """Severity of an alert (trackio's names and values)."""

    INFO = "info"
    WARN = "warn"
    ERROR = "error"


METRICS_FILE = "metrics.msgpack"

_ADJECTIVES = ("brave", "calm", "dainty", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lively", "misty", "noble", "proud", "quiet", "swift", "witty")
_NOUNS = ("sunset", "river", "forest", "meadow", "comet", "harbor", "summit", "breeze", "canyon", "glacier", "island", "lantern", "orchid", "pebble", "rocket", "valley")


def storable(value: Any) -> Any:
    """``value`` in a form objstore can store (JSON-like; other objects become strings)."""
    try:
        return canonical(value)
    except TypeError:
        return canonical(json.loads(json.dumps(value, default=str)))


class Run:
    """One execution of a script: config, metrics, and artifact lineage."""

    def __init__(
        self,
        project: str,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        *,
        group: str | None = None,
        remote: str | None = None,
        storage_options: dict[str, Any] | None = None,
        space_id: str | None = None,
        dataset_id: str | None = None,
        bucket_id: str | None = None,
        server_url: str | None = None,
        run_id: str | None = None,
        _record: dict[str, Any] | None = None,
        _store: Repository | None = None,
    ) -> None:
        from .remote_sync import remote_spec

        self.project = names.validate_project(project)
        self.remote_spec = None if _record is not None else remote_spec(
            remote, storage_options=storage_options, space_id=space_id, dataset_id=dataset_id, bucket_id=bucket_id, server_url=server_url
        )
        self.remote = self.remote_spec.url if self.remote_spec else None
        if _record is not None:  # a stored run, read back
            self.id: str = _record["id"]
            self.name: str = _record["name"]
            self.config: dict[str, Any] = dict(_record.get("config") or {})
            self.group: str | None = _record.get("group")
            self.status: str = _record.get("status", "running")
            self.started_at: float = _record.get("started_at", 0.0)
            self.finished_at: float | None = _record.get("finished_at")
            self._outputs: list[str] = list(_record.get("outputs") or [])
            self._inputs: list[str] = list(_record.get("inputs") or [])
            self._alerts: list[dict[str, Any]] = list(_record.get("alerts") or [])
            self._metrics_id: str | None = _record.get("_metrics_id")
            self._metrics: list[dict[str, Any]] | None = None
            self._active = False
            self._store = _store
            return
        self.id = run_id or uuid.uuid4().hex
        self.name = name or self._generate_name()
        self.config = dict(config or {})
        self.group = group
        self.status = "running"
        self.started_at = time.time()
        self.finished_at = None
        self._outputs = []
        self._inputs = []
        self._alerts = []
        self._metrics_id = None
        self._metrics = []
        self._next_step = 0
        self._active = True
        self._store = None
        self._save()

    def _resumed(self, config: dict[str, Any] | None, remote: RemoteSpec | None) -> Run:
        """This stored run, made active again (``resume="allow"/"must"``).

        Its outputs, inputs and metrics stay; ``config`` entries passed now
        are merged over the stored ones; the remote is the one given now.
        """
        self.metrics  # noqa: B018 - load the stored metrics before the record is rewritten
        self.config.update(config or {})
        self.remote_spec, self.remote = remote, (remote.url if remote else None)
        self.status = "running"
        self.finished_at = None
        assert self._metrics is not None
        self._next_step = max((row["step"] for row in self._metrics), default=-1) + 1
        self._active = True
        self._store = None
        self._save()
        return self

    def _generate_name(self) -> str:
        taken = len(list_run_refs(self.project))
        rng = random.Random()
        return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{taken}"

    # -- the record -----------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        return {
            "kind": KIND_RUN,
            "id": self.id,
            "name": self.name,
            "project": self.project,
            "group": self.group,
            "config": storable(self.config),
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outputs": list(self._outputs),
            "inputs": list(self._inputs),
            "alerts": list(self._alerts),
        }

    def _save(self, replace: bool = False, repo: Repository | None = None) -> None:
        """Write the record (and metrics so far) as the next commit of the run's ref.

        Outputs and inputs another writer recorded are merged in, unless
        ``replace`` (a re-base rewrote them).
        """
        repo = repo or get_repo()
        ref = names.run_ref(self.project, self.id)
        with repo.batch():
            while True:
                commit, parent = self._record_commit(repo, replace=replace)
                try:
                    repo.refs.set(ref, commit, expect=parent, message=self.status)
                    return
                except RefConflict:
                    continue

    def _record_commit(self, repo: Repository, *, replace: bool = False, extra_output: str | None = None) -> tuple[ObjectId, ObjectId | None]:
        """The record's next commit, not yet pointed at: (commit, the run ref's current value).

        ``extra_output`` is recorded as an output without being added to this
        run yet (the version it names is about to be published).
        """
        ref = names.run_ref(self.project, self.id)
        entries: list[TreeEntry] = []
        metrics = self.metrics  # a record read back keeps its metrics when rewritten
        if metrics:
            data = msgpack.packb(storable(metrics), use_bin_type=True)
            entries.append(TreeEntry(METRICS_FILE, "file", repo.store_bytes(data), len(data)))
        tree = repo.make_tree(entries)
        try:
            parent: ObjectId | None = repo.refs.get(ref)
        except RefNotFound:
            parent = None
        if parent is not None and not replace:  # merge what another writer of this run recorded
            other = repo.get_commit(parent).metadata
            self._outputs = _union(other.get("outputs", []), self._outputs)
            self._inputs = _union(other.get("inputs", []), self._inputs)
        record = self._record()
        if extra_output is not None and extra_output not in record["outputs"]:
            record["outputs"].append(extra_output)
        commit = repo.commit(tree, parents=[parent] if parent else [], message=f"run {self.name}", metadata=record)
        return commit, parent

    # -- the user API -----------------------------------------------------------

    def _check_active(self) -> None:
        if not self._active:
            raise NoActiveRunError(f"run {self.name!r} is finished (or was read back); call trackio.init() to start a new one")

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Record a dict of metrics at ``step`` (default: the next step)."""
        self._check_active()
        if not isinstance(metrics, dict):
            raise TypeError(f"trackio.log expects a dict of metrics, got {type(metrics).__name__}")
        if step is None:
            step = self._next_step
        self._next_step = max(self._next_step, step + 1)
        assert self._metrics is not None
        self._metrics.append({"step": step, "time": time.time(), "metrics": storable(metrics)})

    def alert(self, title: str, text: str | None = None, level: AlertLevel | str = AlertLevel.WARN, webhook_url: str | None = None) -> None:
        """Record an alert on this run and print it to stderr (as trackio does).

        Alerts are stored in the run's record (they travel with push/fetch);
        ``webhook_url`` is accepted for compatibility and not called: logging
        here is offline first and never makes network calls on its own.
        """
        self._check_active()
        if not isinstance(title, str) or not title:
            raise ValueError(f"trackio.alert needs a non-empty title, got {title!r}")
        try:
            lvl = AlertLevel(level)
        except ValueError:
            raise ValueError(f"alert level must be one of {[m.value for m in AlertLevel]}, got {level!r}") from None
        step = self._next_step - 1 if self._next_step else None
        self._alerts.append({"title": title, "text": text, "level": lvl.value, "step": step, "time": time.time()})
        print(f"[trackio {lvl.value.upper()}] {title}" + (f": {text}" if text else ""), file=sys.stderr)
        self._save()

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """Alerts fired on this run: ``{"title", "text", "level", "step", "time"}``."""
        return [dict(a) for a in self._alerts]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """Every logged metrics row: ``{"step", "time", "metrics"}``."""
        if self._metrics is None:
            self._metrics = []
            if self._metrics_id:
                data = (self._store or get_repo()).read_file(self._metrics_id, METRICS_FILE)
                self._metrics = list(msgpack.unpackb(data, raw=False))
        return list(self._metrics)

    def finish(self) -> None:
        """End the run: its record and metrics are stored."""
        self._end("finished")

    def _end(self, status: str) -> None:
        global _current
        if not self._active:
            return
        self._active = False
        self.status = status
        self.finished_at = time.time()
        self._save()
        if _current is self:
            _current = None
        from . import remote_sync as sync

        sync.on_run_finished(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._end("failed" if exc_type is not None else "finished")

    def log_artifact(
        self,
        artifact_or_path: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: list[str] | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Artifact:
        """Log an Artifact (or a file/directory path) as an output of this run.

        ``progress(n_bytes)`` is called as the files are read and stored.
        The returned artifact's ``is_new`` is False when identical content
        was already a version (that version is returned; nothing is added).
        """
        self._check_active()
        if isinstance(artifact_or_path, Artifact):
            artifact = artifact_or_path
            if name is not None or type is not None:
                raise InvalidNameError("name/type can only be passed when logging a path; set them on the Artifact instead")
            if artifact.is_frozen:
                raise ArtifactFrozenError(f"Artifact {artifact.qualified_name} has already been logged or fetched; construct a new Artifact to log again")
        else:
            path = Path(artifact_or_path)
            base = path.name or path.resolve().name  # the name as given ("." -> the directory's name)
            default = "run-" + self.id + "-" + "".join(c if names.NAME_RE.fullmatch(c) else "-" for c in base)
            artifact = Artifact(name if name is not None else default, type if type is not None else "unspecified")
            if path.is_dir():
                artifact.add_dir(path)
            else:
                artifact.add_file(path)
        user_aliases = names.validate_aliases(aliases)
        if not artifact._has_sources:
            raise InvalidNameError(f"Artifact {artifact.name!r} has no files; call add_file/add_dir/add_reference first")
        try:
            storable_meta = canonical(artifact.metadata)
        except TypeError as exc:
            raise ValueError(f"Artifact {artifact.name!r} metadata cannot be stored: {exc}") from None
        repo = get_repo()
        registry = ArtifactRegistry(repo)
        record: list[tuple[ObjectId, ObjectId | None, str]] = []

        def prepare_record(commit_id: str) -> None:
            # The run's record naming the new version is committed before any
            # ref moves, so the version and the record land in one pack.
            record[:] = [(*self._record_commit(repo, extra_output=commit_id), commit_id)]

        built: dict[bytes, list[Any]] = {}  # the trees just encoded: the manifest walk need not read them back
        # The collector stays paused until the rows of a large tree are freed
        # (built.clear()): resumed in between, its first passes re-scanned
        # them all (~0.1 s per 100k files) to find no cycle.
        with no_cyclic_gc(), repo.batch():
            tree_id = artifact._build_tree(repo, progress, built)
            # A tree some version already has has its manifest digest: the
            # manifest of an unchanged re-log is not walked (it is read on use).
            known = registry.version_with_tree(self.project, artifact.name, tree_id)
            # Only the digest and size are needed now: the manifest itself is read on use.
            digest, size = (known.digest, known.size) if known is not None else manifest_summary(repo, tree_id, built)
            info, created = registry.log_version(
                before_refs=prepare_record,
                project=self.project,
                name=artifact.name,
                type=artifact.type,
                description=artifact.description,
                metadata=storable_meta,
                tree_id=tree_id,
                digest=digest,
                size=size,
                aliases=user_aliases,
                run_id=self.id,
                run_project=self.project,
            )
            built.clear()
        artifact._hydrate(info, registry.aliases_of(info))
        artifact._manifest = None
        artifact._is_new = created
        if info.commit_id not in self._outputs:
            self._outputs.append(info.commit_id)
            published = False
            if record and record[0][2] == info.commit_id:
                commit, parent, _ = record[0]
                try:
                    repo.refs.set(names.run_ref(self.project, self.id), commit, expect=parent, message=self.status)
                    published = True
                except RefConflict:
                    pass  # another writer of this run moved it: merge and save again
            if not published:
                self._save()
        from . import remote_sync as sync

        sync.on_logged(self, artifact)
        return artifact

    def use_artifact(self, artifact_or_name: Artifact | str, type: str | None = None) -> Artifact:
        """Resolve ``name``, ``name:vN``, ``name:alias`` or ``project/name:alias``; record it as an input.

        A registry location, ``registry-<registry>/<collection>[:vN|:alias]``,
        returns the linked version; the run records the source version as its input.
        """
        self._check_active()
        spec = artifact_or_name.qualified_name if isinstance(artifact_or_name, Artifact) else artifact_or_name
        from . import registry as model_registry
        from . import remote_sync as sync

        if model_registry.is_location(spec):
            linked = model_registry.resolve_location(spec, self.remote_spec)
            if type is not None and linked.type != type:
                raise ArtifactTypeError(f"Artifact {spec!r} has type {linked.type!r}, not {type!r}")
            source_id = linked._frozen_info().commit_id
            if source_id not in self._inputs:
                self._inputs.append(source_id)
                self._save()
            return linked
        project, name, selector = names.parse_spec(spec, self.project)
        info, source = sync.resolve(project, name, selector, self.remote_spec)
        if type is not None and info.type != type:
            raise ArtifactTypeError(f"Artifact {spec!r} has type {info.type!r}, not {type!r}")
        if info.commit_id not in self._inputs:
            self._inputs.append(info.commit_id)
            self._save()
        return Artifact._from_version(info, source)

    def link_artifact(self, artifact: Artifact, target_path: str, aliases: list[str] | None = None, bucket_id: str | None = None) -> Artifact:
        """Link an artifact version into ``"registry-<registry>/<collection>"`` (no bytes copied).

        The link gets the collection's next version (``v0``, ``v1``, ...);
        linking a version already in the collection returns that link and
        still moves ``aliases`` (``latest`` is automatic; passing it is a
        no-op). An artifact never logged is logged to this run first.
        Returns the linked artifact. The registry syncs with the run's remote;
        ``bucket_id`` (trackio 0.43) names a Hugging Face bucket remote instead.
        """
        if not isinstance(artifact, Artifact):
            raise TypeError(
                f"link_artifact expects an Artifact, got {type(artifact).__name__}; log one with log_artifact "
                "or fetch a version with use_artifact('name:v3') and link the result"
            )
        from . import registry as model_registry

        model_registry.parse_target(target_path)
        if not artifact.is_frozen:
            artifact = self.log_artifact(artifact)
        remote = model_registry.bucket_remote(bucket_id, self.remote_spec)
        return artifact._link_into(target_path, aliases, remote=remote, run_id=self.id, run_name=self.name)

    def logged_artifacts(self) -> list[Artifact]:
        """Artifact versions this run logged, in order."""
        return _artifacts(self._outputs, self._store)

    def used_artifacts(self) -> list[Artifact]:
        """Artifact versions this run used, in order."""
        return _artifacts(self._inputs, self._store)

    def __repr__(self) -> str:
        return f"Run(project={self.project!r}, name={self.name!r}, id={self.id!r}, status={self.status!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and (other.project, other.id) == (self.project, self.id)

    def __hash__(self) -> int:
        return hash((self.project, self.id))


def _union(a: list[str], b: list[str]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))


def _artifacts(commit_ids: list[str], home: Repository | None = None) -> list[Artifact]:
    """The versions ``commit_ids`` name, read from the store the run was read
    from (``home``), else the local store, else the active run's remote."""
    from .remote_sync import remote_repo

    out = []
    local = get_repo()
    for c in commit_ids:
        store = home if home is not None and home.odb.has(c) else local
        if not store.odb.has(c) and _current is not None and _current.remote_spec is not None:
            store = remote_repo(_current.remote_spec)
        out.append(Artifact._from_version(ArtifactRegistry(store).info(ObjectId(c)), store, lazy_aliases=True))
    return out


def list_run_refs(project: str) -> list[str]:
    prefix = names.project_prefix(project) + "/runs/"
    return get_repo().refs.names(prefix)


def _record_of(ref: str, repo: Repository) -> tuple[dict[str, Any], str] | None:
    try:
        commit_id = repo.refs.get(ref)
    except RefNotFound:
        return None
    c = repo.get_commit(commit_id)
    if c.metadata.get("kind") != KIND_RUN:
        return None
    record = dict(c.metadata)
    if any(e.name == METRICS_FILE for e in repo.get_tree(c.tree).entries):
        record["_metrics_id"] = commit_id
    return record, commit_id


def load_run(project: str, run_id: str, repo: Repository | None = None) -> Run | None:
    repo = repo or get_repo()
    hit = _record_of(names.run_ref(project, run_id), repo)
    if hit is None:
        return None
    return Run(hit[0]["project"], _record=hit[0], _store=repo)


def iter_runs(project: str | None = None, stores: list[Repository] | None = None) -> Iterator[Run]:
    """Stored runs (of one project, or all), oldest first; the first store wins on duplicates."""
    prefix = names.project_prefix(project) + "/runs/" if project is not None else names.ROOT + "/"
    runs: dict[tuple[str, str], Run] = {}
    for repo in stores or [get_repo()]:
        for ref in repo.refs.names(prefix):
            if "/runs/" not in ref:
                continue
            hit = _record_of(ref, repo)
            if hit is not None:
                run = Run(hit[0]["project"], _record=hit[0], _store=repo)
                runs.setdefault((run.project, run.id), run)
    yield from sorted(runs.values(), key=lambda r: (r.started_at, r.id))


def runs_using(commit_id: str, stores: list[Repository] | None = None) -> list[Run]:
    return [r for r in iter_runs(None, stores) if commit_id in r._inputs]


def remap_outputs(project: str, mapping: dict[str, str], repo: Repository, drop: set[str] | None = None) -> None:
    """After versions were re-committed (re-base, deletion), point run
    records at the new commits; ``drop`` removes deleted versions."""
    drop = drop or set()
    if not mapping and not drop:
        return

    def fix(ids: list[str]) -> list[str]:
        return [mapping.get(i, i) for i in ids if i not in drop]

    for run in iter_runs(None, [repo]):
        if any(i in mapping or i in drop for i in (*run._outputs, *run._inputs)):
            run._outputs, run._inputs = fix(run._outputs), fix(run._inputs)
            run._save(replace=True, repo=repo)
            live = _current
            if live is not None and live.id == run.id:
                live._outputs, live._inputs = fix(live._outputs), fix(live._inputs)


# -- the module-level current run ---------------------------------------------

_current: Run | None = None


def current_run() -> Run | None:
    return _current


def require_run(what: str) -> Run:
    if _current is None or not _current._active:
        raise NoActiveRunError(f"{what} needs an active run: call trackio.init(project=...) first")
    return _current


RESUME_MODES = ("never", "allow", "must")


def start_run(
    project: str,
    name: str | None,
    config: dict[str, Any] | None,
    *,
    resume: str = "never",
    dashboard_options: dict[str, Any] | None = None,
    **options: Any,
) -> Run:
    """Start (or, with ``resume``, continue) a run and make it the active one."""
    global _current
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be one of: 'must', 'allow', or 'never', got {resume!r}")
    names.validate_project(project)
    if resume == "must" and name is None:
        raise ValueError("resume='must' needs the name of the run to continue: pass name=...")
    config = dict(config or {})
    if dashboard_options:
        recorded = config.get("trackio")
        config["trackio"] = {**(recorded if isinstance(recorded, dict) else {}), **_recordable(dashboard_options)}
    spec = _remote_spec_of(options)
    if _current is not None and _current._active:
        warnings.warn(f"trackio.init: finishing the active run {_current.name!r} before starting a new one", stacklevel=3)
        _current.finish()
    existing = _find_run(project, name, spec) if name is not None and resume != "never" else None
    if resume == "must" and existing is None:
        raise ValueError(f"Run {name!r} does not exist in project {project!r} (resume='must' continues an existing run)")
    _current = existing._resumed(config, spec) if existing is not None else Run(project, name, config, **options)
    return _current


def _remote_spec_of(options: dict[str, Any]) -> RemoteSpec | None:
    from .remote_sync import remote_spec

    keys = ("storage_options", "space_id", "dataset_id", "bucket_id", "server_url")
    return remote_spec(options.get("remote"), **{k: options.get(k) for k in keys})


def _find_run(project: str, name: str, spec: RemoteSpec | None) -> Run | None:
    """The latest-started run named ``name`` in ``project``, here or (fetched from) the remote."""

    def latest() -> Run | None:
        found = [r for r in iter_runs(project) if r.name == name]
        return found[-1] if found else None

    run = latest()
    if run is None and spec is not None:
        from .remote_sync import fetch_runs

        fetch_runs(spec, project)
        run = latest()
    if run is not None:
        run._store = None
    return run


def _recordable(options: dict[str, Any]) -> dict[str, Any]:
    """Dashboard-only init options as stored in ``config["trackio"]`` (a webhook URL is a secret: only its host is kept)."""
    out = dict(options)
    url = out.get("webhook_url")
    if isinstance(url, str):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        out["webhook_url"] = f"{parts.scheme}://{parts.hostname}/..." if parts.hostname else "<set>"
    return {k: storable(v) for k, v in out.items()}
