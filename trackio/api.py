"""``trackio.Api``: read and manage stored artifacts and runs from any process."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from objstore import Repository
from objstore.errors import FormatError

from . import names
from . import registry as model_registry
from . import remote_sync as sync
from .artifact import Artifact
from .errors import ArtifactNotFoundError, ArtifactTypeError, InvalidNameError
from .registry import Registry
from .run import Run, current_run, iter_runs, load_run
from .store import get_repo
from .versions import ArtifactRegistry, DeletedVersion


class Api:
    """Query artifacts, versions, aliases and runs (lineage) without a run."""

    def __init__(self, project: str | None = None, remote: str | None = None, storage_options: dict[str, Any] | None = None) -> None:
        run = current_run()
        self.default_project = project or (run.project if run is not None else None)
        self.remote_spec = sync.remote_spec(remote, storage_options=storage_options)
        if self.remote_spec is None and run is not None:
            self.remote_spec = run.remote_spec

    def _store(self) -> Repository:
        """The remote when one is set and reachable, else the local store."""
        if self.remote_spec is not None:
            try:
                return sync.remote_repo(self.remote_spec)
            except FormatError:
                raise  # a remote that is damaged or lies is not one that is unreachable
            except Exception as exc:
                warnings.warn(f"trackio: remote {self.remote_spec.url} unreachable ({exc!r}); reading the local store", stacklevel=3)
        return get_repo()

    def _stores(self) -> list[Repository]:
        store = self._store()
        return [store] if store is get_repo() else [store, get_repo()]

    def _registry(self) -> ArtifactRegistry:
        return ArtifactRegistry(self._store())

    def _project(self, project: str | None) -> str:
        chosen = project or self.default_project
        if chosen is None:
            raise ArtifactNotFoundError("no project given and no active run: pass project=... or use 'project/name'")
        return names.validate_project(chosen)

    def artifact(self, spec: str, project: str | None = None, type: str | None = None) -> Artifact:
        """Resolve ``[project/]name[:vN|:alias]`` (default ``latest``), or a registry
        location ``registry-<registry>/<collection>[:vN|:alias]`` (the linked version)."""
        if model_registry.is_location(spec):
            linked = model_registry.resolve_location(spec, self.remote_spec)
            if type is not None and linked.type != type:
                raise ArtifactTypeError(f"Artifact {spec!r} has type {linked.type!r}, not {type!r}")
            return linked
        default = project or self.default_project
        p, name, selector = names.parse_spec(spec, default)
        info, source = sync.resolve(p, name, selector, self.remote_spec)
        if type is not None and info.type != type:
            raise ArtifactTypeError(f"Artifact {spec!r} has type {info.type!r}, not {type!r}")
        return Artifact._from_version(info, source)

    def artifact_versions(self, name: str, project: str | None = None) -> list[Artifact]:
        """Every version of an artifact, oldest first."""
        p = self._project(project)
        names.validate_name(name)
        for store in self._stores():
            registry = ArtifactRegistry(store)
            versions = list(registry.chain(p, name))
            if versions:
                aliases = registry.aliases_by_version(p, name)  # one listing, not one per version
                return [Artifact._from_version(v, store, aliases.get(v.commit_id, ())) for v in reversed(versions)]
        raise ArtifactRegistry(get_repo()).not_found(p, name)

    def artifacts(self, project: str | None = None, type: str | None = None) -> list[Artifact]:
        """The latest version of every artifact in a project (optionally of one type)."""
        p = self._project(project)
        out: dict[str, Artifact] = {}
        for store in self._stores():
            registry = ArtifactRegistry(store)
            for name in registry.artifact_names(p):
                info = registry.latest(p, name)
                if name not in out and info is not None and (type is None or info.type == type):
                    out[name] = Artifact._from_version(info, store)
        return [out[n] for n in sorted(out)]

    def runs(self, project: str | None = None) -> list[Run]:
        """Stored runs of a project, oldest first."""
        return list(iter_runs(self._project(project), self._stores()))

    def run(self, run_id: str, project: str | None = None) -> Run:
        p = self._project(project)
        found = next((r for r in (load_run(p, run_id, s) for s in self._stores()) if r is not None), None)
        if found is None:
            matches = [r for r in iter_runs(p, self._stores()) if r.name == run_id]
            if len(matches) == 1:
                return matches[0]
            raise ArtifactNotFoundError(f"no run {run_id!r} in project {p!r}")
        return found

    def projects(self) -> list[str]:
        """Projects with artifacts or runs (a registry's ``registry-<name>`` is not one)."""
        store = self._store()
        registries = {model_registry.registry_project(r) for r in model_registry.registry_names(store)}
        return [p for p in ArtifactRegistry(store).projects() if p not in registries]

    def set_alias(self, spec: str, alias: str, project: str | None = None) -> Artifact:
        """Point ``alias`` at the version ``spec`` resolves to."""
        art = self.artifact(spec, project)
        names.validate_alias(alias)
        if art._link is not None:  # a registry location: a promotion in its collection
            lk = art._link
            return Registry(lk.registry, self.remote_spec).promote(lk.collection, art._frozen_info().version, alias)
        registry = ArtifactRegistry(get_repo())
        info = art._frozen_info()
        if alias == names.LATEST:
            raise InvalidNameError("the 'latest' alias is managed automatically")
        sync.ensure_local(info, art._store())
        if not get_repo().odb.has(info.commit_id):
            raise ArtifactNotFoundError(f"{art.qualified_name} is on the remote only: use it or download it first")
        registry.set_aliases(info, [alias])
        return Artifact._from_version(info)

    def fsck(self, full: bool = True, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Verify the local store; name the artifact versions (and runs) each problem damages.

        Returns ``{"ok", "report", "damaged"}`` where ``report`` is objstore's
        FsckReport and ``damaged`` lists ``project/name:vN`` (or the ref) for
        every damaged ref.
        """
        repo = get_repo()
        report = repo.fsck(full=full, progress=progress)
        registry = ArtifactRegistry(repo)
        damaged: list[str] = []
        for ref in report.damaged_refs:
            parts = ref.split("/")
            if len(parts) >= 6 and parts[0] == names.ROOT and parts[2] == "artifacts":
                project, name, leaf = names.unescape_component(parts[1]), "/".join(parts[3:-2]), parts[-1]
                label = f"{project}/{name}:{leaf}"
                if parts[-2] == "aliases":
                    try:
                        label += f" (v{registry.resolve(project, name, leaf).version})"
                    except Exception:
                        pass
                damaged.append(label)
            elif model_registry.registry_of_ref(ref) is not None:
                damaged.append(f"registry {model_registry.registry_of_ref(ref)}")
            elif len(parts) >= 4 and parts[0] == names.ROOT and parts[2] == "runs":
                damaged.append(f"run {names.unescape_component(parts[1])}/{parts[3]}")
            else:
                damaged.append(ref)
        return {"ok": report.ok, "report": report, "damaged": damaged}

    def delete_version(self, spec: str, project: str | None = None) -> DeletedVersion:
        """Delete one version from the local store; ``gc`` then frees the bytes only it held.

        Other versions keep their numbers and content; aliases on the deleted
        version are removed (the result names them). Every alias's history
        keeps its entries and gains one saying the version was deleted, by
        whom and when. (A remote keeps its copy until deleted there.)
        """
        p, name, selector = names.parse_spec(spec, project or self.default_project)
        registry = ArtifactRegistry(get_repo())
        info = registry.resolve(p, name, selector)
        links = model_registry.linking(get_repo(), info.project, info.name, info.version)
        if links:
            raise InvalidNameError(
                f"{info.project}/{info.name}:v{info.version} is linked in the registry as {', '.join(links)}: unlink it there first"
            )
        return registry.delete_version(info)

    def remove_alias(self, name: str, alias: str, project: str | None = None) -> None:
        ArtifactRegistry(get_repo()).remove_alias(self._project(project), names.validate_name(name), alias)

    def alias_history(self, name: str, alias: str, project: str | None = None) -> list[dict[str, Any]]:
        """Every move of an alias: version, previous version, time, who."""
        return self._registry().alias_history(self._project(project), names.validate_name(name), alias)

    # -- the model registry ---------------------------------------------------

    def create_registry(self, name: str, description: str | None = None, bucket_id: str | None = None) -> Registry:
        """Create a registry and return its handle; ValueError if ``name`` exists already.

        Registries are never created implicitly: linking into one that does not
        exist raises. The registry lives in the store and syncs with this Api's
        remote; ``bucket_id`` (trackio 0.43) names a Hugging Face bucket remote instead.
        """
        model_registry.validate_registry_name(name)
        remote = model_registry.bucket_remote(bucket_id, self.remote_spec)
        model_registry.write(name, remote, lambda state: [("create", {"registry": name, "description": description}, None)])
        return Registry(name, remote)

    def registry(self, name: str, bucket_id: str | None = None) -> Registry:
        """The handle of an existing registry; ValueError if there is none by that name."""
        handle = Registry(name, model_registry.bucket_remote(bucket_id, self.remote_spec))
        handle._read()
        return handle

    def registries(self) -> list[Registry]:
        """Every registry here (and on the remote, when one is set), by name."""
        found = set(model_registry.registry_names(get_repo()))
        if self.remote_spec is not None:
            try:
                found.update(model_registry.registry_names(sync.remote_repo(self.remote_spec)))
            except Exception as exc:
                warnings.warn(f"trackio: remote {self.remote_spec.url} unreachable ({exc!r}); listing local registries", stacklevel=2)
        return [Registry(n, self.remote_spec) for n in sorted(found)]
