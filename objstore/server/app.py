"""The ASGI app of ``objstore serve``: smart HTTP push and fetch, plus read access to files.

Every endpoint lives under ``/api/v1/`` (see ``docs/server.md``). One small
handler per endpoint; access is decided in one place (:meth:`Server.allow`),
and so is append-only (:class:`~objstore.server.store.StoreOps`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

from .. import __version__
from ..errors import CorruptObject, FormatError, ObjstoreError
from ..maintenance import gc
from ..repo import Repository
from ..wire import CONTENT_TYPE, MAX_OBJECT, StreamError, encode_stream
from .store import Ingest, RefUpdate, Refused, StoreOps, check_id, check_ref_name
from .tokens import TokenChecker, TokenInfo, scope_allows

log = logging.getLogger("objstore.server")

API = "/api/v1"
PROTOCOL = 1
DEFAULT_MAX_BODY = 16 * 1024**3
"""Largest request body by default (16 GiB); the client splits bigger pushes."""
CONTROL_BODY = 64 * 1024 * 1024
"""Largest JSON request body (ids of a negotiation), unless ``max_body`` is lower."""
SERVER_HEADER = "x-objstore-server"
_BATCH = 4 * 1024 * 1024
_FILE = re.compile(r"config|packs/[0-9a-f]{32}\.(?:pack|idx)|refs(?:/[A-Za-z0-9._+,=~-]+)+/@\d{16}|refs/[A-Za-z0-9._+,=~!-]+@\d{16}")
_DIR = re.compile(r"packs|refs(?:/[A-Za-z0-9._+,=~-]+)*")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")

Handler = Callable[[Request], Awaitable[Response]]


class Server:
    """State of one app: the open store, the token checker and the modes."""

    def __init__(self, repo: Repository, tokens: TokenChecker | None, *, append_only: bool, read_only: bool, max_body: int) -> None:
        self.repo = repo
        self.tokens = tokens
        self.append_only = append_only
        self.read_only = read_only or tokens is None
        self.max_body = max_body
        self.ops = StoreOps(repo, append_only=append_only)

    @property
    def mode(self) -> str:
        if self.tokens is None:
            return "read-only for anyone (no tokens file)"
        if self.read_only:
            return "read-only"
        return "append-only" if self.append_only else "read-write"

    # -- access -------------------------------------------------------------------

    def allow(self, request: Request, needed: str) -> TokenInfo | None:
        """Who is asking, if they may do something that needs ``needed`` scope; else 401/403."""
        if needed != "read" and self.read_only:
            raise Refused(403, f"this server is {self.mode}: {needed} access is refused")
        if self.tokens is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(401, "a token is required (Authorization: Bearer <token>)")
        who = self.tokens.check(token.strip())
        if who is None:
            raise Refused(401, "the token is not valid (unknown or revoked)")
        if not scope_allows(who.scope, needed):
            raise Refused(403, f"token {who.name!r} has scope {who.scope!r}; this needs {needed!r}")
        return who


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    body = {"error": message, "status": status, **{k: v for k, v in extra.items() if v is not None}}
    headers = {"WWW-Authenticate": 'Bearer realm="objstore"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _drain(request: Request, limit: int) -> None:
    """Read and drop what is left of a body (up to ``limit``), so the client reads our answer."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                return
    except (ClientDisconnect, RuntimeError):
        return


def _body_limit(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Refused(400, f"bad Content-Length {declared[:40]!r}") from None
        if size > limit:
            raise Refused(413, f"request body of {size} bytes is over this server's limit of {limit} bytes (--max-body)")


async def _json_body(request: Request, limit: int) -> Any:
    _body_limit(request, limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"request body is over this server's limit of {limit} bytes (--max-body)")
        parts.append(chunk)
    try:
        return json.loads(b"".join(parts))
    except (ValueError, RecursionError) as exc:
        raise Refused(400, f"request body is not valid JSON: {exc}") from None


def _field(body: Any, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if not isinstance(body, dict):
        raise Refused(400, "request body must be a JSON object")
    if key not in body:
        if default is ...:
            raise Refused(400, f"request body lacks {key!r}")
        return default
    value = body[key]
    if not isinstance(value, kind):
        raise Refused(400, f"{key!r} has the wrong type ({type(value).__name__})")
    return value


def create_app(
    store: str | Repository,
    *,
    tokens_file: str | None = None,
    append_only: bool = False,
    read_only: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    storage_options: dict[str, Any] | None = None,
    ui: bool = False,
) -> Starlette:
    """The ASGI app serving the repository ``store`` (a path, an fsspec URL or an open Repository).

    Without ``tokens_file`` anyone may read and nobody may write. With it,
    every request needs a token of the right scope: ``read`` (info, refs,
    fetch, files), ``write`` (push), ``admin`` (gc). ``append_only``: refs
    only move forward and nothing is deleted; ``read_only``: no writes.
    Bodies over ``max_body`` bytes are refused with 413. ``ui`` mounts the
    read-only repository browser (:func:`objstore.web.create_app`) at
    ``/ui/``, behind the same read scope (see :class:`UiGate`).
    """
    repo = store if isinstance(store, Repository) else Repository.open(store, storage_options=storage_options)
    tokens = TokenChecker(tokens_file) if tokens_file is not None else None
    srv = Server(repo, tokens, append_only=append_only, read_only=read_only, max_body=max_body)
    ds = repo.odb.digest_size
    control = min(CONTROL_BODY, max_body)
    max_object = min(MAX_OBJECT, max_body)

    def endpoint(needed: str, fn: Callable[[Request, TokenInfo | None], Awaitable[Response]]) -> Handler:
        async def handle(request: Request) -> Response:
            try:
                who = srv.allow(request, needed)
                response = await fn(request, who)
            except Refused as exc:
                if request.method in ("POST", "PUT"):
                    # Read (and drop) what the client is still sending, up to a bound,
                    # so that it reads this answer rather than a reset connection.
                    await _drain(request, CONTROL_BODY)
                response = _error(exc.status, exc.message, ref=exc.ref, **exc.extra)
            except ClientDisconnect:
                return Response(status_code=499)
            except (ObjstoreError, OSError) as exc:
                log.exception("request failed: %s %s", request.method, request.url.path)
                response = _error(500, f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug, not the client's fault: say so, keep serving
                log.exception("request failed: %s %s", request.method, request.url.path)
                response = _error(500, f"internal error ({type(exc).__name__})")
            response.headers[SERVER_HEADER] = __version__
            return response

        return handle

    # -- read ---------------------------------------------------------------------

    async def info(request: Request, who: TokenInfo | None) -> Response:
        return JSONResponse(
            {
                "server": "objstore",
                "version": __version__,
                "protocol": PROTOCOL,
                "config": json.loads(repo.config.encode()),
                "mode": srv.mode,
                "read_only": srv.read_only,
                "append_only": srv.append_only,
                "auth": "none" if tokens is None else "token",
                "scope": "read" if who is None else who.scope,
                "max_body": max_body,
                "max_object": max_object,
            }
        )

    async def refs(request: Request, who: TokenInfo | None) -> Response:
        prefix = request.query_params.get("prefix", "")
        heads = await run_in_threadpool(repo.refs.heads, prefix)
        return JSONResponse({name: {"seq": e.seq, "value": e.new} for name, e in heads.items()})

    async def fetch(request: Request, who: TokenInfo | None) -> Response:
        body = await _json_body(request, control)
        wants = [check_id(w, ds, "wants") for w in _field(body, "wants", list)]
        haves = [check_id(h, ds, "haves") for h in _field(body, "haves", list, [])]
        depth = _field(body, "depth", (int, type(None)), None)
        if depth is not None and depth < 1:
            raise Refused(400, "depth must be at least 1")
        shallow = frozenset(check_id(h, ds, "shallow") for h in _field(body, "shallow", list, []))
        order = await run_in_threadpool(srv.ops.to_send, wants, haves, depth, shallow)
        stream = encode_stream(ds, srv.ops.records(order))
        return StreamingResponse(iterate_in_threadpool(stream), media_type=CONTENT_TYPE, headers={"x-objstore-objects": str(len(order))})

    async def files(request: Request, who: TokenInfo | None) -> Response:
        path = request.path_params["path"]
        if not _FILE.fullmatch(path) or "/../" in f"/{path}/" or "/./" in f"/{path}/":
            raise Refused(404, f"no such file: {path[:200]!r}")
        storage = repo.storage
        try:
            size = await run_in_threadpool(storage.size, path)
        except (FileNotFoundError, NotADirectoryError):
            raise Refused(404, f"no such file: {path!r}") from None
        start, end = 0, size
        status = 200
        rng = request.headers.get("range")
        if rng:
            m = _RANGE.fullmatch(rng.strip())
            if m is None:
                raise Refused(416, f"unsupported Range {rng[:80]!r} (one bytes=a-b range only)")
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, size) if m.group(2) else size
            if start >= size or end <= start:
                return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
            status = 206
        headers = {"content-length": str(end - start), "accept-ranges": "bytes"}
        if status == 206:
            headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)

        def pieces() -> Iterator[bytes]:
            pos = start
            while pos < end:
                n = min(_BATCH, end - pos)
                data = storage.read_range(path, pos, n)
                yield bytes(data)
                pos += n

        if end - start <= _BATCH:
            data = await run_in_threadpool(lambda: b"".join(pieces()))
            return Response(data, status_code=status, headers=headers, media_type="application/octet-stream")
        return StreamingResponse(iterate_in_threadpool(pieces()), status_code=status, headers=headers, media_type="application/octet-stream")

    async def listing(request: Request, who: TokenInfo | None) -> Response:
        path = request.path_params["path"].rstrip("/")
        if not _DIR.fullmatch(path) or any(p in (".", "..") for p in path.split("/")):
            raise Refused(404, f"no such directory: {path[:200]!r}")
        if request.query_params.get("recursive") in ("1", "true"):
            found = await run_in_threadpool(repo.storage.walk_files, path)
        else:
            found = await run_in_threadpool(repo.storage.listdir, path)
        return JSONResponse(sorted(found))

    # -- push ---------------------------------------------------------------------

    async def negotiate(request: Request, who: TokenInfo | None) -> Response:
        body = await _json_body(request, control)
        wanted = _field(body, "refs", dict)
        names = [check_ref_name(n) for n in wanted]
        for name, target in wanted.items():
            if target is None:
                if srv.append_only:
                    raise Refused(403, f"ref {name!r}: this server is append-only; refs cannot be deleted", ref=name)
            else:
                check_id(target, ds, f"ref {name!r}")
        ids = [check_id(i, ds, "ids") for i in _field(body, "ids", list, [])]
        missing = await run_in_threadpool(srv.ops.lacking, ids)
        heads = await run_in_threadpool(srv.ops.heads, names)
        return JSONResponse(
            {
                "missing": [m.hex() for m in missing],
                "refs": {n: {"seq": seq, "value": value} for n, (seq, value) in heads.items()},
            }
        )

    async def upload(request: Request, who: TokenInfo | None) -> Response:
        _body_limit(request, max_body)
        ingest = Ingest(repo, max_object=max_object)
        send, receive = anyio.create_memory_object_stream[list[bytes]](4)
        failure: list[BaseException] = []

        async def consume() -> None:
            try:
                async with receive:
                    async for batch in receive:
                        await run_in_threadpool(ingest.feed_all, batch)
            except BaseException as exc:
                failure.append(exc)
                raise

        async def produce(chunks: AsyncIterator[bytes]) -> None:
            size = 0
            pending: list[bytes] = []
            waiting = 0
            async with send:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_body:
                        raise Refused(413, f"request body is over this server's limit of {max_body} bytes (--max-body)")
                    pending.append(chunk)
                    waiting += len(chunk)
                    if waiting >= _BATCH:  # one thread hop per few MiB; the pieces are parsed in place
                        await send.send(pending)
                        pending, waiting = [], 0
                if pending:
                    await send.send(pending)

        try:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume)
                    await produce(request.stream())
            except BaseExceptionGroup as group:
                raise (failure[0] if failure else group.exceptions[0]) from None
            except anyio.BrokenResourceError:
                raise failure[0] if failure else Refused(400, "upload failed") from None
            await run_in_threadpool(ingest.finish)
        except (StreamError, CorruptObject, FormatError) as exc:
            await run_in_threadpool(ingest.abort)
            raise Refused(400, f"bad pack upload: {exc}") from None
        except BaseException:
            await run_in_threadpool(ingest.abort)
            raise
        return JSONResponse(
            {"received": ingest.received, "stored": ingest.stored, "bytes": ingest.bytes_stored, "packs": ingest.packs}
        )

    async def update_refs(request: Request, who: TokenInfo | None) -> Response:
        body = await _json_body(request, control)
        raw = _field(body, "updates", list)
        message = _field(body, "message", str, "push")[:1000]
        updates: list[RefUpdate] = []
        for u in raw:
            name = check_ref_name(_field(u, "name", str))
            old = _field(u, "old", (str, type(None)))
            new = _field(u, "new", (str, type(None)))
            for v in (old, new):
                if v is not None:
                    check_id(v, ds, f"ref {name!r}")
            updates.append(RefUpdate(name, old, new))
        agent = who.name if who is not None else "anonymous"
        moved = await run_in_threadpool(srv.ops.apply, updates, f"{agent} via objstore server", message)
        return JSONResponse({"updated": {n: {"old": o, "new": v} for n, (o, v) in moved.items()}})

    async def collect(request: Request, who: TokenInfo | None) -> Response:
        if srv.append_only:
            raise Refused(403, "this server is append-only: gc is refused")
        body = await _json_body(request, control)
        grace = _field(body, "grace", (int, float), 3600.0)
        if not math.isfinite(grace) or grace < 0:
            raise Refused(400, "grace must be a non-negative number of seconds")
        from datetime import timedelta

        result = await run_in_threadpool(gc, repo, timedelta(seconds=grace))
        srv.ops.forget_completeness()
        return JSONResponse(result.__dict__)

    routes: list[BaseRoute] = [
        Route(f"{API}/info", endpoint("read", info), methods=["GET"]),
        Route(f"{API}/refs", endpoint("read", refs), methods=["GET"]),
        Route(f"{API}/fetch", endpoint("read", fetch), methods=["POST"]),
        Route(f"{API}/files/{{path:path}}", endpoint("read", files), methods=["GET", "HEAD"]),
        Route(f"{API}/list/{{path:path}}", endpoint("read", listing), methods=["GET"]),
        Route(f"{API}/push/negotiate", endpoint("write", negotiate), methods=["POST"]),
        Route(f"{API}/push/pack", endpoint("write", upload), methods=["POST"]),
        Route(f"{API}/push/refs", endpoint("write", update_refs), methods=["POST"]),
        Route(f"{API}/gc", endpoint("admin", collect), methods=["POST"]),
    ]
    if ui:
        from ..web import create_app as create_browser

        routes.append(Mount("/ui", app=UiGate(create_browser(repo), srv)))
    app = Starlette(routes=routes)
    app.state.server = srv
    return app


UI_COOKIE = "objstore_ui_token"


class UiGate:
    """The browser pages behind the server's read scope.

    Without a tokens file anyone may read, so pages pass through. With one, a
    browser opens ``/ui/?token=<read token>`` once: the token is checked,
    kept in an HttpOnly, SameSite=Strict cookie scoped to ``/ui``, and the
    browser is sent on to the same page without it in the URL (so it stays
    out of history and logs). A missing or bad token gets a 401 page saying
    how to open the pages.
    """

    def __init__(self, app: Any, srv: Server) -> None:
        self.app = app
        self.srv = srv

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        tokens = self.srv.tokens
        if scope["type"] != "http" or tokens is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        token = given or request.cookies.get(UI_COOKIE, "")
        who = tokens.check(token) if token else None
        if who is None or not scope_allows(who.scope, "read"):
            response: Response = PlainTextResponse(
                "401: these pages need a read token of this server: open /ui/?token=<token> once "
                "(objstore token add NAME --scope read)\n",
                status_code=401,
            )
            await response(scope, receive, send)
            return
        if given:
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.replace(query=urlencode(query))
            response = RedirectResponse(str(target), status_code=303)
            response.set_cookie(UI_COOKIE, given, httponly=True, samesite="strict", path="/ui", secure=request.url.scheme == "https")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


__all__ = ["API", "DEFAULT_MAX_BODY", "PROTOCOL", "Server", "create_app"]
