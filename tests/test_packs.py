"""Pack housekeeping seen from outside: many small writes stay readable after packs are merged."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import PROJECT_ROOT, SMALL, dir_state, pack_files, rand_bytes, write
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import Repository


def _published(path) -> tuple[set[str], set[str]]:
    names = pack_files(path)
    return {n[:-5] for n in names if n.endswith(".pack")}, {n[:-4] for n in names if n.endswith(".idx")}


def test_many_small_writes_are_merged_and_stay_readable(tmp_path):
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=SMALL)
    early_reader = None
    ids = []
    for i in range(45):
        ids.append(repo.store_bytes(b"object number %d" % i))  # each one durable: its own pack
        if i == 5:
            early_reader = Repository.open(path)  # holds the indexes of the first packs
            assert early_reader.get(ids[0]).data == b"object number 0"
    packs, indexes = _published(path)
    assert packs == indexes  # every pack has its index and vice versa
    assert len(packs) < 45  # small packs were merged
    assert repo.stats().packs == len(packs)
    assert repo.stats().objects == 45
    for i, oid in enumerate(ids):
        assert repo.get(oid).data == b"object number %d" % i
        assert early_reader.get(oid).data == b"object number %d" % i
        assert Repository.open(path).get(oid).data == b"object number %d" % i
    early_reader.close()


def test_explicit_repack_keeps_everything(tmp_path):
    path = tmp_path / "repo"
    repo = Repository.init(path, chunking=SMALL)
    src = tmp_path / "src"
    commits = []
    for i in range(5):
        write(src / f"f{i}.bin", rand_bytes(i, 3000 * (i + 1)))
        commits.append(repo.commit(repo.snapshot(src), commits[-1:], message=str(i)))
    repo.refs.set("main", commits[-1])
    before = repo.stats()
    assert before.packs > 1

    repo.repack()
    packs, indexes = _published(path)
    assert len(packs) == 1 and packs == indexes
    after = repo.stats()
    assert (after.objects, after.raw_bytes, after.commits) == (before.objects, before.raw_bytes, before.commits)
    assert after.stored_bytes <= before.stored_bytes

    fresh = Repository.open(path)
    assert [c.message for _, c in fresh.log("main")] == ["4", "3", "2", "1", "0"]
    fresh.checkout("main", tmp_path / "out")
    assert dir_state(tmp_path / "out") == dir_state(src)


def test_objects_stay_visible_when_another_writer_merges_packs_mid_refresh(tmp_path):
    """Writer A stored a blob; writers B and C merge packs (twice) while A is listing the pack dir.

    A's next step (a tree naming that blob) must still find it: the blob is
    always in some published pack.
    """
    from objstore import TreeEntry

    path = tmp_path / "repo"
    a = Repository.init(path)
    b, c = Repository.open(path), Repository.open(path)
    b.store_bytes(b"other 1")
    b.store_bytes(b"other 2")
    blob = a.store_bytes(b"precious")  # in pack P, which A has loaded
    b.odb.refresh()
    assert b.repack().packs_merged >= 2  # P merged into N; P deleted

    real_listdir = a.storage.listdir

    def listdir_then_merge_again(d):
        names = real_listdir(d)
        if d == "packs":
            a.storage.listdir = real_listdir
            c.odb.refresh()
            c.store_bytes(b"other 3")
            assert c.repack().packs_merged >= 2  # N merged into N2, after A listed N but before it loads it
        return names

    a.storage.listdir = listdir_then_merge_again
    a.odb.refresh()
    a.storage.listdir = real_listdir

    assert a.get(blob).data == b"precious"
    tree = a.make_tree([TreeEntry("f", "file", blob, 8)])
    assert a.read_file(tree, "f") == b"precious"


def test_make_tree_after_concurrent_merge_without_reading_first(tmp_path):
    """Same race as above, but the writer goes straight to make_tree (no read to refresh its view)."""
    from objstore import TreeEntry

    path = tmp_path / "repo"
    a = Repository.init(path)
    b, c = Repository.open(path), Repository.open(path)
    b.store_bytes(b"other 1")
    blob = a.store_bytes(b"precious")
    b.odb.refresh()
    b.repack()
    real_listdir = a.storage.listdir

    def listdir_then_merge_again(d):
        names = real_listdir(d)
        if d == "packs":
            a.storage.listdir = real_listdir
            c.odb.refresh()
            c.store_bytes(b"other 2")
            c.repack()
        return names

    a.storage.listdir = listdir_then_merge_again
    a.odb.refresh()
    a.storage.listdir = real_listdir
    tree = a.make_tree([TreeEntry("f", "file", blob, 8)])
    assert a.read_file(tree, "f") == b"precious"


_SMALL_WRITER = r"""
import sys
from objstore import Repository
repo_path, ident, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
repo = Repository.open(repo_path)
parent = []
for i in range(n):
    blob = repo.store_bytes(f"{ident} record {i}".encode())
    from objstore import TreeEntry
    tree = repo.make_tree([TreeEntry("record.txt", "file", blob, len(f"{ident} record {i}"))])
    c = repo.commit(tree, parent, message=f"{ident}:{i}")
    repo.refs.set(f"writers/{ident}", c)
    parent = [c]
    print(c, flush=True)
"""


@pytest.mark.slow
def test_concurrent_writers_with_automatic_merging(tmp_path):
    """Several processes making many tiny commits (so each crosses the merge threshold) at once."""
    path = tmp_path / "repo"
    Repository.init(path).close()
    procs, n = 4, 40
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _SMALL_WRITER, str(path), f"w{i}", str(n)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(procs)
    ]
    acked = {}
    for i, c in enumerate(children):
        out, err = c.communicate(timeout=120)
        assert c.returncode == 0, err.decode()
        acked[f"w{i}"] = out.decode().split()
    repo = Repository.open(path)
    packs, indexes = _published(path)
    assert packs == indexes
    for ident, ids in acked.items():
        assert len(ids) == n
        log = list(repo.log(f"writers/{ident}"))
        assert [cid for cid, _ in log] == ids[::-1]
        for i, (cid, _) in enumerate(reversed(log)):
            assert repo.read_file(cid, "record.txt") == f"{ident} record {i}".encode()
    assert repo.stats().commits == procs * n


def test_large_pack_is_synced_in_the_background_and_leaves_no_threads(tmp_path):
    """A pack above SYNC_EVERY is fdatasynced while it grows; finishing joins the helper thread."""
    import threading

    from objstore.packs import SYNC_EVERY

    data = rand_bytes(7, 3 * SYNC_EVERY + 12345)
    src = write(tmp_path / "big.bin", data)
    repo = Repository.init(tmp_path / "repo")
    tree = repo.snapshot(src)
    assert not [t for t in threading.enumerate() if t.name == "objstore-sync"]
    out = tmp_path / "out"
    repo.checkout(tree, out)
    assert (out / "big.bin").read_bytes() == data
    repo.close()
    again = Repository.open(tmp_path / "repo")
    assert again.fsck(full=True).ok
    assert again.read_file(tree, "big.bin") == data
    again.close()


def test_aborted_large_pack_leaves_no_temp_file_or_thread(tmp_path):
    import os
    import threading

    from objstore.packs import SYNC_EVERY, PackWriter
    from objstore.storage import LocalStorage

    (tmp_path / "store").mkdir()
    storage = LocalStorage(str(tmp_path / "store"))
    writer = PackWriter(storage, 16)
    blob = rand_bytes(8, 1 << 20)
    for i in range(2 * SYNC_EVERY // len(blob) + 1):
        writer.add(i.to_bytes(16, "big"), 1, 0, blob, len(blob))
    writer.abort()
    assert not [t for t in threading.enumerate() if t.name == "objstore-sync"]
    leftovers = [f for _, _, files in os.walk(tmp_path / "store") for f in files]
    assert leftovers == []


@given(
    st.lists(st.binary(min_size=16, max_size=16), min_size=0, max_size=300, unique=True),
    st.lists(st.binary(min_size=16, max_size=16), max_size=50),
    st.binary(min_size=8, max_size=8),
)
@settings(max_examples=100, deadline=None)
def test_index_find_agrees_with_a_dict_even_when_ids_share_their_first_8_bytes(ids, probes, shared):
    from objstore.packs import IndexEntry, PackIndex, encode_index

    # Half the ids share one 8-byte prefix: the C-level prefix search must still tell them apart.
    ids = list(dict.fromkeys([shared + oid[8:] if i % 2 else oid for i, oid in enumerate(ids)]))
    entries = [(oid, IndexEntry(i, 1, 1, 1, 0)) for i, oid in enumerate(ids)]
    idx = PackIndex("t", encode_index(entries, 16, bytes(16)), 16)
    offsets = {oid: e.offset for oid, e in entries}
    for oid in [*ids, *probes, shared + bytes(8)]:
        e = idx.get(oid)
        assert (e.offset if e is not None else None) == offsets.get(oid)


@given(
    st.lists(st.binary(min_size=16, max_size=16), min_size=0, max_size=60, unique=True),
    st.lists(st.binary(min_size=16, max_size=16), max_size=40),
    st.sampled_from([0, 1, 10_000]),
)
@settings(max_examples=60, deadline=None)
def test_index_absent_keeps_exactly_the_ids_it_lacks_in_order_small_or_large(ids, probes, padding):
    """``absent`` answers from a set of ids (small indexes) or by bisection (large ones): both agree with a set."""
    from objstore.packs import SET_LOOKUP_MAX, IndexEntry, PackIndex, encode_index

    stored = ids + [i.to_bytes(16, "big") for i in range(padding)]  # 10,000 ids: over SET_LOOKUP_MAX
    entries = {oid: IndexEntry(i, 1, 1, 1, 0) for i, oid in enumerate(stored)}
    data = encode_index(entries, 16, bytes(16))
    assert data == encode_index(list(reversed(entries.items())), 16, bytes(16))  # a writer's map or a list: one layout
    idx = PackIndex("t", data, 16)
    assert (len(idx) > SET_LOOKUP_MAX) == (padding > SET_LOOKUP_MAX)
    asked = [*probes, *ids, *probes[:3]]
    held = set(stored)
    assert idx.absent(asked) == [o for o in asked if o not in held]
    assert idx.absent(asked) == idx.absent(asked)  # the second call answers from the kept set


@pytest.mark.parametrize("pack_size", [1 << 20, 64 << 20])
def test_a_run_of_large_records_written_at_once_stays_readable_across_packs(tmp_path, pack_size):
    """``add_stored_many``: records in one writev (more than IOV_MAX buffers in
    the large pack), split where a pack fills up, small ones (group members)
    and repeats mixed in; every object reads back and fsck is clean."""
    from objstore import codec
    from objstore.objects import BLOB
    from objstore.packs import _IOV_MAX

    repo = Repository.init(tmp_path / "repo", pack_size=pack_size)
    odb = repo.odb
    tag = bytes((BLOB,))
    payloads = [rand_bytes(i, 20_000 + (i % 7) * 1000) for i in range(700)]
    payloads[10] = b"small" * 10  # a group member in between
    payloads[20] = payloads[19]  # stored once
    records = []
    for p in payloads:
        records.append((odb.hash(tag, p), codec.RAW, [tag, memoryview(p)], len(p) + 1))
    assert 2 * len(records) > _IOV_MAX  # header+tag and payload: two buffers a record
    odb.add_stored_many(BLOB, records)
    odb.flush()
    if pack_size == 1 << 20:
        assert repo.stats().packs > 10
    assert all(odb.get(r[0].hex()).data == p for r, p in zip(records, payloads))
    again = Repository.open(tmp_path / "repo")
    assert all(again.odb.get(r[0].hex()).data == p for r, p in zip(records, payloads))
    assert again.stats().objects == len(payloads) - 1
    assert repo.fsck().ok
    again.close()
    repo.close()


def _records(odb, count: int, size: int, seed: int):
    from objstore import codec
    from objstore.objects import BLOB

    tag = bytes((BLOB,))
    payloads = [rand_bytes(seed + i, size) for i in range(count)]
    return [(odb.hash(tag, p), codec.RAW, [tag, memoryview(p)], len(p) + 1) for p in payloads], payloads


def test_a_full_pack_is_published_in_the_background_and_its_objects_stay_found_meanwhile(tmp_path):
    """Crossing a pack boundary hands the full pack to a helper thread: until it is
    published its objects are still known (not stored twice), a read waits for it,
    and the flush that ends the write waits for it too."""
    import threading

    from objstore.objects import BLOB

    repo = Repository.init(tmp_path / "repo", pack_size=1 << 20)
    odb = repo.odb
    storage = odb.storage
    gate = threading.Event()
    publish = storage.publish_file

    def gated(local_path, path):
        assert gate.wait(30)
        publish(local_path, path)

    storage.publish_file = gated
    records, payloads = _records(odb, 8, 200_000, 40)  # 1.6 MB: one full pack (5 records), then 3 more
    odb.add_stored_many(BLOB, records)
    first = records[0][0]
    assert [t for t in threading.enumerate() if t.name == "objstore-publish"]
    assert _published(tmp_path / "repo") == (set(), set())  # still being published
    assert odb.has_raw(first)
    assert odb.missing([r[0] for r in records]) == []
    added = odb.added_objects
    oid, codec_id, parts, raw_length = records[1]
    odb.add_stored(oid, BLOB, codec_id, parts, raw_length)  # known: not stored a second time
    assert odb.added_objects == added
    threading.Timer(0.2, gate.set).start()
    assert odb.get(first.hex()).data == payloads[0]  # waits for its pack
    odb.flush()
    assert not [t for t in threading.enumerate() if t.name == "objstore-publish"]
    packs, indexes = _published(tmp_path / "repo")
    assert len(packs) >= 2 and packs == indexes
    storage.publish_file = publish
    again = Repository.open(tmp_path / "repo")
    assert all(again.odb.get(r[0].hex()).data == p for r, p in zip(records, payloads))
    assert again.fsck(full=True).ok
    again.close()
    repo.close()


def test_a_pack_that_fails_to_publish_in_the_background_fails_the_write_and_leaves_the_store_clean(tmp_path):
    """The error of a pack published on the helper thread is raised to the writer (at the next
    pack boundary or the flush); the open pack is dropped, no temp file is left behind."""
    import os

    from objstore.errors import StorageError
    from objstore.objects import BLOB

    repo = Repository.init(tmp_path / "repo", pack_size=1 << 20)
    odb = repo.odb
    storage = odb.storage
    publish = storage.publish_file
    calls = []

    def failing(local_path, path):
        calls.append(path)
        if len(calls) == 1:
            os.unlink(local_path)  # as a failed upload or rename leaves it: the writer cleans up the rest
            raise StorageError(f"{path}: no space left on device")
        publish(local_path, path)

    storage.publish_file = failing
    records, _ = _records(odb, 8, 200_000, 60)
    with pytest.raises(StorageError, match="no space"):
        odb.add_stored_many(BLOB, records)
        odb.flush()
    odb.abort()
    storage.publish_file = publish
    assert [f for f in os.listdir(tmp_path / "repo" / "tmp") if f.endswith(".pack.tmp")] == []
    packs, indexes = _published(tmp_path / "repo")
    assert packs == indexes  # whatever was published is complete, with its index
    assert repo.fsck(full=True).ok
    repo.close()
