"""External references: data recorded by URI, its bytes left where they are.

A reference is resolved by a :class:`ReferenceHandler` into one or more
:class:`ResolvedReference` (one per object), each with a size and, when the
source offers one, a digest. Handlers registered with
:func:`register_reference_handler` are tried first, in registration order,
then the built-ins: ``file://`` (streamed sha256), ``http(s)://`` (ETag) and
every other protocol fsspec knows (the store's ETag / md5 / checksum).

Digests are stored as ``"<kind>:<value>"``. A kind that names a hash
algorithm (``sha256``, ``md5``, ...) is a content hash: downloaded bytes are
hashed and compared. Any other kind (``etag``, ``tag``) is a version tag of
the source: the source is resolved again before fetching and its tag must
be unchanged. Where the source gives no digest the URI stands in for it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import urllib.parse
import uuid
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ArtifactPathError, ReferenceChangedError, UnsupportedReferenceError


def _fsspec() -> Any:
    """fsspec, imported on first use (it pulls in asyncio: a third of ``import trackio``)."""
    import fsspec

    return fsspec

DEFAULT_MAX_OBJECTS = 10_000
_BLOCK = 4 * 1024 * 1024

_CONTENT_HASHES = frozenset(hashlib.algorithms_guaranteed) - {"shake_128", "shake_256"}
_TAG_KINDS = frozenset({"etag", "tag"})
_SIGNED_PARAMS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "signature",
        "sig",
        "token",
        "access_token",
        "sas",
    }
)


class ResolvedReference(NamedTuple):
    """One object a reference URI resolves to."""

    relkey: str | None
    """None for a single object, else its path under the prefix (``/``-separated)."""
    uri: str
    size: int | None = None
    digest: str | None = None
    """``"sha256:<hex>"`` (bytes are verified on download), ``"etag:<v>"`` or a bare
    version tag (the source is re-checked before download), or None (no checksum)."""


class ReferenceHandler(ABC):
    """Resolves and fetches the objects behind one kind of URI.

    Subclass it and pass an instance to :func:`register_reference_handler`
    to teach ``Artifact.add_reference`` and ``Artifact.download`` a new scheme.
    """

    @abstractmethod
    def matches(self, scheme: str, uri: str) -> bool:
        """Whether this handler takes ``uri`` (``scheme`` is its lower-cased scheme)."""

    @abstractmethod
    def resolve(self, uri: str, checksum: bool, max_objects: int) -> list[ResolvedReference]:
        """The objects ``uri`` names: one with ``relkey=None``, or one per object under a prefix.

        With ``checksum=False`` the source should not be probed. A missing
        source raises (``FileNotFoundError`` or a ``ValueError`` naming it);
        more than ``max_objects`` objects raises ``ValueError``.
        """

    @abstractmethod
    def fetch(self, uri: str, dest: Path) -> None:
        """Write the bytes of one object to ``dest`` (its parent exists)."""

    def hint(self) -> str:
        """How to get content-based versioning when no checksum was found."""
        return "reference a local copy (file://...) to version it by its sha256"


# -- built-in handlers ------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, streamed in large blocks."""
    return hash_file(path, "sha256")


def hash_file(path: str | os.PathLike[str], algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb", buffering=0) as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _local_path(uri: str) -> str:
    import urllib.request  # lazily, as everywhere here: it pulls in http.client and email

    return urllib.request.url2pathname(urllib.parse.urlparse(uri).path)


def _file_uri(path: str) -> str:
    import urllib.request

    return "file://" + urllib.request.pathname2url(os.path.abspath(path))


def _too_many(uri: str, limit: int) -> ValueError:
    return ValueError(f"Reference {uri} holds more than max_objects={limit} objects; raise max_objects to add them")


class LocalFileHandler(ReferenceHandler):
    """``file://`` URIs: a file, or every file under a directory (with or without a trailing ``/``)."""

    def matches(self, scheme: str, uri: str) -> bool:
        return scheme == "file"

    def resolve(self, uri: str, checksum: bool, max_objects: int) -> list[ResolvedReference]:
        path = _local_path(uri)
        if not uri.endswith("/") and not os.path.isdir(path):
            if not os.path.isfile(path):
                what = "is not a regular file" if os.path.exists(path) else "does not exist"
                raise ArtifactPathError(f"Reference file {path} {what} ({uri})")
            return [self._probe(None, path, checksum)]
        if not os.path.isdir(path):
            raise ArtifactPathError(f"Reference directory {path} does not exist ({uri})")
        found: list[str] = []
        for top, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                found.append(os.path.join(top, f))
                if len(found) > max_objects:
                    raise _too_many(uri, max_objects)
        return [self._probe(os.path.relpath(full, path).replace(os.sep, "/"), full, checksum) for full in found]

    @staticmethod
    def _probe(relkey: str | None, path: str, checksum: bool) -> ResolvedReference:
        digest = "sha256:" + sha256_file(path) if checksum else None
        return ResolvedReference(relkey, _file_uri(path), os.path.getsize(path), digest)

    def fetch(self, uri: str, dest: Path) -> None:
        path = _local_path(uri)
        try:
            shutil.copyfile(path, dest)
        except FileNotFoundError:
            raise ArtifactPathError(f"Referenced file {path} no longer exists ({uri})") from None


class _Unreachable(Exception):
    """The server could not be reached at all (no HTTP answer)."""


def _http_head(uri: str) -> tuple[int | None, str | None]:
    import urllib.error
    import urllib.request

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
        raise _Unreachable(str(exc.reason)) from None
    except (TimeoutError, ConnectionError) as exc:
        raise _Unreachable(repr(exc)) from None
    return (int(length) if length is not None else None), (etag.strip('"') if etag else None)


class HttpHandler(ReferenceHandler):
    """``http://`` and ``https://``: one HEAD per object for its size and ETag.

    A URI ending in ``/`` is read as a directory listing (fsspec's HTTP
    filesystem) and each object it links to is probed in turn.
    """

    def matches(self, scheme: str, uri: str) -> bool:
        return scheme in ("http", "https")

    def resolve(self, uri: str, checksum: bool, max_objects: int) -> list[ResolvedReference]:
        if not uri.endswith("/"):
            return [self._probe(None, uri, checksum)]
        fs, root = _fsspec().core.url_to_fs(uri)
        try:
            found = sorted(fs.find(root))
        except FileNotFoundError:
            found = []
        if not found:
            raise ArtifactPathError(f"Reference directory does not exist or is empty: {uri}")
        if len(found) > max_objects:
            raise _too_many(uri, max_objects)
        base = root.rstrip("/") + "/"
        return [
            self._probe(urllib.parse.unquote(p[len(base):] if p.startswith(base) else p.rsplit("/", 1)[-1]), p, checksum)
            for p in found
        ]

    @staticmethod
    def _probe(relkey: str | None, uri: str, checksum: bool) -> ResolvedReference:
        if not checksum:
            return ResolvedReference(relkey, uri)
        try:
            size, etag = _http_head(uri)
        except _Unreachable as exc:
            # Offline logging must not fail: record the URI as its digest, size 0.
            warnings.warn(
                f"trackio: reference {redact(uri)} cannot be reached ({exc}); it is recorded with its URI as digest "
                "and size 0, so it has no content checksum (download fetches it and checks what it can)",
                UserWarning,
                stacklevel=5,
            )
            return ResolvedReference(relkey, uri, 0, None)
        return ResolvedReference(relkey, uri, size, f"etag:{etag}" if etag else None)

    def fetch(self, uri: str, dest: Path) -> None:
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(uri, timeout=60) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, _BLOCK)
        except urllib.error.HTTPError as exc:
            raise ArtifactPathError(f"Reference URL {uri} answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise ArtifactPathError(f"Reference URL {uri} cannot be reached: {exc.reason}") from None

    def hint(self) -> str:
        return "serve it with an ETag header, or reference a local copy (file://...) to version it by its sha256"


def _fsspec_tag(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag", "md5", "md5Hash", "checksum", "sha256"):
        value = info.get(key)
        if value:
            return str(value).strip('"')
    return None


class FsspecHandler(ReferenceHandler):
    """Every other protocol fsspec knows (s3, gcs, abfs, sftp, hf, memory, ...)."""

    def matches(self, scheme: str, uri: str) -> bool:
        return scheme in _fsspec().available_protocols() and missing_package(scheme) is None

    def resolve(self, uri: str, checksum: bool, max_objects: int) -> list[ResolvedReference]:
        fs, root = _fsspec().core.url_to_fs(uri)
        protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        if not uri.endswith("/"):
            if not checksum:
                return [ResolvedReference(None, uri)]
            try:
                info = fs.info(root)
            except FileNotFoundError:
                raise ArtifactPathError(f"Reference object does not exist: {uri}") from None
            return [self._probe(None, uri, info)]
        try:
            infos = fs.find(root, detail=True)
        except FileNotFoundError:
            infos = {}
        if not infos:
            raise ArtifactPathError(f"Reference directory or prefix does not exist or is empty: {uri}")
        if len(infos) > max_objects:
            raise _too_many(uri, max_objects)
        base = root.rstrip("/") + "/"
        out = []
        for path, info in sorted(infos.items()):
            rel = urllib.parse.unquote(path[len(base):] if path.startswith(base) else path.rsplit("/", 1)[-1])
            full = path if "://" in path else f"{protocol}://{path if protocol == 'memory' else path.lstrip('/')}"
            out.append(self._probe(rel, full, info) if checksum else ResolvedReference(rel, full, _size(info)))
        return out

    @staticmethod
    def _probe(relkey: str | None, uri: str, info: dict[str, Any]) -> ResolvedReference:
        tag = _fsspec_tag(info)
        return ResolvedReference(relkey, uri, _size(info), f"etag:{tag}" if tag else None)

    def fetch(self, uri: str, dest: Path) -> None:
        fs, root = _fsspec().core.url_to_fs(uri)
        try:
            fs.get_file(root, os.fspath(dest))
        except FileNotFoundError:
            raise ArtifactPathError(f"Referenced object no longer exists: {uri}") from None

    def hint(self) -> str:
        return "use a store that reports an ETag or checksum, or reference a local copy (file://...)"


_importable: dict[str, str | None] = {}


def missing_package(scheme: str) -> str | None:
    """For a scheme fsspec knows but cannot load: what to install (fsspec's own words), else None."""
    if scheme not in _importable:
        from fsspec.registry import known_implementations

        try:
            _fsspec().get_filesystem_class(scheme)
            _importable[scheme] = None
        except ImportError as exc:
            impl = known_implementations.get(scheme, {})
            _importable[scheme] = str(impl.get("err") or exc)
        except ValueError:  # not a protocol fsspec knows
            _importable[scheme] = None
    return _importable[scheme]


def _size(info: dict[str, Any]) -> int | None:
    size = info.get("size")
    return int(size) if size is not None else None


# -- registry ---------------------------------------------------------------------

_BUILTINS: tuple[ReferenceHandler, ...] = (LocalFileHandler(), HttpHandler(), FsspecHandler())
_registered: list[ReferenceHandler] = []
_lock = threading.Lock()


def register_reference_handler(handler: ReferenceHandler) -> ReferenceHandler:
    """Add a handler, tried before the built-ins and after handlers registered earlier.

    Returns the handler, so registering twice is a no-op.
    """
    if not isinstance(handler, ReferenceHandler):
        raise TypeError(f"register_reference_handler needs a ReferenceHandler instance, got {type(handler).__name__}")
    with _lock:
        if handler not in _registered:
            _registered.append(handler)
    return handler


def unregister_reference_handler(handler: ReferenceHandler) -> None:
    """Remove a handler added with :func:`register_reference_handler` (absent: no-op)."""
    with _lock:
        if handler in _registered:
            _registered.remove(handler)


def reference_handlers() -> list[ReferenceHandler]:
    """Every handler, in the order they are tried."""
    with _lock:
        return [*_registered, *_BUILTINS]


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def handler_for(uri: str) -> ReferenceHandler:
    """The first handler that takes ``uri``; a clear error naming the scheme if none does."""
    scheme = scheme_of(uri)
    for handler in reference_handlers():
        if handler.matches(scheme, uri):
            return handler
    missing = missing_package(scheme) if scheme in _fsspec().available_protocols() else None
    if missing is not None:
        m = re.search(r"install (\S+)|requires \"?([\w.-]+)", missing, re.I)
        package = (m.group(1) or m.group(2)).strip('"') if m else None
        install = f"pip install {package}" if package else "install the package fsspec names"
        raise UnsupportedReferenceError(
            f"No reference handler for scheme {scheme!r} (in {redact(uri)}): fsspec knows it but its package is missing "
            f"({missing}); {install}, or register a handler with trackio.register_reference_handler(...)"
        )
    raise UnsupportedReferenceError(
        f"No reference handler for scheme {scheme!r} (in {redact(uri)}); "
        "register one with trackio.register_reference_handler(...)"
    )


# -- resolving and downloading ------------------------------------------------------


def redact(uri: str) -> str:
    """``uri`` with the values of credential-like query parameters hidden."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.query:
        return uri
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    hidden = [(k, "***" if k.lower() in _SIGNED_PARAMS else v) for k, v in pairs]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(hidden, safe="*")))


def signed_params(uri: str) -> list[str]:
    """The query parameters of ``uri`` that look like a signature or token."""
    query = urllib.parse.urlsplit(uri).query
    return [k for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True) if k.lower() in _SIGNED_PARAMS]


def normalize_digest(digest: str | None) -> str | None:
    """A handler's digest in stored form: ``"<kind>:<value>"`` (a bare value becomes ``"tag:<value>"``)."""
    if digest is None or digest == "":
        return None
    kind = digest.split(":", 1)[0].lower() if ":" in digest else ""
    if kind in _CONTENT_HASHES or kind in _TAG_KINDS:
        return f"{kind}:{digest.split(':', 1)[1]}"
    return f"tag:{digest}"


def manifest_digest(uri: str, digest: str | None) -> str:
    """What the manifest shows: the digest's value, or the URI where there is none."""
    return digest.split(":", 1)[1] if digest else uri


def resolve(uri: str, checksum: bool = True, max_objects: int | None = None) -> list[ResolvedReference]:
    """Resolve ``uri`` with its handler: objects sorted by relkey, digests in stored form.

    Warns once when the URI looks signed, and once when some object has no
    checksum (its URI becomes its digest), with the handler's hint.
    """
    limit = DEFAULT_MAX_OBJECTS if max_objects is None else max_objects
    if limit < 1:
        raise ValueError(f"max_objects must be at least 1, got {limit}")
    handler = handler_for(uri)
    found = handler.resolve(uri, checksum, limit)
    if len(found) > limit:
        raise _too_many(uri, limit)
    out = sorted(
        (ResolvedReference(r.relkey, r.uri, r.size, normalize_digest(r.digest)) for r in found),
        key=lambda r: r.relkey or "",
    )
    signed = sorted({p for u in {uri, *(r.uri for r in out)} for p in signed_params(u)})
    if signed:
        warnings.warn(
            f"trackio: reference {redact(uri)} looks signed (query parameter {', '.join(signed)}); "
            "manifests are synced with the artifact, so the credential travels with it and stops working "
            "when it expires. Prefer an unsigned URI with credentials from the environment.",
            UserWarning,
            stacklevel=3,
        )
    if checksum:
        missing = [r.uri for r in out if r.digest is None]
        if missing:
            what = redact(missing[0]) if len(missing) == 1 else f"{len(missing)} objects under {redact(uri)}"
            warnings.warn(
                f"trackio: no checksum for {what}; the URI is recorded as its digest, so a change to its "
                f"content will not make a new version. To version it by content: {handler.hint()}",
                UserWarning,
                stacklevel=3,
            )
    return out


def _content_hash(digest: str | None) -> tuple[str, str] | None:
    if digest is None:
        return None
    kind, _, value = digest.partition(":")
    return (kind, value) if kind in _CONTENT_HASHES else None


def is_current(uri: str, size: int, digest: str | None, path: str) -> bool:
    """Is a previously downloaded copy at ``path`` still right? Only content hashes can say yes."""
    content = _content_hash(digest)
    if content is None or not os.path.isfile(path):
        return False
    if size >= 0 and os.path.getsize(path) != size:
        return False
    return hash_file(path, content[0]) == content[1]


def download(uri: str, size: int, digest: str | None, dest: str, label: str) -> None:
    """Fetch one referenced object to ``dest`` atomically and verify it against its recorded digest.

    ``label`` (the file's logical path) names it in errors. A mismatch
    raises :class:`ReferenceChangedError` and leaves nothing at ``dest``.
    """
    handler = handler_for(uri)
    content = _content_hash(digest)
    if digest is not None and content is None:
        # A version tag (ETag): ask the source before moving any bytes.
        now = next((r for r in resolve_quietly(handler, uri) if r.uri == uri or r.relkey is None), None)
        now_digest = normalize_digest(now.digest) if now is not None else None
        if now_digest != digest:
            raise ReferenceChangedError(
                f"Referenced file {label!r} ({redact(uri)}) changed since it was logged: "
                f"recorded {digest}, now {now_digest or 'no checksum'}"
            )
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{uuid.uuid4().hex[:12]}.partial"
    try:
        handler.fetch(uri, Path(tmp))
        if not os.path.isfile(tmp):
            raise ArtifactPathError(f"Reference handler {type(handler).__name__} wrote nothing for {redact(uri)}")
        got_size = os.path.getsize(tmp)
        if content is not None:
            got = hash_file(tmp, content[0])
            if got != content[1]:
                raise ReferenceChangedError(
                    f"Referenced file {label!r} ({redact(uri)}) changed since it was logged: "
                    f"{content[0]} is {got}, recorded {content[1]}"
                )
        elif digest is not None and size >= 0 and got_size != size:
            raise ReferenceChangedError(
                f"Referenced file {label!r} ({redact(uri)}) changed since it was logged: "
                f"{got_size} bytes, recorded {size}"
            )
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve_quietly(handler: ReferenceHandler, uri: str) -> list[ResolvedReference]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return handler.resolve(uri, True, 1)


__all__ = [
    "DEFAULT_MAX_OBJECTS",
    "FsspecHandler",
    "HttpHandler",
    "LocalFileHandler",
    "ReferenceHandler",
    "ResolvedReference",
    "download",
    "handler_for",
    "is_current",
    "manifest_digest",
    "reference_handlers",
    "register_reference_handler",
    "resolve",
    "unregister_reference_handler",
]
