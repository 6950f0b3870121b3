"""Pages that are also JSON: one handler, two URLs (Datasette's rule).

A handler returns ``(template, data)`` where ``data`` is plain JSON-able
values. Registered at ``/x`` it renders ``template`` (Jinja2, autoescaped:
every user string is escaped); at ``/api/x`` the same ``data`` is the JSON
answer. So the UI and the API never drift apart.
"""

from __future__ import annotations

import json
import math
import posixpath
import time
from collections.abc import Callable, Iterable
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ..cliutil import plural

Handler = Callable[[Request], tuple[str, dict[str, Any]]]

SECURITY_HEADERS = {
    # Even if something slipped past escaping, no inline script could run.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class HTTPProblem(Exception):
    """A request that cannot be answered: rendered as a page (or JSON) naming what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotFound(HTTPProblem):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


def safe_path(path: str) -> str:
    """A path inside a version, refused if it could climb out (``..``) or is malformed."""
    parts = path.split("/") if path else []
    for p in parts:
        if p in ("..", ".") or "\\" in p or "\0" in p:
            raise HTTPProblem(400, f"refused path {path!r}: '..', '.', backslashes and NUL are not allowed")
    return "/".join(p for p in parts if p)


def human_size(n: int | None) -> str:
    if n is None or n < 0:
        return "?"
    if n < 1024:
        return f"{n} B"
    units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
    i = min(int(math.log(n, 1024)), len(units))
    return f"{n / 1024 ** i:.1f} {units[i - 1]}"


def when(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def make_env(extra_packages: Iterable[str] = ()) -> jinja2.Environment:
    """Templates of ``objstore.web`` plus those of ``extra_packages`` (searched first)."""
    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader(p, "templates") for p in extra_packages]
    loaders.append(jinja2.PackageLoader("objstore.web", "templates"))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["size"] = human_size
    env.filters["plural"] = plural  # {{ n|plural("file") }}: "1 file", "2 files"
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    env.filters["basename"] = posixpath.basename
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)  # compiled now, not during someone's first request
    return env


def base_of(request: Request) -> str:
    """The prefix the app is mounted under ('' at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def html_page(env: jinja2.Environment, request: Request, template: str, data: dict[str, Any], status: int = 200) -> Response:
    body = env.get_template(template).render(**data, base=base_of(request), request=request)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def json_body(data: Any, status: int = 200) -> Response:
    # "<", ">" and "&" escaped as \u00XX: the JSON stays exact and can never be read as markup.
    text = json.dumps(data, default=str, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Response(text, status_code=status, media_type="application/json", headers=SECURITY_HEADERS)


def problem(env: jinja2.Environment, request: Request, exc: HTTPProblem, as_json: bool) -> Response:
    if as_json:
        return json_body({"error": exc.message, "status": exc.status}, exc.status)
    return html_page(env, request, "error.html", {"title": "Not found" if exc.status == 404 else "Error", "message": exc.message, "status": exc.status}, exc.status)


def with_problems(
    env: jinja2.Environment,
    fn: Callable[[Request], Response],
    translate: Callable[[BaseException], HTTPProblem | None],
) -> Callable[[Request], Response]:
    """``fn`` as an endpoint (a download: no JSON twin) whose ``HTTPProblem``, or
    an error ``translate`` maps to one, is answered with the problem page."""

    def run(request: Request) -> Response:
        try:
            return fn(request)
        except HTTPProblem as exc:
            return problem(env, request, exc, False)
        except Exception as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            return problem(env, request, mapped, False)

    return run


def page_routes(
    env: jinja2.Environment,
    path: str,
    handler: Handler,
    translate: Callable[[BaseException], HTTPProblem | None] = lambda e: None,
    name: str | None = None,
) -> list[BaseRoute]:
    """``path`` as an HTML page and ``/api`` + ``path`` as its JSON."""

    def endpoint(as_json: bool) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:  # sync: starlette runs it in a worker thread
            try:
                template, data = handler(request)
            except HTTPProblem as exc:
                return problem(env, request, exc, as_json)
            except Exception as exc:
                mapped = translate(exc)
                if mapped is None:
                    raise
                return problem(env, request, mapped, as_json)
            return json_body(data) if as_json else html_page(env, request, template, data)

        return run

    api_path = "/api" + (path if path != "/" else "")
    routes: list[BaseRoute] = [Route(path, endpoint(False), name=name)]
    routes.append(Route(api_path or "/api", endpoint(True)))
    if path == "/":
        routes.append(Route("/api/", endpoint(True)))
    return routes
