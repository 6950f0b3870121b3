"""External references: files that stay where they are.

A reference entry records a URI, a size and a checksum so the bytes can be
fetched and verified later. Local files (``file://``) get a streamed
sha256; HTTP(S) and object stores give their ETag; where no checksum can be
had the URI itself is the digest and a warning says so.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec

from .errors import ArtifactPathError, ReferenceChangedError

DEFAULT_MAX_OBJECTS = 10_000
_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Reference:
    """One referenced object: where it is, how big, and how to check it."""

    uri: str
    size: int  # -1 when unknown
    digest: str | None  # "sha256:<hex>", "etag:<value>", or None (the URI is the digest)

    @property
    def manifest_digest(self) -> str:
        if self.digest is None:
            return self.uri
        return self.digest.split(":", 1)[1]


def _local_path(uri: str) -> str:
    parsed = urllib.parse.urlparse(uri)
    return urllib.request.url2pathname(parsed.path)


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _http_head(uri: str) -> tuple[int, str | None]:
    req = urllib.request.Request(uri, method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            length = resp.headers.get("Content-Length")
            etag = resp.headers.get("ETag")
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise ArtifactPathError(f"Reference URL does not exist: {uri} (HTTP {exc.code})") from None
        raise ArtifactPathError(f"Reference URL {uri} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ArtifactPathError(f"Reference URL {uri} cannot be reached: {exc.reason}") from None
    return (int(length) if length is not None else -1), (etag.strip('"') if etag else None)


def _fsspec_etag(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag", "md5", "md5Hash", "checksum", "sha256"):
        value = info.get(key)
        if value:
            return str(value).strip('"')
    return None


def expand(uri: str, checksum: bool = True, max_objects: int | None = None) -> Iterator[tuple[str, Reference]]:
    """The objects a reference URI names, as (relative path, Reference).

    A URI ending in ``/`` is a directory or prefix: one entry per object
    under it (relative paths), at most ``max_objects``. Otherwise one entry
    with an empty relative path.
    """
    limit = DEFAULT_MAX_OBJECTS if max_objects is None else max_objects
    if uri.startswith("file://"):
        path = _local_path(uri)
        if uri.endswith("/"):
            if not os.path.isdir(path):
                raise ArtifactPathError(f"Reference directory does not exist: {path}")
            found = []
            for top, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    found.append(os.path.join(top, f))
                    if len(found) > limit:
                        raise ValueError(f"Reference {uri} holds more than max_objects={limit} files; raise max_objects to add them")
            for full in found:
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                yield rel, _probe_local(full, checksum)
            return
        if not os.path.isfile(path):
            raise ArtifactPathError(f"Reference file does not exist: {path}")
        yield "", _probe_local(path, checksum)
        return
    if _is_http(uri) and not uri.endswith("/"):
        if not checksum:
            yield "", Reference(uri, -1, None)
            return
        size, etag = _http_head(uri)
        if etag is None:
            warnings.warn(f"trackio: {uri} gives no ETag; its URI is recorded as its digest", stacklevel=3)
        yield "", Reference(uri, size, f"etag:{etag}" if etag else None)
        return
    fs, root = fsspec.core.url_to_fs(uri)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    if uri.endswith("/"):
        try:
            infos = fs.find(root, detail=True)
        except FileNotFoundError:
            infos = {}
        if not infos:
            raise ArtifactPathError(f"Reference directory or prefix does not exist or is empty: {uri}")
        if len(infos) > limit:
            raise ValueError(f"Reference {uri} holds more than max_objects={limit} objects; raise max_objects to add them")
        base = root.rstrip("/") + "/"
        for path, info in sorted(infos.items()):
            rel = path[len(base):] if path.startswith(base) else path.rsplit("/", 1)[-1]
            full = path if "://" in path else f"{protocol}://{path.lstrip('/') if protocol != 'memory' else path}"
            if _is_http(full):  # a listing page gives names only: ask each object
                yield urllib.parse.unquote(rel), next(expand(full, checksum=checksum))[1]
            else:
                yield urllib.parse.unquote(rel), _probe_remote(full, info, checksum)
        return
    if not checksum:
        yield "", Reference(uri, -1, None)
        return
    try:
        info = fs.info(root)
    except FileNotFoundError:
        raise ArtifactPathError(f"Reference object does not exist: {uri}") from None
    yield "", _probe_remote(uri, info, checksum)


def _probe_local(path: str, checksum: bool) -> Reference:
    uri = "file://" + urllib.request.pathname2url(os.path.abspath(path))
    if not checksum:
        return Reference(uri, os.path.getsize(path), None)
    return Reference(uri, os.path.getsize(path), "sha256:" + sha256_file(path))


def _probe_remote(uri: str, info: dict[str, Any], checksum: bool) -> Reference:
    size = int(info.get("size") or -1)
    if not checksum:
        return Reference(uri, size, None)
    etag = _fsspec_etag(info)
    if etag is None:
        warnings.warn(f"trackio: {uri} gives no checksum; its URI is recorded as its digest", stacklevel=3)
        return Reference(uri, size, None)
    return Reference(uri, size, f"etag:{etag}")


def current_digest(ref: Reference) -> str | None:
    """Probe the source again the same way it was probed at log time."""
    if ref.digest is None:
        return None
    kind = ref.digest.split(":", 1)[0]
    if kind == "sha256":
        return None  # checked while streaming the bytes
    if _is_http(ref.uri):
        return f"etag:{_http_head(ref.uri)[1]}"
    fs, root = fsspec.core.url_to_fs(ref.uri)
    return f"etag:{_fsspec_etag(fs.info(root))}"


def download(ref: Reference, dest: str) -> None:
    """Fetch a referenced object to ``dest`` (atomically), verifying its checksum."""
    if ref.digest is not None and not ref.digest.startswith("sha256:"):
        now = current_digest(ref)
        if now != ref.digest:
            raise ReferenceChangedError(f"{ref.uri} changed since it was logged: recorded {ref.digest}, now {now}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{uuid.uuid4().hex[:12]}.partial"
    h = hashlib.sha256()
    try:
        if ref.uri.startswith("file://"):
            src = open(_local_path(ref.uri), "rb")  # noqa: SIM115 - closed below
        elif _is_http(ref.uri):
            src = urllib.request.urlopen(ref.uri, timeout=60)
        else:
            src = fsspec.open(ref.uri, "rb").open()
        with src, open(tmp, "wb") as out:
            while block := src.read(_BLOCK):
                h.update(block)
                out.write(block)
        if ref.digest is not None and ref.digest.startswith("sha256:") and h.hexdigest() != ref.digest[7:]:
            raise ReferenceChangedError(f"{ref.uri} changed since it was logged: sha256 is {h.hexdigest()}, recorded {ref.digest[7:]}")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_current(ref: Reference, path: str) -> bool:
    """Is a previously downloaded copy still right (cheap checks first)?"""
    if not os.path.isfile(path):
        return False
    if ref.size >= 0 and os.path.getsize(path) != ref.size:
        return False
    if ref.digest is not None and ref.digest.startswith("sha256:"):
        return sha256_file(path) == ref.digest[7:]
    return False


__all__ = ["DEFAULT_MAX_OBJECTS", "Reference", "download", "expand", "is_current"]
