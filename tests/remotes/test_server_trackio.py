"""trackio end to end through one objstore server: two machines, lineage, aliases, an offline queue."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from server_helpers import ServerProcess, make_tokens, start_server

import trackio
import trackio.store

pytestmark = pytest.mark.timeout(120)


def _content(art: trackio.Artifact, path: str = "data.txt") -> bytes:
    with art.open(path) as f:
        return f.read()  # type: ignore[no-any-return]


def test_two_trackio_dirs_share_artifacts_through_one_server(
    server: ServerProcess, trackio_home: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    (src / "sub" / "config.json").write_text('{"layers": 3}')

    trackio_home("machine-a")  # the remote and token passed to init
    run_a = trackio.init(project="team", name="producer", remote=server.url, storage_options=server.options())
    v0 = trackio.log_artifact(src, name="model", type="model", aliases=["prod"])
    assert v0.wait(timeout=60).version == "v0"
    (src / "weights.bin").write_bytes(bytes(range(255, -1, -1)) * 8192)
    v1 = trackio.log_artifact(src, name="model", type="model", aliases=["candidate"])
    assert v1.wait(timeout=60).version == "v1"
    trackio.finish()

    trackio_home("machine-b")  # the remote and token from the environment
    monkeypatch.setenv("TRACKIO_REMOTE", server.url)
    monkeypatch.setenv("OBJSTORE_TOKEN", server.tokens["write"])
    run_b = trackio.init(project="team", name="consumer")
    prod = trackio.use_artifact("model:prod")
    assert prod.version == "v0" and prod.digest == v0.digest
    assert not trackio.store.get_repo().odb.has(prod.id or "")  # read in place through the server
    out = Path(prod.download(tmp_path / "prod"))
    assert (out / "sub" / "config.json").read_text() == '{"layers": 3}'
    assert (out / "weights.bin").read_bytes() == bytes(range(256)) * 8192
    assert trackio.use_artifact("model:latest").version == "v1"
    assert trackio.use_artifact("model:candidate").digest == v1.digest
    assert prod.logged_by() is not None and prod.logged_by().id == run_a.id  # type: ignore[union-attr]
    f = tmp_path / "data.txt"
    f.write_text("derived on machine b")
    derived = trackio.log_artifact(f, name="derived", type="dataset")
    assert derived.wait(timeout=60).version == "v0"
    trackio.finish()

    trackio_home("machine-c")  # neither machine: the server alone tells the story
    api = trackio.Api(project="team", remote=server.url, storage_options=server.options("read"))
    assert [v.version for v in api.artifact_versions("model")] == ["v0", "v1"]
    assert [r.id for r in api.artifact("model:v0").used_by()] == [run_b.id]
    assert api.artifact("derived:v0").logged_by().id == run_b.id  # type: ignore[union-attr]
    assert _content(api.artifact("derived:latest")) == b"derived on machine b"
    assert {r.name for r in api.runs()} == {"producer", "consumer"}


def test_offline_queue_drains_when_the_server_comes_back(
    trackio_home: Callable[[str], Path], tmp_path: Path
) -> None:
    tokens = make_tokens(tmp_path / "tokens.json")
    srv = start_server(tmp_path / "served", tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens)
    port = int(srv.url.rsplit(":", 1)[1])
    url, opts = srv.url, srv.options()
    srv.stop()  # the server is down while we work
    f = tmp_path / "data.txt"
    f.write_text("logged while the server was down")
    trackio_home("laptop")
    try:
        trackio.init(project="offline", remote=url, storage_options=opts)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            art = trackio.log_artifact(f, name="notes", type="dataset")
            assert art.version == "v0"
            with pytest.raises(trackio.SyncError):
                art.wait(timeout=60)
        assert any("could not push" in str(w.message) for w in caught)
        srv = start_server(tmp_path / "served", tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens, port=port)
        result = trackio.sync()
        assert result.objects > 0 and any("notes" in r for r in result.refs_updated)
        api = trackio.Api(project="offline", remote=url, storage_options=srv.options("read"))
        assert [v.version for v in api.artifact_versions("notes")] == ["v0"]
        assert _content(api.artifact("notes:v0")) == b"logged while the server was down"
        trackio.finish()
    finally:
        srv.stop()


def test_trackio_init_server_url_as_trackio_users_write_it(
    server: ServerProcess, trackio_home: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``server_url`` with trackio's ``write_token`` query parameter (or TRACKIO_WRITE_TOKEN / TRACKIO_SERVER_URL)."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights" * 1000)

    trackio_home("laptop")
    run = trackio.init(project="team", name="train", server_url=f"{server.url}?write_token={server.tokens['write']}")
    assert run.remote == server.url  # the token is sent, never kept in the URL
    logged = trackio.log_artifact(f, name="ckpt", type="model")
    assert logged.wait(timeout=60).version == "v0"
    trackio.finish()

    trackio_home("cluster")
    monkeypatch.setenv("TRACKIO_SERVER_URL", server.url)
    monkeypatch.setenv("TRACKIO_WRITE_TOKEN", server.tokens["write"])
    trackio.init(project="team", name="train", resume="must")  # the run logged on the laptop, fetched from the server
    used = trackio.use_artifact("ckpt:latest")
    assert used.digest == logged.digest
    assert (Path(used.download(tmp_path / "out")) / "w.bin").read_bytes() == b"weights" * 1000
    trackio.finish()
