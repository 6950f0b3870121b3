"""``trackio.Artifact``: a versioned, named bundle of files."""

from __future__ import annotations

import copy
import os
import urllib.parse
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objstore import FilesUnder, ObjectId, Repository, TreeEntry
from objstore.errors import UnsafePath

from . import names, references
from .errors import ArtifactFrozenError, ArtifactPathError, ManifestPathError
from .store import get_repo
from .versions import ArtifactRegistry, VersionInfo, manifest_of

if TYPE_CHECKING:
    from .registry import LinkInfo
    from .remote_sync import RemoteSpec
    from .run import Run


class Artifact:
    """A versioned, named bundle of files attached to a project.

    Built mutable (``add_file``, ``add_dir``, ``add_reference``); logging it
    (``trackio.log_artifact``) or fetching it (``trackio.use_artifact``,
    ``trackio.Api().artifact``) freezes it and fills ``version``,
    ``aliases``, ``size``, ``manifest`` and ``digest``.
    """

    def __init__(self, name: str, type: str, description: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._name = names.validate_name(name)
        self._type = names.validate_name(type, "Artifact type")
        self._description = description
        self._metadata: dict[str, Any] = copy.deepcopy(dict(metadata)) if metadata else {}
        self._entries: dict[str, str | TreeEntry] = {}
        # Directories staged whole by add_dir: logical prefix ("" = the root) ->
        # local directory, whose files are listed (and unchanged ones answered
        # from objstore's stat cache) when the artifact is logged. No entry of
        # _entries lies under one; adding one there stages it file by file first.
        self._dirs: dict[str, str] = {}
        self._info: VersionInfo | None = None
        self._aliases: tuple[str, ...] | None = ()  # None: not read yet (read on first use)
        self._manifest: list[dict[str, Any]] | None = None
        self._source: Repository | None = None  # the store this version was read from
        self._sync_job: Any = None
        self._is_new: bool | None = None  # set by log_artifact: False when identical content was already a version
        self._link: LinkInfo | None = None  # set on an artifact read at its registry location

    # -- identity -----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def type(self) -> str:
        return self._type

    @property
    def description(self) -> str | None:
        return self._description

    @description.setter
    def description(self, value: str | None) -> None:
        self._check_mutable()
        self._description = value

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the metadata: change it by assigning ``artifact.metadata = {...}`` before logging."""
        return copy.deepcopy(self._metadata)

    @metadata.setter
    def metadata(self, value: dict[str, Any] | None) -> None:
        self._check_mutable()
        self._metadata = copy.deepcopy(dict(value)) if value else {}

    @property
    def version(self) -> str | None:
        """``"v<N>"`` once logged or fetched, else None."""
        return None if self._info is None else f"v{self._info.version}"

    @property
    def aliases(self) -> tuple[str, ...]:
        if self._aliases is None:
            assert self._info is not None
            self._aliases = ArtifactRegistry(self._store()).aliases_of(self._info)
        return self._aliases

    @property
    def size(self) -> int | None:
        return None if self._info is None else self._info.size

    @property
    def manifest(self) -> list[dict[str, Any]] | None:
        """One dict per file, sorted by path: ``{"path", "digest", "size"}`` (+ ``"ref"``)."""
        if self._info is None:
            return None
        if self._manifest is None:
            self._manifest = manifest_of(self._store(), self._info.tree_id)
        return [dict(e) for e in self._manifest]

    @property
    def digest(self) -> str | None:
        """One digest over the manifest: identical content, identical digest."""
        return None if self._info is None else self._info.digest

    manifest_digest = digest

    @property
    def references(self) -> list[dict[str, Any]]:
        """The reference entries of the manifest (``path``, ``digest``, ``size``, ``ref``); empty before logging."""
        return [e for e in self.manifest or [] if "ref" in e]

    def get_entry_uri(self, name: str) -> str | None:
        """The URI recorded for the reference at logical path ``name``, or None if there is none."""
        return next((e["ref"] for e in self.references if e["path"] == name), None)

    @property
    def project(self) -> str | None:
        return None if self._info is None else self._info.project

    @property
    def qualified_name(self) -> str:
        """``"<project>/<name>:v<N>"``."""
        if self._info is None:
            raise ArtifactFrozenError("an Artifact has no qualified name until it is logged or fetched")
        return f"{self._info.project}/{self._name}:v{self._info.version}"

    @property
    def is_link(self) -> bool:
        """True for a registry link (what ``Run.link_artifact`` returns), False for a source version."""
        return self._link is not None

    @property
    def source_project(self) -> str | None:
        """Project of the source version; equal to ``project`` unless this is a registry link."""
        return self._link.source_project if self._link is not None else self.project

    @property
    def source_name(self) -> str | None:
        """Name of the source artifact; equal to ``name`` unless this is a registry link."""
        return self._link.source_artifact if self._link is not None else self._name

    @property
    def source_version(self) -> str | None:
        """``"v<N>"`` of the source version; equal to ``version`` unless this is a registry link."""
        return f"v{self._link.source_version}" if self._link is not None else self.version

    @property
    def source_qualified_name(self) -> str:
        """``"<project>/<name>:v<N>"`` of the source version; ``qualified_name`` unless this is a registry link."""
        if self._link is not None:
            return f"{self._link.source_project}/{self._link.source_artifact}:v{self._link.source_version}"
        return self.qualified_name

    @property
    def id(self) -> str | None:
        """The objstore commit id of this version."""
        return None if self._info is None else self._info.commit_id

    @property
    def created_at(self) -> float | None:
        return None if self._info is None else self._info.created_at

    @property
    def is_frozen(self) -> bool:
        return self._info is not None

    @property
    def is_new(self) -> bool | None:
        """After logging: True if this log made a new version, False if identical
        content was already one (that version was returned). None otherwise."""
        return self._is_new

    # -- building -------------------------------------------------------------

    def _check_mutable(self) -> None:
        if self._info is not None:
            raise ArtifactFrozenError(
                f"Artifact {self.qualified_name} has been logged or fetched and is frozen; construct a new Artifact to log again"
            )

    def _add(self, logical: str, source: str | TreeEntry) -> None:
        names.validate_logical_path(logical)
        self._unstage_over(logical)
        if logical in self._entries:
            raise ManifestPathError(f"Duplicate logical path in artifact {self._name!r}: {logical!r}")
        self._entries[logical] = source

    def _unstage_over(self, logical: str) -> None:
        """Stage file by file (a level at a time) the staged directories ``logical`` could collide with."""
        while True:
            hit = next((p for p in self._dirs if _overlaps(p, logical)), None)
            if hit is None:
                return
            path = self._dirs.pop(hit)
            for name, full, is_dir in _children(path):
                child = f"{hit}/{name}" if hit else name
                names.validate_logical_path(child)
                if is_dir:
                    self._dirs[child] = full
                else:
                    self._entries[child] = full

    def _stage_dir(self, logical: str, path: str) -> None:
        """Stage the files under ``path`` at ``logical`` ("" = the root): as one
        directory where no other entry lies, else one level at a time."""
        self._unstage_over(logical)
        if not any(_overlaps(logical, k) for k in self._entries):
            if logical:
                if _has_file(path):
                    self._dirs[logical] = path
                return
            # Only what decides: a bad name is an error where a file lies under it, and
            # the first file found (not every subdirectory's) tells the tree is not empty.
            listing = _listing(path)
            for name, full, is_dir in listing if _may_be_invalid(name for name, _, _ in listing) else ():
                try:
                    names.validate_logical_path(name)
                except ManifestPathError:
                    if not is_dir or _has_file(full):
                        raise
            if any(not is_dir or _has_file(full) for _, full, is_dir in listing):
                self._dirs[""] = path
            return
        for name, full, is_dir in _children(path):
            child = f"{logical}/{name}" if logical else name
            if is_dir:
                self._stage_dir(child, full)
            else:
                self._add(child, full)

    @property
    def _has_sources(self) -> bool:
        return bool(self._entries or self._dirs)

    def _build_tree(
        self, repo: Repository, progress: Callable[[int], None] | None = None, rows: dict[bytes, list[Any]] | None = None
    ) -> ObjectId:
        """Store what was added; return the tree id (``rows``: see :meth:`Repository.build_tree`)."""
        sources: dict[str, str | TreeEntry | FilesUnder] = dict(self._entries)
        for logical, path in self._dirs.items():
            sources[logical] = FilesUnder(path, forbidden="\\")
        try:
            return repo.build_tree(sources, progress=progress, rows=rows)
        except UnsafePath as exc:
            bad = self._logical_of(exc.path)
            if bad is None or "\\" not in bad:
                raise
            raise ManifestPathError(f"Invalid artifact path {bad!r}: backslashes and NUL are not allowed") from None

    def _logical_of(self, path: str) -> str | None:
        """The logical path of a local path under a staged directory."""
        for logical, root in self._dirs.items():
            if path.startswith(root + os.sep):
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                return f"{logical}/{rel}" if logical else rel
        return None

    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None) -> None:
        """Add one file, at logical path ``name`` (default: its basename)."""
        self._check_mutable()
        src = Path(local_path)
        if not src.is_file():
            what = "does not exist" if not src.exists() else "is not a regular file"
            raise ArtifactPathError(f"Cannot add {os.fspath(local_path)!r} to artifact {self._name!r}: it {what}")
        self._add(name if name is not None else src.name, os.path.abspath(src))

    def add_dir(self, local_dir: str | os.PathLike[str], name: str | None = None) -> None:
        """Add every file under a directory, nested under logical prefix ``name`` (default: the root)."""
        self._check_mutable()
        root = Path(local_dir)
        if not root.is_dir():
            what = "does not exist" if not root.exists() else "is not a directory"
            raise ArtifactPathError(f"Cannot add {os.fspath(local_dir)!r} to artifact {self._name!r}: it {what}")
        logical = names.validate_logical_path(name.strip("/")) if name and name.strip("/") else ""
        self._stage_dir(logical, os.path.abspath(root))

    def add_reference(self, uri: str, name: str | None = None, checksum: bool = True, max_objects: int | None = None) -> None:
        """Record external data by URI without copying its bytes into the store.

        A URI ending in ``/`` expands into one entry per object under it,
        nested under ``name`` (default: its last segment).
        """
        self._check_mutable()
        if not isinstance(uri, str) or "://" not in uri:
            raise ArtifactPathError(f"add_reference needs a URI with a scheme (e.g. Path(...).as_uri()), got {uri!r}")
        last = urllib.parse.unquote(uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
        base = name.strip("/") if name else last
        staged: list[tuple[str, TreeEntry]] = []
        for ref in references.resolve(uri, checksum=checksum, max_objects=max_objects):
            logical = f"{base}/{ref.relkey}" if ref.relkey else base
            names.validate_logical_path(logical)
            size = -1 if ref.size is None else ref.size
            entry = TreeEntry(logical.rsplit("/", 1)[-1], "reference", size=size, target=ref.uri, digest=ref.digest)
            staged.append((logical, entry))
        for p, _ in staged:
            self._unstage_over(p)
        clashes = [p for p, _ in staged if p in self._entries]
        if clashes:
            raise ManifestPathError(f"Duplicate logical path in artifact {self._name!r}: {clashes[0]!r}")
        for logical, entry in staged:
            self._add(logical, entry)

    # -- after logging ------------------------------------------------------

    def _store(self) -> Repository:
        return self._source if self._source is not None else get_repo()

    def _hydrate(self, info: VersionInfo, aliases: tuple[str, ...] | None, source: Repository | None = None) -> Artifact:
        if source is not None:
            self._source = source
        self._name, self._type = info.name, info.type
        self._description = info.description
        self._metadata = dict(info.metadata)
        self._info = info
        self._aliases = aliases
        self._manifest = None
        self._link = None
        return self

    @classmethod
    def _from_version(
        cls, info: VersionInfo, source: Repository | None = None, aliases: tuple[str, ...] | None = None, *, lazy_aliases: bool = False
    ) -> Artifact:
        """A frozen Artifact for a stored version; aliases read now unless given (or, ``lazy_aliases``, on first use)."""
        art = cls(info.name, info.type)
        store = source if source is not None else get_repo()
        if aliases is None and not lazy_aliases:
            aliases = ArtifactRegistry(store).aliases_of(info)
        return art._hydrate(info, aliases, store)

    def _frozen_info(self) -> VersionInfo:
        if self._info is None:
            raise ArtifactFrozenError(f"Artifact {self._name!r} has not been logged or fetched yet")
        return self._info

    def _source_info(self, store: Repository | None = None) -> VersionInfo:
        """The stored source version this artifact stands for (itself unless it is a link)."""
        info = self._frozen_info()
        if self._link is None:
            return info
        lk = self._link
        for repo in dict.fromkeys([store or self._store(), get_repo()]):
            try:
                return ArtifactRegistry(repo).version(lk.source_project, lk.source_artifact, lk.source_version)
            except Exception:
                continue
        from .errors import ArtifactNotFoundError

        raise ArtifactNotFoundError(f"the source of {self.qualified_name}, {self.source_qualified_name}, is not stored here or on the remote")

    def link(self, target_path: str, aliases: list[str] | None = None, bucket_id: str | None = None) -> Artifact:
        """Link this logged (or fetched) version into ``"registry-<registry>/<collection>"``.

        No bytes are copied. The registry must exist; the collection is
        created on first link with this artifact's type. Returns the linked
        artifact (its ``project`` is ``registry-<registry>``, its ``name``
        the collection, its ``version`` the collection's). ``bucket_id``
        (trackio 0.43) names a Hugging Face bucket remote to sync the registry with.
        """
        from . import registry as model_registry

        return self._link_into(target_path, aliases, remote=model_registry.bucket_remote(bucket_id, None))

    def _link_into(
        self, target_path: str, aliases: list[str] | None, *, remote: RemoteSpec | None = None, run_id: str | None = None, run_name: str | None = None
    ) -> Artifact:
        from . import registry as model_registry

        self._frozen_info()
        model_registry.parse_target(target_path)
        if self._link is not None:
            warnings.warn(
                f"trackio: linking {self.qualified_name} links its source version ({self.source_qualified_name}) directly; registry links never chain",
                stacklevel=3,
            )
        if remote is None:
            from .run import current_run

            run = current_run()
            remote = run.remote_spec if run is not None else None
            if remote is None:
                from .remote_sync import remote_spec

                remote = remote_spec()
        source = self._source_info()
        return model_registry.link(source, self._store(), target_path, aliases, remote=remote, run_id=run_id, run_name=run_name)

    def unlink(self) -> None:
        """Remove this registry link (call it on a linked artifact).

        The source version and its files are untouched; aliases on the link
        go with it, its collection version number is never reused, and
        ``latest`` moves to the highest remaining version.
        """
        if self._link is None:
            raise ValueError(
                f"unlink() removes a registry link; {self.qualified_name if self._info else repr(self._name)} is not one "
                "(call it on the artifact link() or Run.link_artifact returned)"
            )
        from . import registry as model_registry
        from .run import current_run

        lk = self._link
        run = current_run()
        remote = lk.remote or (run.remote_spec if run is not None else None)
        if remote is None:
            from .remote_sync import remote_spec

            remote = remote_spec()
        coords = {"source_project": lk.source_project, "source_artifact": lk.source_artifact, "source_version": lk.source_version}
        model_registry.unlink(lk.registry, lk.collection, {**coords, "collection_version": self._frozen_info().version}, remote)

    def wait(self, timeout: float | None = None) -> Artifact:
        """Block until the version is stored (and pushed, when a remote is set)."""
        self._frozen_info()
        from .remote_sync import wait_for

        wait_for(self, timeout)
        return self

    def download(self, root: str | os.PathLike[str] | None = None, *, progress: Callable[[int], None] | None = None) -> str:
        """Materialize the files; return the directory.

        Default ``./artifacts/<project>/<name>_v<N>/``. Idempotent: files
        already present with the right content are skipped. Every byte is
        verified against its id (references against their checksum).
        """
        info = self._frozen_info()
        if root is None:
            root = os.path.join(os.getcwd(), "artifacts", info.project, f"{info.name}_v{info.version}")
        root = os.path.abspath(os.fspath(root))
        from .remote_sync import ensure_local

        ensure_local(info, self._store(), progress)
        result = get_repo().checkout(info.tree_id, root, progress=progress)
        for path, entry in result.references:
            assert entry.target is not None
            if not references.is_current(entry.target, entry.size, entry.digest, path):
                label = os.path.relpath(path, root).replace(os.sep, "/")
                references.download(entry.target, entry.size, entry.digest, path, label)
        return root

    def files(self) -> list[str]:
        """Logical paths of the files in this version."""
        return [e["path"] for e in self.manifest or []]

    def open(self, path: str) -> Any:
        """A seekable binary stream of one stored file (no download)."""
        info = self._frozen_info()
        return self._store().open_file(info.tree_id, path)

    def fs(self) -> Any:
        """A read-only fsspec filesystem over this version's files (no download).

        ``pd.read_csv(art.fs().open("data/train.csv"))`` reads in place,
        fetching only the chunks it touches, locally or from the remote.
        """
        from objstore.fs import ObjstoreFileSystem

        return ObjstoreFileSystem(self._store(), version=self._frozen_info().commit_id, skip_instance_cache=True)

    def logged_by(self) -> Run | None:
        """The run that logged this version (None if logged outside a run)."""
        info = self._frozen_info()
        if info.run_id is None:
            return None
        from .run import load_run

        project = info.run_project or info.project
        return load_run(project, info.run_id, self._store()) or load_run(project, info.run_id, get_repo())

    def used_by(self) -> list[Run]:
        """Runs that used this version as an input."""
        from .run import runs_using

        stores = [self._store()]
        if stores[0] is not get_repo():
            stores.append(get_repo())
        return runs_using(self._frozen_info().commit_id, stores)

    def __repr__(self) -> str:
        parts = [f"name={self._name!r}", f"type={self._type!r}"]
        if self._info is not None:
            parts.append(f"version=v{self._info.version}")
        if self._info is not None and self.aliases:
            parts.append(f"aliases={list(self.aliases)!r}")
        return f"Artifact({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Artifact) or self._info is None or other._info is None:
            return NotImplemented if not isinstance(other, Artifact) else self is other
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity()) if self._info is not None else id(self)

    def _identity(self) -> tuple[str, ...]:
        """The version's commit; a registry link is its own thing (collection and number)."""
        info = self._frozen_info()
        if self._link is not None:
            return (info.commit_id, self._link.registry, self._link.collection, str(info.version))
        return (info.commit_id,)


def _overlaps(a: str, b: str) -> bool:
    """Could files at logical prefixes ``a`` and ``b`` ("" = the root) share a path?"""
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _children(path: str) -> list[tuple[str, str, bool]]:
    """(name, full path, is a directory) of what add_dir takes directly under ``path``, sorted:
    regular files (symlinks to them followed) and real directories holding one.

    scandir's file types come with the listing, so regular files need no
    stat; dangling symlinks, sockets and the like are skipped; symlinked
    directories are not descended (as ``os.walk``).
    """
    out = []
    for name, full, is_dir in _listing(path):
        if not is_dir or _has_file(full):
            out.append((name, full, is_dir))
    return out


def _may_be_invalid(listed: Iterable[str]) -> bool:
    """Whether a name of a directory listing may fail :func:`names.validate_logical_path`
    (a listing never holds "", ".", "..", "/" or NUL: only a backslash or a drive-like
    ``X:`` prefix can): one scan of them all, not a call per name (a flat directory of
    100,000 files)."""
    joined = "\0".join(listed)
    return "\\" in joined or ":" in joined


def _listing(path: str) -> list[tuple[str, str, bool]]:
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    out = []
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                out.append((e.name, e.path, True))
            elif e.is_file():
                out.append((e.name, e.path, False))
        except OSError:
            continue  # vanished, or a symlink loop
    return out


def _has_file(path: str) -> bool:
    """Is there a file add_dir takes anywhere under ``path``? (Stops at the first.)"""
    try:
        listing = _listing(path)
    except OSError:
        return False
    return any(not is_dir for _, _, is_dir in listing) or any(_has_file(full) for _, full, is_dir in listing if is_dir)
