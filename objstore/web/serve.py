"""Run an ASGI app with uvicorn in a background thread (for ``objstore ui`` and ``trackio show``)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

LOCALHOST = "127.0.0.1"
PORT_TRIES = 100


class ServerHandle:
    """A running server: its ``url``, and ``close()`` to stop it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        shown = "localhost" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
        self.url = f"http://{shown}:{port}/"

    def close(self, verbose: bool = False) -> None:
        """Stop serving and wait for the server thread to end."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C stops it)."""
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.2)
        except KeyboardInterrupt:
            self.close()

    def __repr__(self) -> str:
        return f"ServerHandle({self.url!r})"


def _free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(app: Any, host: str = LOCALHOST, port: int | None = None, *, first_port: int = 7860) -> ServerHandle:
    """Start ``app`` on ``host:port`` in a daemon thread; return once it accepts connections.

    ``port`` None scans upward from ``first_port`` for a free one; ``0``
    lets the system choose. Binds 127.0.0.1 unless told otherwise.
    """
    if port is None:
        port = next((p for p in range(first_port, first_port + PORT_TRIES) if _free(host, p)), None)
        if port is None:
            raise OSError(f"no free port in {first_port}-{first_port + PORT_TRIES - 1} on {host}: pass a port")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"objstore-web-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive():
            raise OSError(f"could not serve on {host}:{port} (is the port in use?)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise OSError(f"the server on {host}:{port} did not start within 15 s")
        time.sleep(0.02)
    if port == 0:
        port = server.servers[0].sockets[0].getsockname()[1]
    return ServerHandle(server, thread, host, port)
