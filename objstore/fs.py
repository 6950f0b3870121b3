"""objstore as an fsspec filesystem: read any stored version in place.

``objstore://<ref-or-commit>/<path>`` with the repository given as ``repo=``
(a path or any fsspec URL), e.g.::

    fsspec.open("objstore://main/data/train.csv", repo="s3://bucket/store")
    pd.read_csv("objstore://model/latest/metrics.csv", storage_options={"repo": "store"})

The first path segments name the version: a ref (which may itself contain
``/``; the longest prefix that resolves wins), a commit or tree id, or an id
prefix of 8+ hex digits. Files open as seekable streams that fetch (and
verify) only the chunks a read touches, so a version on S3 is readable
without a local copy. The filesystem is read-only.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractFileSystem

from .errors import FormatError, ObjstoreError, PathNotFound
from .ids import ObjectId
from .objects import TreeEntry
from .repo import Repository


class ReadOnlyError(PermissionError):
    """objstore:// paths cannot be written: commit a snapshot instead."""


class ObjstoreFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """A read-only fsspec view of an objstore repository's versions."""

    protocol = "objstore"
    root_marker = ""

    def __init__(
        self,
        repo: str | Repository,
        version: str | None = None,
        storage_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.repo = repo if isinstance(repo, Repository) else Repository.open(repo, storage_options=storage_options)
        # With ``version``, paths are relative to that version's root.
        self.version = version
        self._versions: dict[str, ObjectId] = {}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value]
        if path.startswith("objstore://"):
            path = path[len("objstore://") :]
        return path.strip("/")

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        return {}

    # -- resolving ------------------------------------------------------------

    def _tree(self, spec: str) -> ObjectId | None:
        if spec not in self._versions:
            try:
                self._versions[spec] = self.repo.tree_of(spec)
            except FormatError:
                raise  # a version that exists but does not read back is damage, not absence
            except (ObjstoreError, KeyError, ValueError):
                return None
        return self._versions[spec]

    def _split(self, path: str) -> tuple[str, ObjectId, str]:
        """(version spec, tree id, path inside the version)."""
        path = self._strip_protocol(path)
        if self.version is not None:
            tree = self._tree(self.version)
            if tree is None:
                raise FileNotFoundError(f"no such version: {self.version!r}")
            return "", tree, path
        parts = path.split("/") if path else []
        for i in range(len(parts), 0, -1):
            spec = "/".join(parts[:i])
            tree = self._tree(spec)
            if tree is not None:
                return spec, tree, "/".join(parts[i:])
        raise FileNotFoundError(f"{path!r}: no ref, commit or tree of this repository starts this path")

    def _entry(self, path: str) -> tuple[str, ObjectId, str, TreeEntry | None]:
        spec, tree, inner = self._split(path)
        if not inner:
            return spec, tree, inner, None
        try:
            return spec, tree, inner, self.repo.entry(tree, inner)
        except PathNotFound:
            raise FileNotFoundError(f"no such file or directory: {path!r}") from None

    @staticmethod
    def _info(name: str, e: TreeEntry | None) -> dict[str, Any]:
        if e is None or e.kind == "dir":
            return {"name": name, "size": 0 if e is None else e.size, "type": "directory"}
        info: dict[str, Any] = {"name": name, "size": max(e.size, 0), "type": "file", "kind": e.kind}
        if e.kind == "file":
            info.update(id=e.id, mode=e.mode)
        elif e.kind == "symlink":
            info.update(destination=e.target, islink=True)
        else:
            info.update(uri=e.target, digest=e.digest)
        return info

    # -- the fsspec interface ----------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if not path and self.version is None:
            out = [{"name": name, "size": 0, "type": "directory"} for name in self.repo.refs.list()]
        else:
            spec, tree, inner, e = self._entry(path)
            prefix = "/".join(p for p in (spec, inner) if p)
            if e is not None and e.kind != "dir":
                out = [self._info(prefix, e)]
            else:
                entries = self.repo.ls(tree, inner)
                out = [self._info(f"{prefix}/{c.name}" if prefix else c.name, c) for c in entries]
        return out if detail else [o["name"] for o in out]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if not path:
            return {"name": "", "size": 0, "type": "directory"}
        spec, _tree, inner, e = self._entry(path)
        return self._info("/".join(p for p in (spec, inner) if p), e)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise ReadOnlyError(f"objstore:// is read-only (asked to open {path!r} with mode {mode!r})")
        _spec, tree, inner, e = self._entry(path)
        if e is None or e.kind != "file":
            raise IsADirectoryError(f"not a file: {path!r}")
        return self.repo.open_file(tree, inner)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        with self._open(path) as f:
            size = self.info(path)["size"]
            start = 0 if start is None else (start if start >= 0 else max(size + start, 0))
            end = size if end is None else (end if end >= 0 else max(size + end, 0))
            f.seek(start)
            return f.read(max(end - start, 0))  # type: ignore[no-any-return]

    # -- writes -----------------------------------------------------------------

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise ReadOnlyError("objstore:// is read-only: write files on disk and snapshot them into a new version")

    mkdir = makedirs = rm = rm_file = rmdir = put_file = pipe_file = mv = cp_file = touch = _read_only
