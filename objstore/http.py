"""The client side of an objstore server: a connection, and a read-only Storage over it.

``http://`` and ``https://`` URLs are probed once (``GET <url>/api/v1/info``):
an objstore server answers with its ``X-Objstore-Server`` header and the
repository config, and is then spoken to with the smart protocol
(:mod:`objstore.smart`) for push and fetch, and through :class:`HttpStorage`
for reading in place. Anything else (a plain static file server) is left to
fsspec's HTTP filesystem, read-only as before.

The token comes from ``storage_options={"token": ...}`` or ``OBJSTORE_TOKEN``
and travels only in the ``Authorization`` header, never in a URL or an error
message. ``storage_options={"verify": "/path/ca.pem"}`` (or
``REQUESTS_CA_BUNDLE``) trusts a private certificate.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import requests

from .config import RepoConfig
from .errors import AccessDenied, ServerError, ServerUnreachable, StorageError
from .storage import Storage

API = "/api/v1"
SERVER_HEADER = "x-objstore-server"
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 600.0


def is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def server_message(response: requests.Response) -> tuple[str, dict[str, Any]]:
    """The server's error message and JSON body (or the start of a non-JSON one)."""
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"], body
    except ValueError:
        pass
    text = response.text[:200].strip()
    return f"HTTP {response.status_code}{': ' + text if text else ''}", {}


class ServerClient:
    """One objstore server at ``url``: authenticated requests, counted, errors mapped."""

    def __init__(self, url: str, token: str | None = None, *, verify: bool | str | None = None, timeout: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "objstore"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        if verify is not None:
            self.session.verify = verify
        self.timeout = (CONNECT_TIMEOUT, timeout or READ_TIMEOUT)
        self.requests = 0
        self._lock = threading.Lock()

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), what: str = "", **kwargs: Any) -> requests.Response:
        """Send one request; return the response if its status is in ``ok``, else raise."""
        with self._lock:
            self.requests += 1
        try:
            r = self.session.request(method, f"{self.url}{API}{path}", timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise ServerUnreachable(f"cannot reach the objstore server at {self.url}{' ' + what if what else ''}: {_reason(exc)}") from exc
        except requests.Timeout as exc:
            raise ServerUnreachable(f"the objstore server at {self.url} did not answer in time{' ' + what if what else ''}") from exc
        if r.status_code in ok:
            return r
        raise self.error(r, what)

    def error(self, r: requests.Response, what: str = "") -> ServerError:
        message, _ = server_message(r)
        text = f"objstore server {self.url}{' (' + what + ')' if what else ''}: {message}"
        if r.status_code in (401, 403):
            return AccessDenied(text, r.status_code)
        return ServerError(text, r.status_code)

    def close(self) -> None:
        self.session.close()


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection error, short (no URL with credentials: there are none)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def client_options(storage_options: dict[str, Any] | None) -> tuple[str | None, bool | str | None, float | None]:
    """(token, verify, timeout) from storage options and ``OBJSTORE_TOKEN``."""
    opts = storage_options or {}
    token = opts.get("token") or os.environ.get("OBJSTORE_TOKEN") or None
    return token, opts.get("verify"), opts.get("timeout")


def probe(url: str, storage_options: dict[str, Any] | None = None) -> HttpStorage | None:
    """An :class:`HttpStorage` if an objstore server answers at ``url``; None for any other web server."""
    token, verify, timeout = client_options(storage_options)
    client = ServerClient(url, token, verify=verify, timeout=timeout)
    with client._lock:
        client.requests += 1
    try:
        r = client.session.get(f"{client.url}{API}/info", timeout=client.timeout)
    except requests.ConnectionError as exc:
        client.close()
        raise ServerUnreachable(f"cannot reach {client.url}: {_reason(exc)}") from exc
    if SERVER_HEADER not in r.headers:
        client.close()
        return None
    if r.status_code != 200:
        client.close()
        raise client.error(r)
    return HttpStorage(url, client, r.json())


def dumb_options(storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """fsspec HTTP options for a plain web server (a token becomes an Authorization header)."""
    opts = dict(storage_options or {})
    token = opts.pop("token", None) or os.environ.get("OBJSTORE_TOKEN")
    opts.pop("verify", None)
    opts.pop("timeout", None)
    if token:
        client_kwargs = dict(opts.get("client_kwargs") or {})
        headers = dict(client_kwargs.get("headers") or {})
        headers["Authorization"] = f"Bearer {token}"
        client_kwargs["headers"] = headers
        opts["client_kwargs"] = client_kwargs
    return opts


class HttpStorage(Storage):
    """A repository behind an objstore server, read in place (writes go through push)."""

    smart = True

    def __init__(self, url: str, client: ServerClient, info: dict[str, Any]) -> None:
        self.url = url.rstrip("/")
        self.client = client
        self.info = info
        self.config = RepoConfig.decode(json.dumps(info["config"]).encode(), self.url)

    @property
    def requests(self) -> int:
        return self.client.requests

    def read(self, path: str) -> bytes:
        r = self.client.request("GET", f"/files/{path}", ok=(200, 404), what=f"reading {path}")
        if r.status_code == 404:
            raise FileNotFoundError(f"{self.url}: no {path}")
        return r.content

    def read_range(self, path: str, start: int, length: int) -> bytes:
        if length == 0:
            return b""
        r = self.client.request(
            "GET", f"/files/{path}", ok=(200, 206, 404, 416), what=f"reading {path}", headers={"Range": f"bytes={start}-{start + length - 1}"}
        )
        if r.status_code == 404:
            raise FileNotFoundError(f"{self.url}: no {path}")
        data = r.content if r.status_code != 416 else b""
        if r.status_code == 200:
            data = data[start : start + length]
        if len(data) != length:
            raise EOFError(f"{path} is truncated: wanted bytes {start}..{start + length}, got {len(data)}")
        return data

    def _listing(self, dirpath: str, recursive: bool) -> list[str]:
        r = self.client.request("GET", f"/list/{dirpath}", ok=(200, 404), params={"recursive": "1"} if recursive else None, what=f"listing {dirpath}")
        if r.status_code == 404:
            return []
        names = r.json()
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ServerError(f"objstore server {self.url}: malformed listing of {dirpath}")
        return names

    def listdir(self, dirpath: str) -> list[str]:
        return self._listing(dirpath, False)

    def walk_files(self, dirpath: str) -> list[str]:
        return self._listing(dirpath, True)

    def exists(self, path: str) -> bool:
        r = self.client.request("HEAD", f"/files/{path}", ok=(200, 404), what=f"looking for {path}")
        return r.status_code == 200

    def size(self, path: str) -> int:
        r = self.client.request("HEAD", f"/files/{path}", ok=(200, 404), what=f"looking for {path}")
        if r.status_code == 404:
            raise FileNotFoundError(f"{self.url}: no {path}")
        return int(r.headers["content-length"])

    def _no_writes(self, path: str) -> StorageError:
        return StorageError(f"cannot write {path} on {self.url}: an objstore server takes writes only through push")

    def write_atomic(self, path: str, data: bytes) -> None:
        raise self._no_writes(path)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        raise self._no_writes(path)

    def publish_file(self, local_path: str, path: str) -> None:
        raise self._no_writes(path)

    def delete(self, path: str) -> None:
        raise self._no_writes(path)

    def close(self) -> None:
        self.client.close()


__all__ = ["HttpStorage", "ServerClient", "client_options", "dumb_options", "is_http", "probe"]
