"""objstore serve under stress: a server killed mid-push, racing clients, two servers over one bucket, TLS."""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import dir_state, finish, spawn, wait_until
from server_helpers import ServerProcess, make_tokens, start_server

from objstore import Repository, TreeEntry
from objstore.errors import ServerError

pytestmark = pytest.mark.timeout(300)


def _commit(repo: Repository, files: dict[str, bytes], parents: list[str] | None = None, message: str = "") -> str:
    entries = [TreeEntry(name, "file", repo.store_bytes(data), len(data)) for name, data in sorted(files.items())]
    return repo.commit(repo.make_tree(entries), parents=parents or [], message=message)


@pytest.mark.slow
def test_server_killed_mid_push_then_retry_sends_only_the_rest(tmp_path: Path) -> None:
    store = tmp_path / "served"
    Repository.init(store, pack_size=1 << 20)  # the server publishes a pack every MiB it receives
    tokens = make_tokens(tmp_path / "tokens.json")
    srv = start_server(store, tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens)
    port = srv.url.rsplit(":", 1)[1]
    data = tmp_path / "data"
    data.mkdir()
    (data / "weights.bin").write_bytes(os.urandom(40 * 1024 * 1024))
    local = Repository.init(tmp_path / "local")
    local.refs.set("main", local.commit(local.snapshot(data), message="weights"))
    total = sum(local.odb.index(n).count for n in local.odb.pack_names)
    assert total > 100

    # The client sends its first MiBs at full speed, then slowly, so the kill lands mid-stream.
    child = spawn(
        f"""
        import time
        import objstore.smart as smart
        from objstore import Repository
        fast = smart.encode_stream
        def slow(ds, records):
            for i, piece in enumerate(fast(ds, records)):
                yield piece
                if i > 6:
                    time.sleep(0.05)
        smart.encode_stream = slow
        try:
            Repository.open({str(tmp_path / "local")!r}).push({srv.url!r}, storage_options={srv.options()!r})
            print("PUSHED")
        except Exception as exc:
            from objstore.errors import ServerError
            print("ERROR", isinstance(exc, ServerError), exc)
        """,
        tmp_path,
    )
    def packs() -> int:
        return len([n for n in os.listdir(store / "packs") if n.endswith(".idx")]) if (store / "packs").exists() else 0

    assert wait_until(lambda: packs() >= 3, 60, 0.005)
    srv.kill9()
    out = finish(child, 120)
    assert "PUSHED" not in out
    assert "ERROR True" in out and srv.url in out, out
    assert "objstore server" in out

    served = Repository.open(store)
    report = served.fsck()
    assert report.ok, report
    arrived = sum(served.odb.index(n).count for n in served.odb.pack_names)
    assert 0 < arrived < total
    assert not served.refs.exists("main")

    again = start_server(store, tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens, port=int(port))
    try:
        result = local.push(again.url, storage_options=again.options())
        assert result.refs_updated
        assert result.objects == total - arrived  # only what had not arrived whole
        served = Repository.open(store)
        assert served.fsck().ok
        served.checkout("main", tmp_path / "out")
        assert dir_state(tmp_path / "out") == dir_state(data)
    finally:
        again.stop()


_RACER = """
    import os, sys
    from objstore import Repository, TreeEntry
    from objstore.errors import PushRejected
    tag = os.environ["RACER"]
    url = os.environ["SERVER_URL"]
    opts = {{"token": os.environ["SERVER_TOKEN"]}}
    repo = Repository.init({dest!r} + tag)
    tries = 0
    while True:
        tries += 1
        got = repo.fetch(url, "main", storage_options=opts)
        if "main" in got.refs_rejected:  # we lost the last race: start again from the server's main
            repo.refs.set("main", got.refs_rejected["main"][1])
        head = repo.refs.get("main")
        blob = repo.store_bytes(tag.encode() * 100)
        tree = repo.make_tree([TreeEntry("writer-" + tag, "file", blob, 100 * len(tag))])
        commit = repo.commit(tree, parents=[head], message="from " + tag)
        repo.refs.set("main", commit, expect=head)
        try:
            repo.push(url, "main", storage_options=opts)
            break
        except PushRejected:
            continue
    print("done", tag, tries)
"""


def _race(urls: list[str], token: str, tmp_path: Path, env: dict[str, str] | None = None) -> None:
    children = [
        spawn(_RACER.format(dest=str(tmp_path / "racer-")), tmp_path, RACER=str(i), SERVER_URL=urls[i % len(urls)], SERVER_TOKEN=token, **(env or {}))
        for i in range(8)
    ]
    outputs = [finish(c, 500) for c in children]
    assert all("done" in o for o in outputs)


def _check_no_lost_update(view: Repository, base: str) -> None:
    log = [c for _, c in view.log("main")]
    assert len(log) == 9  # the base and one commit from each of the 8 writers
    assert {c.message for c in log[:-1]} == {f"from {i}" for i in range(8)}
    history = view.refs.history("main")
    assert next(e.new for e in history) == base
    for prev, entry in itertools.pairwise(history):
        assert entry.old == prev.new  # every move was a compare-and-set on the value before it
    assert view.ls("main")  # the final value is a whole commit


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_eight_clients_push_one_ref_no_lost_update(server: ServerProcess, tmp_path: Path) -> None:
    seed = Repository.init(tmp_path / "seed")
    base = _commit(seed, {"base": b"base"})
    seed.refs.set("main", base)
    seed.push(server.url, storage_options=server.options())
    _race([server.url], server.tokens["write"], tmp_path)
    served = Repository.open(server.store)
    _check_no_lost_update(served, base)
    assert served.fsck().ok


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_servers_over_one_s3_bucket(s3_server: Any, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/store"
    Repository.init(url, storage_options=s3_server.storage_options())
    tokens = make_tokens(tmp_path / "tokens.json")
    servers = [start_server(url, tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens, env=s3_server.env()) for _ in range(2)]
    try:
        seed = Repository.init(tmp_path / "seed")
        base = _commit(seed, {"base": b"base"})
        seed.refs.set("main", base)
        seed.push(servers[0].url, storage_options=servers[0].options())
        _race([s.url for s in servers], tokens["write"], tmp_path)
        for s in servers:
            _check_no_lost_update(Repository.open(s.url, storage_options=s.options("read")), base)
        view = Repository.open(url, storage_options=s3_server.storage_options())
        _check_no_lost_update(view, base)
        assert view.fsck().ok
    finally:
        for s in servers:
            s.stop()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_tls_with_a_self_signed_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = _self_signed(tmp_path)
    tokens = make_tokens(tmp_path / "tokens.json")
    srv = start_server(tmp_path / "served", tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens, tls=tls)
    try:
        assert srv.url.startswith("https://")
        local = Repository.init(tmp_path / "local")
        c = _commit(local, {"f": b"over tls"})
        local.refs.set("main", c)
        with pytest.raises(ServerError, match=r"(?i)certificate"):
            local.push(srv.url, storage_options={"token": tokens["write"]})  # not trusted by default
        assert local.push(srv.url, storage_options=srv.options()).refs_updated == {"main": (None, c)}
        clone = Repository.clone(srv.url, tmp_path / "clone", storage_options=srv.options("read"))
        assert clone.read_file("main", "f") == b"over tls"
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls[1]))  # or trust it the usual way
        assert Repository.open(srv.url, storage_options={"token": tokens["read"]}).refs.get("main") == c
    finally:
        srv.stop()


def test_stopped_server_is_a_clear_error_and_a_restart_resumes(server: ServerProcess, tmp_path: Path) -> None:
    local = Repository.init(tmp_path / "local")
    local.refs.set("main", _commit(local, {"f": b"1"}))
    local.push(server.url, storage_options=server.options())
    server.stop()
    t0 = time.monotonic()
    with pytest.raises(ServerError, match="cannot reach"):
        local.fetch(server.url, storage_options=server.options())
    assert time.monotonic() - t0 < 30
