"""The dashboard's registry page over a real model registry (issue 14): collections, links, who did what."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module")
def published(ui_store: dict[str, Any]) -> None:
    import trackio

    trackio.Api().create_registry("models", description="what ships")
    with trackio.init(project="vision", name="publish") as run:
        run.link_artifact(trackio.use_artifact("classifier:candidate"), "registry-models/classifier", aliases=["production"])
    trackio.finish()


def test_registry_page_lists_links_aliases_and_events(published: None, server: str) -> None:
    page = httpx.get(server + "/registry", timeout=30)
    assert page.status_code == 200
    for text in ("models", "what ships", "classifier", "production", "vision/classifier:v0"):
        assert text in page.text, text
    data = httpx.get(server + "/api/registry", timeout=30).json()
    assert data["available"] is True
    (reg,) = data["registries"]
    (coll,) = reg["collections"]
    assert coll["links"][0]["aliases"] == ["latest", "production"]
    assert urllib.parse.unquote(coll["links"][0]["url"]).endswith("vision/a/classifier/v0")
    assert [e["kind"] for e in reg["events"]] == ["create", "create", "link", "promote"]
    assert all(e["who"] for e in reg["events"])
