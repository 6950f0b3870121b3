"""``objstore serve``: a self-hosted team server for objstore repositories over HTTP(S).

>>> from objstore.server import create_app           # doctest: +SKIP
>>> app = create_app("/srv/store", tokens_file="/etc/objstore/tokens.json")  # any ASGI server

Needs the ``server`` extra (``pip install 'objstore[server]'``: starlette and
uvicorn). The protocol is described in ``docs/server.md``.
"""

from __future__ import annotations

from .app import API, DEFAULT_MAX_BODY, PROTOCOL, create_app
from .tokens import SCOPES, TokenFile, default_tokens_file

__all__ = ["API", "DEFAULT_MAX_BODY", "PROTOCOL", "SCOPES", "TokenFile", "create_app", "default_tokens_file"]
