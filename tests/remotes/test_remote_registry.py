"""The model registry through a real S3 remote (moto) between two TRACKIO_DIRs ("machines")."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import S3_REGION, Target, finish, free_port, spawn

import trackio
import trackio.store
from objstore import Repository
from trackio import registry as model_registry

pytestmark = pytest.mark.timeout(120)


def _file(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name / "model.pt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_two_machines_share_links_and_promotions(s3_target: Target, trackio_home: Callable[[str], Path], tmp_path: Path) -> None:
    url, opts = s3_target.url, s3_target.storage_options

    trackio_home("machine-a")
    trackio.Api(remote=url, storage_options=opts).create_registry("models", description="shared")
    run_a = trackio.init(project="train", name="a", remote=url, storage_options=opts)
    a = trackio.log_artifact(_file(tmp_path, "a", "weights from a"), name="resnet", type="model")
    linked = run_a.link_artifact(a, "registry-models/m", aliases=["staging"])
    assert linked.qualified_name == "registry-models/m:v0"
    trackio.finish()

    trackio_home("machine-b")
    api_b = trackio.Api(remote=url, storage_options=opts)
    reg_b = api_b.registry("models")
    assert reg_b.description == "shared"
    c = reg_b.collection("m")
    assert c is not None and [(lk["collection_version"], lk["aliases"]) for lk in c.links] == [(0, ["latest", "staging"])]
    run_b = trackio.init(project="serve", name="b", remote=url, storage_options=opts)
    staged = trackio.use_artifact("registry-models/m:staging")
    assert staged.source_qualified_name == "train/resnet:v0"
    assert (Path(staged.download(tmp_path / "dl-b")) / "model.pt").read_text() == "weights from a"
    b = trackio.log_artifact(_file(tmp_path, "b", "weights from b"), name="vit", type="model")
    assert run_b.link_artifact(b, "registry-models/m", aliases=["production"]).version == "v1"
    reg_b.promote("m", 0, "staging-2")
    trackio.finish()

    trackio_home("machine-a")
    reg_a = trackio.Api(remote=url, storage_options=opts).registry("models")
    c = reg_a.collection("m")
    assert c is not None
    assert [(lk["collection_version"], lk["source_artifact"], lk["aliases"]) for lk in c.links] == [
        (1, "vit", ["latest", "production"]),
        (0, "resnet", ["staging", "staging-2"]),
    ]
    kinds = [(e["kind"], e["payload"].get("alias")) for e in reg_a.events()]
    assert kinds == [("create", None), ("create", None), ("link", None), ("promote", "staging"), ("link", None), ("promote", "production"), ("promote", "staging-2")]
    assert all(e["user"] and e["host"] for e in reg_a.events())
    # Machine A consumes B's version through the registry; the bytes come from the remote.
    trackio.init(project="eval", remote=url, storage_options=opts)
    prod = trackio.use_artifact("registry-models/m:production")
    assert (Path(prod.download(tmp_path / "dl-a")) / "model.pt").read_text() == "weights from b"
    trackio.finish()

    # A third machine, no run and no TRACKIO_REMOTE: what it read from the remote it unlinks there.
    trackio_home("machine-c")
    trackio.Api(remote=url, storage_options=opts).artifact("registry-models/m:production").unlink()
    c = trackio.Api(remote=url, storage_options=opts).registry("models").collection("m")
    assert c is not None and [(lk["collection_version"], lk["aliases"]) for lk in c.links] == [(0, ["latest", "staging", "staging-2"])]


def test_offline_links_on_two_machines_are_rebased_not_lost(s3_target: Target, trackio_home: Callable[[str], Path], tmp_path: Path) -> None:
    url, opts = s3_target.url, s3_target.storage_options

    trackio_home("machine-a")
    trackio.Api(remote=url, storage_options=opts).create_registry("models")
    trackio_home("machine-b")
    run_b = trackio.init(project="b", remote=url, storage_options=opts)
    first = trackio.log_artifact(_file(tmp_path, "b0", "b zero"), name="net", type="model")
    run_b.link_artifact(first, "registry-models/m")  # B now holds the registry chain too
    trackio.finish()

    # Both machines now work without the remote, each adding links and moves.
    trackio_home("machine-a")
    model_registry_pull(url, opts)
    run_a = trackio.init(project="a")
    for i in range(2):
        run_a.link_artifact(trackio.log_artifact(_file(tmp_path, f"a{i}", f"a {i}"), name="net", type="model"), "registry-models/m", aliases=["production"])
    trackio.finish()
    trackio_home("machine-b")
    run_b = trackio.init(project="b")
    late = trackio.log_artifact(_file(tmp_path, "b1", "b one"), name="net", type="model")
    run_b.link_artifact(late, "registry-models/m", aliases=["production", "staging"])
    trackio.finish()

    trackio_home("machine-a")
    trackio.sync(remote=url, storage_options=opts)
    trackio_home("machine-b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing conflicts: nothing is dropped
        trackio.sync(remote=url, storage_options=opts)

    with Repository.open(url, storage_options=opts) as view:
        state = model_registry.load(view, "models")
        assert state is not None
        links = state["collections"]["m"]["links"]
        assert sorted((lk["source_project"], lk["source_version"]) for lk in links) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
        assert sorted(lk["collection_version"] for lk in links) == [0, 1, 2, 3]  # B's late link renumbered after A's
        aliases = state["collections"]["m"]["aliases"]
        by_version = {lk["collection_version"]: (lk["source_project"], lk["source_version"]) for lk in links}
        assert by_version[aliases["production"]] == ("b", 1) and by_version[aliases["staging"]] == ("b", 1)
        assert by_version[aliases["latest"]] == ("b", 1)
        moves = [e for e in model_registry.events(view, "models") if e["kind"] == "promote" and e["payload"]["alias"] == "production"]
        assert [(e["payload"]["source_project"], e["payload"]["source_version"]) for e in moves] == [("a", 0), ("a", 1), ("b", 1)]

    # A fresh machine reading only the remote sees the same registry.
    trackio_home("machine-c")
    c = trackio.Api(remote=url, storage_options=opts).registry("models").collection("m")
    assert c is not None and c.num_links == 4 and c.latest_version == 3


def model_registry_pull(url: str, opts: dict[str, object]) -> None:
    """``trackio artifacts pull``: bring the remote's registries (and everything else) here."""
    trackio.store.get_repo().fetch(url, refs=["trackio"], storage_options=opts)


def test_machines_promoting_at_once_through_s3_lose_no_move(
    s3_target: Target, s3_server: Any, trackio_home: Callable[[str], Path], tmp_path: Path
) -> None:
    """Four processes, four TRACKIO_DIRs, one S3 remote, one alias: every move lands, the alias ends on the last."""
    url, opts = s3_target.url, s3_target.storage_options
    machines = 4
    trackio_home("publisher")
    trackio.Api(remote=url, storage_options=opts).create_registry("models")
    run = trackio.init(project="train", remote=url, storage_options=opts)
    for i in range(machines):
        run.link_artifact(trackio.log_artifact(_file(tmp_path, f"w{i}", f"weights {i}"), name="net", type="model"), "registry-models/m")
    trackio.finish()

    go = tmp_path / "go"
    code = f"""
        import os, time, warnings
        import trackio
        warnings.simplefilter("ignore")
        reg = trackio.Api(remote={url!r}, storage_options={s3_target.child_options()}).registry("models")
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        reg.promote("m", os.environ["VERSION"], "production")
        print("done", flush=True)
    """
    procs = []
    try:
        for i in range(machines):
            cwd = tmp_path / f"m{i}"
            cwd.mkdir()
            procs.append(spawn(code, cwd, VERSION=f"v{i}", TRACKIO_DIR=str(tmp_path / f"home-{i}"), **s3_server.env()))
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == b"ready", (line, p.stderr.read().decode() if p.stderr else "")
        go.touch()
        for p in procs:
            finish(p, timeout=100)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    trackio_home("observer")
    reg = trackio.Api(remote=url, storage_options=opts).registry("models")
    moves = [e for e in reg.events() if e["kind"] == "promote" and e["payload"]["alias"] == "production"]
    assert sorted(e["payload"]["collection_version"] for e in moves) == list(range(machines))
    assert [e["payload"]["previous_version"] for e in moves] == [None] + [e["payload"]["collection_version"] for e in moves[:-1]]
    c = reg.collection("m")
    assert c is not None
    assert [lk["collection_version"] for lk in c.links if "production" in lk["aliases"]] == [moves[-1]["payload"]["collection_version"]]


def test_registry_changes_offline_are_kept_and_synced_later(s3_target: Target, trackio_home: Callable[[str], Path], tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    unreachable = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": dead, "region_name": S3_REGION},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
    }
    trackio_home("laptop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api = trackio.Api(remote=s3_target.url, storage_options=unreachable)
        reg = api.create_registry("models")
        run = trackio.init(project="p", remote=s3_target.url, storage_options=unreachable)
        linked = run.link_artifact(trackio.log_artifact(_file(tmp_path, "w", "offline weights"), name="net", type="model"), "registry-models/m", aliases=["production"])
        assert linked.version == "v0"
        assert reg.collection("m").num_links == 1  # type: ignore[union-attr]  # read locally
        run.finish()
    messages = [str(w.message) for w in caught]
    assert any("kept here and pushed later" in m for m in messages), messages

    trackio.sync(remote=s3_target.url, storage_options=s3_target.storage_options)
    trackio_home("server")
    c = trackio.Api(remote=s3_target.url, storage_options=s3_target.storage_options).registry("models").collection("m")
    assert c is not None and c.links[0]["aliases"] == ["latest", "production"]
