"""objstore serve against real clients: the smart protocol, tokens, modes, hostile requests.

Every test talks to a real uvicorn process on 127.0.0.1 (``server_helpers``).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fsspec
import pytest
import requests
from remote_helpers import dir_state, free_port, make_sample, subprocess_env
from server_helpers import ServerProcess, make_tokens, start_server, store_files

from objstore import Repository, TreeEntry
from objstore.errors import AccessDenied, NotARepository, PushRejected, ServerError
from objstore.objects import BLOB, TREE, Blob
from objstore.wire import CONTENT_TYPE, encode_stream

pytestmark = pytest.mark.timeout(120)


def _commit(repo: Repository, files: dict[str, bytes], parents: list[str] | None = None, message: str = "") -> str:
    entries = [TreeEntry(name, "file", repo.store_bytes(data), len(data)) for name, data in sorted(files.items())]
    return repo.commit(repo.make_tree(entries), parents=parents or [], message=message)


def _served(server: ServerProcess) -> Repository:
    return Repository.open(server.store)


# -- the protocol ---------------------------------------------------------------------------


def test_push_clone_fetch_round_trips(server: ServerProcess, tmp_path: Path) -> None:
    src = make_sample(tmp_path / "src")
    local = Repository.init(tmp_path / "local")
    first = local.commit(local.snapshot(src), message="first")
    local.refs.set("main", first)
    opts = server.options("write")

    sent = local.push(server.url, storage_options=opts)
    assert sent.refs_updated == {"main": (None, first)}
    assert sent.objects > 0 and sent.requests <= 4  # info, negotiate, pack, refs
    assert _served(server).refs.get("main") == first
    assert _served(server).fsck().ok

    again = local.push(server.url, storage_options=opts)
    assert again.nothing_to_do and again.requests <= 2  # info, negotiate

    clone = Repository.clone(server.url, tmp_path / "clone", storage_options=server.options("read"))
    assert clone.refs.list() == {"main": first}
    clone.checkout("main", tmp_path / "out")
    assert dir_state(tmp_path / "out") == dir_state(src)
    noop = clone.fetch(server.url, storage_options=server.options("read"))
    assert noop.objects == 0 and noop.requests <= 2  # info, refs

    (src / "data" / "new.txt").write_bytes(b"a new file")
    second = local.commit(local.snapshot(src), parents=[first], message="second")
    local.refs.set("main", second)
    pushed = local.push(server.url, storage_options=opts)
    assert pushed.objects <= 4  # the new file, two trees, the commit: nothing already there
    fetched = clone.fetch(server.url, storage_options=server.options("read"))
    assert fetched.refs_updated == {"main": (first, second)}
    assert fetched.requests <= 3  # info, refs, one pack
    assert fetched.objects == pushed.objects  # exactly what was missing
    assert clone.fsck().ok
    assert clone.read_file("main", "data/new.txt") == b"a new file"

    # Read in place: fsck(url=...), the objstore:// view, Repository.open.
    assert local.fsck(url=server.url, storage_options=server.options("read")).ok
    with fsspec.open("objstore://main/data/new.txt", repo=server.url, storage_options=server.options("read")) as f:
        assert f.read() == b"a new file"
    view = Repository.open(server.url, storage_options=server.options("read"))
    assert [c for c, _ in view.log("main")] == [second, first]


def test_shallow_fetch_then_full(server: ServerProcess, tmp_path: Path) -> None:
    local = Repository.init(tmp_path / "local")
    c1 = _commit(local, {"a": b"1"})
    c2 = _commit(local, {"a": b"2"}, [c1])
    c3 = _commit(local, {"a": b"3"}, [c2])
    local.refs.set("main", c3)
    local.push(server.url, storage_options=server.options())
    other = Repository.init(tmp_path / "other")
    other.fetch(server.url, depth=1, storage_options=server.options("read"))
    assert [c for c, _ in other.log("main")] == [c3]
    assert other.is_shallow(c3) and not other.odb.has(c2)
    other.fetch(server.url, storage_options=server.options("read"))
    assert [c for c, _ in other.log("main")] == [c3, c2, c1]
    assert other.shallow_commits() == []


def test_multi_ref_push_moves_all_refs_or_none(server: ServerProcess, tmp_path: Path) -> None:
    a = Repository.init(tmp_path / "a")
    base = _commit(a, {"f": b"base"})
    for name in ("x", "y", "z"):
        a.refs.set(name, base)
    a.push(server.url, storage_options=server.options())
    # Someone else moves y on the server after our negotiation would have seen it.
    b = Repository.clone(server.url, tmp_path / "b", storage_options=server.options())
    moved = _commit(b, {"f": b"theirs"}, [base])
    b.refs.set("y", moved)
    b.push(server.url, "y", storage_options=server.options())
    mine = _commit(a, {"f": b"ours"}, [base])
    for name in ("x", "y", "z"):
        a.refs.set(name, mine)
    with pytest.raises(PushRejected) as info:
        a.push(server.url, storage_options=server.options())
    assert "'y'" in str(info.value) and list(info.value.refs) == ["y"]
    served = _served(server)
    assert served.refs.get("x") == base and served.refs.get("z") == base and served.refs.get("y") == moved

    # The atomic update itself, raced: two refs, one stale expected value -> 409, none moved.
    r = requests.post(
        server.api("/push/refs"),
        json={"updates": [{"name": "x", "old": base, "new": moved}, {"name": "y", "old": base, "new": base}]},
        headers=server.headers(),
        timeout=30,
    )
    assert r.status_code == 409 and r.json()["ref"] == "y"
    assert served.refs.get("x") == base and served.refs.get("y") == moved
    assert [e.new for e in served.refs.history("x")][-1] == base


def test_ref_update_needs_a_complete_graph(server: ServerProcess, tmp_path: Path) -> None:
    local = Repository.init(tmp_path / "local")
    c = _commit(local, {"f": b"never uploaded"})
    r = requests.post(
        server.api("/push/refs"), json={"updates": [{"name": "main", "old": None, "new": c}]}, headers=server.headers(), timeout=30
    )
    assert r.status_code == 400 and "main" in r.json()["error"]
    # Upload the commit alone (not its tree): still refused, naming the missing object.
    record = (bytes.fromhex(c), *local.odb.export(bytes.fromhex(c)))  # a record of its own, as push sends it
    body = b"".join(bytes(p) for p in encode_stream(local.odb.digest_size, [record]))
    assert requests.post(server.api("/push/pack"), data=body, headers=server.headers(), timeout=30).status_code == 200
    r = requests.post(
        server.api("/push/refs"), json={"updates": [{"name": "main", "old": None, "new": c}]}, headers=server.headers(), timeout=30
    )
    assert r.status_code == 400
    assert local.get_commit(c).tree in r.json()["error"]
    assert not _served(server).refs.exists("main")


# -- tokens and modes -------------------------------------------------------------------------


def test_tokens_and_scopes(server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = Repository.init(tmp_path / "local")
    local.refs.set("main", _commit(local, {"f": b"secret data"}))
    before = store_files(server.store)
    monkeypatch.delenv("OBJSTORE_TOKEN", raising=False)
    for opts, status in (({}, 401), ({"token": "ost_not-a-real-token"}, 401), (server.options("read"), 403)):
        with pytest.raises(AccessDenied) as info:
            local.push(server.url, storage_options=opts)
        assert info.value.status == status
        for t in server.tokens.values():
            assert t not in str(info.value)
    assert store_files(server.store) == before  # nothing stored

    r = requests.post(server.api("/push/pack"), data=b"x" * 1000, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert requests.get(server.api("/refs"), timeout=30).status_code == 401

    monkeypatch.setenv("OBJSTORE_TOKEN", server.tokens["write"])  # the token from the environment
    assert local.push(server.url).refs_updated
    monkeypatch.delenv("OBJSTORE_TOKEN")
    clone = Repository.clone(server.url, tmp_path / "clone", storage_options=server.options("read"))
    assert clone.refs.list() == local.refs.list()

    # A revoked token is refused from the next request on.
    subprocess.run(
        [sys.executable, "-m", "objstore.cli", "token", "revoke", "read-user", "--tokens", str(server.tokens_file)],
        check=True, env=subprocess_env(), capture_output=True,
    )
    with pytest.raises(AccessDenied):
        clone.fetch(server.url, storage_options=server.options("read"))
    # gc through the server needs admin.
    assert requests.post(server.api("/gc"), json={}, headers=server.headers("write"), timeout=30).status_code == 403
    assert requests.post(server.api("/gc"), json={"grace": 3600}, headers=server.headers("admin"), timeout=30).status_code == 200
    log = server.output()
    for t in server.tokens.values():
        assert t not in log


def test_token_cli(tmp_path: Path) -> None:
    tokens = tmp_path / "t.json"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "objstore.cli", "token", *args, "--tokens", str(tokens)],
                              env=subprocess_env(), capture_output=True, text=True)

    made = cli("add", "alice", "--scope", "write")
    assert made.returncode == 0
    secret = made.stdout.strip()
    assert secret.startswith("ost_") and len(secret) > 30
    assert secret not in tokens.read_text()  # only its hash is stored
    assert cli("add", "alice", "--scope", "read").returncode == 1  # names are unique
    assert cli("add", "bob", "--scope", "root").returncode == 2  # unknown scope
    listed = cli("list")
    assert "alice" in listed.stdout and "write" in listed.stdout and secret not in listed.stdout
    assert cli("revoke", "alice").returncode == 0
    assert "alice" not in cli("list").stdout
    assert cli("revoke", "alice").returncode == 1


def test_without_tokens_file_anyone_reads_nobody_writes(tmp_path: Path) -> None:
    seed = Repository.init(tmp_path / "served")
    c = _commit(seed, {"f": b"public"})
    seed.refs.set("main", c)
    srv = start_server(tmp_path / "served", tmp_path)
    try:
        assert "read-only" in srv.output() and "nobody may write" in srv.output()
        clone = Repository.clone(srv.url, tmp_path / "clone")
        assert clone.refs.get("main") == c
        mine = _commit(clone, {"f": b"change"}, [c])
        clone.refs.set("main", mine)
        with pytest.raises(AccessDenied, match="read-only"):
            clone.push(srv.url, storage_options={"token": "anything"})
        assert Repository.open(tmp_path / "served").refs.get("main") == c
    finally:
        srv.stop()


def test_read_only_mode(tmp_path: Path) -> None:
    tokens = make_tokens(tmp_path / "tokens.json")
    srv = start_server(tmp_path / "served", tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens, args=("--read-only",))
    try:
        local = Repository.init(tmp_path / "local")
        local.refs.set("main", _commit(local, {"f": b"x"}))
        with pytest.raises(AccessDenied, match="read-only"):
            local.push(srv.url, storage_options=srv.options("admin"))
        assert requests.get(srv.api("/refs"), headers=srv.headers("read"), timeout=30).json() == {}
    finally:
        srv.stop()


def test_append_only_mode(tmp_path: Path) -> None:
    tokens = make_tokens(tmp_path / "tokens.json")
    srv = start_server(tmp_path / "served", tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens, args=("--append-only",))
    try:
        local = Repository.init(tmp_path / "local")
        c1 = _commit(local, {"f": b"1"})
        local.refs.set("main", c1)
        local.push(srv.url, storage_options=srv.options("admin"))
        c2 = _commit(local, {"f": b"2"}, [c1])
        local.refs.set("main", c2)
        assert local.push(srv.url, storage_options=srv.options()).refs_updated == {"main": (c1, c2)}  # forward is fine
        rewrite = _commit(local, {"f": b"history rewritten"}, [c1])
        local.refs.set("main", rewrite)
        with pytest.raises(AccessDenied, match="append-only") as info:
            local.push(srv.url, force=True, storage_options=srv.options("admin"))
        assert "'main'" in str(info.value) and info.value.status == 403
        r = requests.post(srv.api("/push/refs"), json={"updates": [{"name": "main", "old": c2, "new": None}]},
                          headers=srv.headers("admin"), timeout=30)
        assert r.status_code == 403 and r.json()["ref"] == "main"
        assert requests.post(srv.api("/gc"), json={}, headers=srv.headers("admin"), timeout=30).status_code == 403
        served = Repository.open(tmp_path / "served")
        assert served.refs.get("main") == c2
        assert [e.new for e in served.refs.history("main")] == [c1, c2]
    finally:
        srv.stop()


# -- hostile requests ------------------------------------------------------------------------------


BAD_REF_NAMES = ["../escape", "a/../../b", "/abs/path", "nul\x00byte", "x" * 2000, "a//b", "ok/" + "y" * 300, "", "trailing/"]


def test_bad_ref_names_are_refused(server: ServerProcess, tmp_path: Path) -> None:
    local = Repository.init(tmp_path / "local")
    c = _commit(local, {"f": b"x"})
    before = store_files(server.store)
    for name in BAD_REF_NAMES:
        for path, body in (
            ("/push/negotiate", {"refs": {name: c}, "ids": []}),
            ("/push/refs", {"updates": [{"name": name, "old": None, "new": c}]}),
        ):
            r = requests.post(server.api(path), json=body, headers=server.headers(), timeout=30)
            assert r.status_code == 400, (name, path, r.text)
            assert "ref name" in r.json()["error"]
    assert store_files(server.store) == before
    assert requests.get(server.api("/info"), headers=server.headers("read"), timeout=30).status_code == 200


def _stream(digest_size: int, records: list[tuple[bytes, int, int, bytes, int]]) -> bytes:
    return b"".join(bytes(p) for p in encode_stream(digest_size, records))


def test_hostile_pack_uploads(tmp_path: Path) -> None:
    tokens = make_tokens(tmp_path / "tokens.json")
    srv = start_server(tmp_path / "served", tmp_path, tokens_file=tmp_path / "tokens.json", tokens=tokens,
                       args=("--max-body", str(2 * 1024 * 1024)))
    try:
        ds = 16
        blob = Blob(b"hello world" * 10).encode()
        oid = Repository.open(tmp_path / "served").odb.hash(blob)
        good = (oid, BLOB, 0, blob, len(blob))
        valid = _stream(ds, [good])
        cases: dict[str, bytes] = {
            "wrong hash": _stream(ds, [(bytes(16), BLOB, 0, blob, len(blob))]),
            "wrong type": _stream(ds, [(oid, TREE, 0, blob, len(blob))]),
            "unknown type": _stream(ds, [(oid, 9, 0, blob, len(blob))]),
            "raw length lies": _stream(ds, [(oid, BLOB, 0, blob, len(blob) + 5)]),
            "truncated mid-record": valid[: len(valid) // 2],
            "truncated before the end record": valid[: 8 + 16 + 18 + len(blob)],
            "checksum altered": valid[:-1] + bytes([valid[-1] ^ 1]),
            "garbage": b"GET / HTTP/1.1\r\n" * 10,
            "record claims a huge length": valid[:8] + oid + struct.pack("<BBQQ", BLOB, 0, 1 << 40, 1 << 40) + b"x" * 100,
            "count lies": valid[:-16 - 26] + bytes(16) + struct.pack("<BBQQ", 0, 0, 5, 0),
        }
        # A stream whose count and checksum are right but whose record length covers the end record.
        lying = bytearray(valid)
        struct.pack_into("<Q", lying, 8 + 16 + 2, len(blob) + 10)
        cases["stored length lies"] = bytes(lying)
        before = store_files(tmp_path / "served")
        for what, body in cases.items():
            r = requests.post(srv.api("/push/pack"), data=body, headers={**srv.headers(), "Content-Type": CONTENT_TYPE}, timeout=30)
            assert r.status_code == 400, (what, r.status_code, r.text)
            assert "error" in r.json()
        # Bodies over --max-body: declared, and streamed without a length.
        big = b"\0" * (20 * 1024 * 1024)
        r = requests.post(srv.api("/push/pack"), data=big, headers=srv.headers(), timeout=30)
        assert r.status_code == 413 and "max-body" in r.json()["error"]
        r = requests.post(srv.api("/push/pack"), data=iter([big[: 1 << 20]] * 20), headers=srv.headers(), timeout=30)
        assert r.status_code == 413
        r = requests.post(srv.api("/push/negotiate"), data=iter([b"[" * (1 << 20)] * 3), headers=srv.headers(), timeout=30)
        assert r.status_code == 413
        r = requests.post(srv.api("/push/negotiate"), data=b"{not json", headers=srv.headers(), timeout=30)
        assert r.status_code == 400
        # A half-sent body (the client vanishes) leaves nothing either.
        import socket

        with socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1]))) as s:
            s.sendall(
                f"POST /api/v1/push/pack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.tokens['write']}\r\n"
                f"Content-Length: {len(valid)}\r\n\r\n".encode() + valid[:30]
            )
        time.sleep(0.3)
        assert store_files(tmp_path / "served") == before  # nothing stored
        assert srv.alive()
        r = requests.post(srv.api("/push/pack"), data=valid, headers=srv.headers(), timeout=30)  # and it keeps serving
        assert r.status_code == 200 and r.json()["stored"] == 1
        assert Repository.open(tmp_path / "served").odb.has(oid.hex())
    finally:
        srv.stop()


def test_file_reads_stay_inside_the_store(server: ServerProcess, tmp_path: Path) -> None:
    secret = Path(server.store).parent / "tokens.json"
    assert secret.exists()
    for path in ("../tokens.json", "..%2Ftokens.json", "refs/../../tokens.json", "tmp/x", "cache/stat", "%2Fetc%2Fpasswd"):
        r = requests.get(server.api(f"/files/{path}"), headers=server.headers("read"), timeout=30)
        assert r.status_code == 404, path
    assert requests.get(server.api("/files/config"), headers=server.headers("read"), timeout=30).json()["format"] == "objstore"
    assert requests.get(server.api("/list/..") , headers=server.headers("read"), timeout=30).status_code == 404


def test_plain_web_server_still_reads(tmp_path: Path) -> None:
    """No objstore server behind the URL: fsspec's HTTP reads it, read-only, as before."""
    served = Repository.init(tmp_path / "static")
    c = _commit(served, {"f": b"static bytes"})
    served.refs.set("main", c)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path / "static")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        clone = Repository.clone(url, tmp_path / "clone")
        assert clone.read_file("main", "f") == b"static bytes"
    finally:
        proc.terminate()
        proc.wait(10)


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    local = Repository.init(tmp_path / "local")
    local.refs.set("main", _commit(local, {"f": b"x"}))
    with pytest.raises(ServerError, match="cannot reach"):
        local.push(f"http://127.0.0.1:{free_port()}")
    with pytest.raises((NotARepository, ServerError)):
        Repository.open(f"http://127.0.0.1:{free_port()}")


def test_info_describes_the_server(server: ServerProcess) -> None:
    info: dict[str, Any] = requests.get(server.api("/info"), headers=server.headers("read"), timeout=30).json()
    assert info["server"] == "objstore" and info["scope"] == "read" and info["auth"] == "token"
    assert info["config"]["format"] == "objstore"
    assert json.dumps(info)


@pytest.mark.slow
def test_cli_push_fetch_clone_against_a_server(server: ServerProcess, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello")

    def cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = subprocess_env()
        env.pop("OBJSTORE_TOKEN", None)
        if token:
            env["OBJSTORE_TOKEN"] = token
        return subprocess.run([sys.executable, "-m", "objstore.cli", "-q", *args], env=env, capture_output=True, text=True, cwd=tmp_path)

    assert cli("-r", "mine", "init").returncode == 0
    assert cli("-r", "mine", "snapshot", "src", "--ref", "main", "-m", "one").returncode == 0
    denied = cli("-r", "mine", "push", server.url)
    assert denied.returncode == 1 and "token" in denied.stderr
    pushed = cli("-r", "mine", "--json", "push", server.url, "main", token=server.tokens["write"])
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["requests"] <= 4
    cloned = cli("-o", f"token={server.tokens['read']}", "clone", server.url, "theirs")
    assert cloned.returncode == 0, cloned.stderr
    assert cli("-r", "theirs", "cat", "main", "a.txt").stdout == "hello"
    # A diverged push: exit 4, the ref named, nothing moved.
    assert cli("-r", "theirs", "snapshot", "src", "--ref", "main", "-m", "theirs").returncode == 0
    assert cli("-r", "theirs", "push", server.url, token=server.tokens["write"]).returncode == 0
    (src / "a.txt").write_text("mine")
    assert cli("-r", "mine", "snapshot", "src", "--ref", "main", "-m", "two").returncode == 0
    rejected = cli("-r", "mine", "push", server.url, token=server.tokens["write"])
    assert rejected.returncode == 4 and "'main'" in rejected.stderr
    fetched = cli("-r", "mine", "--json", "fetch", server.url, token=server.tokens["read"])
    assert fetched.returncode == 0 and json.loads(fetched.stdout)["refs_rejected"]
    for t in server.tokens.values():
        for out in (denied, pushed, cloned, rejected, fetched):
            assert t not in out.stdout + out.stderr


def test_a_ref_fast_forwarded_during_our_push_is_retried(server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between our negotiation and our ref update, someone moves the ref to an ancestor of ours:
    the server answers 409, and the client moves it again from there (as a fast-forward)."""
    import objstore.smart

    local = Repository.init(tmp_path / "local")
    c0 = _commit(local, {"f": b"0"})
    local.refs.set("main", c0)
    local.push(server.url, storage_options=server.options())
    c1 = _commit(local, {"f": b"1"}, [c0])
    c2 = _commit(local, {"f": b"2"}, [c1])
    local.refs.set("main", c2)
    upload = objstore.smart.SmartRemote._upload

    def upload_then_race(self: Any, objects: list[bytes], result: Any) -> None:
        upload(self, objects, result)  # c1 and c2 are on the server now; someone moves main to c1
        r = requests.post(server.api("/push/refs"), json={"updates": [{"name": "main", "old": c0, "new": c1}]}, headers=server.headers(), timeout=30)
        assert r.status_code == 200

    monkeypatch.setattr(objstore.smart.SmartRemote, "_upload", upload_then_race)
    result = local.push(server.url, storage_options=server.options())
    assert result.refs_updated == {"main": (c1, c2)}
    assert [e.new for e in _served(server).refs.history("main")] == [c0, c1, c2]


def test_serve_ui_mounts_the_browser_behind_the_read_scope(tmp_path: Path) -> None:
    """``objstore serve --ui``: the repository browser at /ui/, opened once with a read token."""
    import requests
    from server_helpers import make_tokens, start_server

    repo = Repository.init(tmp_path / "served")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello <b>team</b>\n")
    repo.refs.set("main", repo.commit(repo.snapshot(tmp_path / "src"), message="first"))
    repo.close()
    tokens_file = tmp_path / "tokens.json"
    tokens = make_tokens(tokens_file, ("read", "write"))
    proc = start_server(tmp_path / "served", tmp_path, tokens_file=tokens_file, tokens=tokens, args=("--ui",))
    try:
        anonymous = requests.get(f"{proc.url}/ui/", timeout=30)
        assert anonymous.status_code == 401 and "read token" in anonymous.text
        assert requests.get(f"{proc.url}/ui/?token=not-a-token", timeout=30).status_code == 401
        browser = requests.Session()
        opened = browser.get(f"{proc.url}/ui/?token={tokens['read']}", timeout=30)
        assert opened.status_code == 200
        assert opened.url == f"{proc.url}/ui/"  # the token left the URL for an HttpOnly cookie
        assert tokens["read"] not in opened.text
        assert "main" in opened.text
        page = browser.get(f"{proc.url}/ui/", timeout=30)
        assert page.status_code == 200
        assert requests.post(f"{proc.url}/ui/", timeout=30, cookies=browser.cookies).status_code in (401, 405)
        # the smart protocol keeps its own bearer tokens
        assert requests.get(f"{proc.url}/api/v1/refs", timeout=30).status_code == 401
    finally:
        proc.stop()
