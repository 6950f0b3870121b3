"""Syncing the local store with a remote: any fsspec URL holding an objstore repository.

Offline first: everything is logged locally, then pushed in the background
(``Artifact.wait()`` blocks until a version is on the remote). If the remote
is unreachable the log still succeeds, with a warning, and the next push
(``trackio.sync()`` or the next ``log_artifact``) sends everything not yet
there, since a push always compares all of trackio's refs with the remote.

When two machines log the same artifact at once, the second push loses the
race on the remote's ``latest`` ref; its versions are then re-based on top
of the remote's (renumbered as the next free versions, identical content
reusing the remote's version), and pushed again, so both survive.

Reads (``use_artifact``, ``Api``) look at the remote directly: an objstore
repository on any filesystem is readable in place, its indexes and ref
entries cached locally. ``download()`` fetches only the objects it lacks.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from objstore import ABSENT, Repository
from objstore.errors import FormatError, NotARepository, ObjectNotFound, PushRejected, RefConflict, RefNotFound
from objstore.ids import ObjectId
from objstore.remote import Remote, TransferResult

from . import names
from . import registry as model_registry
from .errors import ArtifactNotFoundError, SyncError
from .store import get_repo, store_path
from .versions import ArtifactRegistry, VersionInfo

if TYPE_CHECKING:
    from .artifact import Artifact
    from .run import Run

_MAX_REBASES = 20


@dataclass(frozen=True)
class RemoteSpec:
    """A remote URL and the fsspec storage options to reach it."""

    url: str
    key: str = ""  # the options, canonically serialized: what makes two specs equal
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def of(cls, url: str, options: dict[str, Any] | None = None) -> RemoteSpec:
        options = dict(options or {})
        return cls(url, json.dumps(options, sort_keys=True, default=repr), options)


def remote_spec(
    remote: str | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    bucket_id: str | None = None,
    server_url: str | None = None,
) -> RemoteSpec | None:
    """Where to sync, first that is set: an explicit URL, a Hugging Face target,
    a self-hosted server, ``TRACKIO_REMOTE``, ``TRACKIO_SERVER_URL``."""
    url = remote or hf_url(space_id=space_id, dataset_id=dataset_id, bucket_id=bucket_id)
    if url:
        return RemoteSpec.of(url, storage_options)
    if server_url:
        return server_spec(server_url, storage_options)
    url = os.environ.get("TRACKIO_REMOTE")
    if url:
        return RemoteSpec.of(url, storage_options)
    env_server = os.environ.get("TRACKIO_SERVER_URL")
    if env_server:
        return server_spec(env_server, storage_options)
    return None


def server_spec(server_url: str, storage_options: dict[str, Any] | None = None) -> RemoteSpec:
    """The remote of a self-hosted team server (``objstore serve``) at ``server_url``.

    As in trackio, the URL may carry the write token as a ``write_token``
    query parameter (else ``TRACKIO_WRITE_TOKEN``); it is sent as the
    server's token and never kept in the URL.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not isinstance(server_url, str) or not server_url.startswith(("http://", "https://")):
        raise ValueError(f"server_url must be a full URL starting with http:// or https://, got: {server_url!r}")
    parts = urlsplit(server_url.strip())
    query = parse_qsl(parts.query, keep_blank_values=True)
    token = next((v for k, v in query if k == "write_token"), None) or os.environ.get("TRACKIO_WRITE_TOKEN")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), urlencode([(k, v) for k, v in query if k != "write_token"]), ""))
    options = dict(storage_options or {})
    if token and "token" not in options:
        options["token"] = token
    return RemoteSpec.of(url, options)


def hf_url(*, space_id: str | None = None, dataset_id: str | None = None, bucket_id: str | None = None) -> str | None:
    """The ``hf://`` URL a Space, Dataset or Bucket id maps to (needs huggingface_hub)."""
    if not (space_id or dataset_id or bucket_id):
        return None
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise SyncError("space_id / dataset_id / bucket_id need huggingface_hub: pip install huggingface_hub") from None
    if bucket_id:
        return f"hf://buckets/{bucket_id}/trackio-objstore"
    return f"hf://datasets/{dataset_id or f'{space_id}-dataset'}/trackio-objstore"


# -- reading from a remote ------------------------------------------------------

_views: dict[RemoteSpec, Repository] = {}
_views_lock = threading.Lock()


def remote_repo(spec: RemoteSpec) -> Repository:
    """The remote repository, opened in place (read access; cached per process)."""
    with _views_lock:
        repo = _views.get(spec)
        if repo is None:
            repo = _views[spec] = Repository.open(spec.url, storage_options=spec.options)
        return repo


def forget_views() -> None:
    with _views_lock:
        for repo in _views.values():
            repo.close()
        _views.clear()


def fetch_runs(spec: RemoteSpec, project: str) -> None:
    """Bring the run records of ``project`` from the remote (to continue one logged elsewhere)."""
    try:
        get_repo().fetch(spec.url, refs=[names.project_prefix(project) + "/runs/"], storage_options=spec.options)
    except (NotARepository, RefNotFound):
        pass  # nothing of this project pushed there yet
    except Exception as exc:
        _warn_offline(spec, exc, "looking for the run to resume")


def _reason(spec: RemoteSpec, exc: BaseException) -> str:
    """What went wrong with the remote, in a few words (what to do, where known)."""
    from objstore.cliutil import explain

    return explain(exc, spec.url) or f"{type(exc).__name__}: {str(exc).strip()[:200]}"


def _warn_offline(spec: RemoteSpec, exc: BaseException, what: str) -> None:
    warnings.warn(f"trackio: remote {spec.url} unreachable while {what} ({_reason(spec, exc)}); working locally", stacklevel=4)


def resolve(project: str, name: str, selector: str, spec: RemoteSpec | None = None) -> tuple[VersionInfo, Repository]:
    """Find a version by number or alias: on the remote first (it numbers
    versions for everyone), then locally (unpushed versions, or offline)."""
    if spec is not None:
        try:
            view = remote_repo(spec)
            return ArtifactRegistry(view).resolve(project, name, selector), view
        except (ArtifactNotFoundError, NotARepository):
            pass
        except FormatError:
            raise  # the remote answered with bytes that are not what they claim: not "offline"
        except Exception as exc:  # the network: fall back to what is here
            _warn_offline(spec, exc, f"resolving {project}/{name}:{selector}")
    local = get_repo()
    return ArtifactRegistry(local).resolve(project, name, selector), local


def ensure_local(info: VersionInfo, source: Repository, progress: Callable[[int], None] | None = None) -> None:
    """Make sure a version's files (its tree closure) are in the local store."""
    local = get_repo()
    if local.odb.has(info.tree_id):
        return
    if source is local:
        raise ObjectNotFound(info.tree_id, "files of this version are missing from the local store")
    remote = Remote(local, source.location, _options_for(source), progress=progress)
    try:
        remote.fetch_objects([info.tree_id])
    finally:
        remote.close()


def _options_for(repo: Repository) -> dict[str, Any]:
    for spec, view in _views.items():
        if view is repo:
            return spec.options
    return {}


# -- pushing ----------------------------------------------------------------------


def push(spec: RemoteSpec, local: Repository | None = None, progress: Callable[[int], None] | None = None) -> TransferResult:
    """Push every trackio ref, re-basing artifact versions that lost a race.

    Version numbers are claimed first: the ``versions/vN`` refs are pushed
    (each is created only if absent), and an artifact that lost a number is
    re-based and pushed again. Only then do ``latest``, aliases and run
    records move, so the remote's ``latest`` always ends on the highest
    claimed version.
    """
    local = local or get_repo()
    for _ in range(_MAX_REBASES):
        refs = _trackio_refs(local)
        if not refs:
            return TransferResult()
        claims = [r for r in refs if _kind(r)[2] == "versions"]
        claimed = TransferResult()
        if claims:
            try:
                claimed = local.push(spec.url, refs=claims, create=True, storage_options=spec.options, progress=progress)
            except PushRejected as rejected:
                _rebase_all(local, spec, rejected)
                continue
        try:
            return _combined(claimed, local.push(spec.url, refs=refs, create=True, storage_options=spec.options, progress=progress))
        except PushRejected as rejected:
            forced: list[str] = []
            behind = False
            registries = [r for r in (model_registry.registry_of_ref(ref) for ref in rejected.refs) if r is not None]
            for registry in registries:  # never forced: replay our events on top of theirs
                try:
                    pull_registry(spec, registry, local)
                except RefConflict:
                    pass  # an event was added here meanwhile: re-base again on the next round
            if registries:
                continue
            for ref in rejected.refs:
                project, name, kind, leaf = _kind(ref)
                if kind == "aliases" and leaf == names.LATEST:
                    if _ahead_of_remote(local, spec, project, name):
                        forced.append(ref)
                    else:
                        behind = True
                elif kind == "versions":
                    behind = True
                else:
                    forced.append(ref)  # a moving alias or a run record: the latest move wins, history keeps both
            if behind:
                _rebase_all(local, spec, rejected)
                continue
            # A server moves the refs of one push all together or not at all:
            # the refs that were not in the way go first, then the forced ones.
            moved: dict[str, tuple[str | None, str]] = {}
            if isinstance(rejected.result, TransferResult):
                moved.update(rejected.result.refs_updated)
            rest = [r for r in refs if r not in rejected.refs and r not in moved]
            if rest:
                try:
                    moved.update(local.push(spec.url, refs=rest, storage_options=spec.options, progress=progress).refs_updated)
                except PushRejected:
                    continue  # the remote moved again meanwhile: look again
            result = local.push(spec.url, refs=forced, force=True, storage_options=spec.options, progress=progress)
            result.refs_updated.update(moved)
            return result
    raise SyncError(f"could not push to {spec.url}: the remote kept moving after {_MAX_REBASES} re-bases")


def _combined(first: TransferResult, then: TransferResult) -> TransferResult:
    """One result for two pushes in a row (what a caller sees as one push)."""
    then.objects += first.objects
    then.bytes += first.bytes
    then.packs += first.packs
    then.requests += first.requests
    then.refs_updated = {**first.refs_updated, **then.refs_updated}
    then.refs_unchanged = [r for r in then.refs_unchanged if r not in first.refs_updated]
    return then


def pull_registry(spec: RemoteSpec, registry: str, local: Repository | None = None) -> None:
    """Bring the remote's events of one registry here, our unpushed ones re-based on top."""
    local = local or get_repo()
    try:
        view = remote_repo(spec)
    except NotARepository:
        return  # nothing pushed there yet: the push creates it
    theirs = model_registry.head(view, registry)
    if theirs is None:
        return

    def fetch_head(commit_id: str) -> None:
        if local.odb.has(commit_id):
            return
        remote = Remote(local, spec.url, spec.options)
        try:
            remote.fetch_objects([ObjectId(commit_id)], depth=1)
        finally:
            remote.close()

    if model_registry.head(local, registry) is None:
        fetch_head(theirs)
        local.refs.set(model_registry.registry_ref(registry), theirs, expect=ABSENT, message=f"fetch from {spec.url}")
        return
    model_registry.rebase(local, view, registry, fetch_head)


def _kind(ref: str) -> tuple[str, str, str, str]:
    """(project, artifact name, "aliases" | "versions" | "", leaf) of a trackio ref."""
    parts = ref.split("/")
    if len(parts) >= 6 and parts[2] == "artifacts" and parts[-2] in ("aliases", "versions"):
        return names.unescape_component(parts[1]), "/".join(parts[3:-2]), parts[-2], parts[-1]
    return "", "", "", parts[-1]


def _rebase_all(local: Repository, spec: RemoteSpec, rejected: PushRejected) -> None:
    done = set()
    for ref in rejected.refs:
        project, name, kind, _ = _kind(ref)
        if kind and (project, name) not in done:
            done.add((project, name))
            try:
                _rebase(local, spec, project, name)
            except RefConflict:
                pass  # a version was logged here meanwhile: re-base again on the next round


def _remote_head(view: Repository, project: str, name: str) -> VersionInfo | None:
    """The remote's highest claimed version (its ``latest`` may lag behind a lost race)."""
    registry = ArtifactRegistry(view)
    prefix = names.version_ref(project, name, 0)[: -len("v0")]
    numbered = [(int(ref[len(prefix) + 1 :]), target) for ref, target in view.refs.list(prefix).items() if names.VERSION_RE.fullmatch(ref[len(prefix) :])]
    if numbered:
        return registry.info(max(numbered)[1])
    return registry.latest(project, name)


def _ahead_of_remote(local: Repository, spec: RemoteSpec, project: str, name: str) -> bool:
    """Does our ``latest`` hold (or descend from) the remote's highest version?"""
    head = _remote_head(remote_repo(spec), project, name)
    mine = ArtifactRegistry(local).latest(project, name)
    if head is None or mine is None:
        return mine is not None
    return any(v.commit_id == head.commit_id for v in ArtifactRegistry(local).chain(project, name))


def _trackio_refs(local: Repository) -> list[str]:
    return list(local.refs.list(names.ROOT + "/"))


def _rebase(local: Repository, spec: RemoteSpec, project: str, name: str) -> None:
    """Put this machine's unpushed versions of an artifact on top of the remote's."""
    view = remote_repo(spec)
    remote_registry = ArtifactRegistry(view)
    remote_head = _remote_head(view, project, name)
    if remote_head is None:
        return
    remote_chain = list(remote_registry.chain_from(remote_head))
    remote_ids = {v.commit_id for v in remote_chain}
    remote_by_digest = {v.digest: v for v in remote_chain}
    # The remote head's commit (and files) must be local to build on it.
    remote = Remote(local, spec.url, spec.options)
    try:
        remote.fetch_objects([remote_head.commit_id], depth=1)
    finally:
        remote.close()
    registry = ArtifactRegistry(local)
    local_head = registry.latest(project, name)
    if local_head is None:
        return
    mine: list[VersionInfo] = []
    for v in registry.chain(project, name):
        if v.commit_id in remote_ids:
            break
        mine.append(v)
    mapping: dict[str, VersionInfo] = {}
    base = remote_head
    for v in reversed(mine):
        same = remote_by_digest.get(v.digest)
        if same is not None:
            mapping[v.commit_id] = same
            continue
        c = local.get_commit(v.commit_id)
        meta = dict(c.metadata)
        meta["version"] = base.version + 1
        new_id = local.commit(v.tree_id, parents=[base.commit_id], message=f"{name}:v{base.version + 1}", metadata=meta, author=c.author, timestamp=c.time)
        base = registry.info(new_id)
        mapping[v.commit_id] = base
    if base.commit_id != local_head.commit_id:
        local.refs.set(names.alias_ref(project, name, names.LATEST), base.commit_id, expect=local_head.commit_id, message="re-base on remote")
    for v in remote_chain:
        ref = names.version_ref(project, name, v.version)
        if local.odb.has(v.commit_id):
            local.refs.set(ref, v.commit_id, message="re-base on remote")
        elif local.refs.exists(ref):
            local.refs.delete(ref, message="re-base: this number is the remote's")
    for old, new in mapping.items():
        local.refs.set(names.version_ref(project, name, new.version), new.commit_id, message="re-base on remote")
        for alias, target in local.refs.list(names.alias_ref(project, name, "")).items():
            if target == old and not alias.endswith("/" + names.LATEST):
                local.refs.set(alias, new.commit_id, message="re-base on remote")
    from .run import remap_outputs

    remap_outputs(project, {k: v.commit_id for k, v in mapping.items()}, local)
    _renumbered.update(mapping)


_renumbered: dict[str, VersionInfo] = {}


# -- the background worker ----------------------------------------------------------


@dataclass
class _Job:
    spec: RemoteSpec
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    artifacts: list[Artifact] = field(default_factory=list)


class _Worker:
    def __init__(self) -> None:
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="trackio-sync", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # The worker has its own handle on the store, as a second process
        # would: its writes never mix with the main thread's open pack.
        repos: dict[str, Repository] = {}
        while True:
            job = self.jobs.get()
            try:
                path = store_path()
                if path not in repos:
                    get_repo()  # make sure the store exists
                    repos[path] = Repository.open(path)
                push(job.spec, repos[path])
                for art in job.artifacts:
                    _apply_renumbering(art)
            except BaseException as exc:
                job.error = exc
                _warn_queued(job.spec, exc)
            finally:
                job.done.set()
                self.jobs.task_done()


_worker: _Worker | None = None
_worker_lock = threading.Lock()
_warned: set[str] = set()


def _warn_queued(spec: RemoteSpec, exc: BaseException) -> None:
    if spec.url in _warned:
        return
    _warned.add(spec.url)
    warnings.warn(
        f"trackio: could not push to {spec.url} ({_reason(spec, exc)}); everything stays logged locally and is sent by "
        "trackio.sync() or the next successful push",
        stacklevel=2,
    )


def _submit(spec: RemoteSpec, artifact: Artifact | None = None) -> _Job:
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.thread.is_alive():
            _worker = _Worker()
        job = _Job(spec, artifacts=[artifact] if artifact is not None else [])
        _worker.jobs.put(job)
        return job


def _apply_renumbering(art: Artifact) -> None:
    info = art._info
    if info is None or info.commit_id not in _renumbered:
        return
    new = _renumbered[info.commit_id]
    while new.commit_id in _renumbered and _renumbered[new.commit_id].commit_id != new.commit_id:
        new = _renumbered[new.commit_id]  # re-based more than once
    warnings.warn(
        f"trackio: {info.project}/{info.name}:v{info.version} was logged concurrently elsewhere; "
        f"it is v{new.version} on the remote",
        stacklevel=2,
    )
    art._hydrate(new, ArtifactRegistry(Repository.open(store_path())).aliases_of(new))


def on_logged(run: Run, artifact: Artifact) -> None:
    """After a local log: push in the background when the run has a remote."""
    if run.remote_spec is not None:
        artifact._sync_job = _submit(run.remote_spec, artifact)


def on_run_finished(run: Run) -> None:
    """Push the final record and wait for this run's pushes (warn, never raise, if offline)."""
    if run.remote_spec is not None:
        job = _submit(run.remote_spec)
        job.done.wait()


def wait_for(artifact: Artifact, timeout: float | None = None) -> None:
    """Block until a logged version is on the remote (locally stored: already done)."""
    job: _Job | None = getattr(artifact, "_sync_job", None)
    if job is None:
        return
    if not job.done.wait(timeout):
        raise SyncError(f"{artifact.qualified_name} is not on {job.spec.url} after {timeout} s")
    if job.error is not None:
        raise SyncError(f"{artifact.qualified_name} could not be pushed to {job.spec.url}: {job.error!r}") from job.error


def sync(spec: RemoteSpec, progress: Callable[[int], None] | None = None) -> TransferResult:
    """Push everything not yet on the remote (synchronously)."""
    result = push(spec, progress=progress)
    _warned.discard(spec.url)
    return result


__all__ = ["RemoteSpec", "ensure_local", "on_logged", "on_run_finished", "push", "remote_spec", "resolve", "sync", "wait_for"]
