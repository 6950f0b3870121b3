"""add_reference: file://, directories ending in '/', http(s) with and without ETag, other fsspec URLs."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import threading
import uuid
import warnings
from pathlib import Path

import fsspec
import pytest
from trackio_helpers import rand_bytes, sha256, store_listing, tree_listing, write

import trackio
import trackio.store
from trackio.errors import ReferenceChangedError

# -- a tiny HTTP server -------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))  # type: ignore[attr-defined]
        super().do_GET()

    def do_HEAD(self) -> None:
        self.server.requests.append(("HEAD", self.path))  # type: ignore[attr-defined]
        super().do_HEAD()

    def end_headers(self) -> None:
        if self.server.send_etag:  # type: ignore[attr-defined]
            local = self.translate_path(self.path)
            if os.path.isfile(local):
                with open(local, "rb") as f:
                    self.send_header("ETag", '"' + hashlib.md5(f.read()).hexdigest() + '"')
        super().end_headers()


class HttpServer:
    def __init__(self, root: Path, send_etag: bool) -> None:
        self.root = root
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.send_etag = send_etag  # type: ignore[attr-defined]
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.httpd.requests  # type: ignore[attr-defined]

    def url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{rel}"

    def etag_of(self, rel: str) -> str:
        return hashlib.md5((self.root / rel).read_bytes()).hexdigest()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def served(outside):
    root = outside / "www"
    root.mkdir()
    server = HttpServer(root, send_etag=True)
    yield server
    server.close()


@pytest.fixture
def served_no_etag(outside):
    root = outside / "www-plain"
    root.mkdir()
    server = HttpServer(root, send_etag=False)
    yield server
    server.close()


@pytest.fixture
def external(outside):
    """Data that stays where it is (outside the store and the cwd)."""
    root = outside / "external"
    write(root / "data" / "a.csv", b"x,y\n1,2\n")
    write(root / "data" / "sub" / "b.csv", b"x\n3\n")
    write(root / "data" / "sub" / "deeper" / "c.txt", b"ccc")
    write(root / "single.bin", rand_bytes(11, 4096))
    return root


# -- file:// ------------------------------------------------------------------


def test_file_reference_single_file_manifest_entry(run, external):
    uri = (external / "single.bin").as_uri()
    art = trackio.Artifact("refs", "dataset")
    art.add_reference(uri)
    logged = trackio.log_artifact(art)
    (entry,) = logged.manifest
    data = (external / "single.bin").read_bytes()
    assert entry == {"path": "single.bin", "digest": sha256(data), "size": len(data), "ref": uri}
    assert logged.size == len(data)
    assert logged.version == "v0"


def test_file_reference_with_name(run, external):
    uri = (external / "single.bin").as_uri()
    art = trackio.Artifact("refs", "dataset")
    art.add_reference(uri, name="inputs/renamed.bin")
    (entry,) = trackio.log_artifact(art).manifest
    assert entry["path"] == "inputs/renamed.bin"
    assert entry["ref"] == uri


def test_reference_bytes_are_not_copied_into_the_store(run, outside, home):
    big = write(outside / "big.bin", rand_bytes(12, 3_000_000))
    write(Path("small.txt"), b"s")
    trackio.log_artifact("small.txt", name="warmup", type="x")
    before = trackio.store.get_repo().stats()
    art = trackio.Artifact("refs", "dataset")
    art.add_reference(big.as_uri())
    logged = trackio.log_artifact(art)
    after = trackio.store.get_repo().stats()
    assert logged.size == 3_000_000
    assert after.stored_bytes - before.stored_bytes < 100_000
    assert after.raw_bytes - before.raw_bytes < 100_000


def test_file_directory_reference_expands_under_its_last_segment(run, external):
    uri = (external / "data").as_uri() + "/"
    art = trackio.Artifact("refs", "dataset")
    art.add_reference(uri)
    logged = trackio.log_artifact(art)
    manifest = logged.manifest
    assert [e["path"] for e in manifest] == ["data/a.csv", "data/sub/b.csv", "data/sub/deeper/c.txt"]
    for e in manifest:
        rel = e["path"].split("/", 1)[1]
        data = (external / "data" / rel).read_bytes()
        assert e["digest"] == sha256(data)
        assert e["size"] == len(data)
        assert e["ref"] == (external / "data" / rel).as_uri()
        assert set(e) == {"path", "digest", "size", "ref"}
    assert logged.size == sum(e["size"] for e in manifest)


def test_file_directory_reference_expands_under_name(run, external):
    art = trackio.Artifact("refs", "dataset")
    art.add_reference((external / "data").as_uri() + "/", name="train")
    paths = [e["path"] for e in trackio.log_artifact(art).manifest]
    assert paths == ["train/a.csv", "train/sub/b.csv", "train/sub/deeper/c.txt"]


def test_references_and_files_mix_sorted(run, external, work):
    write(work / "local.txt", b"local")
    art = trackio.Artifact("mix", "dataset")
    art.add_reference((external / "data").as_uri() + "/")
    art.add_file("local.txt")
    art.add_reference((external / "single.bin").as_uri())
    manifest = trackio.log_artifact(art).manifest
    assert [e["path"] for e in manifest] == [
        "data/a.csv",
        "data/sub/b.csv",
        "data/sub/deeper/c.txt",
        "local.txt",
        "single.bin",
    ]
    assert "ref" not in manifest[3]
    assert all("ref" in e for i, e in enumerate(manifest) if i != 3)


def test_directory_reference_max_objects(run, external, home):
    uri = (external / "data").as_uri() + "/"
    art = trackio.Artifact("refs", "dataset")
    with pytest.raises(ValueError, match="max_objects") as exc:
        art.add_reference(uri, max_objects=2)
    assert "2" in str(exc.value)
    art.add_reference(uri, max_objects=3)  # exactly at the cap is fine, and the failed call added nothing
    assert [e["path"] for e in trackio.log_artifact(art).manifest] == [
        "data/a.csv",
        "data/sub/b.csv",
        "data/sub/deeper/c.txt",
    ]


@pytest.mark.slow
def test_directory_reference_default_cap_is_ten_thousand(run, outside):
    root = outside / "many"
    root.mkdir()
    for i in range(10_000):
        (root / f"f{i:05d}.txt").write_bytes(b"%d" % i)
    art = trackio.Artifact("many", "dataset")
    art.add_reference(root.as_uri() + "/", checksum=False)
    assert len(trackio.log_artifact(art).manifest) == 10_000

    (root / "one-too-many.txt").write_bytes(b"x")
    art2 = trackio.Artifact("many2", "dataset")
    with pytest.raises(ValueError, match=r"10000|10,000|10_000"):
        art2.add_reference(root.as_uri() + "/", checksum=False)


def test_missing_reference_file_raises_naming_it(run, outside, home):
    missing = outside / "nowhere" / "gone.bin"
    art = trackio.Artifact("refs", "dataset")
    before = store_listing(home)
    with pytest.raises(FileNotFoundError) as exc:
        art.add_reference(missing.as_uri())
    assert str(missing) in str(exc.value)
    with pytest.raises(FileNotFoundError) as exc:
        art.add_reference((outside / "nodir").as_uri() + "/")
    assert str(outside / "nodir") in str(exc.value)
    assert store_listing(home) == before


def test_file_reference_with_spaces_and_unicode_in_the_path(run, outside):
    """Default logical paths are the file's (and directory's) real name, not its %-escaped URI form."""
    src = write(outside / "my data" / "résumé 1.txt", b"cv")
    uri = src.as_uri()
    art = trackio.Artifact("refs", "dataset")
    art.add_reference(uri)
    art.add_reference((outside / "my data").as_uri() + "/")
    logged = trackio.log_artifact(art)
    assert [(e["path"], e["ref"]) for e in logged.manifest] == [("my data/résumé 1.txt", uri), ("résumé 1.txt", uri)]
    assert tree_listing(logged.download(root=outside / "dl")) == {"my data/résumé 1.txt": b"cv", "résumé 1.txt": b"cv"}


def test_reference_needs_a_uri(run, external):
    art = trackio.Artifact("refs", "dataset")
    with pytest.raises(ValueError, match=re.escape("single.bin")):
        art.add_reference(str(external / "single.bin"))


def test_checksum_false_records_the_uri(run, external):
    uri = (external / "single.bin").as_uri()
    art = trackio.Artifact("refs", "dataset")
    art.add_reference(uri, checksum=False)
    (entry,) = trackio.log_artifact(art).manifest
    assert entry["ref"] == uri
    assert entry["path"] == "single.bin"
    assert entry["digest"] == uri
    assert entry["digest"] != sha256((external / "single.bin").read_bytes())


def test_download_materializes_referenced_files(run, external, work):
    art = trackio.Artifact("refs", "dataset")
    art.add_reference((external / "data").as_uri() + "/")
    art.add_reference((external / "single.bin").as_uri())
    logged = trackio.log_artifact(art)
    path = logged.download()
    assert Path(path).resolve() == (work / "artifacts" / "proj" / "refs_v0").resolve()
    assert tree_listing(path) == {
        "data/a.csv": (external / "data" / "a.csv").read_bytes(),
        "data/sub/b.csv": (external / "data" / "sub" / "b.csv").read_bytes(),
        "data/sub/deeper/c.txt": b"ccc",
        "single.bin": (external / "single.bin").read_bytes(),
    }


def test_download_of_references_is_idempotent_and_restores(run, external):
    art = trackio.Artifact("refs", "dataset")
    art.add_reference((external / "data").as_uri() + "/")
    logged = trackio.log_artifact(art)
    path = Path(logged.download())
    os.utime(path / "data" / "a.csv", ns=(1_000_000_000, 1_000_000_000))
    st = os.stat(path / "data" / "a.csv")
    (path / "data" / "sub" / "b.csv").write_bytes(b"tampered")
    os.remove(path / "data" / "sub" / "deeper" / "c.txt")
    logged.download()
    st2 = os.stat(path / "data" / "a.csv")
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), "an up-to-date file was rewritten"
    assert (path / "data" / "sub" / "b.csv").read_bytes() == b"x\n3\n"
    assert (path / "data" / "sub" / "deeper" / "c.txt").read_bytes() == b"ccc"


def test_download_detects_a_changed_referenced_file(run, external, outside):
    src = external / "single.bin"
    original = src.read_bytes()
    art = trackio.Artifact("refs", "dataset")
    art.add_reference(src.as_uri())
    logged = trackio.log_artifact(art)
    src.write_bytes(b"changed behind our back")
    dest = outside / "dl"
    with pytest.raises(ValueError, match=re.escape("single.bin")) as exc:
        logged.download(root=dest)
    assert isinstance(exc.value, ReferenceChangedError)
    assert not (dest / "single.bin").exists()
    assert tree_listing(dest) == {}  # no partial files left behind
    # putting the original back makes the download work again
    src.write_bytes(original)
    assert tree_listing(logged.download(root=dest)) == {"single.bin": original}


def test_download_detects_a_same_size_change(run, external, outside):
    src = external / "single.bin"
    data = bytearray(src.read_bytes())
    art = trackio.Artifact("refs", "dataset")
    art.add_reference(src.as_uri())
    logged = trackio.log_artifact(art)
    data[100] ^= 1
    src.write_bytes(bytes(data))
    with pytest.raises(ReferenceChangedError):
        logged.download(root=outside / "dl")


def test_relogging_an_unchanged_reference_reuses_the_version(run, external):
    def log():
        art = trackio.Artifact("refs", "dataset")
        art.add_reference((external / "data").as_uri() + "/")
        return trackio.log_artifact(art)

    assert log().version == "v0"
    assert log().version == "v0"
    (external / "data" / "a.csv").write_bytes(b"new content")
    assert log().version == "v1"


def test_reference_artifact_is_usable_in_a_new_run(run, external, outside, monkeypatch):
    art = trackio.Artifact("refs", "dataset")
    art.add_reference((external / "single.bin").as_uri())
    logged = trackio.log_artifact(art)
    trackio.finish()
    trackio.store.close_all()
    trackio.init(project="proj")
    used = trackio.use_artifact("refs:latest", type="dataset")
    assert used.manifest == logged.manifest
    monkeypatch.chdir(outside)
    assert tree_listing(used.download()) == {"single.bin": (external / "single.bin").read_bytes()}


# -- http(s) --------------------------------------------------------------------


def test_http_reference_records_etag_and_downloads(run, served, outside):
    body = rand_bytes(21, 10_000)
    write(served.root / "files" / "model.bin", body)
    url = served.url("files/model.bin")
    art = trackio.Artifact("web", "model")
    art.add_reference(url)
    logged = trackio.log_artifact(art)
    (entry,) = logged.manifest
    assert entry == {"path": "model.bin", "digest": served.etag_of("files/model.bin"), "size": len(body), "ref": url}
    assert logged.size == len(body)
    path = logged.download(root=outside / "dl")
    assert tree_listing(path) == {"model.bin": body}


def test_http_reference_detects_a_changed_etag(run, served, outside):
    write(served.root / "model.bin", b"version one")
    art = trackio.Artifact("web", "model")
    art.add_reference(served.url("model.bin"))
    logged = trackio.log_artifact(art)
    write(served.root / "model.bin", b"version two!")
    dest = outside / "dl"
    with pytest.raises(ValueError, match=re.escape("model.bin")) as exc:
        logged.download(root=dest)
    assert isinstance(exc.value, ReferenceChangedError)
    assert not (dest / "model.bin").exists()


def test_http_reference_without_etag_uses_uri_as_digest_with_warning(run, served_no_etag, outside):
    write(served_no_etag.root / "plain.txt", b"no etag here")
    url = served_no_etag.url("plain.txt")
    art = trackio.Artifact("web", "data")
    with pytest.warns(UserWarning, match="ETag"):
        art.add_reference(url)
    (entry,) = trackio.log_artifact(art).manifest
    assert entry["digest"] == url
    assert entry["ref"] == url
    assert entry["path"] == "plain.txt"
    assert entry["size"] == len(b"no etag here")
    path = trackio.use_artifact("web").download(root=outside / "dl")
    assert tree_listing(path) == {"plain.txt": b"no etag here"}


def test_http_reference_checksum_false_does_not_probe(run, served, outside):
    write(served.root / "lazy.bin", b"lazy")
    url = served.url("lazy.bin")
    art = trackio.Artifact("web", "data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        art.add_reference(url, checksum=False)
    assert served.requests == []
    (entry,) = trackio.log_artifact(art).manifest
    assert served.requests == []
    assert entry["ref"] == url
    assert entry["digest"] == url
    assert entry["path"] == "lazy.bin"
    assert tree_listing(trackio.use_artifact("web").download(root=outside / "dl")) == {"lazy.bin": b"lazy"}


def test_http_reference_to_a_missing_url_raises_naming_it(run, served, home):
    url = served.url("no/such/file.bin")
    art = trackio.Artifact("web", "data")
    before = store_listing(home)
    with pytest.raises(Exception) as exc:
        art.add_reference(url)
    assert url in str(exc.value)
    assert store_listing(home) == before


def test_http_directory_reference_expands_into_its_files(run, served, outside):
    """A URI ending in '/' is a directory for http too: one entry per file, not the index page."""
    write(served.root / "files" / "a.txt", b"aaa")
    write(served.root / "files" / "b.txt", b"bb")
    art = trackio.Artifact("web", "data")
    art.add_reference(served.url("files/"))
    logged = trackio.log_artifact(art)
    manifest = logged.manifest
    assert [e["path"] for e in manifest] == ["files/a.txt", "files/b.txt"]
    assert [e["ref"] for e in manifest] == [served.url("files/a.txt"), served.url("files/b.txt")]
    assert [e["size"] for e in manifest] == [3, 2]
    assert tree_listing(logged.download(root=outside / "dl")) == {"files/a.txt": b"aaa", "files/b.txt": b"bb"}


def test_http_reference_with_name(run, served):
    write(served.root / "x.bin", b"x")
    art = trackio.Artifact("web", "data")
    art.add_reference(served.url("x.bin"), name="weights/x.bin")
    (entry,) = trackio.log_artifact(art).manifest
    assert entry["path"] == "weights/x.bin"


# -- any fsspec URL -------------------------------------------------------------------


@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    base = f"/trackio-test-{uuid.uuid4().hex}"
    fs.pipe(f"{base}/data/a.txt", b"aaa")
    fs.pipe(f"{base}/data/sub/b.txt", b"bb")
    fs.pipe(f"{base}/one.bin", b"1")
    yield fs, f"memory://{base}"
    fs.rm(base, recursive=True)


def test_fsspec_reference_directory_and_file(run, memfs, outside):
    _fs, base = memfs
    art = trackio.Artifact("mem", "data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the memory filesystem gives no checksum
        art.add_reference(base + "/data/")
        art.add_reference(base + "/one.bin")
    logged = trackio.log_artifact(art)
    manifest = logged.manifest
    assert [e["path"] for e in manifest] == ["data/a.txt", "data/sub/b.txt", "one.bin"]
    assert [e["size"] for e in manifest] == [3, 2, 1]
    assert all("ref" in e for e in manifest)
    path = logged.download(root=outside / "dl")
    assert tree_listing(path) == {"data/a.txt": b"aaa", "data/sub/b.txt": b"bb", "one.bin": b"1"}


def test_fsspec_directory_reference_max_objects(run, memfs):
    _fs, base = memfs
    art = trackio.Artifact("mem", "data")
    with pytest.raises(ValueError, match="max_objects"):
        art.add_reference(base + "/data/", max_objects=1)


def test_fsspec_missing_directory_raises_naming_it(run, memfs):
    _fs, base = memfs
    art = trackio.Artifact("mem", "data")
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        art.add_reference(base + "/no-such-dir/")


def test_fsspec_missing_object_raises_naming_it(run, memfs):
    _fs, base = memfs
    art = trackio.Artifact("mem", "data")
    with pytest.raises(FileNotFoundError, match=re.escape("missing.bin")):
        art.add_reference(base + "/missing.bin")


# -- s3:// (an fsspec URL whose objects carry an ETag), against a local moto server ----------


@pytest.fixture(scope="module")
def moto_endpoint():
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    import fsspec.config

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setitem(
        fsspec.config.conf, "s3", {"endpoint_url": moto_endpoint, "key": "testing", "secret": "testing"}
    )
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    bucket = f"trackio-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    fs.pipe(f"{bucket}/data/a.txt", b"aaa")
    fs.pipe(f"{bucket}/data/sub/b.txt", b"bb")
    yield fs, bucket


@pytest.mark.slow
def test_s3_reference_records_etags_expands_and_downloads(run, s3, outside):
    fs, bucket = s3
    art = trackio.Artifact("s3data", "dataset")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # S3 gives ETags: no "no checksum" warning
        art.add_reference(f"s3://{bucket}/data/")
        art.add_reference(f"s3://{bucket}/data/a.txt", name="single.txt")
    logged = trackio.log_artifact(art)
    manifest = logged.manifest
    assert [e["path"] for e in manifest] == ["data/a.txt", "data/sub/b.txt", "single.txt"]
    assert [e["ref"] for e in manifest] == [
        f"s3://{bucket}/data/a.txt",
        f"s3://{bucket}/data/sub/b.txt",
        f"s3://{bucket}/data/a.txt",
    ]
    assert [e["size"] for e in manifest] == [3, 2, 3]
    etag_a = fs.info(f"{bucket}/data/a.txt")["ETag"].strip('"')
    assert manifest[0]["digest"] == manifest[2]["digest"] == etag_a
    path = logged.download(root=outside / "dl")
    assert tree_listing(path) == {"data/a.txt": b"aaa", "data/sub/b.txt": b"bb", "single.txt": b"aaa"}


@pytest.mark.slow
def test_s3_reference_detects_a_changed_object(run, s3, outside):
    fs, bucket = s3
    art = trackio.Artifact("s3data", "dataset")
    art.add_reference(f"s3://{bucket}/data/a.txt")
    logged = trackio.log_artifact(art)
    fs.pipe(f"{bucket}/data/a.txt", b"changed")
    with pytest.raises(ReferenceChangedError, match=re.escape("a.txt")):
        logged.download(root=outside / "dl")
    assert not (outside / "dl" / "a.txt").exists()


@pytest.mark.slow
def test_s3_missing_object_or_prefix_raises_naming_it(run, s3):
    _fs, bucket = s3
    art = trackio.Artifact("s3data", "dataset")
    with pytest.raises(FileNotFoundError, match=re.escape("nope.bin")):
        art.add_reference(f"s3://{bucket}/nope.bin")
    with pytest.raises(FileNotFoundError, match="no-such-prefix"):
        art.add_reference(f"s3://{bucket}/no-such-prefix/")


def test_http_reference_version_follows_the_etag(run, served):
    write(served.root / "w.bin", b"epoch 1")
    url = served.url("w.bin")

    def log() -> str | None:
        art = trackio.Artifact("web-weights", "model")
        art.add_reference(url)
        return trackio.log_artifact(art).version

    assert log() == "v0"
    assert log() == "v0"
    write(served.root / "w.bin", b"epoch 2")
    assert log() == "v1"


def test_signed_http_url_warns_and_is_still_recorded(run, served):
    write(served.root / "w.bin", b"w")
    url = served.url("w.bin") + "?X-Amz-Signature=s3cr3t&X-Amz-Expires=60"
    art = trackio.Artifact("signed-web", "model")
    with pytest.warns(UserWarning, match="X-Amz-Signature") as caught:
        art.add_reference(url)
    assert not any("s3cr3t" in str(w.message) for w in caught)
    (entry,) = trackio.log_artifact(art).manifest
    assert entry["path"] == "w.bin"
    assert entry["ref"] == url
