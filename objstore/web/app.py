"""The generic repository browser: refs, commits, trees, files, diffs, stats.

Every page answers at ``/x`` (HTML) and ``/api/x`` (JSON). Read-only: only
GET routes exist, and nothing here writes to the repository.
"""

from __future__ import annotations

import dataclasses
import posixpath
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ObjectNotFound, ObjstoreError, PathNotFound, RefNotFound, UnsafePath, WrongObjectType
from ..objects import Commit, TreeEntry
from ..repo import Repository
from . import archive, preview
from .render import SECURITY_HEADERS, HTTPProblem, NotFound, make_env, page_routes, problem, safe_path, with_problems

REFS_SHOWN = 1000


def translate(exc: BaseException) -> HTTPProblem | None:
    """objstore errors as the page a person should see."""
    if isinstance(exc, UnsafePath):
        return HTTPProblem(400, f"refused path: {exc}")
    if isinstance(exc, (PathNotFound, RefNotFound, ObjectNotFound, WrongObjectType)):
        return NotFound(str(exc))
    if isinstance(exc, ObjstoreError):
        return HTTPProblem(500, str(exc))
    return None


def entry_dict(path: str, e: TreeEntry) -> dict[str, Any]:
    return {
        "path": path,
        "name": e.name,
        "kind": e.kind,
        "size": e.size,
        "id": e.id,
        "target": e.target,
        "digest": e.digest,
    }


def commit_dict(oid: str, c: Commit) -> dict[str, Any]:
    return {
        "id": oid,
        "tree": c.tree,
        "parents": list(c.parents),
        "time": c.time,
        "author": c.author,
        "message": c.message,
        "metadata": c.metadata,
    }


def content_disposition(name: str, inline: bool = False) -> str:
    fallback = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in posixpath.basename(name)) or "download"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(posixpath.basename(name))}"


def file_response(repo: Repository, tree: str, path: str, inline: bool = False) -> Response:
    """One stored file, streamed (constant memory). Only images are ever served inline, sandboxed."""
    e = repo.entry(tree, path)
    if e.kind != "file":
        raise NotFound(f"{path!r} is a {e.kind}, not a stored file")
    mime = preview.image_type(path) if inline else None
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": content_disposition(path, inline=mime is not None),
        "Content-Length": str(e.size),
        "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'",
    }
    return StreamingResponse(archive.file_blocks(repo, tree, path), media_type=mime or "application/octet-stream", headers=headers)


def archive_response(repo: Repository, tree: str, fmt: str, filename: str, mtime: float | None = None, path: str = "") -> Response:
    """A whole tree (or the directory ``path`` of it) as a streamed .zip or .tar."""
    if fmt not in ("zip", "tar"):
        raise NotFound(f"no archive format {fmt!r}: use .zip or .tar")
    if path:
        e = repo.entry(tree, path)
        if e.kind != "dir":
            raise NotFound(f"{path!r} is not a directory")
    stream: Callable[..., Iterator[bytes]] = archive.stream_zip if fmt == "zip" else archive.stream_tar
    media = "application/zip" if fmt == "zip" else "application/x-tar"
    headers = {**SECURITY_HEADERS, "Content-Disposition": content_disposition(f"{filename}.{fmt}")}
    return StreamingResponse(stream(repo, tree, path, mtime), media_type=media, headers=headers)


def breadcrumbs(path: str) -> list[dict[str, str]]:
    parts = path.split("/") if path else []
    return [{"name": p, "path": "/".join(parts[: i + 1])} for i, p in enumerate(parts)]


def listing(repo: Repository, tree: str, path: str) -> dict[str, Any]:
    """A directory of a tree (entries sorted: directories first)."""
    path = safe_path(path)
    entries = repo.ls(tree, path)
    if path and len(entries) == 1 and entries[0].kind != "dir" and entries[0].name == posixpath.basename(path):
        e = repo.entry(tree, path)
        if e.kind != "dir":
            raise NotFound(f"{path!r} is a file, not a directory")
    rows = [entry_dict(f"{path}/{e.name}" if path else e.name, e) for e in entries]
    rows.sort(key=lambda r: (r["kind"] != "dir", r["name"]))
    return {"path": path, "crumbs": breadcrumbs(path), "entries": rows}


def file_preview(repo: Repository, tree: str, path: str) -> dict[str, Any]:
    """A file's entry and its preview (one ranged read)."""
    path = safe_path(path)
    if not path:
        raise NotFound("no file path given")
    e = repo.entry(tree, path)
    if e.kind == "dir":
        raise NotFound(f"{path!r} is a directory")
    data: dict[str, Any] = {"path": path, "crumbs": breadcrumbs(path), "entry": entry_dict(path, e)}
    if e.kind == "file":
        with repo.open_file(tree, path) as f:
            data["preview"] = preview.preview(f, path, e.size)
    else:
        data["preview"] = {"kind": e.kind}
    return data


def changes(repo: Repository, a: str | None, b: str | None) -> list[dict[str, Any]]:
    out = []
    for ch in repo.diff(a, b):
        out.append({
            "status": ch.status,
            "path": ch.path,
            "old_size": ch.old.size if ch.old else None,
            "new_size": ch.new.size if ch.new else None,
            "size_delta": ch.size_delta,
            "kind": (ch.new or ch.old).kind if (ch.new or ch.old) else "file",  # type: ignore[union-attr]
        })
    return out


def file_diff(repo: Repository, a: str, b: str, path: str) -> dict[str, Any]:
    """Side-by-side text of one path in two trees (either side may lack it)."""
    path = safe_path(path)
    sides: list[tuple[TreeEntry | None, str | None, bool]] = []
    for tree in (a, b):
        try:
            e: TreeEntry | None = repo.entry(tree, path)
        except PathNotFound:
            e = None
        if e is not None and e.kind == "file":
            with repo.open_file(tree, path) as f:
                sides.append((e, *preview.read_text(f, e.size)))
        else:
            sides.append((e, "" if e is None else None, False))
    if sides[0][0] is None and sides[1][0] is None:
        raise NotFound(f"{path!r} is in neither version")
    (ea, ta, tra), (eb, tb, trb) = sides
    binary = ta is None or tb is None
    return {
        "path": path,
        "old": entry_dict(path, ea) if ea else None,
        "new": entry_dict(path, eb) if eb else None,
        "binary": binary,
        "truncated": tra or trb,
        "rows": [] if binary else preview.side_by_side(ta or "", tb or ""),
    }


class RepoBrowser:
    """Handlers of the generic browser over one repository."""

    def __init__(self, repo: Repository, env: jinja2.Environment) -> None:
        self.repo = repo
        self.env = env

    def _commit_or_tree(self, oid: str) -> tuple[str, str, Commit | None]:
        """(full id, tree id, commit or None) of a commit or tree id."""
        full = self.repo.resolve(oid)
        obj = self.repo.get(full)
        if isinstance(obj, Commit):
            return full, obj.tree, obj
        return full, self.repo.tree_of(full), None

    def index(self, request: Request) -> tuple[str, dict[str, Any]]:
        prefix = request.query_params.get("prefix", "")
        refs = self.repo.refs.list(prefix)
        shown = list(refs.items())[:REFS_SHOWN]
        return "repo_index.html", {
            "title": "Repository",
            "location": self.repo.location,
            "prefix": prefix,
            "ref_count": len(refs),
            "refs": [{"name": n, "target": t} for n, t in shown],
            "truncated": len(refs) > REFS_SHOWN,
        }

    def ref(self, request: Request) -> tuple[str, dict[str, Any]]:
        name = request.path_params["name"]
        try:
            history = self.repo.refs.history(name)
        except (RefNotFound, ValueError):
            raise NotFound(f"no ref {name!r}") from None
        head = history[-1].new
        log = [commit_dict(oid, c) for oid, c in self.repo.log(head, limit=50)] if head else []
        return "repo_ref.html", {
            "title": f"ref {name}",
            "name": name,
            "target": head,
            "history": [dataclasses.asdict(e) for e in reversed(history)],
            "log": log,
        }

    def commit(self, request: Request) -> tuple[str, dict[str, Any]]:
        oid, _tree, c = self._commit_or_tree(request.path_params["oid"])
        if c is None:
            raise NotFound(f"{oid} is a tree, not a commit")
        parent = c.parents[0] if c.parents and self.repo.odb.has(c.parents[0]) else None
        return "repo_commit.html", {
            "title": f"commit {oid[:12]}",
            "commit": commit_dict(oid, c),
            "changes": changes(self.repo, parent, oid),
            "against": parent,
        }

    def tree(self, request: Request) -> tuple[str, dict[str, Any]]:
        oid, tree, _c = self._commit_or_tree(request.path_params["oid"])
        data = listing(self.repo, tree, request.path_params.get("path", ""))
        return "repo_tree.html", {"title": f"tree {oid[:12]}/{data['path']}", "oid": oid, "tree": tree, **data}

    def file(self, request: Request) -> tuple[str, dict[str, Any]]:
        oid, tree, _c = self._commit_or_tree(request.path_params["oid"])
        data = file_preview(self.repo, tree, request.path_params["path"])
        return "repo_file.html", {"title": data["path"], "oid": oid, "raw_url": f"/raw/{oid}/{urllib.parse.quote(data['path'])}", **data}

    def diff(self, request: Request) -> tuple[str, dict[str, Any]]:
        a, _ta, _ca = self._commit_or_tree(request.path_params["a"])
        b, _tb, _cb = self._commit_or_tree(request.path_params["b"])
        path = request.query_params.get("path")
        data: dict[str, Any] = {"title": f"diff {a[:12]}..{b[:12]}", "a": a, "b": b, "changes": changes(self.repo, a, b)}
        if path:
            data["file"] = file_diff(self.repo, a, b, path)
        return "repo_diff.html", data

    def stats(self, request: Request) -> tuple[str, dict[str, Any]]:
        s = self.repo.stats()
        return "repo_stats.html", {"title": "Storage", "stats": {**dataclasses.asdict(s), "dedup_ratio": s.dedup_ratio}}

    # -- downloads (not pages: no JSON twin) --------------------------------------

    def _download(self, fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        return with_problems(self.env, fn, translate)

    def raw(self, request: Request) -> Response:
        _oid, tree, _c = self._commit_or_tree(request.path_params["oid"])
        path = safe_path(request.path_params["path"])
        return file_response(self.repo, tree, path, inline=request.query_params.get("inline") == "1")

    def archive(self, request: Request) -> Response:
        oid, tree, c = self._commit_or_tree(request.path_params["oid"])
        path = safe_path(request.query_params.get("path", ""))
        return archive_response(self.repo, tree, request.path_params["fmt"], oid[:12], c.time if c else None, path)

    def routes(self) -> list[BaseRoute]:
        def pages(path: str, handler: Callable[[Request], tuple[str, dict[str, Any]]]) -> list[BaseRoute]:
            return page_routes(self.env, path, handler, translate)

        return [
            *pages("/", self.index),
            *pages("/ref/{name:path}", self.ref),
            *pages("/commit/{oid}", self.commit),
            *pages("/tree/{oid}", self.tree),
            *pages("/tree/{oid}/{path:path}", self.tree),
            *pages("/file/{oid}/{path:path}", self.file),
            *pages("/diff/{a}/{b}", self.diff),
            *pages("/stats", self.stats),
            Route("/raw/{oid}/{path:path}", self._download(self.raw)),
            Route("/archive/{oid}.{fmt}", self._download(self.archive)),
        ]


def static_mount() -> Mount:
    return Mount("/static", app=StaticFiles(packages=[("objstore.web", "static")]), name="static")


def create_app(repo: Repository | str, *, storage_options: dict[str, Any] | None = None) -> Starlette:
    """The repository browser as an ASGI app (mountable, e.g. by ``objstore serve --ui``).

    ``repo`` is an open :class:`~objstore.Repository` or any location
    ``Repository.open`` accepts (a path or fsspec URL).
    """
    if not isinstance(repo, Repository):
        repo = Repository.open(repo, storage_options=storage_options)
    env = make_env()
    browser = RepoBrowser(repo, env)

    async def not_found(request: Request, exc: Exception) -> Response:
        return problem(env, request, NotFound(f"no page at {request.url.path!r}"), request.url.path.startswith("/api"))

    app = Starlette(routes=[*browser.routes(), static_mount()], exception_handlers={404: not_found})
    app.state.repo = repo
    return app
