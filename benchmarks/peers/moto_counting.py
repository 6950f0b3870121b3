"""A moto S3 server on loopback that counts the HTTP requests it serves.

    python moto_counting.py PORT

moto's WSGI app (``DomainDispatcherApplication``, what ``moto_server``
runs) behind a middleware that counts every request by method before
passing it on; ``GET /__bench__/counts`` answers ``{"total": N,
"by_method": {...}}`` without being counted. Every system's requests are
counted by the same code, whatever client library it uses (s3fs/aiobotocore
for objstore and DVC, minio-go for restic). Served by werkzeug with one
thread per request, as ``moto_server`` does. Prints ``ready`` once it
listens.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

COUNTS_PATH = "/__bench__/counts"


class CountingMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.by_method: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == COUNTS_PATH:
            with self.lock:
                body = json.dumps({"total": sum(self.by_method.values()), "by_method": dict(self.by_method)}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        with self.lock:
            self.by_method[environ.get("REQUEST_METHOD", "?")] += 1
        return self.app(environ, start_response)


def main(argv: list[str]) -> int:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    port = int(argv[1])
    app = CountingMiddleware(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
