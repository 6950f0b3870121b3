"""The trackio dashboard: projects, artifacts, versions, files, diffs, lineage, runs, registry, storage.

Every page reads through ``trackio.Api`` and ``objstore.Repository`` (the
APIs a user has) and answers at ``/x`` (HTML) and ``/api/x`` (JSON). The
generic repository browser (:mod:`objstore.web`) is mounted at ``/store``.
"""

from __future__ import annotations

import dataclasses
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

import objstore.web.app as web
from objstore import Repository
from objstore.errors import ObjstoreError
from objstore.web.render import HTTPProblem, NotFound, make_env, page_routes, problem, safe_path, with_problems

from .. import names
from ..api import Api
from ..artifact import Artifact
from ..errors import ArtifactNotFoundError, InvalidNameError, TrackioError
from ..run import Run
from . import lineage as lin

Page = tuple[str, dict[str, Any]]
q = urllib.parse.quote


def translate(exc: BaseException) -> HTTPProblem | None:
    if isinstance(exc, ArtifactNotFoundError):
        return NotFound(str(exc))
    if isinstance(exc, InvalidNameError):
        return HTTPProblem(400, str(exc))
    if isinstance(exc, TrackioError):
        return HTTPProblem(500, str(exc))
    return web.translate(exc)


def store_of(art: Artifact) -> Repository:
    """The repository a version was read from (the remote's, or the local store)."""
    return art._store()


def version_url(project: str, name: str, version: str) -> str:
    return f"/p/{q(project, safe='')}/a/{q(name)}/{q(version)}"


def run_url(project: str, run_id: str) -> str:
    return f"/p/{q(project, safe='')}/runs/{q(run_id, safe='')}"


def artifact_row(a: Artifact) -> dict[str, Any]:
    return {
        "name": a.name,
        "project": a.project,
        "type": a.type,
        "version": a.version,
        "aliases": list(a.aliases),
        "size": a.size,
        "digest": a.digest,
        "description": a.description,
        "metadata": a.metadata,
        "created_at": a.created_at,
        "id": a.id,
        "url": version_url(a.project or "", a.name, a.version or ""),
    }


def run_row(r: Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "project": r.project,
        "group": r.group,
        "status": r.status,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "inputs": len(r._inputs),
        "outputs": len(r._outputs),
        "url": run_url(r.project, r.id),
    }


def file_tree(manifest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest as rows of a tree: directories (with total sizes) before their files, depth for indent."""
    dirs: dict[str, int] = {}
    for e in manifest:
        parts = e["path"].split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            dirs[d] = dirs.get(d, 0) + max(e["size"], 0)
    rows = [{"path": d, "name": d.rsplit("/", 1)[-1], "depth": d.count("/"), "dir": True, "size": s, "ref": None} for d, s in dirs.items()]
    rows += [
        {"path": e["path"], "name": e["path"].rsplit("/", 1)[-1], "depth": e["path"].count("/"), "dir": False, "size": e["size"], "ref": e.get("ref")}
        for e in manifest
    ]
    def order(r: dict[str, Any]) -> list[tuple[int, str]]:  # a directory's rows right after it, directories first
        parts = str(r["path"]).split("/")
        return [(0 if (i < len(parts) - 1 or r["dir"]) else 1, p) for i, p in enumerate(parts)]

    rows.sort(key=order)
    return rows


class Dashboard:
    """Page handlers over one ``trackio.Api`` (the local store, or ``remote``)."""

    def __init__(self, project: str | None = None, remote: str | None = None, storage_options: dict[str, Any] | None = None) -> None:
        self.api = Api(project, remote=remote, storage_options=storage_options)
        self.home_project = project
        self.env = make_env(["trackio.dashboard"])
        self._growth: dict[str, dict[str, int]] = {}  # newest version id -> {version id: new stored bytes}
        self._lock = threading.Lock()

    @property
    def repo(self) -> Repository:
        return self.api._store()

    # -- helpers --------------------------------------------------------------

    def _project(self, request: Request) -> str:
        return names.validate_project(request.path_params["project"])

    def _name(self, request: Request) -> str:
        return names.validate_name(request.path_params["name"])

    def _version(self, request: Request, selector: str | None = None) -> Artifact:
        project, name = self._project(request), self._name(request)
        selector = selector if selector is not None else request.path_params["version"]
        if not names.VERSION_RE.fullmatch(selector):
            try:
                names.validate_name(selector, "Alias")
            except InvalidNameError:
                raise NotFound(f"Artifact '{project}/{name}' has no version or alias {selector!r}") from None
        return self.api.artifact(f"{name}:{selector}", project=project)

    def growth(self, versions: list[Artifact]) -> dict[str, int]:
        """Stored bytes each version added over the earlier ones (cached: versions never change)."""
        if not versions:
            return {}
        key = versions[-1].id or ""
        with self._lock:
            hit = self._growth.get(key)
        if hit is None:
            ids = [v.id or "" for v in versions]
            hit = dict(zip(ids, store_of(versions[-1]).added_bytes(ids)))
            with self._lock:
                if len(self._growth) > 256:
                    self._growth.clear()
                self._growth[key] = hit
        return hit

    def _runs_by_id(self, project: str) -> dict[str, Run]:
        return {r.id: r for r in self.api.runs(project)}

    # -- pages ------------------------------------------------------------------

    def projects(self, request: Request) -> Page:
        rows = []
        for p in self.api.projects():
            rows.append({"name": p, "artifacts": len(self.api.artifacts(p)), "runs": len(self.api.runs(p)), "url": f"/p/{q(p, safe='')}"})
        return "projects.html", {"title": "Projects", "projects": rows, "remote": self.api.remote_spec.url if self.api.remote_spec else None}

    def project(self, request: Request) -> Page:
        project = self._project(request)
        type_ = request.query_params.get("type") or None
        needle = (request.query_params.get("q") or "").lower()
        arts = self.api.artifacts(project)
        if not arts and project not in self.api.projects():
            raise NotFound(f"no project {project!r}")
        types = sorted({a.type for a in arts})
        rows = []
        for a in arts:
            if (type_ and a.type != type_) or (needle and needle not in a.name.lower()):
                continue
            row = artifact_row(a)
            store = store_of(a)
            row["versions"] = len(store.refs.list(names.artifact_prefix(project, a.name) + "/versions/"))
            aliases = self._all_aliases(store, project, a.name)
            row["all_aliases"] = aliases
            row["url"] = f"/p/{q(project, safe='')}/a/{q(a.name)}"
            rows.append(row)
        return "project.html", {"title": project, "project": project, "artifacts": rows, "types": types, "type": type_ or "", "q": needle}

    def _all_aliases(self, store: Repository, project: str, name: str) -> list[dict[str, Any]]:
        prefix = names.alias_ref(project, name, "")
        out = []
        for ref, target in store.refs.list(prefix).items():
            alias = ref[len(prefix) :]
            try:
                number = store.get_commit(target).metadata.get("version")
            except ObjstoreError:
                number = None
            out.append({"alias": alias, "version": f"v{number}"})
        out.sort(key=lambda a: (a["alias"] != names.LATEST, a["alias"]))
        return out

    def artifact(self, request: Request) -> Page:
        project, name = self._project(request), self._name(request)
        versions = self.api.artifact_versions(name, project)
        growth = self.growth(versions)
        runs = self._runs_by_id(project)
        rows = []
        for v in reversed(versions):
            info = v._frozen_info()
            row = artifact_row(v)
            row["new_bytes"] = growth.get(v.id or "", 0)
            run = runs.get(info.run_id or "") if info.run_project in (None, project) else None
            row["run"] = {"id": info.run_id, "name": run.name if run else info.run_id, "url": run_url(info.run_project or project, info.run_id)} if info.run_id else None
            rows.append(row)
        store = store_of(versions[-1])
        prefix = names.alias_ref(project, name, "")
        history = []
        for ref in store.refs.names(prefix):
            alias = ref[len(prefix) :]
            if alias == names.LATEST:
                continue  # moves with every logged version: the versions table is its history
            history += self.api.alias_history(name, alias, project)
        history.sort(key=lambda e: e["time"], reverse=True)
        latest = versions[-1]
        return "artifact.html", {
            "title": f"{project}/{name}",
            "project": project,
            "name": name,
            "type": latest.type,
            "versions": rows,
            "aliases": self._all_aliases(store, project, name),
            "alias_history": history,
            "total_size": sum(v.size or 0 for v in versions),
            "total_new": sum(growth.values()),
        }

    def version(self, request: Request) -> Page:
        art = self._version(request)
        project, name = art.project or "", art.name
        manifest = art.manifest or []
        producer = art.logged_by()
        consumers = art.used_by()
        store = store_of(art)
        numbers = sorted(int(r.rsplit("/v", 1)[1]) for r in store.refs.list(names.artifact_prefix(project, name) + "/versions/"))
        info = art._frozen_info()
        previous = max((n for n in numbers if n < info.version), default=None)
        return "version.html", {
            "title": f"{project}/{name}:{art.version}",
            "project": project,
            "name": name,
            "artifact": artifact_row(art),
            "selector": request.path_params["version"],
            "files": file_tree(manifest),
            "file_count": len(manifest),
            "references": [e for e in manifest if "ref" in e],
            "producer": run_row(producer) if producer else None,
            "consumers": [run_row(r) for r in consumers],
            "versions": [f"v{n}" for n in numbers],
            "previous": f"v{previous}" if previous is not None else None,
        }

    def file(self, request: Request) -> Page:
        art = self._version(request)
        data = web.file_preview(store_of(art), art.id or "", request.path_params["path"])
        base = version_url(art.project or "", art.name, art.version or "")
        return "file.html", {
            "title": f"{data['path']} · {art.qualified_name}",
            "artifact": artifact_row(art),
            "project": art.project,
            "name": art.name,
            "raw_url": f"{base}/raw/{q(data['path'])}",
            **data,
        }

    def diff(self, request: Request) -> Page:
        project, name = self._project(request), self._name(request)
        numbers = sorted(int(r.rsplit("/v", 1)[1]) for r in self.repo.refs.list(names.artifact_prefix(project, name) + "/versions/"))
        b_sel = request.query_params.get("b") or "latest"
        b = self._version(request, b_sel)
        default_a = max((n for n in numbers if n < (b._frozen_info().version)), default=b._frozen_info().version)
        a = self._version(request, request.query_params.get("a") or f"v{default_a}")
        store = store_of(b)
        data: dict[str, Any] = {
            "title": f"{project}/{name}: {a.version} → {b.version}",
            "project": project,
            "name": name,
            "a": artifact_row(a),
            "b": artifact_row(b),
            "versions": [f"v{n}" for n in numbers],
            "changes": web.changes(store, a.id, b.id),
        }
        path = request.query_params.get("path")
        if path:
            data["file"] = web.file_diff(store, a.id or "", b.id or "", safe_path(path))
        return "diff.html", data

    def runs(self, request: Request) -> Page:
        project = self._project(request)
        rows = [run_row(r) for r in reversed(self.api.runs(project))]
        return "runs.html", {"title": f"{project} · runs", "project": project, "runs": rows}

    def run(self, request: Request) -> Page:
        project = self._project(request)
        run_id = request.path_params["run"]
        r = self.api.run(run_id, project)
        metrics: dict[str, Any] = {}
        for row in r.metrics:
            for k, v in (row.get("metrics") or {}).items():
                metrics[k] = {"value": v, "step": row.get("step")}
        return "run.html", {
            "title": f"run {r.name}",
            "project": project,
            "run": {**run_row(r), "config": r.config, "alerts": r.alerts},
            "inputs": [artifact_row(a) for a in r.used_artifacts()],
            "outputs": [artifact_row(a) for a in r.logged_artifacts()],
            "metrics": metrics,
            "lineage_url": f"/p/{q(project, safe='')}/lineage?node={q('run:' + r.id)}",
        }

    # -- lineage ------------------------------------------------------------------

    def _full_graph(self) -> tuple[lin.Graph, dict[str, Artifact]]:
        g = lin.Graph()
        versions: dict[str, Artifact] = {}

        def version_node(a: Artifact) -> str:
            vid = a.id or ""
            if vid not in g.nodes:
                versions[vid] = a
                g.nodes[vid] = lin.Node(vid, "version", f"{a.name}:{a.version}", version_url(a.project or "", a.name, a.version or ""), f"{a.project} · {a.type}")
            return vid

        for p in self.api.projects():
            for r in self.api.runs(p):
                rid = "run:" + r.id
                g.nodes[rid] = lin.Node(rid, "run", r.name, run_url(r.project, r.id), f"{r.project} · {r.status}")
                for a in r.used_artifacts():
                    g.add_edge(version_node(a), rid)
                for a in r.logged_artifacts():
                    g.add_edge(rid, version_node(a))
        return g, versions

    def lineage(self, request: Request) -> Page:
        project = self._project(request)
        node = request.query_params.get("node", "")
        try:
            hops = max(1, min(int(request.query_params.get("hops", "2")), 10))
        except ValueError:
            raise HTTPProblem(400, f"hops must be a number, got {request.query_params.get('hops')!r}") from None
        full, _versions = self._full_graph()
        if node.startswith("run:"):
            run = self.api.run(node[4:], project)
            focus = "run:" + run.id
        else:
            if not node:
                raise NotFound("no lineage node given: pass ?node=<name>:<version> or ?node=run:<id>")
            spec, _, selector = node.partition(":")
            art = self.api.artifact(f"{names.validate_name(spec)}:{selector or 'latest'}", project=project)
            focus = art.id or ""
            if focus not in full.nodes:
                full.nodes[focus] = lin.Node(focus, "version", f"{art.name}:{art.version}", version_url(project, art.name, art.version or ""), project)
        g = lin.neighbourhood(full, focus, hops)
        graph = lin.as_json(g, focus)
        return "lineage.html", {
            "title": f"lineage of {full.nodes[focus].label}",
            "project": project,
            "node": node,
            "hops": hops,
            "focus_label": full.nodes[focus].label,
            **graph,
            "svg": str(lin.svg(g, focus)),
        }

    # -- storage and registry ---------------------------------------------------------

    def storage(self, request: Request) -> Page:
        repo = self.repo
        s = repo.stats()
        rows: list[dict[str, Any]] = []
        for p in self.api.projects():
            for a in self.api.artifacts(p):
                versions = self.api.artifact_versions(a.name, p)
                logical = sum(v.size or 0 for v in versions)
                stored = sum(self.growth(versions).values())
                rows.append({
                    "project": p,
                    "name": a.name,
                    "type": a.type,
                    "versions": len(versions),
                    "logical_bytes": logical,
                    "stored_bytes": stored,
                    "dedup_ratio": logical / stored if stored else None,
                    "url": f"/p/{q(p, safe='')}/a/{q(a.name)}",
                })
        rows.sort(key=lambda r: -r["stored_bytes"])
        return "storage.html", {
            "title": "Storage",
            "location": repo.location,
            "stats": {**dataclasses.asdict(s), "dedup_ratio": s.dedup_ratio},
            "artifacts": rows,
        }

    def registry(self, request: Request) -> Page:
        registries = getattr(self.api, "registries", None)
        if registries is None:
            return "registry.html", {"title": "Registry", "available": False, "registries": []}
        out = []
        for reg in registries():
            collections = []
            for c in reg.collections():
                item = dataclasses.asdict(c) if dataclasses.is_dataclass(c) and not isinstance(c, type) else dict(vars(c))
                for link in item.get("links") or []:
                    sv = str(link.get("source_version"))
                    link["source_version"] = sv if sv.startswith("v") else f"v{sv}"
                    link["url"] = version_url(str(link.get("source_project")), str(link.get("source_artifact")), link["source_version"])
                collections.append(item)
            out.append({"name": reg.name, "description": getattr(reg, "description", None), "collections": collections, "events": list(reg.events())})
        return "registry.html", {"title": "Registry", "available": True, "registries": out}

    # -- downloads --------------------------------------------------------------------

    def _download(self, fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        return with_problems(self.env, fn, translate)

    def raw(self, request: Request) -> Response:
        art = self._version(request)
        path = safe_path(request.path_params["path"])
        return web.file_response(store_of(art), art.id or "", path, inline=request.query_params.get("inline") == "1")

    def archive(self, request: Request) -> Response:
        art = self._version(request)
        info = art._frozen_info()
        return web.archive_response(store_of(art), art.id or "", request.path_params["fmt"], f"{art.name}_{art.version}", info.created_at)

    def routes(self) -> list[BaseRoute]:
        def pages(path: str, handler: Callable[[Request], Page]) -> list[BaseRoute]:
            return page_routes(self.env, path, handler, translate)

        home: list[BaseRoute]
        if self.home_project is not None:
            target = f"/p/{q(self.home_project, safe='')}"

            async def to_project(request: Request) -> Response:
                return RedirectResponse(str(request.scope.get("root_path", "")) + target)

            home = [Route("/", to_project), *pages("/projects", self.projects)]
        else:
            home = [*pages("/", self.projects), *pages("/projects", self.projects)]
        return [
            *home,
            *pages("/storage", self.storage),
            *pages("/registry", self.registry),
            *pages("/p/{project}", self.project),
            *pages("/p/{project}/runs", self.runs),
            *pages("/p/{project}/runs/{run}", self.run),
            *pages("/p/{project}/lineage", self.lineage),
            *pages("/p/{project}/diff/{name}", self.diff),
            *pages("/p/{project}/a/{name}", self.artifact),
            *pages("/p/{project}/a/{name}/{version}", self.version),
            *pages("/p/{project}/a/{name}/{version}/files/{path:path}", self.file),
            Route("/p/{project}/a/{name}/{version}/raw/{path:path}", self._download(self.raw)),
            Route("/p/{project}/a/{name}/{version}/archive.{fmt}", self._download(self.archive)),
        ]


def create_app(project: str | None = None, *, remote: str | None = None, storage_options: dict[str, Any] | None = None) -> Starlette:
    """The dashboard as an ASGI app over the machine's trackio store (or ``remote``).

    With ``project`` the home page opens that project. The generic
    repository browser of the same store is mounted at ``/store``.
    """
    dash = Dashboard(project, remote, storage_options)
    env = dash.env

    async def not_found(request: Request, exc: Exception) -> Response:
        return problem(env, request, NotFound(f"no page at {request.url.path!r}"), request.url.path.startswith("/api"))

    store_app = web.create_app(dash.repo)
    app = Starlette(
        routes=[*dash.routes(), web.static_mount(), Mount("/store", app=store_app)],
        exception_handlers={404: not_found},
    )
    app.state.dashboard = dash
    return app
