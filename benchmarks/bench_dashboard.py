"""dashboard: the web dashboard's quality bars, measured server-side.

- the artifact page of a project with 1,000 versions of one artifact renders
  in < 300 ms (the request served in-process through the ASGI app: routing,
  reading the versions through ``trackio.Api``, the template); the first
  request after start also computes each version's new stored bytes
  (cached afterwards: versions never change) and is reported apart;
- a 100 MB CSV previews (first rows as a table) in < 200 ms;
- a 1 GiB file (256 MiB with ``--quick``) downloads streamed with flat
  server memory: the peak RSS growth of the server process during the
  download, against a 64 MiB target.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from .common import ROOT, Context, MiB, Row, Timing, remove, write_random_file

NAME = "dashboard"
PAGE_MS, PREVIEW_MS, RSS_MIB = 300.0, 200.0, 64.0


def _versions(n: int) -> None:
    """``n`` versions of one artifact (two small files each; an alias every 100)."""
    from trackio import names
    from trackio.store import get_repo
    from trackio.versions import ArtifactRegistry, manifest_digest, manifest_of

    repo = get_repo()
    reg = ArtifactRegistry(repo)
    for i in range(n):
        with repo.batch():
            w = repo.store_bytes(f"weights {i}\n".encode() * 50)
            c = repo.store_bytes(b'{"i": %d}' % (i % 7))
            from objstore import TreeEntry

            tree = repo.make_tree([TreeEntry("cfg.json", "file", c, len(b'{"i": %d}' % (i % 7))), TreeEntry("w.txt", "file", w, len(f"weights {i}\n") * 50)])
            manifest = manifest_of(repo, tree)
            reg.log_version(
                project="bench", name="model", type="model", description=None, metadata={"i": i, "acc": i / n},
                tree_id=tree, digest=manifest_digest(repo, manifest), size=sum(e["size"] for e in manifest),
                aliases=["prod"] if i % 100 == 0 else [], run_id=None, run_project=None,
            )
    assert names.LATEST


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(ctx: Context) -> list[Row]:
    import psutil
    from starlette.testclient import TestClient

    import trackio
    import trackio.store
    from trackio.dashboard import create_app

    d = ctx.fresh_dir(NAME)
    old = os.environ.get("TRACKIO_DIR")
    os.environ["TRACKIO_DIR"] = os.path.join(d, "home")
    trackio.store.close_all()
    rows: list[Row] = []
    try:
        ctx.log(f"{NAME}: logging 1,000 versions of one artifact")
        _versions(1000)
        csv_path = os.path.join(d, "big.csv")
        line = b"12345,0.123456789,some-label-text,another column of text,2024-01-01T00:00:00\n"
        with open(csv_path, "wb") as f:
            f.write(b"id,score,label,comment,when\n")
            block = line * (8 * MiB // len(line))
            while f.tell() < 100 * 1000 * 1000:
                f.write(block)
        big = os.path.join(d, "big.bin")
        size = (256 if ctx.quick else 1024) * MiB
        write_random_file(big, size)
        ctx.log(f"{NAME}: logging a 100 MB CSV and a {size // MiB} MiB file")
        with trackio.init(project="bench", name="big") as r:
            a = trackio.Artifact("table", type="dataset")
            a.add_file(csv_path)
            r.log_artifact(a)
            b = trackio.Artifact("blob", type="model")
            b.add_file(big)
            r.log_artifact(b)
        remove(big)
        trackio.store.close_all()

        client = TestClient(create_app())
        t0 = time.perf_counter()
        first = client.get("/p/bench/a/model")
        cold_ms = (time.perf_counter() - t0) * 1000
        assert first.status_code == 200 and first.text.count('class="version-link"') == 1000, first.status_code
        samples = []
        for _ in range(max(5, ctx.repeats)):
            t0 = time.perf_counter()
            assert client.get("/p/bench/a/model").status_code == 200
            samples.append(time.perf_counter() - t0)
        page = Timing(samples)
        rows.append(Row(NAME, "artifact page, 1,000 versions (server-side, warm)", page.median * 1000, "ms", PAGE_MS, "<",
                        notes=f"{page.spread(1000, 'ms')}; first request after start {cold_ms:.0f} ms (computes new stored bytes per version)"))
        samples = []
        for _ in range(max(5, ctx.repeats)):
            t0 = time.perf_counter()
            r = client.get("/p/bench/a/table/v0/files/big.csv")
            samples.append(time.perf_counter() - t0)
            assert r.status_code == 200 and "some-label-text" in r.text
        prev = Timing(samples)
        rows.append(Row(NAME, "preview of a 100 MB CSV (first rows as a table)", prev.median * 1000, "ms", PREVIEW_MS, "<", notes=prev.spread(1000, "ms")))

        port = _free_port()
        env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen([sys.executable, "-m", "trackio.cli", "show", "--no-browser", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            server = psutil.Process(proc.pid)
            import httpx

            httpx.get(f"http://127.0.0.1:{port}/p/bench", timeout=60)  # warm up: imports, first store open
            base_rss = server.memory_info().rss
            peak = [base_rss]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], server.memory_info().rss)
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample)
            sampler.start()
            got = 0
            t0 = time.perf_counter()
            with httpx.stream("GET", f"http://127.0.0.1:{port}/p/bench/a/blob/v0/raw/big.bin", timeout=600) as resp:
                for chunk in resp.iter_raw(1 << 20):
                    got += len(chunk)
            secs = time.perf_counter() - t0
            done.set()
            sampler.join()
            assert got == size, (got, size)
            growth = (peak[0] - base_rss) / MiB
            rows.append(Row(NAME, f"download of a {size // MiB} MiB file: server RSS growth", growth, "MiB", RSS_MIB, "<",
                            notes=f"{size / MiB / secs:.0f} MiB/s; server RSS before {base_rss / MiB:.0f} MiB"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        trackio.store.close_all()
        if old is None:
            os.environ.pop("TRACKIO_DIR", None)
        else:
            os.environ["TRACKIO_DIR"] = old
        remove(d)
    return rows
