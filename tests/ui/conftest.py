"""One trackio store and one live dashboard server (uvicorn on 127.0.0.1) per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import build_store

pytest.importorskip("starlette", reason="the dashboard needs the 'ui' extra (starlette, uvicorn, jinja2)")


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import trackio.run
    import trackio.store

    root = tmp_path_factory.mktemp("ui")
    old = {k: os.environ.get(k) for k in ("TRACKIO_DIR", "TRACKIO_REMOTE")}
    os.environ["TRACKIO_DIR"] = str(root / "home")
    os.environ.pop("TRACKIO_REMOTE", None)
    trackio.store.close_all()
    try:
        ids = build_store(root / "work")
        yield {"root": root, "home": root / "home", "ids": ids}
    finally:
        trackio.run._current = None
        trackio.store.close_all()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def server(ui_store: dict[str, Any]) -> Iterator[str]:
    """The dashboard served on 127.0.0.1 (a free port); yields its base URL without the trailing slash."""
    from trackio.dashboard import launch

    handle, _url = launch(port=0)
    try:
        yield handle.url.rstrip("/")
    finally:
        handle.close()


@pytest.fixture(scope="module")
def store_path(ui_store: dict[str, Any]) -> Path:
    return Path(ui_store["home"]) / "objstore"
