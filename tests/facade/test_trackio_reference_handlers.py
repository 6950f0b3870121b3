"""The reference extension point and the manifest shape users code against.

``ReferenceHandler`` / ``ResolvedReference`` / ``register_reference_handler``
teach trackio a new URI scheme; these tests use a made-up ``vault://`` scheme
backed by a plain dict, so every probe and fetch is visible.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trackio_helpers import rand_bytes, sha256, store_listing, tree_listing, write

import trackio
from trackio import ReferenceHandler, ResolvedReference, register_reference_handler
from trackio.errors import ReferenceChangedError, UnsupportedReferenceError


class Vault(ReferenceHandler):
    """``vault://<key>``: objects in a dict; ``vault://<prefix>/`` lists keys under it.

    ``kind`` picks the digest the vault reports: "sha256" (content hash),
    "tag" (a bare version tag, bumped on every write) or "none".
    """

    def __init__(self, kind: str = "sha256") -> None:
        self.objects: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self.kind = kind
        self.resolved: list[str] = []
        self.fetched: list[str] = []

    def put(self, key: str, data: bytes) -> str:
        self.objects[key] = data
        self.versions[key] = self.versions.get(key, 0) + 1
        return f"vault://{key}"

    def matches(self, scheme: str, uri: str) -> bool:
        return scheme == "vault"

    def _digest(self, key: str) -> str | None:
        if self.kind == "sha256":
            return "sha256:" + hashlib.sha256(self.objects[key]).hexdigest()
        if self.kind == "tag":
            return f"rev{self.versions[key]}"
        return None

    def resolve(self, uri: str, checksum: bool, max_objects: int) -> list[ResolvedReference]:
        self.resolved.append(uri)
        key = uri[len("vault://") :].split("?", 1)[0]  # a query is the caller's business
        if key.endswith("/"):
            keys = sorted(k for k in self.objects if k.startswith(key))
            if not keys:
                raise FileNotFoundError(f"nothing in the vault under {uri}")
            if len(keys) > max_objects:
                raise ValueError(f"{uri} holds more than {max_objects} objects")
            return [
                ResolvedReference(
                    k[len(key) :], f"vault://{k}", len(self.objects[k]), self._digest(k) if checksum else None
                )
                for k in keys
            ]
        if key not in self.objects:
            raise FileNotFoundError(f"no such vault object: {uri}")
        return [ResolvedReference(None, uri, len(self.objects[key]), self._digest(key) if checksum else None)]

    def fetch(self, uri: str, dest: Path) -> None:
        self.fetched.append(uri)
        dest.write_bytes(self.objects[uri[len("vault://") :].split("?", 1)[0]])

    def hint(self) -> str:
        return "enable vault checksums"


@pytest.fixture
def vault() -> Iterator[Vault]:
    handler = register_reference_handler(Vault())
    try:
        yield handler  # type: ignore[misc]
    finally:
        trackio.unregister_reference_handler(handler)


def _log(uri: str, artifact: str = "vaulted", **kwargs: object) -> trackio.Artifact:
    art = trackio.Artifact(artifact, "dataset")
    art.add_reference(uri, **kwargs)  # type: ignore[arg-type]
    return trackio.log_artifact(art)


# -- the names users import -------------------------------------------------------


def test_extension_point_names_are_exported():
    assert issubclass(trackio.ReferenceHandler, object)
    r = ResolvedReference(None, "vault://x")
    assert (r.relkey, r.uri, r.size, r.digest) == (None, "vault://x", None, None)
    assert ResolvedReference._fields == ("relkey", "uri", "size", "digest")
    with pytest.raises(TypeError):
        ReferenceHandler()  # type: ignore[abstract]


def test_registering_something_that_is_not_a_handler_is_refused():
    with pytest.raises(TypeError, match="ReferenceHandler"):
        register_reference_handler(object())  # type: ignore[arg-type]


# -- a custom scheme ----------------------------------------------------------------


def test_custom_handler_single_object_is_recorded_not_copied(run, vault, outside, home):
    data = rand_bytes(1, 200_000)
    uri = vault.put("models/w.bin", data)
    logged = _log(uri)
    assert logged.manifest == [{"path": "w.bin", "digest": sha256(data), "size": len(data), "ref": uri}]
    assert logged.size == len(data)
    stored = sum(size for size, _ in store_listing(home).values())
    assert stored < 50_000  # the manifest, not the 200 kB
    assert vault.fetched == []
    path = logged.download(root=outside / "dl")
    assert tree_listing(path) == {"w.bin": data}
    assert vault.fetched == [uri]


def test_custom_handler_prefix_expands_under_name(run, vault, outside):
    vault.put("ds/train/a.txt", b"aaa")
    vault.put("ds/train/sub/b.txt", b"bb")
    vault.put("ds/other.txt", b"not under the prefix")
    logged = _log("vault://ds/train/", name="data")
    assert [(e["path"], e["ref"], e["size"]) for e in logged.manifest] == [
        ("data/a.txt", "vault://ds/train/a.txt", 3),
        ("data/sub/b.txt", "vault://ds/train/sub/b.txt", 2),
    ]
    default = _log("vault://ds/train/", artifact="defaulted")
    assert [e["path"] for e in default.manifest] == ["train/a.txt", "train/sub/b.txt"]
    assert tree_listing(logged.download(root=outside / "dl")) == {"data/a.txt": b"aaa", "data/sub/b.txt": b"bb"}


def test_custom_handler_max_objects(run, vault, home):
    for i in range(5):
        vault.put(f"many/{i}.txt", b"x")
    before = store_listing(home)
    art = trackio.Artifact("capped", "dataset")
    with pytest.raises(ValueError, match=r"max_objects|more than 3"):
        art.add_reference("vault://many/", max_objects=3)
    art.add_reference("vault://many/", max_objects=5)
    assert len(trackio.log_artifact(art).manifest) == 5
    assert store_listing(home) != before
    with pytest.raises(ValueError, match="max_objects"):
        trackio.Artifact("zero", "dataset").add_reference("vault://many/", max_objects=0)


def test_custom_handler_missing_object_raises_naming_it(run, vault, home):
    before = store_listing(home)
    with pytest.raises(FileNotFoundError, match=re.escape("vault://nope.bin")):
        trackio.Artifact("missing", "dataset").add_reference("vault://nope.bin")
    assert store_listing(home) == before


def test_version_follows_the_referenced_content(run, vault):
    uri = vault.put("w.bin", b"epoch 1")
    assert _log(uri).version == "v0"
    assert _log(uri).version == "v0"  # unchanged: the version is reused
    vault.put("w.bin", b"epoch 2")
    assert _log(uri).version == "v1"
    vault.put("w.bin", b"epoch 1")  # back to the first content: v0 again, latest stays
    again = _log(uri)
    assert again.version == "v0"
    assert trackio.use_artifact("vaulted").version == "v1"


def test_tampered_custom_object_is_refused_on_download(run, vault, outside):
    uri = vault.put("w.bin", b"the real weights")
    logged = _log(uri)
    vault.objects["w.bin"] = b"the fake weights"  # same size, no version bump: only the hash can tell
    dest = outside / "dl"
    with pytest.raises(ReferenceChangedError, match=re.escape("w.bin")):
        logged.download(root=dest)
    assert tree_listing(dest) == {}
    vault.objects["w.bin"] = b"the real weights"
    assert tree_listing(logged.download(root=dest)) == {"w.bin": b"the real weights"}


def test_bare_version_tags_are_rechecked_before_fetching(run, outside):
    vault = register_reference_handler(Vault(kind="tag"))
    try:
        uri = vault.put("w.bin", b"v1 bytes")
        logged = _log(uri)
        (entry,) = logged.manifest
        assert entry["digest"] == "rev1"
        assert _log(uri).version == "v0"
        vault.put("w.bin", b"v2 bytes")  # the tag moves
        with pytest.raises(ReferenceChangedError, match=r"w\.bin.*rev1"):
            logged.download(root=outside / "dl")
        assert vault.fetched == []  # refused before moving any bytes
        assert _log(uri).version == "v1"
    finally:
        trackio.unregister_reference_handler(vault)


def test_no_checksum_warns_with_the_handlers_hint_and_uses_the_uri(run, outside):
    vault = register_reference_handler(Vault(kind="none"))
    try:
        uri = vault.put("w.bin", b"opaque")
        art = trackio.Artifact("plain", "dataset")
        with pytest.warns(UserWarning, match="enable vault checksums"):
            art.add_reference(uri)
        (entry,) = trackio.log_artifact(art).manifest
        assert entry["digest"] == uri
        assert tree_listing(trackio.use_artifact("plain").download(root=outside / "dl")) == {"w.bin": b"opaque"}
    finally:
        trackio.unregister_reference_handler(vault)


def test_checksum_false_does_not_probe_and_does_not_warn(run, vault):
    uri = vault.put("w.bin", b"lazy")
    art = trackio.Artifact("lazy", "dataset")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        art.add_reference(uri, checksum=False)
    (entry,) = trackio.log_artifact(art).manifest
    assert entry["digest"] == uri


# -- which handler runs ---------------------------------------------------------------


def test_registered_handlers_come_before_builtins_and_in_order(run, external_file):
    class Claims(Vault):
        def __init__(self, tag: str) -> None:
            super().__init__(kind="tag")
            self.tag = tag

        def matches(self, scheme: str, uri: str) -> bool:
            return scheme == "file"

        def resolve(self, uri: str, checksum: bool, max_objects: int) -> list[ResolvedReference]:
            self.resolved.append(uri)
            return [ResolvedReference(None, uri, 1, self.tag)]

    first = register_reference_handler(Claims("first"))
    second = register_reference_handler(Claims("second"))
    try:
        (entry,) = _log(external_file.as_uri(), artifact="claimed").manifest
        assert entry["digest"] == "first"
        assert first.resolved == [external_file.as_uri()] and second.resolved == []
    finally:
        trackio.unregister_reference_handler(first)
        trackio.unregister_reference_handler(second)
    (entry,) = _log(external_file.as_uri(), artifact="builtin").manifest
    assert entry["digest"] == sha256(external_file.read_bytes())  # the built-in again


@pytest.fixture
def external_file(outside: Path) -> Path:
    return write(outside / "ext.bin", b"external bytes")


def test_unknown_scheme_raises_naming_it(run, home):
    before = store_listing(home)
    art = trackio.Artifact("nowhere", "dataset")
    with pytest.raises(UnsupportedReferenceError, match="'nosuchscheme'") as exc:
        art.add_reference("nosuchscheme://bucket/key")
    assert "register_reference_handler" in str(exc.value)
    assert isinstance(exc.value, ValueError)
    assert store_listing(home) == before


def test_download_without_the_handler_registered_names_the_scheme(run, outside):
    vault = register_reference_handler(Vault())
    uri = vault.put("w.bin", b"bytes")
    logged = _log(uri)
    trackio.unregister_reference_handler(vault)
    with pytest.raises(UnsupportedReferenceError, match="'vault'"):
        logged.download(root=outside / "dl")


# -- signed URIs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F&X-Amz-Signature=deadbeefcafe",
        "sv=2022-11-02&sig=deadbeefcafe",
        "token=deadbeefcafe",
    ],
)
def test_signed_looking_uri_warns_without_echoing_the_secret(run, vault, query):
    vault.put("w.bin", b"x")
    art = trackio.Artifact("signed", "dataset")
    with pytest.warns(UserWarning, match="looks signed") as caught:
        art.add_reference(f"vault://w.bin?{query}", checksum=False, name="w.bin")
    message = " ".join(str(w.message) for w in caught)
    assert "deadbeefcafe" not in message
    assert "synced" in message


def test_plain_query_does_not_warn(run, vault):
    vault.put("w.bin", b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trackio.Artifact("q", "dataset").add_reference("vault://w.bin?revision=3", checksum=False, name="w.bin")


# -- the manifest shape --------------------------------------------------------------


def test_manifest_is_plain_dicts_sorted_by_path(run, vault, work):
    write(work / "b" / "config.json", b"{}")
    write(work / "a.txt", b"hello")
    uri = vault.put("ext.bin", b"12345")
    art = trackio.Artifact("shape", "model")
    art.add_dir(work / "b", name="sub")
    art.add_file(work / "a.txt")
    art.add_reference(uri, name="refs/ext.bin")
    logged = trackio.log_artifact(art)
    manifest = logged.manifest
    assert [e["path"] for e in manifest] == ["a.txt", "refs/ext.bin", "sub/config.json"]
    assert all(type(e) is dict for e in manifest)
    assert [sorted(e) for e in manifest] == [
        ["digest", "path", "size"],
        ["digest", "path", "ref", "size"],
        ["digest", "path", "size"],
    ]
    assert manifest[2] == {"path": "sub/config.json", "digest": manifest[2]["digest"], "size": 2}
    assert all(isinstance(e["digest"], str) and e["digest"] for e in manifest)
    assert logged.size == 5 + 5 + 2
    manifest[0]["path"] = "mutated"
    assert logged.manifest[0]["path"] == "a.txt"  # callers get copies


def test_identical_content_gives_an_identical_digest(run, work):
    write(work / "d" / "x.txt", b"same")
    one = trackio.log_artifact(str(work / "d"), name="one", type="t")
    two = trackio.log_artifact(str(work / "d"), name="two", type="t")
    assert one.digest == two.digest
    write(work / "d" / "x.txt", b"diff")
    three = trackio.log_artifact(str(work / "d"), name="three", type="t")
    assert three.digest != one.digest


@settings(max_examples=25, deadline=None)
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,2}", fullmatch=True), st.binary(max_size=64), min_size=1, max_size=6
    )
)
def test_manifest_matches_the_files_added(tmp_path_factory, files):
    # Paths where one is a prefix directory of another cannot both be files.
    if any(other.startswith(p + "/") for p in files for other in files):
        return
    src = tmp_path_factory.mktemp("src")
    for rel, data in files.items():
        write(src / rel, data)
    trackio.init(project="hypo")
    try:
        logged = trackio.log_artifact(str(src), name="h", type="t")
        manifest = logged.manifest
    finally:
        trackio.finish()
    assert [e["path"] for e in manifest] == sorted(files)
    assert [e["size"] for e in manifest] == [len(files[p]) for p in sorted(files)]
    assert logged.size == sum(len(d) for d in files.values())


def test_references_and_get_entry_uri(run, vault, work):
    write(work / "local.txt", b"stored")
    uri = vault.put("w.bin", b"referenced")
    art = trackio.Artifact("mixed", "model")
    assert art.references == [] and art.get_entry_uri("w.bin") is None  # not logged yet
    art.add_file(work / "local.txt")
    art.add_reference(uri, name="weights/w.bin")
    logged = trackio.log_artifact(art)
    assert logged.references == [{"path": "weights/w.bin", "digest": sha256(b"referenced"), "size": 10, "ref": uri}]
    assert logged.get_entry_uri("weights/w.bin") == uri
    assert logged.get_entry_uri("local.txt") is None  # stored, not referenced
    assert logged.get_entry_uri("nope") is None
    logged.references[0]["ref"] = "changed"
    assert logged.get_entry_uri("weights/w.bin") == uri
