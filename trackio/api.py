"""``trackio.Api``: read and manage stored artifacts and runs from any process."""

from __future__ import annotations

from typing import Any

from . import names, sync
from .artifact import Artifact
from .errors import ArtifactNotFoundError, ArtifactTypeError, InvalidNameError
from .registry import ArtifactRegistry
from .run import Run, current_run, iter_runs, load_run
from .store import get_repo


class Api:
    """Query artifacts, versions, aliases and runs (lineage) without a run."""

    def __init__(self, project: str | None = None) -> None:
        run = current_run()
        self.default_project = project or (run.project if run is not None else None)

    def _registry(self) -> ArtifactRegistry:
        return ArtifactRegistry(get_repo())

    def _project(self, project: str | None) -> str:
        chosen = project or self.default_project
        if chosen is None:
            raise ArtifactNotFoundError("no project given and no active run: pass project=... or use 'project/name'")
        return names.validate_project(chosen)

    def artifact(self, spec: str, project: str | None = None, type: str | None = None) -> Artifact:
        """Resolve ``[project/]name[:vN|:alias]`` (default ``latest``)."""
        default = project or self.default_project
        p, name, selector = names.parse_spec(spec, default)
        info = sync.resolve(p, name, selector)
        if type is not None and info.type != type:
            raise ArtifactTypeError(f"Artifact {spec!r} has type {info.type!r}, not {type!r}")
        return Artifact._from_version(info)

    def artifact_versions(self, name: str, project: str | None = None) -> list[Artifact]:
        """Every version of an artifact, oldest first."""
        p = self._project(project)
        names.validate_name(name)
        versions = list(self._registry().chain(p, name))
        if not versions:
            raise ArtifactNotFoundError(f"Artifact {name!r} not found in project {p!r}")
        return [Artifact._from_version(v) for v in reversed(versions)]

    def artifacts(self, project: str | None = None, type: str | None = None) -> list[Artifact]:
        """The latest version of every artifact in a project (optionally of one type)."""
        p = self._project(project)
        registry = self._registry()
        out = []
        for name in registry.artifact_names(p):
            info = registry.latest(p, name)
            if info is not None and (type is None or info.type == type):
                out.append(Artifact._from_version(info))
        return out

    def runs(self, project: str | None = None) -> list[Run]:
        """Stored runs of a project, oldest first."""
        return list(iter_runs(self._project(project)))

    def run(self, run_id: str, project: str | None = None) -> Run:
        p = self._project(project)
        found = load_run(p, run_id)
        if found is None:
            matches = [r for r in iter_runs(p) if r.name == run_id]
            if len(matches) == 1:
                return matches[0]
            raise ArtifactNotFoundError(f"no run {run_id!r} in project {p!r}")
        return found

    def projects(self) -> list[str]:
        return self._registry().projects()

    def set_alias(self, spec: str, alias: str, project: str | None = None) -> Artifact:
        """Point ``alias`` at the version ``spec`` resolves to."""
        art = self.artifact(spec, project)
        names.validate_alias(alias)
        registry = self._registry()
        info = art._frozen_info()
        if alias == names.LATEST:
            raise InvalidNameError("the 'latest' alias is managed automatically")
        registry.set_aliases(info, [alias])
        return Artifact._from_version(info)

    def remove_alias(self, name: str, alias: str, project: str | None = None) -> None:
        self._registry().remove_alias(self._project(project), names.validate_name(name), alias)

    def alias_history(self, name: str, alias: str, project: str | None = None) -> list[dict[str, Any]]:
        """Every move of an alias: version, previous version, time, who."""
        return self._registry().alias_history(self._project(project), names.validate_name(name), alias)
