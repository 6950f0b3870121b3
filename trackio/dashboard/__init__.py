"""trackio's web dashboard: artifacts, versions, files, diffs, lineage, runs, registry, storage.

``trackio show`` (or ``trackio.show()``) serves it on 127.0.0.1; the app
itself is :func:`create_app` (an ASGI app, mountable on a team server).
Needs the ``ui`` extra (starlette, uvicorn, jinja2).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from objstore.web.serve import ServerHandle, serve

from .app import Dashboard, create_app

__all__ = ["Dashboard", "ServerHandle", "create_app", "launch"]


def launch(
    project: str | None = None,
    *,
    dashboard: str | None = None,
    host: str | None = None,
    port: int | None = None,
    remote: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[ServerHandle, str]:
    """Serve the dashboard in a background thread; return (server, URL of the page to open).

    ``port`` None scans from ``$GRADIO_SERVER_PORT`` (default 7860) as trackio does.
    """
    import os

    app = create_app(project, remote=remote, storage_options=storage_options)
    first = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    server = serve(app, host or "127.0.0.1", port, first_port=first)
    url = server.url
    if dashboard == "registry":
        url += "registry"
    elif project is not None:
        url += "p/" + urllib.parse.quote(project, safe="")
    return server, url
