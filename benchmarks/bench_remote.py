"""remote: push and fetch against a real S3 server on loopback (moto_server).

The benchmark starts ``moto_server`` on 127.0.0.1 (installed with the test
extras), creates a bucket, and measures:

* push of a 1 GiB random file (256 MiB with ``--quick``): MB/s, target >= 200;
* a no-op push and a no-op fetch once caches are warm: time (< 200 ms) and
  storage requests (<= 5);
* push of 20,000 small files: storage requests (target <= 10) and time;
* clone of the 1 GiB store into a fresh local repository: MB/s.

Requests are objstore's storage operations against the remote (one listing,
one ranged read, one upload each); an upload above s3fs's part size is one
operation but several HTTP requests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

from objstore import Repository

from .bench_small_files import make_tree
from .common import MB, Context, GiB, MiB, Row, measure, remove, write_random_file

NAME = "remote"
PUSH_MBS = 200.0
NOOP_S = 0.2
NOOP_REQUESTS = 5
SMALL_REQUESTS = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """A moto S3 server on loopback for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
        if exe is None:
            raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError("moto_server did not start")

    def bucket(self) -> tuple[str, dict[str, Any]]:
        import boto3

        name = f"bench-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
        ).create_bucket(Bucket=name)
        options = {"key": "bench", "secret": "bench", "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"}}
        return f"s3://{name}/store", options

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run(ctx: Context) -> list[Row]:
    size = 256 * MiB if ctx.quick else GiB
    label = f"{size // GiB} GiB" if size >= GiB else f"{size // MiB} MiB"
    d = ctx.fresh_dir(NAME)
    rows: list[Row] = []
    with MotoServer() as s3:
        # -- one big file ---------------------------------------------------
        data = os.path.join(d, "big.bin")
        ctx.log(f"{NAME}: writing {label}")
        write_random_file(data, size)
        local = Repository.init(os.path.join(d, "local"))
        local.refs.set("main", local.commit(local.snapshot(data)))
        remove(data)
        urls: list[tuple[str, dict[str, Any]]] = []

        def setup() -> None:
            urls.append(s3.bucket())

        def push() -> None:
            url, opts = urls[-1]
            local.push(url, create=True, storage_options=opts)

        ctx.log(f"{NAME}: push {label} to S3")
        t = measure(push, max(1, min(ctx.repeats, 2)), setup=setup)
        rows.append(
            Row(NAME, f"push {label} to S3 (moto, loopback)", size / MB / t.median, "MB/s", PUSH_MBS, ">=",
                notes=f"{t.median:.2f} s; {t.spread()}")
        )
        url, opts = urls[-1]
        # -- no-op push and fetch ----------------------------------------------
        local.push(url, storage_options=opts)  # warm the caches
        results: list[Any] = []
        t = measure(lambda: results.append(local.push(url, storage_options=opts)), 5)
        rows.append(Row(NAME, "no-op push: time", t.median * 1000, "ms", NOOP_S * 1000, "<", notes=t.spread(1000, "ms")))
        rows.append(Row(NAME, "no-op push: storage requests", float(results[-1].requests), "", NOOP_REQUESTS, "<="))
        clone_dir = os.path.join(d, "clone")
        ctx.log(f"{NAME}: clone {label} from S3")
        t0 = time.perf_counter()
        clone = Repository.clone(url, clone_dir, storage_options=opts)
        clone_s = time.perf_counter() - t0
        rows.append(Row(NAME, f"clone {label} from S3", size / MB / clone_s, "MB/s", notes=f"{clone_s:.2f} s; 1 run"))
        clone.fetch(url, storage_options=opts)
        results.clear()
        t = measure(lambda: results.append(clone.fetch(url, storage_options=opts)), 5)
        rows.append(Row(NAME, "no-op fetch: time", t.median * 1000, "ms", NOOP_S * 1000, "<", notes=t.spread(1000, "ms")))
        rows.append(Row(NAME, "no-op fetch: storage requests", float(results[-1].requests), "", NOOP_REQUESTS, "<="))
        remove(clone_dir)
        remove(os.path.join(d, "local"))
        # -- many small files ----------------------------------------------------
        src = os.path.join(d, "small")
        ctx.log(f"{NAME}: 20,000 small files")
        make_tree(src, 20_000)
        small = Repository.init(os.path.join(d, "small-store"))
        small.refs.set("main", small.commit(small.snapshot(src)))
        url, opts = s3.bucket()
        t0 = time.perf_counter()
        result = small.push(url, create=True, storage_options=opts)
        push_s = time.perf_counter() - t0
        rows.append(
            Row(NAME, "push 20,000 small files: storage requests", float(result.requests), "", SMALL_REQUESTS, "<=",
                notes=f"{push_s:.2f} s; {result.objects} objects in {result.packs} pack(s); peers: DVC 20,011, restic 17")
        )
        rows.append(Row(NAME, "push 20,000 small files: time", push_s, "s", 3.2, "<=", target_label="<= 3.2 s (restic)"))
    remove(d)
    return rows
