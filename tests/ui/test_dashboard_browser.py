"""The dashboard in a real browser (Debian's chromium driven by Playwright).

One browser, one page, one live server for the module. The tour clicks
project -> artifact -> version -> file preview -> diff -> lineage node ->
run, checks what a person sees, and fails on any JavaScript error. Every
step leaves a screenshot in the test's tmp dir (and in
``$OBJSTORE_UI_SCREENSHOTS`` when set: that is how docs/ui-*.png are made).
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import XSS_IMG, XSS_PROJECT, XSS_SCRIPT

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser_page(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[str], Path]]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright (pip install playwright) drives the browser")
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium chromium-driver` (done by .ci/run as root) or set $CHROMIUM")
    shots = tmp_path_factory.mktemp("screenshots")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text} at {msg.location}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
        page.on("request", lambda req: None if req.url.startswith((server, "data:", "about:")) else errors.append(f"outside request: {req.url}"))
        page.set_default_timeout(15000)
        try:
            yield page, errors, shots
        finally:
            browser.close()


def shot(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"ui-{name}.png"))
    extra = os.environ.get("OBJSTORE_UI_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=os.path.join(extra, f"ui-{name}.png"))


def test_click_through_project_artifact_version_file_diff_lineage_run(server: str, browser_page: tuple[Any, list[str], Path]) -> None:
    page, errors, shots = browser_page
    page.goto(server + "/")
    assert page.locator("h1").inner_text() == "Projects"
    page.click("a.project-link:text-is('vision')")

    assert page.locator("h1").inner_text() == "vision"
    rows = page.locator("#artifacts tbody tr")
    assert rows.count() == 2
    assert "prod → v1" in page.locator("#artifacts").inner_text()
    shot(page, shots, "project")
    page.select_option("select[name=type]", "model")  # the type filter navigates on change
    page.wait_for_url("**type=model**")
    assert page.locator("#artifacts tbody tr").count() == 1
    page.go_back()
    page.click("a.artifact-link:text-is('images')")

    assert page.locator("h1").inner_text().startswith("images")
    versions = page.locator("#versions tbody tr")
    assert versions.count() == 2
    first = versions.nth(0).inner_text()
    assert "v1" in first and "prod" in first and "prepare-data" in first
    history = page.locator("#alias-history").inner_text()
    assert "prod" in history and "v0" in history
    shot(page, shots, "artifact")
    page.fill("input[data-filter=versions]", "label of 199")  # the quick filter hides the other version
    assert page.locator("#versions tbody tr:not(.hidden)").count() == 1
    page.click("a.version-link:text-is('v1')")

    assert page.locator("h1").inner_text().startswith("images:v1")
    files = page.locator("#files").inner_text()
    assert "train.csv" in files and "sample.png" in files and "old.txt" not in files
    assert "prepare-data" in page.locator("dl.facts").inner_text()
    shot(page, shots, "version")
    page.click("a.file-link:text-is('train.csv')")

    assert page.locator("#preview[data-kind=csv] thead").inner_text().split() == ["id", "label", "score"]
    assert page.locator("#preview tbody tr").count() == 50
    shot(page, shots, "file-csv")
    page.go_back()
    page.click("a.file-link:text-is('README.md')")
    assert page.locator(".markdown h1").inner_text() == "Images"
    page.go_back()
    page.click("a.file-link:text-is('sample.png')")
    img = page.locator("img.preview-image")
    img.wait_for()
    assert page.evaluate("document.querySelector('img.preview-image').naturalWidth") == 8  # the image really loaded
    page.go_back()
    page.click("a.diff-link")

    assert page.locator(".summary").inner_text() == "1 added · 1 removed · 1 modified"
    page.click("a.diff-file:text-is('train.csv')")
    sbs = page.locator("#side-by-side")
    assert "199,cat1,19.9" in sbs.locator("td.left").all_inner_texts()
    assert "199,dog,9.9" in sbs.locator("td.right").all_inner_texts()
    shot(page, shots, "diff")
    page.go_back()
    page.go_back()
    page.click("a.lineage-link")

    svg_nodes = page.locator("svg.lineage g.node")
    assert svg_nodes.count() >= 3
    assert page.locator("svg.lineage g.node.focus").get_attribute("data-label") == "images:v1"
    shot(page, shots, "lineage")
    page.fill("#lineage-search", "train")
    assert page.locator("svg.lineage g.node.hit").count() == 1
    page.click("svg.lineage g.node.run[data-label='train'] a")

    assert page.locator("h1.run-name").inner_text().startswith("train")
    assert "images:v1" in page.locator("#inputs").inner_text()
    assert "classifier:v0" in page.locator("#outputs").inner_text()
    shot(page, shots, "run")
    page.goto(server + "/storage")
    assert "dedup ratio" in page.locator("#storage-cards").inner_text()
    shot(page, shots, "storage")
    assert errors == []


def test_markup_in_names_and_metadata_never_runs(server: str, browser_page: tuple[Any, list[str], Path], ui_store: dict[str, Any]) -> None:
    page, errors, _shots = browser_page
    project = urllib.parse.quote(XSS_PROJECT, safe="")
    for path in (
        "/projects",
        f"/p/{project}",
        f"/p/{project}/a/evil",
        f"/p/{project}/a/evil/v0",
        f"/p/{project}/a/evil/v0/files/notes.md",
        f"/p/{project}/diff/evil?a=v0&b=v1&path=notes.md",
        f"/p/{project}/runs/{ui_store['ids']['evil_run']}",
        f"/p/{project}/lineage?node=evil:v1",
    ):
        page.goto(server + path)
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(server + f"/p/{project}/a/evil/v0")
    shown = page.locator("body").inner_text()
    assert XSS_SCRIPT in shown and XSS_IMG + ".txt" in shown  # shown as text, exactly
    assert errors == []
