"""The model registry: collections of linked artifact versions, promoted by aliases.

A registry is one objstore ref, ``trackio/registry-<name>/registry``, whose
commits form its audit log: every mutation (``create``, ``link``,
``promote``, ``update``, ``unlink``) is one commit whose parent is the
previous one, stamped with who made it (``user@host``) and when. Each commit
also carries the registry's folded state (collections, links, aliases), so
reading a registry reads one commit, and events are the chain itself, which
push, fetch and sync carry to any remote like any other ref. There is no
second database.

Writers append with a compare-and-set on the ref: the loser of a race
re-reads the head, re-applies its intent to the new state and tries again,
so concurrent links and promotions (N processes on one store, or N machines
through a remote, see :func:`rebase`) never lose a move.

A link commit's tree *is* the source version's tree, so gc keeps every
linked version's files reachable through the registry, and ``download()``
of a linked artifact checks that tree out directly. Links name their source
by coordinates (project, artifact, version), which stay valid when
``delete_version`` re-commits later versions.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgpack

from objstore import ABSENT, Repository
from objstore.errors import NotARepository, ObjstoreError, RefConflict, RefNotFound
from objstore.ids import ObjectId
from objstore.refs import default_who

from . import names
from .errors import ArtifactNotFoundError, ArtifactTypeError, InvalidNameError, TrackioError

if TYPE_CHECKING:
    from .artifact import Artifact
    from .remote_sync import RemoteSpec
    from .versions import VersionInfo

PREFIX = "registry-"
KIND_EVENT = "registry-event"
REGISTRY_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
EVENT_KINDS = ("create", "link", "promote", "update", "unlink")
_MAX_ATTEMPTS = 1000


class RegistryNotFoundError(ArtifactNotFoundError):
    """No registry (or collection, or collection version) by that name."""


class RegistryExistsError(TrackioError, ValueError):
    """``create_registry`` of a name that is already taken."""


# -- names ----------------------------------------------------------------------


def validate_registry_name(name: object) -> str:
    if not isinstance(name, str) or not REGISTRY_NAME_RE.fullmatch(name):
        raise InvalidNameError(f"Registry name {name!r} must match ^[A-Za-z0-9_-]+$ (letters, digits, underscore, hyphen)")
    return name


def validate_collection_name(name: object) -> str:
    if not isinstance(name, str) or not names.NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidNameError(f"Collection name {name!r} must match ^[A-Za-z0-9._-]+$ (letters, digits, dot, underscore, hyphen)")
    return name


def registry_project(registry: str) -> str:
    """The project name linked artifacts carry: ``registry-<registry>``."""
    return PREFIX + validate_registry_name(registry)


def registry_ref(registry: str) -> str:
    return f"{names.project_prefix(registry_project(registry))}/registry"


def registry_of_ref(ref: str) -> str | None:
    """The registry a ref holds, or None for any other ref."""
    parts = ref.split("/")
    if len(parts) == 3 and parts[0] == names.ROOT and parts[1].startswith(PREFIX) and parts[2] == "registry":
        name = parts[1][len(PREFIX) :]
        return name if REGISTRY_NAME_RE.fullmatch(name) else None
    return None


def is_registry_project(project: str) -> bool:
    return project.startswith(PREFIX) and REGISTRY_NAME_RE.fullmatch(project[len(PREFIX) :]) is not None


def is_location(spec: object) -> bool:
    """Does ``spec`` name a registry location (``registry-<r>/<collection>...``)?"""
    return isinstance(spec, str) and spec.startswith(PREFIX) and "/" in spec and is_registry_project(spec.split("/", 1)[0])


def parse_target(target_path: object) -> tuple[str, str]:
    """``"registry-<registry>/<collection>"`` -> (registry, collection)."""
    if not isinstance(target_path, str) or target_path.count("/") != 1 or not target_path.startswith(PREFIX):
        raise InvalidNameError(f"Registry target {target_path!r} must be 'registry-<registry>/<collection>', e.g. 'registry-models/my-model'")
    project, collection = target_path.split("/")
    return validate_registry_name(project[len(PREFIX) :]), validate_collection_name(collection)


def parse_location(spec: object) -> tuple[str, str, str]:
    """``"registry-<registry>/<collection>[:vN|:alias]"`` -> (registry, collection, selector)."""
    if not isinstance(spec, str):
        raise InvalidNameError(f"registry location must be a string, got {spec!r}")
    body, sep, selector = spec.partition(":")
    if sep and not selector:
        raise InvalidNameError(f"Registry location {spec!r} has an empty version/alias after ':'")
    registry, collection = parse_target(body)
    selector = selector or names.LATEST
    if not names.VERSION_RE.fullmatch(selector):
        names.validate_name(selector, "Alias")
    return registry, collection, selector


# -- the state and its fold -------------------------------------------------------


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _new_state(registry: str, description: str | None, ts: str) -> dict[str, Any]:
    return {"name": registry, "description": description, "created_at": ts, "collections": {}}


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    out["collections"] = {
        n: {**c, "links": [dict(link) for link in c["links"]], "aliases": dict(c["aliases"])} for n, c in state["collections"].items()
    }
    return out


def _find_link(coll: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any] | None:
    """A link by source coordinates (stable across re-bases), else by collection version."""
    if payload.get("source_project") is not None:
        key = (payload["source_project"], payload["source_artifact"], int(payload["source_version"]))
        return next((lk for lk in coll["links"] if (lk["source_project"], lk["source_artifact"], lk["source_version"]) == key), None)
    version = payload.get("collection_version")
    return next((lk for lk in coll["links"] if lk["collection_version"] == version), None)


def _source_label(payload: dict[str, Any]) -> str:
    return f"{payload['source_project']}/{payload['source_artifact']}:v{payload['source_version']}"


def apply(state: dict[str, Any] | None, kind: str, payload: dict[str, Any], ts: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Fold one intent into a registry state.

    Returns the new state and the payload as it happened (with derived
    values: the collection version a link got, the version an alias moved
    from, the aliases an unlink removed), or None when the intent changes
    nothing. Raises ValueError (naming the problem) when it cannot apply.
    """
    registry = payload["registry"]
    if kind == "create" and "collection" not in payload:
        if state is not None:
            raise RegistryExistsError(f"Registry {registry!r} already exists")
        return _new_state(registry, payload.get("description"), ts), dict(payload)
    if state is None:
        raise RegistryNotFoundError(f"Registry {registry!r} does not exist. Create it first with trackio.Api().create_registry({registry!r})")
    new = _copy(state)
    colls = new["collections"]
    name = payload["collection"]
    coll = colls.get(name)
    if kind == "create":
        if coll is not None:
            if coll["type"] != payload["type"]:
                raise ArtifactTypeError(f"Collection {name!r} in registry {registry!r} accepts type {coll['type']!r}, not {payload['type']!r}")
            return None
        colls[name] = {
            "type": payload["type"],
            "description": payload.get("description"),
            "created_at": ts,
            "next_version": 0,
            "links": [],
            "aliases": {},
        }
        return new, dict(payload)
    if coll is None:
        raise RegistryNotFoundError(f"Collection {name!r} not found in registry {registry!r}")
    if kind == "update":
        if payload.get("description") == coll["description"]:
            return None
        coll["description"] = payload.get("description")
        return new, dict(payload)
    if kind == "link":
        if payload["type"] != coll["type"]:
            raise ArtifactTypeError(
                f"Collection {name!r} in registry {registry!r} accepts type {coll['type']!r}; "
                f"{_source_label(payload)} has type {payload['type']!r}"
            )
        if _find_link(coll, payload) is not None:
            return None
        version = coll["next_version"]
        coll["next_version"] = version + 1
        coll["links"].append(
            {
                "collection_version": version,
                "source_project": payload["source_project"],
                "source_artifact": payload["source_artifact"],
                "source_version": int(payload["source_version"]),
                "source_commit": payload["source_commit"],
                "tree": payload["tree"],
                "created_at": ts,
            }
        )
        coll["aliases"][names.LATEST] = version
        return new, {**payload, "collection_version": version}
    if kind == "promote":
        alias = payload["alias"]
        names.validate_alias(alias)
        link = _find_link(coll, payload)
        if link is None:
            what = _source_label(payload) if payload.get("source_project") is not None else f"v{payload.get('collection_version')}"
            raise RegistryNotFoundError(f"{what} is not linked in collection {name!r} of registry {registry!r}")
        previous = coll["aliases"].get(alias)
        if previous == link["collection_version"]:
            return None
        coll["aliases"][alias] = link["collection_version"]
        return new, {**payload, **_coords(link), "previous_version": previous}
    if kind == "unlink":
        link = _find_link(coll, payload)
        if link is None:
            return None
        version = link["collection_version"]
        coll["links"] = [lk for lk in coll["links"] if lk is not link]
        removed = sorted(a for a, v in coll["aliases"].items() if v == version)
        for a in removed:
            del coll["aliases"][a]
        if names.LATEST in removed and coll["links"]:
            coll["aliases"][names.LATEST] = max(lk["collection_version"] for lk in coll["links"])
        latest = coll["aliases"].get(names.LATEST)
        return new, {**payload, **_coords(link), "removed_aliases": removed, "latest_version": latest}
    raise InvalidNameError(f"unknown registry event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")


def _coords(link: dict[str, Any]) -> dict[str, Any]:
    return {
        "collection_version": link["collection_version"],
        "source_project": link["source_project"],
        "source_artifact": link["source_artifact"],
        "source_version": link["source_version"],
    }


# -- one registry in one repository -------------------------------------------------

Intent = tuple[str, dict[str, Any], "ObjectId | None"]  # (kind, payload, tree of a link)
_states: dict[str, dict[str, Any]] = {}  # commit id -> state (commits never change)


def head(repo: Repository, registry: str) -> ObjectId | None:
    try:
        return repo.refs.get(registry_ref(registry))
    except RefNotFound:
        return None


def state_at(repo: Repository, commit_id: ObjectId | None) -> dict[str, Any] | None:
    if commit_id is None:
        return None
    cached = _states.get(commit_id)
    if cached is None:
        meta = repo.get_commit(commit_id).metadata
        if meta.get("kind") != KIND_EVENT:
            raise ArtifactNotFoundError(f"commit {commit_id} is not a registry event")
        if len(_states) > 512:  # only a cache: keep it small in long-lived processes
            _states.clear()
        cached = _states[commit_id] = msgpack.unpackb(meta["state"], raw=False)
    return cached


def load(repo: Repository, registry: str) -> dict[str, Any] | None:
    return state_at(repo, head(repo, registry))


Step = tuple[str, dict[str, Any], "ObjectId | None", str, float]  # (kind, payload, tree, who, time)


def _write(
    repo: Repository, parent: ObjectId | None, state: dict[str, Any] | None, steps: list[Step]
) -> tuple[ObjectId | None, dict[str, Any] | None, list[dict[str, Any]]]:
    """Commit steps as a chain of event commits on ``parent`` (no ref moves); intents that
    change nothing are skipped. Returns (new tip, state after, events written)."""
    done: list[dict[str, Any]] = []
    tip = parent
    with repo.batch():
        empty = repo.make_tree([])
        for kind, payload, tree, who, ts in steps:
            folded = apply(state, kind, payload, _now_iso(ts))
            if folded is None:
                continue
            state, effective = folded
            # The state travels as one msgpack blob: O(links) bytes, but one C call, not a Python walk.
            packed = msgpack.packb(state, use_bin_type=True)
            meta = {"kind": KIND_EVENT, "registry": effective["registry"], "event": kind, "payload": effective, "who": who, "state": packed}
            label = effective.get("collection", effective["registry"])
            tip = repo.commit(tree or empty, parents=[tip] if tip else [], message=f"{kind} {label}", metadata=meta, author=who, timestamp=ts)
            _states[tip] = state
            done.append(effective)
    return tip, state, done


def append(
    repo: Repository, registry: str, intents: Callable[[dict[str, Any] | None], list[Intent]]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Append the events ``intents(state)`` asks for, atomically (one ref move), retrying lost races.

    Returns the state afterwards and the events written (empty when nothing changed).
    """
    ref = registry_ref(registry)
    who = default_who()
    for _ in range(_MAX_ATTEMPTS):
        parent = head(repo, registry)
        state = state_at(repo, parent)
        wanted = intents(state)
        now = datetime.now(UTC).timestamp()
        tip, new_state, done = _write(repo, parent, state, [(k, p, t, who, now) for k, p, t in wanted])
        if not done:
            return state, []
        assert tip is not None
        try:
            repo.refs.set(ref, tip, expect=parent if parent else ABSENT, message=", ".join(e for e, *_ in wanted))
        except RefConflict:
            continue  # another writer moved the registry: re-read and re-apply
        return new_state, done
    raise TrackioError(f"registry {registry!r}: gave up after {_MAX_ATTEMPTS} lost races")


def iter_events(repo: Repository, registry: str) -> Iterator[tuple[ObjectId, Any]]:
    """(commit id, commit) of every event, newest first (stops where a shallow copy was cut)."""
    tip = head(repo, registry)
    while tip is not None:
        c = repo.get_commit(tip)
        yield tip, c
        tip = c.parents[0] if c.parents and repo.odb.has(c.parents[0]) else None


def events(repo: Repository, registry: str) -> list[dict[str, Any]]:
    out = []
    chain = list(iter_events(repo, registry))
    for i, (commit_id, c) in enumerate(reversed(chain), start=1):
        meta = c.metadata
        who = meta.get("who") or c.author or ""
        user, _, host = who.partition("@")
        out.append(
            {
                "id": i,
                "event_uid": commit_id,
                "ts": _now_iso(c.time),
                "kind": meta["event"],
                "payload": copy.deepcopy(dict(meta["payload"])),
                "who": who,
                "user": user,
                "host": host,
            }
        )
    return out


def linking(repo: Repository, project: str, artifact: str, version: int) -> list[str]:
    """``registry-<r>/<collection>:v<N>`` of every live link to one source version."""
    out = []
    for reg in registry_names(repo):
        state = load(repo, reg)
        for cname, coll in sorted((state or {"collections": {}})["collections"].items()):
            for lk in coll["links"]:
                if (lk["source_project"], lk["source_artifact"], lk["source_version"]) == (project, artifact, version):
                    out.append(f"{PREFIX}{reg}/{cname}:v{lk['collection_version']}")
    return out


def registry_names(repo: Repository) -> list[str]:
    """Every registry in a repository (one listing of ref names, then one read per registry)."""
    found = (registry_of_ref(ref) for ref in repo.refs.names(names.ROOT + "/" + PREFIX))
    return sorted(r for r in found if r is not None and head(repo, r) is not None)


# -- across machines ---------------------------------------------------------------


def rebase(local: Repository, view: Repository, registry: str, fetch_head: Callable[[ObjectId], None]) -> bool:
    """Put this machine's unpushed events of ``registry`` on top of the remote's chain.

    ``view`` is the remote opened in place; ``fetch_head`` brings one remote
    commit (and its tree) into ``local``. Each local-only event is re-applied
    to the remote's state as the intent it was (link numbers are re-assigned,
    promotions follow their source version, no-ops vanish), keeping its
    author and time. Returns False when there was nothing to do.
    """
    mine = head(local, registry)
    theirs = head(view, registry)
    if mine is None or theirs is None or mine == theirs:
        return False
    local_chain: list[tuple[ObjectId, Any]] = list(iter_events(local, registry))
    local_ids = {cid for cid, _ in local_chain}
    common: ObjectId | None = None
    tip: ObjectId | None = theirs
    while tip is not None:  # the remote's events since we diverged (usually few)
        if tip in local_ids:
            common = tip
            break
        c = view.get_commit(tip)
        tip = c.parents[0] if c.parents else None
    if common == theirs:
        return False  # we are ahead: a plain push moves the remote
    fetch_head(theirs)
    ours = []
    for cid, c in local_chain:
        if cid == common:
            break
        ours.append(c)
    steps = []
    for c in reversed(ours):
        meta = c.metadata
        payload = dict(meta["payload"])
        if meta["event"] in ("link", "promote", "unlink"):  # derived there, not here: re-derived on replay
            for key in ("collection_version", "previous_version", "removed_aliases", "latest_version"):
                payload.pop(key, None)
        if meta["event"] == "create" and "collection" not in payload:
            continue  # the registry exists there too (created on both sides)
        tree = c.tree if meta["event"] == "link" else None
        steps.append((meta["event"], payload, tree, meta.get("who") or c.author or "", c.time))
    state = state_at(local, theirs)
    kept: list[Step] = []
    for step in steps:  # drop (with a warning) what no longer applies there
        try:
            folded = apply(state, step[0], step[1], _now_iso(step[4]))
        except ValueError as exc:
            warnings.warn(f"trackio: registry {registry!r}: a {step[0]} made here conflicts with the remote and is dropped: {exc}", stacklevel=2)
            continue
        if folded is not None:
            state = folded[0]
            kept.append(step)
    tip2, _, _ = _write(local, theirs, state_at(local, theirs), kept)
    assert tip2 is not None
    local.refs.set(registry_ref(registry), tip2, expect=mine, message="re-base on remote")
    return True


# -- the public handles ----------------------------------------------------------------


@dataclass(frozen=True)
class Collection:
    """A read-only snapshot of one registry collection.

    Returned by ``Registry.create_collection``, ``Registry.collection`` and
    ``Registry.collections``.
    """

    name: str
    """Collection name, unique within the registry."""
    type: str
    """The artifact type the collection accepts."""
    description: str | None
    """Human-readable description, or None if unset."""
    created_at: str
    """When the collection was created, as an ISO 8601 timestamp."""
    num_links: int
    """Number of versions currently linked into the collection."""
    latest_version: int | None
    """Newest collection version number, or None if nothing is linked."""
    links: list[dict[str, Any]]
    """The linked versions, newest first: ``collection_version``, ``source_project``,
    ``source_artifact``, ``source_version`` and ``aliases`` (sorted)."""


def _collection(name: str, coll: dict[str, Any]) -> Collection:
    by_version: dict[int, list[str]] = {}
    for alias, v in coll["aliases"].items():
        by_version.setdefault(v, []).append(alias)
    links = [
        {**_coords(lk), "aliases": sorted(by_version.get(lk["collection_version"], []))}
        for lk in sorted(coll["links"], key=lambda lk: -lk["collection_version"])
    ]
    return Collection(
        name=name,
        type=coll["type"],
        description=coll["description"],
        created_at=coll["created_at"],
        num_links=len(links),
        latest_version=links[0]["collection_version"] if links else None,
        links=links,
    )


class Registry:
    """A handle on one artifact registry: a catalog of collections of linked versions.

    Publish into it with ``Run.link_artifact`` (or ``Artifact.link``) and
    promote versions by moving aliases such as ``"staging"`` or
    ``"production"``. Get one from ``trackio.Api().create_registry(name)`` or
    ``trackio.Api().registry(name)``.
    """

    def __init__(self, name: str, remote: RemoteSpec | None = None) -> None:
        self._name = validate_registry_name(name)
        self._remote = remote

    @property
    def name(self) -> str:
        """The registry's name."""
        return self._name

    @property
    def project(self) -> str:
        """``registry-<name>``: the project linked artifacts carry."""
        return registry_project(self._name)

    def _read(self) -> tuple[dict[str, Any], Repository]:
        state, store = read_state(self._name, self._remote)
        if state is None:
            raise RegistryNotFoundError(f"Registry {self._name!r} does not exist. Create it first with trackio.Api().create_registry({self._name!r})")
        return state, store

    def _peek(self) -> dict[str, Any] | None:
        """The state, or None when the registry does not exist (as trackio's readers answer)."""
        return read_state(self._name, self._remote)[0]

    @property
    def description(self) -> str | None:
        """The registry's description, or None if unset (or the registry does not exist)."""
        state = self._peek()
        return None if state is None or state["description"] is None else str(state["description"])

    @property
    def created_at(self) -> str:
        return str(self._read()[0]["created_at"])

    def create_collection(self, name: str, artifact_type: str, description: str | None = None) -> Collection:
        """Create a collection (also created on first link); an existing one is
        returned as-is, a non-None ``description`` applied. The type is fixed."""
        validate_collection_name(name)
        names.validate_name(artifact_type, "Artifact type")
        base = {"registry": self._name, "collection": name}

        def intents(state: dict[str, Any] | None) -> list[Intent]:
            out: list[Intent] = [("create", {**base, "type": artifact_type, "description": description}, None)]
            if description is not None:
                out.append(("update", {**base, "description": description}, None))
            return out

        state, _ = write(self._name, self._remote, intents)
        assert state is not None
        return _collection(name, state["collections"][name])

    def collection(self, name: str) -> Collection | None:
        """One collection, or None if there is no such collection (or registry)."""
        validate_collection_name(name)
        coll = (self._peek() or {"collections": {}})["collections"].get(name)
        return None if coll is None else _collection(name, coll)

    def collections(self) -> list[Collection]:
        """Every collection with its links, ordered by type then name ([] if the registry does not exist)."""
        colls = (self._peek() or {"collections": {}})["collections"]
        return [_collection(n, c) for n, c in sorted(colls.items(), key=lambda kv: (kv[1]["type"], kv[0]))]

    def events(self) -> list[dict[str, Any]]:
        """The audit log, oldest first: ``id``, ``ts``, ``kind``, ``payload``, ``who``
        (``user@host``), ``user`` and ``host``. Built from the registry's
        history, so it cannot be edited. [] if the registry does not exist."""
        state, store = read_state(self._name, self._remote)
        return [] if state is None else events(store, self._name)

    def artifact(self, collection: str, selector: str = names.LATEST) -> Artifact:
        """The linked artifact at ``collection:selector`` (``vN``, an alias, or ``latest``)."""
        state, store = self._read()
        return linked_artifact(self._name, collection, selector, state, store, self._remote)

    def promote(self, collection: str, version: int | str, alias: str) -> Artifact:
        """Point ``alias`` at collection version ``version`` (moving it from wherever it was)."""
        number = _version_number(version)
        names.validate_alias(alias)
        if alias == names.LATEST:
            raise InvalidNameError("the 'latest' alias is managed automatically: it always follows the newest linked version")
        validate_collection_name(collection)
        payload = {"registry": self._name, "collection": collection, "alias": alias, "collection_version": number}
        write(self._name, self._remote, lambda s: [("promote", payload, None)])
        return self.artifact(collection, f"v{number}")

    def unlink(self, collection: str, version: int | str) -> dict[str, Any]:
        """Remove collection version ``version`` (the source is untouched); returns the unlink event's payload."""
        number = _version_number(version)
        validate_collection_name(collection)
        state, _ = self._read()
        coll = state["collections"].get(collection)
        if coll is None:
            raise RegistryNotFoundError(f"Collection {collection!r} not found in registry {self._name!r}")
        link = next((lk for lk in coll["links"] if lk["collection_version"] == number), None)
        if link is None:
            raise RegistryNotFoundError(f"Version v{number} not found in collection {collection!r} of registry {self._name!r}")
        return unlink(self._name, collection, link, self._remote)

    def __repr__(self) -> str:
        return f"Registry({self._name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Registry) and other._name == self._name

    def __hash__(self) -> int:
        return hash(self._name)


def _version_number(version: int | str) -> int:
    if isinstance(version, int) and not isinstance(version, bool) and version >= 0:
        return version
    if isinstance(version, str):
        m = names.VERSION_RE.fullmatch(version) or re.fullmatch(r"(\d+)", version)
        if m:
            return int(m.group(1))
    raise InvalidNameError(f"collection version {version!r} must be vN or a non-negative integer")


# -- reading and writing through the local store and a remote ------------------------


def bucket_remote(bucket_id: str | None, default: RemoteSpec | None) -> RemoteSpec | None:
    """trackio 0.43's ``bucket_id`` (or ``TRACKIO_REGISTRY_BUCKET_ID``): the Hugging Face
    bucket remote it names (as ``init(bucket_id=...)``), else ``default``."""
    import os

    from .remote_sync import remote_spec

    chosen = bucket_id or os.environ.get("TRACKIO_REGISTRY_BUCKET_ID")
    return remote_spec(bucket_id=chosen) if chosen else default


def read_state(registry: str, remote: RemoteSpec | None) -> tuple[dict[str, Any] | None, Repository]:
    """The registry's state and the store it was read from: the remote when
    one is set, reachable and holds the registry, else this machine's store."""
    from . import remote_sync as sync
    from .store import get_repo

    local = get_repo()
    mine = head(local, registry)
    if remote is not None:
        try:
            view = sync.remote_repo(remote)
            theirs = head(view, registry)
            if theirs is not None and (mine is None or mine == theirs or not _ahead(local, mine, theirs)):
                return state_at(view, theirs), view
        except NotARepository:
            pass  # nothing pushed there yet
        except Exception as exc:
            if not isinstance(exc, (ObjstoreError, OSError)) and not _network_error(exc):
                raise
            warnings.warn(f"trackio: remote {remote.url} unreachable ({exc!r}); reading the local registry", stacklevel=3)
    return state_at(local, mine), local


def _network_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("botocore", "aiohttp", "requests", "urllib3", "paramiko", "fsspec", "s3fs")


def _ahead(local: Repository, mine: ObjectId, theirs: ObjectId) -> bool:
    """Does our chain hold ``theirs`` (we have unpushed events)?"""
    return any(cid == theirs for cid, _ in _chain_from(local, mine))


def _chain_from(repo: Repository, tip: ObjectId | None) -> Iterator[tuple[ObjectId, Any]]:
    while tip is not None:
        c = repo.get_commit(tip)
        yield tip, c
        tip = c.parents[0] if c.parents and repo.odb.has(c.parents[0]) else None


def write(
    registry: str, remote: RemoteSpec | None, intents: Callable[[dict[str, Any] | None], list[Intent]]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Append to the registry here; with a remote, catch up with it first and push after."""
    from . import remote_sync as sync
    from .store import get_repo

    local = get_repo()
    if remote is not None:
        try:
            sync.pull_registry(remote, registry, local)
        except Exception as exc:
            if not isinstance(exc, (ObjstoreError, OSError)) and not _network_error(exc):
                raise
            warnings.warn(f"trackio: remote {remote.url} unreachable ({exc!r}); the registry change is kept here and pushed later", stacklevel=3)
            remote = None
    result = append(local, registry, intents)
    if remote is not None and result[1]:
        try:
            sync.push(remote, local)
        except Exception as exc:
            if not isinstance(exc, (ObjstoreError, OSError, TrackioError)) and not _network_error(exc):
                raise
            warnings.warn(f"trackio: could not push the registry to {remote.url} ({exc!r}); trackio.sync() sends it later", stacklevel=3)
    return result


def link(
    info: VersionInfo,
    store: Repository,
    target_path: str,
    aliases: list[str] | None,
    *,
    remote: RemoteSpec | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
) -> Artifact:
    """Link one stored artifact version into ``registry-<r>/<collection>``; return the linked artifact."""
    from . import remote_sync as sync
    from .store import get_repo

    registry, collection = parse_target(target_path)
    wanted = [a for a in names.validate_aliases(aliases) if a != names.LATEST]
    local = get_repo()
    if not local.odb.has(info.tree_id):  # the link's tree is the source's: it must be here
        sync.ensure_local(info, store)
    source = {
        "source_project": info.project,
        "source_artifact": info.name,
        "source_version": info.version,
    }
    base = {"registry": registry, "collection": collection}

    def intents(state: dict[str, Any] | None) -> list[Intent]:
        out: list[Intent] = [
            ("create", {**base, "type": info.type, "description": None}, None),
            (
                "link",
                {**base, **source, "type": info.type, "source_commit": info.commit_id, "tree": info.tree_id, "run_id": run_id, "run_name": run_name},
                info.tree_id,
            ),
        ]
        out += [("promote", {**base, **source, "alias": a, "run_id": run_id, "run_name": run_name}, None) for a in wanted]
        return out

    state, _ = write(registry, remote, intents)
    assert state is not None
    coll = state["collections"][collection]
    lk = _find_link(coll, source)
    assert lk is not None
    return linked_artifact(registry, collection, f"v{lk['collection_version']}", state, local, remote)


def unlink(registry: str, collection: str, link: dict[str, Any], remote: RemoteSpec | None = None) -> dict[str, Any]:
    payload = {"registry": registry, "collection": collection, **{k: link[k] for k in ("source_project", "source_artifact", "source_version")}}
    _, done = write(registry, remote, lambda s: [("unlink", payload, None)])
    if not done:
        raise RegistryNotFoundError(f"{PREFIX}{registry}/{collection}:v{link['collection_version']} is not linked (already unlinked?)")
    return done[0]


def resolve_link(state: dict[str, Any], registry: str, collection: str, selector: str) -> dict[str, Any]:
    coll = state["collections"].get(collection)
    if coll is None:
        raise RegistryNotFoundError(f"Collection {collection!r} not found in registry {registry!r}")
    if not coll["links"]:
        raise RegistryNotFoundError(f"Collection {collection!r} of registry {registry!r} is empty: nothing has been linked into it")
    m = names.VERSION_RE.fullmatch(selector)
    if m:
        number = int(m.group(1))
        lk = next((x for x in coll["links"] if x["collection_version"] == number), None)
        if lk is None:
            raise RegistryNotFoundError(f"Version v{number} not found in collection {collection!r} of registry {registry!r}")
        return dict(lk)
    version = coll["aliases"].get(selector)
    if version is None:
        raise RegistryNotFoundError(f"Alias {selector!r} not found in collection {collection!r} of registry {registry!r}")
    return dict(next(x for x in coll["links"] if x["collection_version"] == version))


def linked_artifact(
    registry: str, collection: str, selector: str, state: dict[str, Any], store: Repository, remote: RemoteSpec | None = None
) -> Artifact:
    """The Artifact a registry location names: the collection's version, the source's content."""
    from .artifact import Artifact
    from .versions import ArtifactRegistry, VersionInfo

    lk = resolve_link(state, registry, collection, selector)
    coll = state["collections"][collection]
    source: VersionInfo | None = None
    for repo in _stores(store):
        try:
            candidate = ArtifactRegistry(repo).version(lk["source_project"], lk["source_artifact"], lk["source_version"])
        except (ArtifactNotFoundError, ObjstoreError):
            continue
        if candidate.tree_id == lk["tree"]:
            source = candidate
            break
    if source is None:
        for repo in _stores(store):
            try:
                source = ArtifactRegistry(repo).info(ObjectId(lk["source_commit"]))
                break
            except (ArtifactNotFoundError, ObjstoreError):
                continue
    created = datetime.fromisoformat(lk["created_at"]).timestamp()
    info = VersionInfo(
        commit_id=ObjectId(source.commit_id if source is not None else lk["source_commit"]),
        tree_id=ObjectId(lk["tree"]),
        project=registry_project(registry),
        name=collection,
        type=coll["type"],
        version=lk["collection_version"],
        description=source.description if source is not None else None,
        metadata=dict(source.metadata) if source is not None else {},
        digest=source.digest if source is not None else "",
        size=source.size if source is not None else 0,
        run_id=source.run_id if source is not None else None,
        run_project=source.run_project if source is not None else None,
        created_at=created,
    )
    aliases = tuple(sorted(a for a, v in coll["aliases"].items() if v == lk["collection_version"]))
    art = Artifact(collection, coll["type"])
    art._hydrate(info, aliases, store)
    art._link = LinkInfo(registry, collection, lk["source_project"], lk["source_artifact"], lk["source_version"], remote)
    return art


def _stores(store: Repository) -> list[Repository]:
    from .store import get_repo

    local = get_repo()
    return [store] if store is local else [store, local]


@dataclass(frozen=True)
class LinkInfo:
    """Where a linked artifact sits and which source version it stands for."""

    registry: str
    collection: str
    source_project: str
    source_artifact: str
    source_version: int
    remote: RemoteSpec | None = field(default=None, compare=False)
    """The remote the link was read from or written with (its unlink goes there too)."""


def resolve_location(spec: str, remote: RemoteSpec | None) -> Artifact:
    """``registry-<r>/<collection>[:vN|:alias]`` -> the linked artifact."""
    registry, collection, selector = parse_location(spec)
    state, store = read_state(registry, remote)
    if state is None:
        raise RegistryNotFoundError(f"Registry {registry!r} does not exist. Create it first with trackio.Api().create_registry({registry!r})")
    return linked_artifact(registry, collection, selector, state, store, remote)


__all__ = [
    "Collection",
    "LinkInfo",
    "Registry",
    "RegistryExistsError",
    "RegistryNotFoundError",
    "apply",
    "events",
    "link",
    "linking",
    "parse_location",
    "parse_target",
    "rebase",
    "registry_names",
    "registry_ref",
    "resolve_location",
    "validate_collection_name",
    "validate_registry_name",
]
