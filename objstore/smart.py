"""Push and fetch against an objstore server, in a fixed number of round trips.

* **push**: one negotiation (the ref updates and the ids this side would
  send; the server answers which it lacks and where the refs are now), one
  streamed pack upload of exactly the lacking objects (leaves first), and
  one atomic ref update carrying each ref's expected old value: all refs
  move or none, and a ref that moved meanwhile answers 409, raised here as
  :class:`~objstore.errors.PushRejected` naming it.
* **fetch**: one request for the refs, one for a pack of exactly the
  objects this side lacks, computed by the server from the wanted targets
  and this side's ref values (its "haves"), streamed and verified object by
  object on arrival.

The ids a push offers are found by walking the local graph from the pushed
refs; the walk stops at commits the server is already known to hold whole
(recorded locally after each successful transfer), so a push of one new
version offers that version's objects, not the whole history.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import codec, limits
from .errors import CorruptObject, FormatError, ObjstoreError, PushRejected, ServerUnreachable
from .graph import children_first, children_first_until, is_ancestor
from .ids import ObjectId
from .objects import BLOB, Commit, decode
from .packs import IndexEntry
from .parallel import bounded_map, read_ahead
from .wire import CONTENT_TYPE, StreamReader, encode_stream

if TYPE_CHECKING:
    from .http import HttpStorage
    from .remote import Remote, TransferResult
    from .repo import Repository

_RECORD_OVERHEAD = 64
_KNOWN_LIMIT = 10_000


class SmartRemote:
    """The smart protocol for one :class:`~objstore.remote.Remote` whose URL is an objstore server."""

    def __init__(self, remote: Remote, storage: HttpStorage, cache_dir: str) -> None:
        self.remote = remote
        self.local: Repository = remote.local
        self.storage = storage
        self.client = storage.client
        self.progress: Callable[[int], None] | None = remote.progress
        self._known_path = os.path.join(cache_dir, "known-commits")

    # -- what the server is known to hold ------------------------------------------

    def _known(self) -> set[bytes]:
        try:
            with open(self._known_path) as f:
                return {bytes.fromhex(line.strip()) for line in f if len(line.strip()) == self.local.odb.digest_size * 2}
        except (OSError, ValueError):
            return set()

    def _remember(self, commits: Sequence[str]) -> None:
        """Record commits the server now holds whole (ref targets it accepted or served)."""
        known = [c.hex() for c in self._known()]
        fresh = [c for c in commits if c not in set(known)]
        if not fresh:
            return
        lines = (known + fresh)[-_KNOWN_LIMIT:]
        try:
            os.makedirs(os.path.dirname(self._known_path), exist_ok=True)
            tmp = f"{self._known_path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "w") as f:
                f.write("\n".join(lines) + "\n")
            os.replace(tmp, self._known_path)
        except OSError:
            pass  # only a cache

    # -- push -----------------------------------------------------------------------

    def _offer(self, targets: list[ObjectId], known: set[bytes]) -> tuple[list[bytes], list[bytes]]:
        """(objects reachable from ``targets`` children first, stopping at ``known``; the known ones met)."""
        odb = self.local.odb
        odb.refresh()  # packs another handle on this store published since we last looked
        met: list[bytes] = []

        def stop(oid: bytes) -> bool:
            if oid in known:
                met.append(oid)
                return True
            # history a shallow fetch left on the server: it has it, or refuses the refs
            return not odb.has_raw(oid)

        return children_first_until(odb, [odb.raw_id(t) for t in targets], stop), met

    def _negotiate(self, wanted: dict[str, ObjectId], ids: list[bytes]) -> tuple[set[bytes], dict[str, str | None]]:
        r = self.client.request(
            "POST", "/push/negotiate", json={"refs": wanted, "ids": [i.hex() for i in ids]}, what="negotiating a push"
        )
        body = r.json()
        missing = {bytes.fromhex(m) for m in body["missing"]}
        heads = {name: h["value"] for name, h in body["refs"].items()}
        return missing, heads

    def push(self, names: list[str], local_refs: dict[str, ObjectId], force: bool, result: TransferResult) -> TransferResult:
        local = self.local
        wanted = {n: local_refs[n] for n in names}
        targets = list(dict.fromkeys(wanted.values()))
        known = self._known()
        offer, met = self._offer(targets, known)
        missing, heads = self._negotiate(wanted, offer + met)
        if missing & set(met):  # the server lost what we thought it had: offer everything
            offer, _ = self._offer(targets, set())
            missing, heads = self._negotiate(wanted, offer)
        updates: list[dict[str, Any]] = []
        for name in names:
            target, current = wanted[name], heads.get(name)
            if current == target:
                result.refs_unchanged.append(name)
            elif current is None or force or is_ancestor(local, current, target):
                updates.append({"name": name, "old": current, "new": target})
            else:
                result.refs_rejected[name] = (current, target)
        if result.refs_rejected:  # all refs of a push move together or none do
            result.requests = self.client.requests
            raise PushRejected(result.refs_rejected, result)
        if updates:
            self._upload([o for o in offer if o in missing], result)
            self._move(updates, force, result)
        self._remember([wanted[n] for n in result.refs_unchanged])
        result.requests = self.client.requests
        if result.refs_rejected:
            raise PushRejected(result.refs_rejected, result)
        return result

    def _move(self, updates: list[dict[str, Any]], force: bool, result: TransferResult, attempts: int = 8) -> None:
        """The atomic ref update; a ref that moved meanwhile to an ancestor of ours is retried, as a fast-forward."""
        by_name = {u["name"]: u for u in updates}
        for _ in range(attempts):
            r = self.client.request("POST", "/push/refs", ok=(200, 409), json={"updates": updates, "message": "push"}, what="moving refs")
            if r.status_code == 200:
                for u in updates:
                    result.refs_updated[u["name"]] = (u["old"], u["new"])
                self._remember([u["new"] for u in updates])
                return
            body = r.json()
            ref, actual = body.get("ref"), body.get("actual")
            lost = by_name.get(ref) if isinstance(ref, str) else None
            if lost is None:
                raise PushRejected({str(ref): (actual, None)}, result)
            if actual == lost["new"]:  # someone pushed the very same value
                updates.remove(lost)
                result.refs_unchanged.append(lost["name"])
                if not updates:
                    return
            elif actual is None or force or is_ancestor(self.local, actual, lost["new"]):
                lost["old"] = actual  # still a fast-forward (or forced): try again from there
            else:
                result.refs_rejected[lost["name"]] = (actual, lost["new"])
                return
        result.refs_rejected.update({u["name"]: (u["old"], u["new"]) for u in updates})

    def _upload(self, objects: list[bytes], result: TransferResult) -> None:
        """Stream ``objects`` (children first) to the server, in as few uploads as its body limit allows."""
        if not objects:
            return
        odb = self.local.odb
        limit = int(self.storage.info.get("max_body") or 0) or (1 << 62)
        batches: list[list[bytes]] = [[]]
        size = 0
        for oid in objects:
            loc = odb.locate(oid)
            # A group member is sent on its own, at most its raw size (its entry gives the whole group's).
            n = (0 if loc is None else loc[1].raw_length if loc[1].codec == codec.GROUPED else loc[1].stored_length) + _RECORD_OVERHEAD
            if batches[-1] and size + n > limit - 4096:
                batches.append([])
                size = 0
            batches[-1].append(oid)
            size += n
        for batch in batches:
            r = self.client.request(
                "POST",
                "/push/pack",
                data=encode_stream(odb.digest_size, self._records(batch, result)),
                headers={"Content-Type": CONTENT_TYPE},
                what="uploading a pack",
            )
            if r.json().get("packs"):
                result.packs += len(r.json()["packs"])

    def _records(self, batch: list[bytes], result: TransferResult) -> Iterator[tuple[bytes, int, int, bytes | memoryview, int]]:
        odb = self.local.odb

        def read(oid: bytes) -> tuple[bytes, tuple[int, int, bytes | memoryview, int]]:
            return oid, odb.export(oid)  # verified: never send a corrupt object

        # Reading and hashing the next objects overlaps sending this one.
        for oid, (type_tag, codec_id, stored, raw_length) in bounded_map(read, batch, window=8):
            result.objects += 1
            result.bytes += len(stored)
            if self.progress is not None:
                self.progress(len(stored))
            yield oid, type_tag, codec_id, stored, raw_length

    # -- fetch ----------------------------------------------------------------------

    def heads(self) -> dict[str, ObjectId]:
        r = self.client.request("GET", "/refs", what="listing refs")
        return {name: ObjectId(h["value"]) for name, h in r.json().items() if h.get("value")}

    def fetch_objects(self, targets: list[ObjectId], result: TransferResult, depth: int | None) -> TransferResult:
        local = self.local
        odb = local.odb
        wants = [t for t in dict.fromkeys(targets) if not odb.has(t)]
        deepened: list[ObjectId] = []
        if depth is None:  # a full fetch also completes history cut by earlier shallow fetches
            for commit_id in local.shallow_commits():
                parents = [p for p in local.get_commit(commit_id).parents if not odb.has(p)]
                if parents:
                    wants.extend(parents)
                    deepened.append(commit_id)
        if not wants:
            return result
        haves = sorted(set(local.refs.list().values()))
        body = {"wants": wants, "haves": haves, "depth": depth, "shallow": local.shallow_commits()}
        metadata: dict[bytes, tuple[IndexEntry, bytes, Any]] = {}
        where = f"the pack stream from {self.storage.url}"

        def sink(oid: bytes, type_tag: int, codec_id: int, stored: memoryview, raw_length: int) -> None:
            entry = IndexEntry(0, len(stored), raw_length, type_tag, codec_id)
            limits.check_entry(oid, entry, odb.max_blob, where)  # the format's bounds, and what this repository can hold
            raw = odb.decode_verified(oid, entry, stored, where)
            result.objects += 1
            result.bytes += len(stored)
            if self.progress is not None:
                self.progress(len(stored))
            if odb.has_raw(oid):
                return
            if type_tag == BLOB:
                odb.add_stored(oid, BLOB, codec_id, stored, raw_length, checked=True)
                return
            try:
                obj = decode(raw, odb.digest_size)
            except FormatError as exc:
                raise CorruptObject(oid.hex(), str(exc), where) from None
            metadata[oid] = (entry, bytes(stored), obj)

        reader = StreamReader(odb.digest_size, sink)
        r = self.client.request("POST", "/fetch", json=body, stream=True, what="fetching objects")
        try:
            for piece in read_ahead(r.iter_content(chunk_size=1 << 20)):
                reader.feed(piece)
            reader.finish()
        except ObjstoreError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("requests", "urllib3"):
                # the connection broke mid-stream
                raise ServerUnreachable(f"objstore server {self.storage.url}: the pack stream broke off: {exc}") from exc
            raise
        finally:
            r.close()
        # Shallow markers first: a commit is never stored without either its
        # parents or the record that they were left behind on purpose.
        arrived = {m.hex() for m in metadata}
        for oid, (_, _, obj) in metadata.items():
            if isinstance(obj, Commit) and any(p not in arrived and not odb.has(p) for p in obj.parents):
                local.mark_shallow(oid.hex())
        for oid in children_first(metadata):
            entry, stored, _ = metadata[oid]
            odb.add_stored(oid, entry.type_tag, entry.codec, stored, entry.raw_length)
        odb.flush()
        for commit_id in deepened:
            if all(odb.has(p) for p in local.get_commit(commit_id).parents):
                local.unmark_shallow(commit_id)
        self._remember(wants)  # the server just served them whole
        return result

    def fetch(self, selected: Callable[[dict[str, Any]], list[str]], depth: int | None, result: TransferResult) -> TransferResult:
        heads = self.heads()
        names = selected(heads)
        targets = [heads[n] for n in names]
        try:
            self.fetch_objects(targets, result, depth)
        except BaseException:
            self.local.odb.abort()
            raise
        self.local.flush()
        for name in names:
            self.remote._update_local_ref(name, heads[name], result)
        self._remember(targets)  # the server's ref values: whole there by its rules
        result.requests = self.client.requests
        return result


__all__ = ["SmartRemote"]
