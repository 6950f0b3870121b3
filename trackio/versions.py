"""Artifact versions and aliases as objstore commits and refs.

Version ``N`` of an artifact is a commit whose parent is version ``N-1`` and
whose tree is the artifact's files. The ``latest`` alias ref is the head of
that chain and the only lock: a new version is committed on top of the head
and published with a compare-and-set on ``latest``; the loser of a race
re-reads the head and takes the next number, so concurrent loggers get
distinct consecutive versions and nothing is lost. ``versions/vN`` refs are
an index for O(1) lookups (the chain is the truth if one is missing).
"""

from __future__ import annotations

import difflib
import itertools
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from objstore import ABSENT, Commit, Repository
from objstore.errors import CorruptObject, FormatError, ObjectNotFound, ObjstoreError, RefConflict, RefNotFound
from objstore.ids import ObjectId
from objstore.objects import DIR, FILE, REFERENCE, tree_rows

from . import names, references
from .errors import ArtifactNotFoundError, ArtifactTypeError, InvalidNameError

KIND_VERSION = "artifact-version"
DELETE_EVENT = "delete-version"
"""``meta["event"]`` of the ref log entries a version deletion appends."""


@dataclass(frozen=True)
class DeletedVersion:
    """What deleting a version did."""

    qualified_name: str
    """``project/name:vN`` of the deleted version."""
    aliases_removed: tuple[str, ...]
    """Aliases that pointed at it and went with it (``latest`` is never listed: it moves back)."""
    released: list[str]
    """Commit ids gc may now free (the version, and the old commits of later versions)."""


@dataclass(frozen=True)
class VersionInfo:
    """What one stored artifact version says about itself."""

    commit_id: ObjectId
    tree_id: ObjectId
    project: str
    name: str
    type: str
    version: int
    description: str | None
    metadata: dict[str, Any]
    digest: str
    size: int
    run_id: str | None
    run_project: str | None
    created_at: float
    extra: dict[str, Any] = field(default_factory=dict)


def _info(commit_id: ObjectId, c: Commit) -> VersionInfo:
    m = c.metadata
    if m.get("kind") != KIND_VERSION:
        raise ArtifactNotFoundError(f"commit {commit_id} is not an artifact version")
    return VersionInfo(
        commit_id=commit_id,
        tree_id=c.tree,
        project=m["project"],
        name=m["name"],
        type=m["type"],
        version=m["version"],
        description=m.get("description"),
        metadata=dict(m.get("metadata") or {}),
        digest=m["digest"],
        size=m["size"],
        run_id=m.get("run_id"),
        run_project=m.get("run_project"),
        created_at=c.time,
    )


_Item = tuple[str, str, int, "str | None"]
"""One manifest entry as a row: (path, digest, size, ref or None)."""
_PATH = operator.itemgetter(0)
_NAME, _ID, _SIZE = operator.itemgetter(0), operator.itemgetter(2), operator.itemgetter(3)


def manifest_digest(repo: Repository, manifest: list[dict[str, Any]]) -> str:
    """One digest over the manifest: identical content gives an identical digest."""
    return _items_digest(repo, [(e["path"], e["digest"], e["size"], e.get("ref")) for e in manifest])


def _items_digest(repo: Repository, items: list[_Item]) -> str:
    return repo.algorithm.digest(msgpack.packb(items, use_bin_type=True)).hex()


def manifest_of(repo: Repository, tree_id: ObjectId) -> list[dict[str, Any]]:
    """The artifact manifest (sorted by path) of a stored tree.

    Trees are read as rows (:func:`objstore.objects.tree_rows`, every one
    verified), without building an entry object per file.
    """
    out: list[dict[str, Any]] = []
    for path, digest, size, ref in _manifest_items(repo, tree_id):
        entry: dict[str, Any] = {"path": path, "digest": digest, "size": size}
        if ref is not None:
            entry["ref"] = ref
        out.append(entry)
    return out


def manifest_summary(repo: Repository, tree_id: ObjectId, built: Mapping[bytes, list[Any]] | None = None) -> tuple[str, int]:
    """``(manifest digest, total size)`` of a stored tree: what :func:`manifest_of` gives
    :func:`manifest_digest` and the sum of its sizes, without building a dict per file.

    ``built`` holds rows of trees this process has just encoded (``rows`` of
    :meth:`Repository.build_tree`): those are taken as they are, the others read from the store."""
    items = _manifest_items(repo, tree_id, built)
    return _items_digest(repo, items), sum(map(operator.itemgetter(2), items))


def _manifest_items(repo: Repository, tree_id: ObjectId, built: Mapping[bytes, list[Any]] | None = None) -> list[_Item]:
    """The manifest as rows, sorted by path; a directory of files only costs C-level maps."""
    out: list[_Item] = []
    odb = repo.odb
    built = built or {}

    def walk(tree: bytes, prefix: str) -> None:
        rows = built.get(tree)
        if rows is None:
            encoded, where = odb.get_encoded_from(tree)
            try:
                rows = tree_rows(encoded, odb.digest_size)
            except FormatError as exc:
                raise CorruptObject(tree.hex(), str(exc), where) from None
        if rows and all(map(FILE.__eq__, map(operator.itemgetter(1), rows))):
            out.extend(zip(map(prefix.__add__, map(_NAME, rows)), map(bytes.hex, map(_ID, rows)), map(_SIZE, rows), itertools.repeat(None)))
            return
        for row in rows:
            kind = row[1]
            if kind == FILE:
                out.append((prefix + row[0], row[2].hex(), row[3], None))
            elif kind == DIR:
                walk(row[2], f"{prefix}{row[0]}/")
            elif kind == REFERENCE:
                digest = references.manifest_digest(row[2], row[4])  # "sha256:<hex>" -> "<hex>"
                out.append((prefix + row[0], digest, max(row[3], 0), row[2]))

    walk(odb.raw_id(repo.tree_of(tree_id)), "")
    out.sort(key=_PATH)
    return out


class ArtifactRegistry:
    """Versions, aliases and lookups of artifacts in one repository."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    # -- reading ------------------------------------------------------------

    def info(self, commit_id: ObjectId) -> VersionInfo:
        return _info(commit_id, self.repo.get_commit(commit_id))

    def version_with_tree(self, project: str, name: str, tree_id: ObjectId) -> VersionInfo | None:
        """The newest version of an artifact whose files are exactly ``tree_id`` (None if none is)."""
        return next((v for v in self.chain(project, name) if v.tree_id == tree_id), None)

    def latest(self, project: str, name: str) -> VersionInfo | None:
        try:
            head = self.repo.refs.get(names.alias_ref(project, name, names.LATEST))
        except RefNotFound:
            return None
        return self.info(head)

    def chain(self, project: str, name: str) -> Iterator[VersionInfo]:
        """Every version held here, newest first (a shallow copy stops where its history was cut)."""
        return self.chain_from(self.latest(project, name))

    def chain_from(self, head: VersionInfo | None) -> Iterator[VersionInfo]:
        """``head`` and its ancestors, newest first."""
        if head is None:
            return
        yield head
        parents = self.repo.get_commit(head.commit_id).parents
        while parents:
            try:
                c = self.repo.odb.get_as(parents[0], Commit)  # one lookup per version
            except ObjectNotFound:
                return  # a shallow copy: its history was cut here
            yield _info(parents[0], c)
            parents = c.parents

    def version(self, project: str, name: str, number: int) -> VersionInfo:
        try:
            return self.info(self.repo.refs.get(names.version_ref(project, name, number)))
        except RefNotFound:
            pass
        for v in self.chain(project, name):  # the index ref may be missing after a crash
            if v.version == number:
                return v
            if v.version < number:
                break
        raise ArtifactNotFoundError(f"Artifact '{project}/{name}:v{number}' not found (no such version)")

    def not_found(self, project: str, name: str) -> ArtifactNotFoundError:
        """The error for an unknown artifact name, suggesting the closest existing ones."""
        close = difflib.get_close_matches(name, self.artifact_names(project), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return ArtifactNotFoundError(f"Artifact {name!r} not found in project {project!r}{hint}")

    def resolve(self, project: str, name: str, selector: str) -> VersionInfo:
        if self.latest(project, name) is None:
            raise self.not_found(project, name)
        m = names.VERSION_RE.fullmatch(selector)
        if m:
            return self.version(project, name, int(m.group(1)))
        try:
            return self.info(self.repo.refs.get(names.alias_ref(project, name, selector)))
        except RefNotFound:
            raise ArtifactNotFoundError(f"Artifact '{project}/{name}' has no alias {selector!r}") from None

    def _highest_number(self, project: str, name: str) -> int:
        """The highest version number ever used (deleted ones included: numbers are never reused)."""
        prefix = names.version_ref(project, name, 0)[: -len("v0")]
        numbers = [int(r[len(prefix) + 1 :]) for r in self.repo.refs.names(prefix) if names.VERSION_RE.fullmatch(r[len(prefix) :])]
        return max(numbers, default=-1)

    def aliases_of(self, v: VersionInfo) -> tuple[str, ...]:
        """Aliases on a version: ``latest`` first, then in the order they were set."""
        return self.aliases_by_version(v.project, v.name).get(v.commit_id, ())

    def aliases_by_version(self, project: str, name: str) -> dict[str, tuple[str, ...]]:
        """Commit id -> its aliases (as :meth:`aliases_of`), for every version at once."""
        prefix = names.alias_ref(project, name, "")
        found: dict[str, list[tuple[bool, float, str]]] = {}
        for ref, head in self.repo.refs.heads(prefix).items():  # one listing for all aliases
            if head.new is not None:
                alias = ref[len(prefix) :]
                found.setdefault(head.new, []).append((alias != names.LATEST, head.time, alias))
        return {commit: tuple(alias for _, _, alias in sorted(items)) for commit, items in found.items()}

    def artifact_names(self, project: str) -> list[str]:
        prefix = names.project_prefix(project) + "/artifacts/"
        suffix = "/aliases/" + names.LATEST
        heads = [r for r in self.repo.refs.names(prefix) if r.endswith(suffix)]  # names only: no log entry read per version
        return sorted(r[len(prefix) : -len(suffix)] for r in heads if self.repo.refs.exists(r))

    def projects(self) -> list[str]:
        out = set()
        for ref in self.repo.refs.names(names.ROOT + "/"):
            out.add(names.unescape_component(ref.split("/")[1]))
        return sorted(out)

    # -- writing ------------------------------------------------------------

    def log_version(
        self,
        *,
        project: str,
        name: str,
        type: str,
        description: str | None,
        metadata: dict[str, Any],
        tree_id: ObjectId,
        digest: str,
        size: int,
        aliases: list[str],
        run_id: str | None,
        run_project: str | None,
        before_refs: Callable[[ObjectId], None] | None = None,
    ) -> tuple[VersionInfo, bool]:
        """Record a version (or find an identical one); returns (version, created).

        ``before_refs(commit_id)`` runs after a new version's commit is made
        and before any ref points at it (objects it writes share its pack).
        """
        latest_ref = names.alias_ref(project, name, names.LATEST)
        while True:
            head = self.latest(project, name)
            if head is not None and head.type != type:
                raise ArtifactTypeError(
                    f"Artifact {name!r} in project {project!r} has type {head.type!r}; cannot log it as type {type!r}"
                )
            same = next((v for v in self.chain(project, name) if v.digest == digest), None)
            if same is not None:
                self.set_aliases(same, aliases)
                return same, False
            number = max(head.version if head else -1, self._highest_number(project, name)) + 1
            meta = {
                "kind": KIND_VERSION,
                "project": project,
                "name": name,
                "type": type,
                "version": number,
                "description": description,
                "metadata": metadata,
                "digest": digest,
                "size": size,
                "run_id": run_id,
                "run_project": run_project,
            }
            commit_id = self.repo.commit(
                tree_id,
                parents=[head.commit_id] if head else [],
                message=f"{name}:v{number}",
                metadata=meta,
                author=run_id,
            )
            if before_refs is not None:
                before_refs(commit_id)
            try:
                self.repo.refs.set(latest_ref, commit_id, expect=head.commit_id if head else ABSENT, message=f"log v{number}")
            except RefConflict:
                continue  # another process logged first: re-read and take the next number
            self.repo.refs.set(names.version_ref(project, name, number), commit_id, expect=ABSENT, message="version")
            v = self.info(commit_id)
            self.set_aliases(v, aliases)
            return v, True

    def set_aliases(self, v: VersionInfo, aliases: list[str]) -> None:
        for alias in aliases:
            if alias == names.LATEST:
                continue  # managed automatically: it only ever moves forward
            ref = names.alias_ref(v.project, v.name, alias)
            self.repo.refs.set(ref, v.commit_id, message=f"alias {alias} -> v{v.version}")

    def remove_alias(self, project: str, name: str, alias: str) -> None:
        names.validate_alias(alias)
        if alias == names.LATEST:
            raise InvalidNameError("the 'latest' alias is managed automatically and cannot be removed")
        try:
            self.repo.refs.delete(names.alias_ref(project, name, alias), message=f"remove alias {alias}")
        except RefNotFound:
            raise ArtifactNotFoundError(f"Artifact '{project}/{name}' has no alias {alias!r}") from None

    def delete_version(self, v: VersionInfo) -> DeletedVersion:
        """Delete one version so gc can free the bytes only it holds.

        Later versions keep their numbers and content but are re-committed
        with the deleted one cut out of their ancestry; ``latest`` and every
        alias move onto the new commits, and aliases on the deleted version
        are removed. Nothing is erased from any ref's history: each ref whose
        log names a commit that stopped being a version gets one entry that
        records the deletion, moves or removes the ref if needed, and
        releases those commits from gc (with their version labels, so the
        history stays readable after gc). Run records are re-pointed at the
        new commits.
        """
        repo = self.repo
        project, name = v.project, v.name
        latest_ref = names.alias_ref(project, name, names.LATEST)
        label = f"v{v.version}"
        while True:
            head = self.latest(project, name)
            if head is None:
                raise ArtifactNotFoundError(f"Artifact {project}/{name} has no versions")
            chain = list(self.chain(project, name))
            if v.commit_id not in {c.commit_id for c in chain}:
                raise ArtifactNotFoundError(f"{project}/{name}:{label} is not a version of this artifact")
            above = [c for c in chain if c.version > v.version]  # newest first
            parents = repo.get_commit(v.commit_id).parents
            base: str | None = parents[0] if parents else None
            mapping: dict[str, str] = {}
            with repo.batch():
                for old in reversed(above):
                    c = repo.get_commit(old.commit_id)
                    mapping[old.commit_id] = repo.commit(
                        c.tree, parents=[base] if base else [], message=c.message, metadata=dict(c.metadata), author=c.author, timestamp=c.time
                    )
                    base = mapping[old.commit_id]
            labels = {v.commit_id: label, **{c.commit_id: f"v{c.version}" for c in above}}
            meta = {"event": DELETE_EVENT, "deleted": label, "labels": labels}
            message = f"delete {label}"
            gone = set(labels)
            try:
                released = gone & repo.refs.roots(latest_ref)
                if base is None:
                    repo.refs.delete(latest_ref, expect=head.commit_id, message=message, released=released, meta=meta)
                else:
                    repo.refs.set(latest_ref, base, expect=head.commit_id, message=message, released=released, meta=meta)
            except RefConflict:
                continue  # a version was logged meanwhile: start over
            break
        prefix = names.artifact_prefix(project, name) + "/"
        alias_prefix = names.alias_ref(project, name, "")
        removed: list[str] = []
        for ref in repo.refs.names(prefix):
            if ref == latest_ref:
                continue
            while True:  # compare-and-set: an alias moved meanwhile is looked at again
                history = repo.refs.history(ref)
                released = gone & repo.refs.roots_in(history)
                if not released:
                    break
                target = history[-1].new
                try:
                    if target == v.commit_id:
                        repo.refs.delete(ref, expect=target, message=message, released=released, meta=meta)
                        if ref.startswith(alias_prefix):
                            removed.append(ref[len(alias_prefix) :])
                    elif target in mapping:
                        repo.refs.set(ref, mapping[target], expect=target, message=message, released=released, meta=meta)
                    else:
                        repo.refs.release(ref, released, message=message, meta=meta)
                except RefConflict:
                    continue
                break
        from .run import remap_outputs

        remap_outputs(project, mapping, repo, drop={v.commit_id})
        return DeletedVersion(f"{project}/{name}:{label}", tuple(sorted(removed)), sorted(gone))

    def alias_history(self, project: str, name: str, alias: str) -> list[dict[str, Any]]:
        """Every entry of an alias's log, oldest first, readable after gc.

        Each row has ``alias``, ``version`` and ``previous`` (``vN``, or None
        when unset), ``time``, ``who``, ``message``, ``event`` (``move``,
        ``remove`` or ``delete``: a version was deleted), ``deleted`` (the
        version a ``delete`` entry deleted) and ``version_deleted`` /
        ``previous_deleted`` (that version no longer exists).
        """
        try:
            entries = self.repo.refs.history(names.alias_ref(project, name, alias))
        except RefNotFound:
            raise ArtifactNotFoundError(f"Artifact '{project}/{name}' never had alias {alias!r}") from None
        labels: dict[str, str] = {}
        deleted: set[str] = set()
        for e in entries:
            if e.meta.get("event") == DELETE_EVENT:
                labels.update(e.meta.get("labels") or {})
                deleted.add(str(e.meta.get("deleted")))
        gone: set[str] = set()  # commits no longer stored that no deletion entry names

        def version_of(commit_id: str | None) -> str | None:
            if commit_id is None:
                return None
            if commit_id in labels:
                return labels[commit_id]
            if not self.repo.odb.has(commit_id):
                gone.add(commit_id)  # freed by a deletion from before history was append-only
                return commit_id[:12]
            try:
                return f"v{self.info(ObjectId(commit_id)).version}"
            except (ObjstoreError, ArtifactNotFoundError):
                return commit_id[:12]  # not an artifact version (moved by hand)

        rows = []
        for e in entries:
            is_delete = e.meta.get("event") == DELETE_EVENT
            version, previous = version_of(e.new), version_of(e.old)
            rows.append(
                {
                    "alias": alias,
                    "version": version,
                    "previous": previous,
                    "time": e.time,
                    "who": e.who,
                    "message": e.message,
                    "event": "delete" if is_delete else "move" if e.new is not None else "remove",
                    "deleted": e.meta.get("deleted") if is_delete else None,
                    "version_deleted": e.new is not None and ((version in deleted and e.new in labels) or e.new in gone),
                    "previous_deleted": e.old is not None and ((previous in deleted and e.old in labels) or e.old in gone),
                }
            )
        return rows
