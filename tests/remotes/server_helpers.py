"""A real ``objstore serve`` process on 127.0.0.1 for the server tests (imported as ``server_helpers``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from remote_helpers import free_port, subprocess_env, tail

from objstore.server.tokens import TokenFile


@dataclass
class ServerProcess:
    """One uvicorn process serving ``store``; ``tokens`` maps a scope to a token of that scope."""

    proc: subprocess.Popen[bytes]
    url: str
    store: str
    log: Path
    tokens_file: Path | None
    tokens: dict[str, str] = field(default_factory=dict)
    verify: str | None = None

    def options(self, scope: str | None = "write") -> dict[str, Any]:
        """``storage_options`` for a client holding a token of ``scope`` (None: no token)."""
        opts: dict[str, Any] = {}
        if scope is not None:
            opts["token"] = self.tokens[scope]
        if self.verify:
            opts["verify"] = self.verify
        return opts

    def headers(self, scope: str | None = "write") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"} if scope else {}

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"

    def output(self) -> str:
        return tail(self.log)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def make_tokens(path: Path, scopes: tuple[str, ...] = ("read", "write", "admin")) -> dict[str, str]:
    tf = TokenFile(path)
    return {scope: tf.add(f"{scope}-user", scope) for scope in scopes}


def start_server(
    store: str | Path,
    log_dir: Path,
    *,
    tokens_file: Path | None = None,
    tokens: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    port: int | None = None,
    tls: tuple[Path, Path] | None = None,
    global_args: tuple[str, ...] = (),
) -> ServerProcess:
    """Start ``objstore serve`` and wait until it answers."""
    port = port or free_port()
    log = log_dir / f"server-{port}-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "objstore.cli", *global_args, "serve", str(store), "--port", str(port), "--log-level", "warning"]
    if tokens_file is not None:
        cmd += ["--tokens", str(tokens_file)]
    if tls is not None:
        cmd += ["--ssl-keyfile", str(tls[0]), "--ssl-certfile", str(tls[1])]
    cmd += list(args)
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(**(env or {})))
    server = ServerProcess(proc, url, str(store), log, tokens_file, dict(tokens or {}), verify=str(tls[1]) if tls else None)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"objstore serve exited with {proc.returncode}:\n{tail(log)}")
        try:
            r = requests.get(server.api("/info"), timeout=1, verify=server.verify or True)
            if "x-objstore-server" in r.headers:
                return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"objstore serve did not answer on {url}:\n{tail(log)}")
        time.sleep(0.05)


def store_files(store: str | Path) -> dict[str, list[str]]:
    """Files a local store holds under packs/ and refs/ (what a refused request must not change)."""
    out: dict[str, list[str]] = {}
    for sub in ("packs", "refs"):
        found = []
        for top, _dirs, files in os.walk(os.path.join(store, sub)):
            found += [os.path.relpath(os.path.join(top, f), store) for f in files]
        out[sub] = sorted(found)
    return out
