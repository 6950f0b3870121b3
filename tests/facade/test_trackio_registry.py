"""The model registry: registries, collections, links, promotions, unlinks and the audit log."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from trackio_helpers import PROJECT_ROOT, write

import trackio
import trackio.store
from trackio import names


def _log(tmp: Path, text: str, name: str = "resnet", type: str = "model") -> trackio.Artifact:
    f = write(tmp / f"{name}-{abs(hash(text))}" / "model.pt", text)
    return trackio.log_artifact(f, name=name, type=type)


# -- registries ------------------------------------------------------------------------


def test_create_fetch_and_list_registries() -> None:
    api = trackio.Api()
    reg = api.create_registry("models", description="what ships")
    assert isinstance(reg, trackio.Registry)
    assert reg.name == "models" and reg.description == "what ships"
    assert api.registry("models").description == "what ships"
    api.create_registry("datasets")
    assert [r.name for r in api.registries()] == ["datasets", "models"]
    assert reg.collections() == [] and reg.collection("nope") is None
    with pytest.raises(ValueError, match=r"'models'.*already exists"):
        api.create_registry("models")
    with pytest.raises(ValueError, match="'missing'"):
        api.registry("missing")


def test_a_handle_on_a_missing_registry_reads_empty_as_trackio() -> None:
    ghost = trackio.Registry("ghost")
    assert (ghost.description, ghost.collection("m"), ghost.collections(), ghost.events()) == (None, None, [], [])
    with pytest.raises(ValueError, match="'ghost'"):
        ghost.create_collection("m", artifact_type="model")


@pytest.mark.parametrize("bad", ["has space", "dots.not.allowed", "", "a/b"])
def test_bad_registry_names_are_named(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        trackio.Api().create_registry(bad)
    assert repr(bad) in str(err.value)


def test_registry_is_not_a_project_of_artifacts(run: trackio.Run, tmp_path: Path) -> None:
    trackio.Api().create_registry("models")
    _log(tmp_path, "w")
    assert trackio.Api().projects() == ["proj"]


# -- collections -------------------------------------------------------------------------


def test_create_collection_then_existing_one_returned_with_new_description() -> None:
    reg = trackio.Api().create_registry("models")
    c = reg.create_collection("my-model", artifact_type="model", description="first")
    assert isinstance(c, trackio.Collection)
    assert (c.name, c.type, c.description, c.num_links, c.latest_version, c.links) == ("my-model", "model", "first", 0, None, [])
    assert datetime.fromisoformat(c.created_at)  # ISO 8601
    with pytest.raises(AttributeError):
        c.name = "x"  # type: ignore[misc]  # frozen
    again = reg.create_collection("my-model", artifact_type="model")
    assert again.description == "first" and again.created_at == c.created_at
    assert reg.create_collection("my-model", artifact_type="model", description="second").description == "second"
    with pytest.raises(ValueError, match=r"'model'.*'dataset'"):
        reg.create_collection("my-model", artifact_type="dataset")
    with pytest.raises(ValueError, match="'bad name'"):
        reg.create_collection("bad name", artifact_type="model")
    assert [e["kind"] for e in reg.events()] == ["create", "create", "update"]


def test_collections_sorted_by_type_then_name(run: trackio.Run) -> None:
    reg = trackio.Api().create_registry("r")
    reg.create_collection("zeta", artifact_type="dataset")
    reg.create_collection("beta", artifact_type="model")
    reg.create_collection("alpha", artifact_type="model")
    assert [(c.type, c.name) for c in reg.collections()] == [("dataset", "zeta"), ("model", "alpha"), ("model", "beta")]


# -- linking -------------------------------------------------------------------------------


def test_link_returns_the_linked_artifact(run: trackio.Run, tmp_path: Path) -> None:
    reg = trackio.Api().create_registry("models")
    src = _log(tmp_path, "weights v0")
    linked = run.link_artifact(src, "registry-models/my-model", aliases=["staging"])
    assert linked.is_link and not src.is_link
    assert (linked.project, linked.name, linked.version, linked.type) == ("registry-models", "my-model", "v0", "model")
    assert linked.qualified_name == "registry-models/my-model:v0"
    assert linked.aliases == ("latest", "staging")
    assert (linked.source_project, linked.source_name, linked.source_version) == ("proj", "resnet", "v0")
    assert linked.source_qualified_name == src.qualified_name == "proj/resnet:v0"
    assert (src.source_project, src.source_name, src.source_version, src.source_qualified_name) == ("proj", "resnet", "v0", "proj/resnet:v0")
    assert linked.digest == src.digest and linked.manifest == src.manifest and linked.size == src.size
    assert linked != src and linked == trackio.Api().artifact("registry-models/my-model:v0") and len({linked, src}) == 2
    c = reg.collection("my-model")
    assert c is not None and c.type == "model" and c.num_links == 1 and c.latest_version == 0
    assert c.links == [
        {"collection_version": 0, "source_project": "proj", "source_artifact": "resnet", "source_version": 0, "aliases": ["latest", "staging"]}
    ]


def test_link_numbers_dedup_and_alias_moves(run: trackio.Run, tmp_path: Path) -> None:
    reg = trackio.Api().create_registry("models")
    a = _log(tmp_path, "a")
    b = _log(tmp_path, "b")
    other = _log(tmp_path, "c", name="vit")
    assert b.version == "v1"
    assert run.link_artifact(b, "registry-models/m", aliases=["production"]).version == "v0"  # not the source's number
    assert a.link("registry-models/m").version == "v1"
    assert run.link_artifact(other, "registry-models/m", aliases=["latest"]).version == "v2"  # passing latest: no-op
    again = run.link_artifact(b, "registry-models/m", aliases=["staging"])  # already linked: same version, aliases move
    assert again.version == "v0" and again.aliases == ("production", "staging")
    moved = a.link("registry-models/m", aliases=["production"])
    assert moved.version == "v1" and moved.aliases == ("production",)
    c = reg.collection("m")
    assert c is not None
    assert [(lk["collection_version"], lk["source_artifact"], lk["source_version"], lk["aliases"]) for lk in c.links] == [
        (2, "vit", 0, ["latest"]),
        (1, "resnet", 0, ["production"]),
        (0, "resnet", 1, ["staging"]),
    ]
    assert [e["kind"] for e in reg.events()] == ["create", "create", "link", "promote", "link", "link", "promote", "promote"]


def test_link_rules_and_errors(run: trackio.Run, tmp_path: Path) -> None:
    src = _log(tmp_path, "x")
    with pytest.raises(ValueError, match=r"'models'.*create_registry"):
        run.link_artifact(src, "registry-models/m")  # registries are never created implicitly
    reg = trackio.Api().create_registry("models")
    for bad in ("models/m", "registry-models", "registry-models/a/b", "registry-bad name/m"):
        with pytest.raises(ValueError) as err:
            run.link_artifact(src, bad)
        assert repr(bad) in str(err.value) or "'bad name'" in str(err.value)
    with pytest.raises(ValueError, match="'v3'"):
        run.link_artifact(src, "registry-models/m", aliases=["v3"])
    with pytest.raises(TypeError):
        run.link_artifact("proj/resnet:v0", "registry-models/m")  # type: ignore[arg-type]
    run.link_artifact(src, "registry-models/m")
    data = _log(tmp_path, "rows", name="table", type="dataset")
    with pytest.raises(ValueError, match=r"'model'.*'dataset'"):
        run.link_artifact(data, "registry-models/m")
    with pytest.raises(trackio.ArtifactFrozenError):
        trackio.Artifact("draft", "model").link("registry-models/m")
    assert reg.collection("m").num_links == 1  # type: ignore[union-attr]


def test_link_artifact_logs_a_draft_first(run: trackio.Run, tmp_path: Path) -> None:
    trackio.Api().create_registry("models")
    draft = trackio.Artifact("resnet", "model", metadata={"acc": 0.9})
    draft.add_file(write(tmp_path / "w.bin", b"weights"))
    linked = run.link_artifact(draft, "registry-models/m")
    assert linked.source_qualified_name == "proj/resnet:v0"
    assert linked.metadata == {"acc": 0.9}
    assert [a.qualified_name for a in run.logged_artifacts()] == ["proj/resnet:v0"]


def test_linking_a_link_links_its_source(run: trackio.Run, tmp_path: Path) -> None:
    trackio.Api().create_registry("models")
    linked = run.link_artifact(_log(tmp_path, "x"), "registry-models/m")
    with pytest.warns(UserWarning, match="never chain"):
        second = linked.link("registry-models/other")
    assert second.source_qualified_name == "proj/resnet:v0" and second.qualified_name == "registry-models/other:v0"


# -- unlinking -----------------------------------------------------------------------------


def test_unlink_removes_membership_only(run: trackio.Run, tmp_path: Path) -> None:
    reg = trackio.Api().create_registry("models")
    srcs = [_log(tmp_path, f"w{i}") for i in range(3)]
    links = [run.link_artifact(s, "registry-models/m") for s in srcs]
    run.link_artifact(srcs[2], "registry-models/m", aliases=["production"])
    links[2].unlink()
    c = reg.collection("m")
    assert c is not None and [lk["collection_version"] for lk in c.links] == [1, 0]
    assert c.latest_version == 1 and c.links[0]["aliases"] == ["latest"]  # latest moved to the highest remaining
    unlink_event = reg.events()[-1]
    assert unlink_event["kind"] == "unlink"
    assert unlink_event["payload"]["removed_aliases"] == ["latest", "production"] and unlink_event["payload"]["latest_version"] == 1
    assert trackio.Api().artifact("proj/resnet:v2").digest == srcs[2].digest  # the source is untouched
    assert run.link_artifact(srcs[2], "registry-models/m").version == "v3"  # numbers are never reused
    with pytest.raises(ValueError, match="production"):
        trackio.use_artifact("registry-models/m:production")
    with pytest.raises(ValueError, match="not one"):
        srcs[0].unlink()
    links[0].unlink()
    with pytest.raises(ValueError, match="v0"):
        links[0].unlink()


# -- using linked versions ------------------------------------------------------------------


def test_use_artifact_by_registry_location(run: trackio.Run, tmp_path: Path) -> None:
    trackio.Api().create_registry("models")
    a, b = _log(tmp_path, "old weights"), _log(tmp_path, "new weights")
    run.link_artifact(a, "registry-models/my-model", aliases=["production"])
    run.link_artifact(b, "registry-models/my-model", aliases=["staging"])
    trackio.finish()
    consumer = trackio.init(project="serving")
    prod = trackio.use_artifact("registry-models/my-model:production")
    assert prod.qualified_name == "registry-models/my-model:v0" and prod.source_qualified_name == "proj/resnet:v0"
    assert trackio.use_artifact("registry-models/my-model:v1").source_version == "v1"
    assert trackio.use_artifact("registry-models/my-model:latest").version == "v1"
    assert trackio.use_artifact("registry-models/my-model").version == "v1"
    out = Path(prod.download(tmp_path / "dl"))
    assert (out / "model.pt").read_text() == "old weights"
    assert {x.qualified_name for x in consumer.used_artifacts()} == {"proj/resnet:v0", "proj/resnet:v1"}  # lineage: the sources
    assert consumer in a.used_by()
    assert trackio.Api().artifact("registry-models/my-model:staging").source_version == "v1"
    with pytest.raises(ValueError, match="'nope'"):
        trackio.use_artifact("registry-models/my-model:nope")
    with pytest.raises(ValueError, match="'ghost'"):
        trackio.use_artifact("registry-models/ghost")
    with pytest.raises(ValueError, match="'dataset'"):
        trackio.use_artifact("registry-models/my-model", type="dataset")


# -- the audit log --------------------------------------------------------------------------


def test_events_are_the_history_with_who(run: trackio.Run, tmp_path: Path) -> None:
    reg = trackio.Api().create_registry("models")
    linked = run.link_artifact(_log(tmp_path, "x"), "registry-models/m", aliases=["staging"])
    reg.promote("m", "v0", "production")
    reg.promote("m", 0, "production")  # already there: no event
    linked.unlink()
    evs = reg.events()
    assert [e["kind"] for e in evs] == ["create", "create", "link", "promote", "promote", "unlink"]
    assert [e["id"] for e in evs] == [1, 2, 3, 4, 5, 6]
    assert [e["ts"] for e in evs] == sorted(e["ts"] for e in evs)
    me = getpass.getuser()
    assert all(e["user"] == me and e["host"] == socket.gethostname() and e["who"] == f"{me}@{socket.gethostname()}" for e in evs)
    assert "collection" not in evs[0]["payload"] and evs[0]["payload"]["registry"] == "models"
    promote = evs[4]["payload"]
    assert (promote["alias"], promote["collection_version"], promote["source_version"]) == ("production", 0, 0)
    evs[0]["payload"]["registry"] = "tampered"
    evs.clear()
    assert reg.events()[0]["payload"]["registry"] == "models"  # nothing handed out edits the log
    assert not hasattr(reg, "delete_event") and not hasattr(reg, "add_event")


def test_promote_errors_name_the_token(run: trackio.Run, tmp_path: Path) -> None:
    reg = trackio.Api().create_registry("models")
    run.link_artifact(_log(tmp_path, "x"), "registry-models/m")
    with pytest.raises(ValueError, match="'latest'"):
        reg.promote("m", 0, "latest")
    with pytest.raises(ValueError, match="'v9'"):
        reg.promote("m", 0, "v9")
    with pytest.raises(ValueError, match="v5"):
        reg.promote("m", 5, "production")
    with pytest.raises(ValueError, match="'ghost'"):
        reg.promote("ghost", 0, "production")
    with pytest.raises(ValueError, match="'seven'"):
        reg.promote("m", "seven", "production")


# -- gc and deletion ------------------------------------------------------------------------


def test_linked_sources_survive_gc_and_cannot_be_deleted(run: trackio.Run, tmp_path: Path) -> None:
    trackio.Api().create_registry("models")
    trackio.Api().create_registry("archive")
    src = _log(tmp_path, "precious weights " * 1000)
    run.link_artifact(src, "registry-models/m")
    run.link_artifact(src, "registry-archive/old")
    with pytest.raises(ValueError, match=r"registry-archive/old:v0.*registry-models/m:v0|registry-models/m:v0.*registry-archive/old:v0"):
        trackio.Api().delete_version("proj/resnet:v0")
    repo = trackio.store.get_repo()
    # Even with every ref of the source artifact gone, the registry keeps its files reachable.
    for ref in repo.refs.list(names.artifact_prefix("proj", "resnet") + "/"):
        repo.refs.delete(ref)
    repo.gc(timedelta(0))
    out = Path(trackio.Api().artifact("registry-models/m:latest").download(tmp_path / "dl"))
    assert (out / "model.pt").read_text() == "precious weights " * 1000
    assert repo.fsck().ok


def test_delete_after_unlink_is_allowed(run: trackio.Run, tmp_path: Path) -> None:
    trackio.Api().create_registry("models")
    src = _log(tmp_path, "x")
    run.link_artifact(src, "registry-models/m").unlink()
    trackio.Api().delete_version("proj/resnet:v0")
    with pytest.raises(ValueError):
        trackio.Api().artifact("proj/resnet:v0")


def test_link_survives_deleting_an_earlier_source_version(run: trackio.Run, tmp_path: Path) -> None:
    trackio.Api().create_registry("models")
    _log(tmp_path, "v0 weights")
    v1 = _log(tmp_path, "v1 weights")
    run.link_artifact(v1, "registry-models/m", aliases=["production"])
    trackio.Api().delete_version("proj/resnet:v0")  # re-commits v1 under a new id
    trackio.store.get_repo().gc(timedelta(0))
    linked = trackio.use_artifact("registry-models/m:production")
    assert linked.source_qualified_name == "proj/resnet:v1"
    assert linked.id == trackio.Api().artifact("proj/resnet:v1").id != v1.id  # the source as it is now
    assert (Path(linked.download(tmp_path / "dl")) / "model.pt").read_text() == "v1 weights"
    assert trackio.Api().set_alias("registry-models/m:v0", "canary").aliases == ("canary", "latest", "production")


# -- concurrency ----------------------------------------------------------------------------

PROMOTER = textwrap.dedent(
    """
    import json, pathlib, sys, time
    import trackio

    version, go = sys.argv[1], pathlib.Path(sys.argv[2])
    reg = trackio.Api().registry("models")
    pathlib.Path(f"ready-{version}").touch()
    deadline = time.time() + 60
    while not go.exists():
        if time.time() > deadline:
            sys.exit("never got the go signal")
        time.sleep(0.001)
    reg.promote("m", version, "production")
    print(json.dumps({"promoted": version}))
    """
)


def test_eight_processes_promoting_lose_no_move(run: trackio.Run, tmp_path: Path, outside: Path) -> None:
    reg = trackio.Api().create_registry("models")
    for i in range(8):
        run.link_artifact(_log(tmp_path, f"weights {i}"), "registry-models/m")
    trackio.finish()
    trackio.store.close_all()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    go = outside / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", PROMOTER, f"v{i}", str(go)], cwd=outside, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(8)
    ]
    deadline = time.time() + 60
    while len(list(outside.glob("ready-*"))) < 8 and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["promoted"].startswith("v")
    moves = [e for e in reg.events() if e["kind"] == "promote" and e["payload"]["alias"] == "production"]
    assert sorted(e["payload"]["collection_version"] for e in moves) == list(range(8))  # all 8 moves, none lost
    assert [e["payload"]["previous_version"] for e in moves] == [None] + [e["payload"]["collection_version"] for e in moves[:-1]]
    c = reg.collection("m")
    assert c is not None
    holders = [lk["collection_version"] for lk in c.links if "production" in lk["aliases"]]
    assert holders == [moves[-1]["payload"]["collection_version"]]  # one holder: the last move
    assert trackio.Api().artifact("registry-models/m:production").version == f"v{holders[0]}"


# -- the drop-in metadata rule -------------------------------------------------------------


def test_metadata_is_a_copy(run: trackio.Run, tmp_path: Path) -> None:
    given = {"acc": 0.5, "nested": {"k": [1]}}
    art = trackio.Artifact("m", "model", metadata=given)
    given["acc"] = 0.0
    given["nested"]["k"].append(2)
    got = art.metadata
    got["acc"] = 1.0
    got["nested"]["k"].append(3)
    assert art.metadata == {"acc": 0.5, "nested": {"k": [1]}}
    art.metadata = {"acc": 0.7}
    art.add_file(write(tmp_path / "f", b"x"))
    logged = trackio.log_artifact(art)
    logged.metadata["acc"] = 0
    assert logged.metadata == {"acc": 0.7}


# -- the fold, under any sequence of intents --------------------------------------------------

OPS = st.lists(
    st.tuples(st.sampled_from(["link", "promote", "unlink"]), st.integers(0, 4), st.sampled_from(["staging", "production"])),
    max_size=40,
)


@given(OPS)
def test_fold_invariants(ops: list[tuple[str, int, str]]) -> None:
    from trackio import registry as mr

    ts = "2026-01-01T00:00:00+00:00"
    state, _ = mr.apply(None, "create", {"registry": "r"}, ts)  # type: ignore[misc]
    state, _ = mr.apply(state, "create", {"registry": "r", "collection": "c", "type": "model"}, ts)  # type: ignore[misc]
    ever: list[int] = []
    for kind, source, alias in ops:
        payload = {"registry": "r", "collection": "c", "source_project": "p", "source_artifact": "a", "source_version": source}
        if kind == "link":
            payload |= {"type": "model", "source_commit": "0" * 32, "tree": "0" * 32}
        if kind == "promote":
            payload["alias"] = alias
        try:
            folded = mr.apply(state, kind, payload, ts)
        except ValueError:
            assert kind == "promote"  # only promoting an unlinked source can fail
            continue
        if folded is None:
            continue
        state, effective = folded
        if kind == "link":
            assert effective["collection_version"] not in ever  # numbers are never reused
            ever.append(effective["collection_version"])
        coll = state["collections"]["c"]
        live = [lk["collection_version"] for lk in coll["links"]]
        assert len({(lk["source_version"]) for lk in coll["links"]}) == len(live)  # one link per source
        assert set(coll["aliases"].values()) <= set(live)  # aliases only on live links
        assert coll["aliases"].get("latest") == (max(live) if live else None)  # latest follows the newest
    assert ever == sorted(ever)
