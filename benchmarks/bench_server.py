"""server: ``objstore serve`` on loopback against a plain HTTP PUT/GET of the same bytes.

One uvicorn process serves a fresh store through ``objstore.server.create_app``
and, on the same app, two bare routes (``PUT``/``GET /raw/<name>``) that
stream a body to a file (fsynced, like a pack) and back: the floor any
HTTP upload or download on this machine pays. Measured:

* push of a 256 MiB random file (64 MiB with ``--quick``) / one plain PUT of
  the same bytes: target <= 1.3x;
* fetch of it into an empty repository / one plain GET: target <= 1.3x;
* HTTP requests of a no-op push and a no-op fetch (<= 2 each), and of a push
  of 20,000 small files (<= 4);
* peak RSS of the server process while it receives 1 GiB (256 MiB quick)
  in one push: target < 200 MB.

Requests are counted by the client (every HTTP request it sends, the
server probe included).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import requests

from objstore import Repository

from .bench_remote import _free_port
from .bench_small_files import make_tree
from .common import MB, Context, GiB, MiB, Row, measure, remove, write_random_file

NAME = "server"
RATIO = 1.3
NOOP_REQUESTS = 2
SMALL_REQUESTS = 4
RSS_MB = 200.0

_APP = """
import os, sys
import uvicorn
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from objstore.server import create_app

store, port, raw = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = create_app(store, tokens_file=sys.argv[4])

async def put(request):
    path = os.path.join(raw, request.path_params["name"])
    with open(path, "wb") as f:
        async for chunk in request.stream():
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return Response(status_code=201)

async def get(request):
    return FileResponse(os.path.join(raw, request.path_params["name"]))

app.router.routes.append(Route("/raw/{name}", put, methods=["PUT"]))
app.router.routes.append(Route("/raw/{name}", get, methods=["GET"]))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


class BenchServer:
    """The objstore app plus raw PUT/GET routes, in a uvicorn subprocess on loopback."""

    def __init__(self, d: str) -> None:
        from objstore.server import TokenFile

        self.store = os.path.join(d, "served")
        Repository.init(self.store)
        self.raw = os.path.join(d, "raw")
        os.makedirs(self.raw)
        tokens = os.path.join(d, "tokens.json")
        self.token = TokenFile(tokens).add("bench", "write")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, "-c", _APP, self.store, str(self.port), self.raw, tokens], env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/api/v1/info", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("the benchmark server did not start")

    @property
    def options(self) -> dict[str, Any]:
        return {"token": self.token}

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class PeakRss:
    """Sample a process's RSS every 10 ms on a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except Exception:
                return
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(ctx: Context) -> list[Row]:
    size = 64 * MiB if ctx.quick else 256 * MiB
    label = f"{size // MiB} MiB"
    d = ctx.fresh_dir(NAME)
    rows: list[Row] = []
    repeats = max(1, min(ctx.repeats, 3))
    data = os.path.join(d, "big.bin")
    write_random_file(data, size)
    local = Repository.init(os.path.join(d, "local"))
    local.refs.set("main", local.commit(local.snapshot(data)))

    with BenchServer(os.path.join(d, "srv")) as srv:
        # -- one big file: push vs PUT ----------------------------------------------
        def put() -> None:  # one plain PUT from scratch (a new connection, as each push makes)
            with open(data, "rb") as f:
                requests.put(f"{srv.url}/raw/big.bin", data=f, timeout=600).raise_for_status()

        ctx.log(f"{NAME}: plain PUT of {label}")
        t_put = measure(put, repeats)
        results: list[Any] = []
        servers: list[BenchServer] = []

        def fresh() -> None:
            # every push goes to an empty store (a new server), so it sends everything
            if servers:
                gone = servers.pop()
                gone.__exit__()
                remove(os.path.dirname(gone.store))
            servers.append(BenchServer(os.path.join(d, f"srv-{len(results)}-{time.monotonic_ns()}")))
            requests.get(f"{servers[-1].url}/api/v1/info", timeout=30)  # warm, like the server the PUT went to

        def push() -> None:
            results.append(local.push(servers[-1].url, storage_options=servers[-1].options))

        ctx.log(f"{NAME}: push {label}")
        try:
            t_push = measure(push, repeats, setup=fresh)
        finally:
            for s in servers:
                s.__exit__()
        rows.append(Row(NAME, f"push {label} / plain PUT of the same bytes", t_push.median / t_put.median, "x", RATIO, "<=",
                        notes=f"push {t_push.median:.2f} s ({size / MB / t_push.median:.0f} MB/s, {results[-1].requests} requests); "
                              f"PUT {t_put.median:.2f} s; {t_push.spread()}"))

        # -- fetch vs GET ---------------------------------------------------------------
        local.push(srv.url, storage_options=srv.options)

        def get() -> None:
            with requests.get(f"{srv.url}/raw/big.bin", stream=True) as r, open(os.path.join(d, "got.bin"), "wb") as out:
                r.raise_for_status()
                for piece in r.iter_content(1 << 20):
                    out.write(piece)

        ctx.log(f"{NAME}: plain GET / fetch of {label}")
        t_get = measure(get, repeats)
        remove(os.path.join(d, "got.bin"))
        fetched: list[Any] = []
        clones: list[Repository] = []

        def empty() -> None:
            remove(os.path.join(d, "clone"))
            clones.append(Repository.init(os.path.join(d, "clone")))

        def fetch() -> None:
            fetched.append(clones[-1].fetch(srv.url, storage_options=srv.options))

        t_fetch = measure(fetch, repeats, setup=empty)
        rows.append(Row(NAME, f"fetch {label} / plain GET of the same bytes", t_fetch.median / t_get.median, "x", RATIO, "<=",
                        notes=f"fetch {t_fetch.median:.2f} s ({size / MB / t_fetch.median:.0f} MB/s, {fetched[-1].requests} requests); "
                              f"GET {t_get.median:.2f} s; {t_fetch.spread()}"))

        # -- no-ops -----------------------------------------------------------------------
        noop = local.push(srv.url, storage_options=srv.options)
        rows.append(Row(NAME, "no-op push: HTTP requests", float(noop.requests), "", NOOP_REQUESTS, "<="))
        t = measure(lambda: local.push(srv.url, storage_options=srv.options), 5)
        rows.append(Row(NAME, "no-op push: time", t.median * 1000, "ms", notes=t.spread(1000, "ms")))
        again = clones[-1].fetch(srv.url, storage_options=srv.options)
        rows.append(Row(NAME, "no-op fetch: HTTP requests", float(again.requests), "", NOOP_REQUESTS, "<="))
        remove(os.path.join(d, "clone"))
        remove(os.path.join(d, "local"))
        remove(data)

        # -- 20,000 small files --------------------------------------------------------------
        src = os.path.join(d, "small")
        ctx.log(f"{NAME}: 20,000 small files")
        make_tree(src, 20_000)
        small = Repository.init(os.path.join(d, "small-store"))
        small.refs.set("small-files", small.commit(small.snapshot(src)))
        t0 = time.perf_counter()
        result = small.push(srv.url, storage_options=srv.options)
        push_s = time.perf_counter() - t0
        rows.append(Row(NAME, "push 20,000 small files: HTTP requests", float(result.requests), "", SMALL_REQUESTS, "<=",
                        notes=f"{push_s:.2f} s; {result.objects} objects; S3 (remote row): one pack and index plus refs"))
        remove(src)
        remove(os.path.join(d, "small-store"))

    # -- server memory while receiving a large push ------------------------------------------
    big = GiB // 4 if ctx.quick else GiB
    ctx.log(f"{NAME}: server RSS while receiving {big // MiB} MiB")
    data = os.path.join(d, "huge.bin")
    write_random_file(data, big)
    huge = Repository.init(os.path.join(d, "huge"))
    huge.refs.set("main", huge.commit(huge.snapshot(data)))
    remove(data)
    with BenchServer(os.path.join(d, "srv-rss")) as srv, PeakRss(srv.proc.pid) as rss:
        t0 = time.perf_counter()
        huge.push(srv.url, storage_options=srv.options)
        secs = time.perf_counter() - t0
    rows.append(Row(NAME, f"server peak RSS receiving {big // MiB} MiB", rss.peak / MB, "MB", RSS_MB, "<",
                    notes=f"push {secs:.2f} s ({big / MB / secs:.0f} MB/s)"))
    remove(d)
    return rows
