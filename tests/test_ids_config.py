"""Ids depend on content only; the hash algorithm is fixed at init and read back on open."""

from __future__ import annotations

import json

import pytest
from helpers import SMALL, dir_state, rand_bytes, write

from objstore import Repository
from objstore.ids import ALGORITHMS


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    write(d / "text.txt", b"hello world\n" * 2000)  # compressible
    write(d / "random.bin", rand_bytes(1, 20_000))  # chunked, incompressible
    write(d / "sub" / "run.sh", b"#!/bin/sh\necho hi\n", executable=True)
    write(d / "sub" / "empty", b"")
    return d


def test_same_content_same_ids_whatever_the_compression_level(tmp_path, data_dir):
    fast = Repository.init(tmp_path / "fast", compression_level=1, chunking=SMALL)
    best = Repository.init(tmp_path / "best", compression_level=19, chunking=SMALL)
    raw = Repository.init(tmp_path / "raw", compression_level=0, chunking=SMALL)
    t1, t2, t3 = fast.snapshot(data_dir), best.snapshot(data_dir), raw.snapshot(data_dir)
    assert t1 == t2 == t3
    assert fast.commit(t1, message="m", timestamp=5.0) == best.commit(t2, message="m", timestamp=5.0)
    assert fast.store_bytes(b"x" * 5000) == best.store_bytes(b"x" * 5000)
    # The level is recorded and read back; the stored bytes really differ.
    assert Repository.open(tmp_path / "best").config.compression_level == 19
    assert raw.stats().stored_bytes > fast.stats().stored_bytes
    # Each store reads its content back identically.
    for r in (fast, best, raw):
        assert r.read_file(t1, "text.txt") == b"hello world\n" * 2000
        r.close()


def test_default_ids_are_xxh3_128(tmp_path):
    repo = Repository.init(tmp_path / "r")
    oid = repo.store_bytes(b"abc")
    assert len(oid) == 32 and int(oid, 16) >= 0 and oid == oid.lower()
    assert oid == ALGORITHMS["xxh3-128"].digest(b"\x01abc").hex()
    assert json.loads((tmp_path / "r" / "config").read_bytes())["hash"] == "xxh3-128"


def test_blake2b_repository(tmp_path, data_dir):
    path = tmp_path / "b2"
    repo = Repository.init(path, hash="blake2b-256", chunking=SMALL)
    assert json.loads((path / "config").read_bytes())["hash"] == "blake2b-256"
    blob = repo.store_bytes(b"abc")
    assert len(blob) == 64
    assert blob == ALGORITHMS["blake2b-256"].digest(b"\x01abc").hex()
    tree = repo.snapshot(data_dir)
    c = repo.commit(tree, message="b2")
    repo.refs.set("main", c)
    assert len(tree) == 64 and len(c) == 64
    repo.close()

    again = Repository.open(path)
    assert again.config.hash == "blake2b-256"
    assert again.algorithm.name == "blake2b-256"
    assert again.resolve("main") == c
    assert again.get_commit(c[:10]).tree == tree
    assert again.read_file("main", "random.bin") == rand_bytes(1, 20_000)
    for _, entry in again.walk("main"):
        if entry.id is not None:
            assert len(entry.id) == 64
    again.checkout("main", tmp_path / "out")
    assert dir_state(tmp_path / "out") == dir_state(data_dir)


def test_blake2b_and_xxh3_ids_differ_for_same_content(tmp_path):
    a = Repository.init(tmp_path / "a")
    b = Repository.init(tmp_path / "b", hash="blake2b-256")
    assert a.algorithm.hex_length == 32 and b.algorithm.hex_length == 64
    assert not b.algorithm.digest(b"\x01z").hex().startswith(a.algorithm.digest(b"\x01z").hex())


def test_chunking_params_are_recorded_and_read_back(tmp_path):
    Repository.init(tmp_path / "r", chunking=SMALL, pack_size=2 << 20).close()
    cfg = Repository.open(tmp_path / "r").config
    assert cfg.chunking == SMALL
    assert cfg.pack_size == 2 << 20
