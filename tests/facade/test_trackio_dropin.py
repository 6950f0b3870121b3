"""trackio drop-in behaviours found running trackio's own tests against ours (issue 14)."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
import warnings
from pathlib import Path

import pytest
from trackio_helpers import sha256, write

import trackio
from trackio.errors import UnsupportedReferenceError


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# -- file:// directories without a trailing slash ----------------------------------------


def test_file_directory_reference_without_trailing_slash_expands(run: trackio.Run, outside: Path) -> None:
    write(outside / "tree" / "a.csv", b"x\n1\n")
    write(outside / "tree" / "sub" / "b.csv", b"x\n2\n")
    art = trackio.Artifact("refs", "dataset")
    art.add_reference((outside / "tree").as_uri())
    manifest = trackio.log_artifact(art).manifest
    assert manifest is not None
    assert [e["path"] for e in manifest] == ["tree/a.csv", "tree/sub/b.csv"]
    assert [e["digest"] for e in manifest] == [sha256(b"x\n1\n"), sha256(b"x\n2\n")]
    named = trackio.Artifact("refs2", "dataset")
    named.add_reference((outside / "tree").as_uri(), name="train")
    assert [e["path"] for e in trackio.log_artifact(named).manifest or []] == ["train/a.csv", "train/sub/b.csv"]
    capped = trackio.Artifact("refs3", "dataset")
    with pytest.raises(ValueError, match="max_objects=1"):
        capped.add_reference((outside / "tree").as_uri(), max_objects=1)


# -- an unreachable HTTP server at log time -------------------------------------------------


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights.bin"  # nothing listens there now


def test_unreachable_http_reference_is_recorded_offline(run: trackio.Run, outside: Path) -> None:
    url = _dead_url()
    art = trackio.Artifact("remote-weights", "model")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        art.add_reference(url)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("no content checksum" in m and url in m for m in messages), messages
    logged = trackio.log_artifact(art)
    assert logged.manifest == [{"path": "weights.bin", "digest": url, "size": 0, "ref": url}]
    # Later the server is up: download fetches it (nothing to check it against but its URI).
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    www = outside / "www"
    write(www / "weights.bin", b"served later")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        out = Path(logged.download(outside / "dl"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (out / "weights.bin").read_bytes() == b"served later"


# -- schemes fsspec knows whose package is missing --------------------------------------


@pytest.mark.parametrize(("uri", "package"), [("dvc://repo/data.csv", "dvc"), ("gs://bucket/model.bin", "gcsfs")])
def test_known_scheme_without_its_package_is_unsupported_not_importerror(run: trackio.Run, uri: str, package: str) -> None:
    pytest.importorskip("fsspec")
    try:
        __import__(package)
        pytest.skip(f"{package} is installed here")
    except ImportError:
        pass
    art = trackio.Artifact("x", "dataset")
    with pytest.raises(UnsupportedReferenceError) as err:
        art.add_reference(uri)
    message = str(err.value)
    assert "register_reference_handler" in message and f"pip install {package}" in message
    assert repr(uri.split("://")[0]) in message
    assert not isinstance(err.value, ImportError)


# -- symlinks in add_dir --------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_add_dir_follows_symlinks_like_a_hf_cache_snapshot(run: trackio.Run, outside: Path) -> None:
    blobs = outside / "hub" / "blobs"
    write(blobs / "abc123", b"weights")
    write(blobs / "def456", b'{"k": 1}')
    snap = outside / "hub" / "snapshots" / "rev"
    (snap / "sub").mkdir(parents=True)
    os.symlink(blobs / "abc123", snap / "model.safetensors")
    os.symlink(blobs / "def456", snap / "sub" / "config.json")
    art = trackio.Artifact("hf-model", "model")
    art.add_dir(snap)
    logged = trackio.log_artifact(art)
    assert [(e["path"], e["size"]) for e in logged.manifest or []] == [("model.safetensors", 7), ("sub/config.json", 8)]
    out = Path(logged.download(outside / "dl"))
    assert (out / "model.safetensors").read_bytes() == b"weights" and not (out / "model.safetensors").is_symlink()
