"""A read-only web view of an objstore repository (refs, commits, trees, files, stats).

>>> from objstore.web import create_app                      # doctest: +SKIP
>>> app = create_app("store")            # an ASGI app: uvicorn, or mount it  # doctest: +SKIP

Every page also answers as JSON under ``/api`` (``/commit/<id>`` and
``/api/commit/<id>``). Needs the ``ui`` extra (starlette, uvicorn, jinja2).
"""

from __future__ import annotations

from .app import create_app
from .serve import ServerHandle, serve

__all__ = ["ServerHandle", "create_app", "serve"]
