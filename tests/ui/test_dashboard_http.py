"""The dashboard over HTTP: pages and their JSON twins, downloads, diffs, lineage, safety."""

from __future__ import annotations

import http.client
import io
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from ui_helpers import XSS_IMG, XSS_PROJECT, XSS_SCRIPT, png

XP = urllib.parse.quote(XSS_PROJECT, safe="")


def get(server: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(server + path, timeout=30, **kw)


def api(server: str, path: str) -> Any:
    r = get(server, api_url(path))
    assert r.status_code == 200, (path, r.text)
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


PAGES = [
    "/projects",
    "/p/vision",
    "/p/vision?type=model",
    "/p/vision/a/images",
    "/p/vision/a/images/v1",
    "/p/vision/a/images/prod",
    "/p/vision/a/images/v1/files/train.csv",
    "/p/vision/diff/images?a=v0&b=v1&path=train.csv",
    "/p/vision/lineage?node=images:v1",
    "/p/vision/runs",
    "/storage",
    "/registry",
    "/store/",
    "/store/stats",
]


def api_url(path: str) -> str:
    """The JSON twin of a page: ``/api`` in front of the page's path within its app (the store browser is mounted at /store)."""
    return "/store/api" + path.removeprefix("/store") if path.startswith("/store/") else "/api" + path


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_html_and_the_same_url_under_api_is_json(server: str, path: str) -> None:
    r = get(server, path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in r.headers
    assert isinstance(api(server, path), dict)


def test_projects_list_artifacts_with_type_name_filters(server: str) -> None:
    projects = {p["name"]: p for p in api(server, "/projects")["projects"]}
    assert projects["vision"]["artifacts"] == 2 and projects["vision"]["runs"] == 3
    arts = {a["name"]: a for a in api(server, "/p/vision")["artifacts"]}
    assert set(arts) == {"classifier", "images"}
    images = arts["images"]
    assert (images["type"], images["versions"], images["version"]) == ("dataset", 2, "v1")
    assert {"alias": "prod", "version": "v1"} in images["all_aliases"]
    assert [a["name"] for a in api(server, "/p/vision?type=model")["artifacts"]] == ["classifier"]
    assert [a["name"] for a in api(server, "/p/vision?q=imag")["artifacts"]] == ["images"]


def test_artifact_page_versions_new_stored_bytes_and_alias_history(server: str, ui_store: dict[str, Any]) -> None:
    data = api(server, "/p/vision/a/images")
    rows = data["versions"]
    assert [r["version"] for r in rows] == ["v1", "v0"]
    assert rows[0]["aliases"] == ["latest", "prod"]
    assert rows[0]["run"]["name"] == "prepare-data"
    assert rows[0]["metadata"] == {"rows": 200, "fixed": "label of 199"}
    # v0 pays for everything; v1 only for what changed (one csv, one new file, trees, the commit).
    assert rows[1]["new_bytes"] > rows[0]["new_bytes"] > 0
    moves = [(e["alias"], e["previous"], e["version"]) for e in data["alias_history"]]
    assert moves == [("prod", "v0", "v1"), ("prod", None, "v0")]
    assert all(e["who"] for e in data["alias_history"])
    html = get(server, "/p/vision/a/images").text
    assert "prepare-data" in html and "label of 199" in html


def test_version_page_file_tree_metadata_and_producer(server: str) -> None:
    data = api(server, "/p/vision/a/images/prod")
    assert data["artifact"]["version"] == "v1"
    files = {f["path"]: f for f in data["files"]}
    assert set(files) == {"README.md", "extra.txt", "labels.json", "sample.png", "train.csv"}
    assert files["sample.png"]["size"] == len(png())
    assert data["producer"]["name"] == "prepare-data"
    assert [r["name"] for r in data["consumers"]] == ["train"]
    assert data["previous"] == "v0"


def test_version_page_shows_references_with_their_uris(server: str, ui_store: dict[str, Any]) -> None:
    data = api(server, "/p/vision/a/classifier/candidate")
    (ref,) = data["references"]
    assert ref["path"] == "external/data.bin" and ref["ref"] == (ui_store["root"] / "work" / "external.bin").as_uri()
    assert ref["ref"] in get(server, "/p/vision/a/classifier/v0").text
    z = get(server, "/p/vision/a/classifier/v0/archive.zip")
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        assert sorted(zf.namelist()) == ["REFERENCES.txt", "metrics.json", "weights.bin"]
        assert ref["ref"] in zf.read("REFERENCES.txt").decode()


def test_previews_read_only_the_head_and_render_each_kind(server: str) -> None:
    csv = api(server, "/p/vision/a/images/v1/files/train.csv")["preview"]
    assert csv["kind"] == "csv" and csv["header"] == ["id", "label", "score"]
    assert csv["rows"][0] == ["0", "cat0", "0.0"] and len(csv["rows"]) == 50 and csv["more"]
    js = api(server, "/p/vision/a/images/v1/files/labels.json")["preview"]
    assert js["kind"] == "json" and '"classes"' in js["text"]
    md = api(server, "/p/vision/a/images/v1/files/README.md")["preview"]
    assert md["kind"] == "markdown" and "<h1>Images</h1>" in md["html"] and "<strong>small</strong>" in md["html"]
    img = api(server, "/p/vision/a/images/v1/files/sample.png")["preview"]
    assert img["kind"] == "image"
    raw = get(server, "/p/vision/a/images/v1/raw/sample.png?inline=1")
    assert raw.headers["content-type"] == "image/png" and raw.content == png()
    assert "sandbox" in raw.headers["content-security-policy"]


def test_single_file_and_whole_version_downloads(server: str) -> None:
    csv = get(server, "/p/vision/a/images/v0/raw/train.csv")
    assert csv.status_code == 200 and csv.content.startswith(b"id,label,score\n0,cat0,0.0\n")
    assert csv.headers["content-disposition"].startswith("attachment")
    assert csv.headers["content-type"] == "application/octet-stream"
    z = get(server, "/p/vision/a/images/v0/archive.zip")
    assert z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == ["README.md", "labels.json", "old.txt", "sample.png", "train.csv"]
        assert zf.read("train.csv") == csv.content and zf.read("sample.png") == png()
    t = get(server, "/p/vision/a/images/v0/archive.tar")
    with tarfile.open(fileobj=io.BytesIO(t.content)) as tf:
        assert sorted(tf.getnames()) == ["README.md", "labels.json", "old.txt", "sample.png", "train.csv"]
        extracted = tf.extractfile("train.csv")
        assert extracted is not None and extracted.read() == csv.content


def test_diff_lists_changes_with_sizes_and_text_side_by_side(server: str) -> None:
    data = api(server, "/p/vision/diff/images?a=v0&b=v1&path=train.csv")
    status = {c["path"]: c["status"] for c in data["changes"]}
    assert status == {"extra.txt": "added", "old.txt": "removed", "train.csv": "modified"}
    modified = next(c for c in data["changes"] if c["path"] == "train.csv")
    assert modified["old_size"] and modified["new_size"]
    rows = data["file"]["rows"]
    changed = [r for r in rows if r["op"] != "equal" and r["op"] != "skip"]
    assert changed == [{"op": "replace", "left_no": 201, "left": "199,cat1,19.9", "right_no": 201, "right": "199,dog,9.9"}]
    assert any(r["op"] == "skip" for r in rows)  # the 190+ unchanged lines are folded


def test_lineage_goes_producer_version_consumers_n_hops(server: str, ui_store: dict[str, Any]) -> None:
    one = api(server, "/p/vision/lineage?node=images:v1&hops=1")
    labels = {n["label"]: n["hop"] for n in one["nodes"]}
    assert labels == {"images:v1": 0, "prepare-data": -1, "train": 1}
    two = api(server, "/p/vision/lineage?node=images:v1&hops=3")
    labels = {n["label"]: n["hop"] for n in two["nodes"]}
    assert labels["classifier:v0"] == 2 and labels["evaluate"] == 3
    assert {"from": "run:" + ui_store["ids"]["train"], "to": next(n["id"] for n in two["nodes"] if n["label"] == "classifier:v0")} in two["edges"]
    html = get(server, "/p/vision/lineage?node=images:v1&hops=3").text
    assert html.count('class="node ') == len(two["nodes"]) and "<svg" in html
    run_focus = api(server, f"/p/vision/lineage?node=run:{ui_store['ids']['train']}&hops=1")
    assert {n["label"] for n in run_focus["nodes"]} == {"train", "images:v1", "classifier:v0"}


def test_run_page_shows_inputs_and_outputs(server: str, ui_store: dict[str, Any]) -> None:
    data = api(server, f"/p/vision/runs/{ui_store['ids']['train']}")
    assert [f"{a['name']}:{a['version']}" for a in data["inputs"]] == ["images:v1"]
    assert [f"{a['name']}:{a['version']}" for a in data["outputs"]] == ["classifier:v0"]
    assert data["metrics"]["loss"]["value"] == 0.25
    runs = api(server, "/p/vision/runs")["runs"]
    assert [r["name"] for r in runs] == ["evaluate", "train", "prepare-data"]


def test_storage_page_logical_stored_and_dedup_per_artifact(server: str) -> None:
    data = api(server, "/storage")
    assert data["stats"]["packs"] >= 1 and data["stats"]["stored_bytes"] > 0
    images = next(a for a in data["artifacts"] if a["name"] == "images" and a["project"] == "vision")
    assert images["versions"] == 2
    assert images["logical_bytes"] > images["stored_bytes"] > 0  # v1 shares most of v0's bytes
    html = get(server, "/storage").text
    assert "<button" not in html and "<form" not in html  # nothing to press, nothing destructive


def test_registry_page_says_when_the_registry_is_not_available(server: str) -> None:
    import trackio

    data = api(server, "/registry")
    if not hasattr(trackio.Api, "registries"):
        assert data["available"] is False
        assert "not available" in get(server, "/registry").text
    else:
        assert data["available"] is True


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/p/vision/a/nosuch", "nosuch"),
        ("/p/vision/a/images/v9", "v9"),
        ("/p/vision/a/images/staging", "staging"),
        ("/p/vision/a/images/v1/files/missing.txt", "missing.txt"),
        ("/p/vision/a/nosuch/v0/raw/x", "nosuch"),
        ("/p/nosuch-project", "nosuch-project"),
        ("/no/such/page", "/no/such/page"),
    ],
)
def test_unknown_things_are_a_404_page_naming_them(server: str, path: str, named: str) -> None:
    r = get(server, path)
    assert r.status_code == 404
    assert named in r.text and "404" in r.text
    if not path.startswith("/no/"):
        j = get(server, "/api" + path) if "/raw/" not in path else None
        if j is not None:
            assert j.status_code == 404 and named in j.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/p/vision/a/images/v1/files/../../../../etc/passwd",
        "/p/vision/a/images/v1/raw/../labels.json",
        "/p/vision/a/images/v1/files/%2e%2e/%2e%2e/etc/passwd",
        "/p/vision/diff/images?a=v0&b=v1&path=../train.csv",
        "/store/file/{commit}/../x",
    ],
)
def test_dotdot_paths_are_refused(server: str, ui_store: dict[str, Any], path: str) -> None:
    # http.client sends the path as written (a browser or httpx would normalise it away).
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path.format(commit=ui_store["ids"]["images_v1"]))
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 400, body
    assert "refused path" in body and "root:" not in body


def test_read_only_and_bound_to_localhost(server: str) -> None:
    assert server.startswith("http://127.0.0.1:")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = httpx.request(method, server + "/p/vision/a/images/v1", timeout=30)
        assert r.status_code == 405
    assert get(server, "/p/vision/a/images").status_code == 200  # nothing changed


XSS_PAGES = [
    f"/p/{XP}",
    f"/p/{XP}/a/evil",
    f"/p/{XP}/a/evil/v0",
    f"/p/{XP}/a/evil/v1",
    f"/p/{XP}/a/evil/v0/files/notes.md",
    f"/p/{XP}/a/evil/v0/files/" + urllib.parse.quote(XSS_IMG + ".txt"),
    f"/p/{XP}/diff/evil?a=v0&b=v1&path=notes.md",
    f"/p/{XP}/runs",
    f"/p/{XP}/lineage?node=evil:v0",
    "/projects",
    "/storage",
]


@pytest.mark.parametrize("path", XSS_PAGES)
def test_user_strings_are_escaped_everywhere(server: str, path: str) -> None:
    html = get(server, path).text
    assert get(server, path).status_code == 200
    assert XSS_SCRIPT not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html or "&#34;&gt;&lt;img" in html


def test_run_names_with_markup_are_escaped(server: str, ui_store: dict[str, Any]) -> None:
    html = get(server, f"/p/{XP}/runs/{ui_store['ids']['evil_run']}").text
    assert "<img src=x" not in html and XSS_SCRIPT not in html
    assert "&#34;&gt;&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in html


def _wait_for_line(proc: subprocess.Popen[str], pattern: str, timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            continue
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_trackio_show_command_serves_and_prints_the_url(ui_store: dict[str, Any]) -> None:
    port = _free_port()
    env = {**os.environ, "TRACKIO_DIR": str(ui_store["home"]), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackio.cli", "show", "--project", "vision", "--no-browser", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        m = _wait_for_line(proc, r"\* Trackio UI launched at: (\S+)")
        assert m.group(1) == f"http://127.0.0.1:{port}/p/vision"
        assert "images" in httpx.get(m.group(1), timeout=30).text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_objstore_ui_command_browses_any_repository(store_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "objstore.cli", "ui", str(store_path), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        m = _wait_for_line(proc, r"at: (\S+)")
        base = m.group(1).rstrip("/")
        assert base == f"http://127.0.0.1:{port}"
        refs = httpx.get(base + "/api/", timeout=30).json()["refs"]
        images = next(r for r in refs if r["name"].endswith("/artifacts/images/aliases/prod"))
        commit = httpx.get(f"{base}/api/commit/{images['target']}", timeout=30).json()["commit"]
        assert commit["metadata"]["name"] == "images"
        tree = httpx.get(f"{base}/api/tree/{images['target']}", timeout=30).json()
        assert "train.csv" in {e["name"] for e in tree["entries"]}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_dashboard_on_a_remote_reads_the_remote_not_the_local_store(ui_store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    import trackio
    import trackio.store
    from trackio.dashboard import create_app

    remote = "file://" + str(tmp_path / "remote")
    trackio.sync(remote)
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "empty-home"))
    trackio.store.close_all()
    try:
        client = TestClient(create_app(remote=remote))
        assert "vision" in [p["name"] for p in client.get("/api/projects").json()["projects"]]
        assert [v["version"] for v in client.get("/api/p/vision/a/images").json()["versions"]] == ["v1", "v0"]
        assert client.get("/p/vision/a/images/v0/raw/old.txt").content == b"going away\n"
        assert client.get("/api/p/vision/a/images/v1/files/train.csv").json()["preview"]["kind"] == "csv"
    finally:
        trackio.store.close_all()
