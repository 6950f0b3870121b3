"""Finding objects across many packs: the last pack hit first, and one sorted table of id prefixes for new ids."""

from __future__ import annotations

import os

from helpers import rand_bytes

from objstore import Repository
from objstore.odb import _Absent


def _one_pack_per_blob(repo: Repository, seeds: range) -> list[bytes]:
    ids = []
    for seed in seeds:
        ids.append(bytes.fromhex(repo.store_bytes(rand_bytes(seed, 300))))
        repo.odb.flush()
    return ids


def test_every_object_is_found_and_no_other_across_many_packs(tmp_path):
    repo = Repository.init(tmp_path / "repo")
    ids = _one_pack_per_blob(repo, range(3))
    assert repo.odb._absent is None  # a few packs: each index is searched
    ids += _one_pack_per_blob(repo, range(3, 30))  # merged, then 8 at a time unmerged, merged again
    assert repo.odb._absent is not None and len(repo.odb._absent.unmerged) <= _Absent.MERGE_AFTER
    missing = [os.urandom(16) for _ in range(200)]
    for oid in ids + ids[::-1]:  # the last-hit pack rarely holds the next one here
        loc = repo.odb.locate(oid)
        assert loc is not None and repo.odb.index(loc[0]).get(oid) == loc[1]
    assert all(repo.odb.locate(oid) is None for oid in missing)

    # A repack removes the old packs: their ids are now in a pack the table has not merged yet.
    repo.repack()
    assert len(repo.odb.pack_names) == 1
    assert all(repo.odb.locate(oid) is not None for oid in ids)
    assert all(repo.odb.locate(oid) is None for oid in missing)
    repo.close()

    fresh = Repository.open(tmp_path / "repo")
    assert all(fresh.odb.has(oid.hex()) for oid in ids)
    fresh.close()


def test_a_new_id_is_answered_without_searching_every_merged_index(tmp_path, monkeypatch):
    repo = Repository.init(tmp_path / "repo")
    ids = _one_pack_per_blob(repo, range(12))
    searched: list[str] = []
    for name in repo.odb.pack_names:
        idx = repo.odb.index(name)
        real = idx.get
        monkeypatch.setattr(idx, "get", lambda oid, _real=real, _name=name: searched.append(_name) or _real(oid))
    assert repo.odb.locate(os.urandom(16)) is None
    assert len(searched) <= 1 + _Absent.MERGE_AFTER  # the last hit's pack and the unmerged ones, not all 12
    assert repo.odb.locate(ids[0]) is not None
    repo.close()


def test_a_run_of_objects_is_found_across_packs_and_one_missing_is_told(tmp_path):
    """has_run: a run spread over packs (and the pack being written) is stored; one id more is not."""
    repo = Repository.init(tmp_path / "repo")
    first = [bytes.fromhex(repo.store_bytes(rand_bytes(seed, 300))) for seed in range(40)]
    repo.odb.flush()  # one pack with 40 objects
    scattered = _one_pack_per_blob(repo, range(40, 50))
    open_pack = bytes.fromhex(repo.store_bytes(rand_bytes(50, 300)))  # not flushed: in the pack being written
    near: list[str] = []
    run = first[:20] + scattered[:3] + first[20:] + [open_pack]
    assert repo.odb.has_run(run, near)
    assert near == [repo.odb.locate(first[0])[0]]  # the pack that held most of the run is asked first next time
    assert repo.odb.has_run(first[::-1] + scattered, near)
    assert not repo.odb.has_run([*first, os.urandom(16)], near)
    repo.close()
