"""Parsers of stored bytes fed garbage: they may only raise objstore's own errors."""

from __future__ import annotations

import json
import struct

import msgpack
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore.config import RepoConfig
from objstore.errors import FormatError, ObjstoreError
from objstore.objects import Blob, ChunkedBlob, Commit, Tree, TreeEntry, decode
from objstore.packs import IndexEntry, PackIndex, encode_index
from objstore.refs import RefLogEntry

DS = 16


def only_objstore_errors(fn, *args):
    """Call ``fn``; any exception it raises must be an ObjstoreError."""
    try:
        return fn(*args)
    except ObjstoreError:
        return None
    except Exception as exc:  # pragma: no cover - this is the failure being tested for
        pytest.fail(
            f"{fn.__qualname__} raised {type(exc).__name__}: {exc!r} (not an objstore error) on {args[0]!r:.200}"
        )


# msgpack values of every type, to build structurally plausible garbage.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=25,
)


def valid_encodings():
    oid = "5a" * DS
    return [
        Blob(b"hello").encode(),
        ChunkedBlob(((oid, 3), (oid, 4))).encode(),
        Tree.from_entries(
            [
                TreeEntry("f", "file", oid, 1, 0o755),
                TreeEntry("d", "dir", oid, 2),
                TreeEntry("l", "symlink", target="t"),
                TreeEntry("r", "reference", size=-1, target="u", digest=None),
            ]
        ).encode(),
        Commit(oid, (oid,), 1.0, "a", "m", {"k": [1, {"x": b"y"}]}).encode(),
    ]


# -- objects.decode ------------------------------------------------------------


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_decode_arbitrary_bytes(data):
    only_objstore_errors(decode, data, DS)


@given(st.sampled_from([2, 3, 4]), msgpack_values)
@settings(max_examples=300)
def test_decode_arbitrary_msgpack_bodies(tag, value):
    only_objstore_errors(decode, bytes([tag]) + msgpack.packb(value, use_bin_type=True), DS)


# Tree entries and commit bodies with the right outer shape and random fields.
@given(st.lists(st.lists(msgpack_values, min_size=3, max_size=5), max_size=3), st.sampled_from([0, 1, 2, 3]))
@settings(max_examples=300)
def test_decode_tree_entries_with_random_fields(raw_entries, kind):
    body = [[f"n{i}", *e[1:]] if i % 2 else e for i, e in enumerate(raw_entries)]
    only_objstore_errors(decode, bytes([3]) + msgpack.packb(body, use_bin_type=True), DS)
    body = [[f"n{i}", kind, *e[2:]] for i, e in enumerate(raw_entries)]
    only_objstore_errors(decode, bytes([3]) + msgpack.packb(body, use_bin_type=True), DS)


@given(st.lists(msgpack_values, min_size=6, max_size=6))
def test_decode_commit_with_random_fields(fields):
    only_objstore_errors(decode, bytes([4]) + msgpack.packb(fields, use_bin_type=True), DS)
    fields[0] = b"\0" * DS
    fields[1] = []
    fields[2] = 1.0
    fields[3] = None
    fields[4] = ""
    only_objstore_errors(decode, bytes([4]) + msgpack.packb(fields, use_bin_type=True), DS)


@given(st.sampled_from(valid_encodings()), st.data())
@settings(max_examples=300)
def test_decode_mutated_valid_encodings(enc, data):
    buf = bytearray(enc)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del buf[i:]
        else:
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    only_objstore_errors(decode, bytes(buf), DS)


@pytest.mark.parametrize(
    "entry",
    [["a", [], b"x"], ["a", {}, b"x"], ["a", [0], b"\x01" * DS, 1, 0o644]],
    ids=["list-kind", "map-kind", "list-kind-file-shape"],
)
def test_decode_tree_entry_with_unhashable_kind(entry):
    only_objstore_errors(decode, bytes([3]) + msgpack.packb([entry], use_bin_type=True), DS)


def test_decode_deeply_nested_metadata():
    # A 1000-deep nest of one-key maps inside a commit's metadata, written by hand.
    depth = 1000
    meta = b"\x81\xa1a" * depth + b"\x01"
    body = msgpack.packb([b"\0" * DS, [], 1.0, None, ""], use_bin_type=True)
    body = bytes([0x96]) + body[1:] + meta  # turn the 5-array into a 6-array
    only_objstore_errors(decode, bytes([4]) + body, DS)


# -- PackIndex ---------------------------------------------------------------------


def _index_bytes(n: int) -> bytes:
    entries = [(bytes([i * 37 % 256]) + bytes([i]) * (DS - 1), IndexEntry(8 + i * 50, 10, 10, 1, 0)) for i in range(n)]
    return encode_index(entries, DS, b"\x07" * DS)


def _reseal(body: bytes) -> bytes:
    """Recompute the trailing checksum so the parser looks past it."""
    body = body[:-8]
    return body + struct.pack("<Q", xxhash.xxh3_64_intdigest(body))


def _exercise_index(data: bytes) -> None:
    idx = PackIndex("fuzz", data, DS)
    list(idx.items())
    for i in range(len(idx)):
        idx.find(idx.id_at(i))
    idx.find(b"\0" * DS)
    idx.find(b"\xff" * DS)
    idx.with_prefix(b"\x25")
    idx.with_prefix(b"", 3)


def test_valid_index_parses():
    idx = PackIndex("x", _index_bytes(5), DS)
    assert len(idx) == 5
    for i in range(5):
        oid = bytes([i * 37 % 256]) + bytes([i]) * (DS - 1)
        assert idx.get(oid) == IndexEntry(8 + i * 50, 10, 10, 1, 0)
    assert idx.get(b"\x99" * DS) is None


@given(st.binary(max_size=2000))
def test_pack_index_arbitrary_bytes(data):
    only_objstore_errors(_exercise_index, data)


@given(st.integers(0, 6), st.data())
@settings(max_examples=300)
def test_pack_index_mutated_and_resealed(n, data):
    buf = bytearray(_index_bytes(n))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(buf) - 9))
        buf[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(buf)))
        buf = buf[:cut] + bytearray(8)
    only_objstore_errors(_exercise_index, _reseal(bytes(buf)))


# -- RefLogEntry ---------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_ref_log_entry_arbitrary_bytes(data):
    only_objstore_errors(RefLogEntry.decode, data, "fuzz")


@given(st.lists(msgpack_values, min_size=0, max_size=9))
@settings(max_examples=300)
def test_ref_log_entry_arbitrary_msgpack(fields):
    only_objstore_errors(RefLogEntry.decode, msgpack.packb(fields, use_bin_type=True), "fuzz")
    if len(fields) == 8:
        fields[0] = 1
        only_objstore_errors(RefLogEntry.decode, msgpack.packb(fields, use_bin_type=True), "fuzz")


def test_ref_log_entry_round_trip():
    e = RefLogEntry("a/b", 3, None, "ab" * DS, 12.5, "me@host", "hello")
    assert RefLogEntry.decode(e.encode(), "x") == e


# -- RepoConfig --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)


@given(st.binary(max_size=400))
def test_repo_config_arbitrary_bytes(data):
    only_objstore_errors(RepoConfig.decode, data, "fuzz")


def _config_paths():
    return [
        ("format",),
        ("version",),
        ("hash",),
        ("id",),
        ("pack_size",),
        ("chunking",),
        ("chunking", "min_size"),
        ("chunking", "avg_size"),
        ("chunking", "max_size"),
        ("chunking", "small_file"),
        ("compression",),
        ("compression", "level"),
    ]


@given(st.lists(st.tuples(st.sampled_from(_config_paths()), json_values | st.just("<delete>")), min_size=1, max_size=4))
@settings(max_examples=400)
def test_repo_config_with_random_field_values(edits):
    data = json.loads(RepoConfig().encode())
    for path, value in edits:
        target = data
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if value == "<delete>":
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
    only_objstore_errors(RepoConfig.decode, json.dumps(data).encode(), "fuzz")


@pytest.mark.parametrize("field", ["pack_size", "compression.level", "chunking.min_size"])
def test_repo_config_with_infinite_number(field):
    data = json.loads(RepoConfig().encode())
    target = data
    *parents, leaf = field.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = float("inf")
    only_objstore_errors(RepoConfig.decode, json.dumps(data).encode(), "fuzz")  # "Infinity" in the JSON


def test_repo_config_deeply_nested_json():
    only_objstore_errors(RepoConfig.decode, b"[" * 100_000, "fuzz")


def test_repo_config_round_trip():
    c = RepoConfig(hash="blake2b-256", compression_level=7)
    back = RepoConfig.decode(c.encode(), "x")
    assert back == c
    with pytest.raises(FormatError):
        RepoConfig.decode(b"{}", "x")
